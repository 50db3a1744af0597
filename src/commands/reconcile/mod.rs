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
//!   compares, and the counts; `compare`: the sorted merge of the file and the account;
//!   `format`: the report as text or JSON Lines.
//!
//! "Extra" SIMs (on the account, not in the file) are looked for with `--all` on the whole
//! account, or with `--fleet` in one Fleet: on a shared account the other apps' SIMs are
//! not this file's business. The listing stays whole either way, so a SIM of the file that
//! moved to another Fleet is still found.

mod compare;
mod format;
mod layout;
mod verdict;

pub(crate) use compare::Reconcile;

use std::collections::BTreeSet;

use tokio_util::sync::CancellationToken;

use crate::api::SimFilter;
use crate::api::gate::{Gate, Halt};
use crate::cli::ReconcileArgs;
use crate::commands::listing::ListError;
use crate::config::Target;
use crate::exit;
use crate::run::fleets::{self, FleetStop};

/// `reconcile`: the report to stdout, errors to stderr.
pub(crate) async fn run(args: ReconcileArgs, stop: CancellationToken) -> u8 {
    let mut config = match super::connect::account_config(&args.account) {
        Ok(config) => config,
        Err(code) => return code,
    };
    // A rehearsal's results are compared with the rehearsal's account: the emulator state a
    // `register --emulator` run kept beside them (only read; none is made up when absent),
    // unless `--state` names another.
    if let crate::config::Target::Emulator {
        state: state @ None,
        ..
    } = &mut config.target
    {
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
    // The account the SIMs must be listed as (`TWILIO_ACCOUNT_SID` beside an API key).
    client.know_account(config.account_sid.as_deref());
    let gate = Gate::new(client, config.limits, stop);
    // The Fleet is looked up first, so a typo is a set-up mistake rather than a Fleet that
    // seems empty (and every SIM moved out of it is still found: the listing stays whole).
    let fleet_sid = match &args.fleet {
        Some(name) => match fleet_sid(&gate, &config.target, name).await {
            Ok(sid) => Some(sid),
            Err(code) => return code,
        },
        None => None,
    };
    let temp_dir = std::env::temp_dir();
    let reconcile = Reconcile {
        path: &args.results,
        all: args.all,
        fleet_sid: fleet_sid.as_deref(),
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
    let mut report = format::Report {
        format: args.format,
        out: &mut stdout,
    };
    match reconcile.run(&gate, &filter, &mut report).await {
        Ok(counts) => {
            let extras = match (&args.fleet, args.all) {
                (Some(fleet), _) => Some(Some(fleet.as_str())),
                (None, true) => Some(None),
                (None, false) => None,
            };
            if let Err(error) = report.counts(&args.results, extras, &counts) {
                crate::logs::error(format_args!("cannot write the report: {error}"));
                return exit::USAGE_OR_CONFIG;
            }
            counts.exit_code()
        }
        // No verdict and no count from a listing given up: a SIM it did not reach would
        // read as missing.
        Err(error) => error.report_saying(&config.target, Some("nothing was compared")),
    }
}

/// The SID of the Fleet `--fleet` names, or the exit code after saying why it has none.
async fn fleet_sid(gate: &Gate, target: &Target, name: &str) -> Result<String, u8> {
    let resolved = fleets::resolve(
        gate,
        Some(name),
        &BTreeSet::new(),
        false,
        "nothing was compared",
    )
    .await;
    let stopped = match resolved {
        Ok(resolved) => {
            let mut plan = crate::api::SimUpdate {
                fleet: Some(name.to_string()),
                ..Default::default()
            };
            return match resolved.apply(&mut plan) {
                Ok(()) => Ok(plan.fleet.unwrap_or_default()),
                Err(reason) => {
                    crate::logs::error(format_args!("--fleet: {reason}"));
                    Err(exit::USAGE_OR_CONFIG)
                }
            };
        }
        Err(stopped) => stopped,
    };
    match stopped {
        FleetStop::Setup(sentence) => {
            crate::logs::error(sentence);
            Err(exit::USAGE_OR_CONFIG)
        }
        FleetStop::Unavailable(sentence) => {
            crate::logs::error(sentence);
            Err(exit::TEMPORARY_FAILURE)
        }
        FleetStop::Halted => match gate.halt_reason() {
            Some(Halt::CredentialsRefused(refusal)) => {
                Err(ListError::CredentialsRefused(refusal).report(target))
            }
            Some(Halt::Unreachable(sentence)) => {
                crate::logs::error(sentence);
                Err(exit::TEMPORARY_FAILURE)
            }
            Some(Halt::WrongEndpoint(sentence)) => {
                crate::logs::error(sentence);
                Err(exit::USAGE_OR_CONFIG)
            }
            None => Err(ListError::Interrupted.report(target)),
        },
    }
}
