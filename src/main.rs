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
    runtime.block_on(app::main(cli))
}
