//! The reader side of a run: each input row read, checked, planned and triaged into the
//! work the dispatcher hands to workers (send, report or skip), with the Fleets resolved
//! just before the first row that needs them. Runs on a blocking thread; no row is sent
//! from here.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::gate::{Gate, Halt};
use crate::input::checks::Column;
use crate::input::screen::locate;
use crate::input::screen::{Problem, Screen, Verdict, join_reasons};
use crate::input::{InputRow, SimReader};
use crate::results::{Outcome, ResultRow, code_fingerprint, report_key};
use crate::run::fleets::{self, FleetStop, ResolvedFleets};
use crate::run::onboard::Job;
use crate::run::plan::{LineFacts, Plan};
use crate::run::registration::SendRow;
use crate::run::resume::{self, OnboardConfig, Resume};

use super::error::RunError;

/// What the reader hands to the dispatcher for each input row, with the row's input fields
/// for the failed-out file.
pub(super) enum Work {
    /// Checked, and a step is still missing: register it, or update it, or both; then
    /// record these warnings with its result.
    Send(Job, Option<String>, csv::ByteRecord),
    /// Settled without a request (`invalid`, `duplicate`): write this row, and copy it to
    /// the failed-out file with this reason if it has one.
    Report(ResultRow, csv::ByteRecord, Option<String>),
    /// Finished by an earlier run: count it, write nothing (but copy it to the failed-out
    /// file, its line first, with this reason, when it ended `invalid` or `rejected`).
    Skip(Outcome, Option<(u64, csv::ByteRecord, String)>),
}

/// Reads and checks the input, with the plan's facts for each line (repeats, earlier runs),
/// deciding for each row whether it is sent.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_input(
    mut reader: SimReader,
    screen: Screen,
    mut plan: Plan,
    retry_rejected: bool,
    (onboard, mut fleets): (&OnboardConfig, LazyFleets),
    work: &mpsc::Sender<Work>,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let unreadable_plan = |error: std::io::Error| {
        RunError::Setup(
            anyhow::Error::new(error)
                .context("cannot read the run's plan back from its temporary file"),
        )
    };
    let input_name = reader.display_name().to_string();
    let changed = |line: u64, what: &str| {
        RunError::InputChanged(format!(
            "line {line} of {input_name} {what} after this run planned it: the input changed \
             while the run was going; nothing was sent for it or the rows after it. Run again \
             once the file is complete"
        ))
    };
    loop {
        let Some(row) = reader.next_row() else {
            // A planned row that is no longer there: the input shrank under the run.
            return match plan.all_rows_matched().map_err(unreadable_plan)? {
                Ok(()) => Ok(()),
                Err(line) => Err(changed(line, "was removed")),
            };
        };
        if stop.is_cancelled() {
            break;
        }
        let row = row?;
        if !plan.covers(row.line) {
            tracing::info!(
                line = row.line,
                "rows were added to the input after this run planned it; the next run takes them"
            );
            break;
        }
        // Every row is checked against the plan before anything is sent for it, so a
        // rewritten input can never send one SIM twice in one run.
        if !plan.matches(&row).map_err(unreadable_plan)? {
            return Err(changed(row.line, "changed"));
        }
        let facts = plan.at(row.line).map_err(unreadable_plan)?;
        if !facts.fit_row(screen.sendable_key(&row)) {
            return Err(RunError::InputChanged(format!(
                "line {} of {} is not the row this run planned from: the input changed while \
                 the run was going; nothing was skipped for it. Run again once the file is \
                 complete",
                row.line,
                reader.display_name()
            )));
        }
        if fleets.pending && needs_fleets(&row, &facts, retry_rejected, onboard, &screen) {
            match fleets.resolve() {
                Ok(()) => {}
                // Halted (unreachable, not the API) or interrupted: the gate says which.
                Err(None) => break,
                Err(Some(error)) => return Err(error),
            }
        }
        let next = triage(
            row,
            &facts,
            retry_rejected,
            (onboard, &fleets.resolved),
            &screen,
        );
        if work.blocking_send(next).is_err() {
            break;
        }
    }
    Ok(())
}

/// The Fleets a run names, resolved (all at once) when the first row that will be sent
/// names one, so they are known before any SIM is registered, and a run with nothing left
/// to do sends nothing.
pub(super) struct LazyFleets {
    pub(super) gate: Arc<Gate>,
    /// `--fleet`.
    pub(super) flag: Option<String>,
    /// The `fleet` cells of rows that would be sent.
    pub(super) named: BTreeSet<String>,
    pub(super) too_many: bool,
    pub(super) resolved: ResolvedFleets,
    /// Not resolved yet.
    pub(super) pending: bool,
}

