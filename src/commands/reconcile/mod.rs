//! The `reconcile` command: a results file (or an earlier export) compared with what the
//! account holds now, SIM by SIM.
//!
//! Memory stays flat whatever the sizes: both sides are sorted on disk and merged by ICCID.
//!
//! Not done: `--fix`. The update steps a results row still needs depend on the `register`
//! flags of that run (Fleet, status), which the file does not record; re-running `register`
//! with the same flags already repeats exactly the missing steps.
//!
//! - `layout`: what kind of file it is and where its columns are; `verdict`: how one SIM
//!   compares, and the counts; `compare`: the sorted merge of the file and the account.

mod compare;
mod layout;
mod verdict;

pub(crate) use compare::Reconcile;
pub(crate) use verdict::Counts;

use std::io::Write;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::api::SimFilter;
use crate::api::gate::Gate;
use crate::cli::ReconcileArgs;
use crate::exit;

fn write_counts(
    path: &Path,
    all: bool,
    counts: &Counts,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} SIMs in the file, {} on the account",
        path.display(),
        counts.file_sims,
        counts.account_sims
    )?;
    writeln!(out, "  match           {}", counts.matched)?;
    writeln!(out, "  differ          {}", counts.differ)?;
    writeln!(out, "  missing         {}", counts.missing)?;
    writeln!(out, "  not registered  {}", counts.not_registered)?;
    if all {
        writeln!(out, "  extra           {}", counts.extra)?;
    } else {
        writeln!(out, "  extra           not checked (pass --all)")?;
    }
    if counts.unreadable > 0 {
        writeln!(
            out,
            "  skipped         {} (rows cut short or without a valid ICCID)",
            counts.unreadable
        )?;
    }
    if counts.exit_code() == exit::SUCCESS {
        writeln!(out, "the account matches the file")?;
    } else {
        writeln!(out, "the account differs from the file")?;
    }
    Ok(())
}

/// `reconcile`: the report to stdout, errors to stderr.
pub(crate) async fn run(args: ReconcileArgs, stop: CancellationToken) -> u8 {
    let mut config = match super::connect::account_config(&args.account) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // A rehearsal's results are compared with the rehearsal's account: the emulator state a
    // `register --emulator` run kept beside them (only read; none is made up when absent).
    if let crate::config::Target::Emulator { state, .. } = &mut config.target {
        let beside = crate::config::emulator_state_beside(&args.results);
        if beside.is_file() {
            *state = Some(beside);
        }
    }
    super::connect::log_start(
        "reconcile",
        &config.target,
        Some(&args.results.display().to_string()),
    );
    let connected = super::connect::connect(&config.target, config.timeout).await;
    let (client, _emulator) = match connected {
        Ok(connected) => connected,
        Err(error) => {
            crate::logs::error(format_args!("{error:#}"));
            return exit::USAGE_OR_CONFIG;
        }
    };
    let gate = Gate::new(client, config.limits, stop);
    let temp_dir = std::env::temp_dir();
    let reconcile = Reconcile {
        path: &args.results,
        all: args.all,
        matches: args.matches,
        temp_dir: &temp_dir,
        account_sid: config.account_sid.as_deref(),
    };
    let filter = SimFilter {
        page_size: config.page_size,
        ..SimFilter::default()
    };
    // A closed stdout (`reconcile ... | head`) ends the report quietly: the comparison
    // still finishes, and its exit code still tells the truth.
    let mut stdout = super::Stdout::lock();
    match reconcile.run(&gate, &filter, &mut stdout).await {
        Ok(counts) => {
            if let Err(error) = write_counts(&args.results, args.all, &counts, &mut stdout) {
                crate::logs::error(format_args!("cannot write the report: {error}"));
                return exit::USAGE_OR_CONFIG;
            }
            counts.exit_code()
        }
        Err(error) => error.report(&config.target),
    }
}
