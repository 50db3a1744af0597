use std::process::ExitCode;

use clap::Parser;
use supersim_bulk::{app, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    app::init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            supersim_bulk::logs::error(format_args!("cannot start the async runtime: {error}"));
            return ExitCode::from(supersim_bulk::exit::USAGE_OR_CONFIG);
        }
    };
    // A panic that reaches this far is a bug: it exits 70 like every other internal error,
    // never with a panic's own 101 that no script knows. The panic hook has already said
    // what and where on stderr (when stderr can be written).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(app::main(cli))
    })) {
        Ok(code) => code,
        Err(_) => {
            supersim_bulk::logs::error(
                "internal error (a bug): the run stopped unexpectedly; rows not written are \
                 left for the next run. Please report this",
            );
            ExitCode::from(supersim_bulk::exit::INTERNAL_ERROR)
        }
    }
}