impl LazyFleets {
    /// Looks every Fleet up, blocking the reader thread. `Err(None)` when the run stops
    /// (the gate halted it, with its reason, or it was interrupted).
    fn resolve(&mut self) -> Result<(), Option<RunError>> {
        self.pending = false;
        let resolving = fleets::resolve(
            &self.gate,
            self.flag.as_deref(),
            &self.named,
            self.too_many,
            fleets::NOTHING_REGISTERED,
        );
        match tokio::runtime::Handle::current().block_on(resolving) {
            Ok(resolved) => {
                if resolved.unknown() > 0 {
                    tracing::warn!(
                        fleets = resolved.unknown(),
                        "rows naming a Fleet that is not on this account are invalid and are not sent"
                    );
                }
                self.resolved = resolved;
                Ok(())
            }
            Err(FleetStop::Setup(why)) => Err(Some(RunError::Setup(anyhow::anyhow!(why)))),
            Err(FleetStop::Unavailable(why)) => {
                self.gate.halt(Halt::Unreachable(why));
                Err(None)
            }
            Err(FleetStop::Halted) => Err(None),
        }
    }
}

/// True when `row` will be sent (or updated) and names a Fleet, by cell or `--fleet`: the
/// Fleets must be resolved before it goes. Judged before resolution: a Fleet named by
/// unique name counts as done only when the row recorded the same request, so a run that
/// names another Fleet resolves it and compares SIDs (see [`resume::resume`]).
fn needs_fleets(
    row: &InputRow,
    facts: &LineFacts,
    retry_rejected: bool,
    onboard: &OnboardConfig,
    screen: &Screen,
) -> bool {
    let Verdict::Send { iccid, .. } = screen.judge(row, facts.duplicate_of) else {
        return false;
    };
    let Ok(plan) = onboard.plan_for(row.fleet.clone(), row.unique_name.clone()) else {
        return false;
    };
    let code = Some(code_fingerprint(&iccid, &row.code));
    plan.fleet.is_some()
        && !matches!(
            resume::resume(facts.sim(), &plan, None, code, retry_rejected),
            Resume::Skip(_)
        )
}

/// Decides what happens to one input row: the shared checks and dedupe, the onboarding
/// plan (with its Fleet resolved, or the row invalid when the Fleet is not on the account),
/// then resuming, from the plan's `facts` about the row's line. No I/O.
pub(super) fn triage(
    row: InputRow,
    facts: &LineFacts,
    retry_rejected: bool,
    (onboard, fleets): (&OnboardConfig, &ResolvedFleets),
    screen: &Screen,
) -> Work {
    let verdict = screen.judge(&row, facts.duplicate_of);
    let settled = |outcome: Outcome, iccid: String, message: String, failed: Option<String>| {
        if facts.already_reported(report_key(outcome, &iccid, &message)) {
            Work::Skip(
                outcome,
                failed.map(|reason| (row.line, row.fields.clone(), reason)),
            )
        } else {
            let mut result = ResultRow::new(row.line, iccid, outcome);
            result.error_message = Some(message);
            Work::Report(result, row.fields.clone(), failed)
        }
    };
    let invalid = |iccid: String, problems: &[Problem]| {
        settled(
            Outcome::Invalid,
            iccid,
            join_reasons(problems),
            Some(locate(row.line, problems)),
        )
    };
    let (iccid, warnings) = match verdict {
        Verdict::Invalid { iccid, problems } => return invalid(iccid, &problems),
        Verdict::Duplicate { iccid, first_line } => {
            let message = Verdict::duplicate_problem(first_line).reason;
            return settled(Outcome::Duplicate, iccid, message, None);
        }
        Verdict::Send { iccid, warnings } => (iccid, warnings),
    };
    // Whether a row is done is judged by the resolved Fleet SID when the Fleets were
    // resolved, whichever form was given; `update_requested` keeps the Fleet as named.
    let planned = onboard
        .plan_for(row.fleet.clone(), row.unique_name.clone())
        .and_then(|as_named| {
            let mut plan = as_named.clone();
            fleets.apply(&mut plan).map(|()| (as_named, plan))
        });
    let (as_named, plan) = match planned {
        Ok(plans) => plans,
        Err(reason) => {
            let problem = Problem {
                column: Column::Row,
                reason,
            };
            return invalid(iccid, &[problem]);
        }
    };
    let warning = (!warnings.is_empty()).then(|| join_reasons(&warnings));
    let fleet_sid = plan.fleet.as_deref().filter(|f| resume::is_fleet_sid(f));
    let code = Some(code_fingerprint(&iccid, &row.code));
    let resume = match resume::resume(facts.sim(), &as_named, fleet_sid, code, retry_rejected) {
        Resume::Skip(Outcome::Rejected) => {
            let reason = format!(
                "line {}: rejected by the API in an earlier run (see the results file)",
                row.line
            );
            return Work::Skip(Outcome::Rejected, Some((row.line, row.fields, reason)));
        }
        Resume::Skip(outcome) => return Work::Skip(outcome, None),
        Resume::Update(prior) => Some(prior),
        Resume::Register => {
            if !retry_rejected && facts.outcome() == Some(Outcome::Rejected) {
                tracing::info!(
                    line = row.line,
                    %iccid,
                    "the registration code changed since the API refused it: sending it again"
                );
            }
            None
        }
    };
    // Said when the row is sent, not on every rerun that finds it already done.
    if let Some(warning) = &warning {
        tracing::warn!(line = row.line, %iccid, %warning, "sending despite a warning");
    }
    let job = Job {
        row: SendRow {
            line: row.line,
            iccid,
            code: row.code,
        },
        plan,
        resume,
        requested: resume::requested_text(&as_named),
    };
    Work::Send(job, warning, row.fields)
}
