//! Onboarding after registration: assigning a Fleet, setting the status and the UniqueName
//! with `POST /v1/Sims/{Sid}`, and (with `--wait`) polling `GET /v1/Sims/{Sid}` until an
//! asynchronous change is no longer `scheduled`.
//!
//! One SIM's work is a short sequence of steps: register (in `registration`), write a checkpoint
//! row, fetch the SIM when its state is not known, send only the fields that differ, then
//! wait if asked. Each step's failure maps to an outcome: a refusal for good is
//! `update_failed`, transient failures that outlast the attempts are `gave_up`, and both rows
//! carry the SID, so the next run resumes at the update step and never registers the SIM a
//! second time. The checkpoint row written between the steps serves the same purpose when
//! the process dies between them. Every request passes the gate, polls included, and the
//! update's retries go through the one retry loop (see [`crate::api::retry`]), with the
//! re-fetch rule as its hook.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::gate::{Gate, Halt};
use crate::api::retry::{Hooks, Judged, Step, with_retries};
use crate::api::{Answered, ApiError, ErrorClass, Sim, SimUpdate};
use crate::results::{Outcome, PENDING_MESSAGE, PriorSim, ResultRow};
use crate::run::registration::{self, SendRow};
use crate::run::resume::is_fleet_sid;
use crate::run::sids::SidLedger;

/// One SIM's work, as the reader hands it to a worker.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) row: SendRow,
    /// What to change after registration; empty for a plain registration.
    pub(crate) plan: SimUpdate,
    /// Set when an earlier run registered the SIM: registration is skipped.
    pub(crate) resume: Option<PriorSim>,
    /// The update as the input and the flags name it (a Fleet by the name given), for the
    /// `update_requested` column that a later run compares its own request with.
    pub(crate) requested: Option<String>,
}

/// Records a checkpoint row and returns once it is in the results file, so a crash after
/// that point cannot lose the fact that the SIM is registered.
pub(crate) trait Checkpoint: Sync {
    fn record(&self, row: ResultRow) -> impl Future<Output = ()> + Send;
}

/// Drives one SIM through every step it still needs. `None` means the run stopped first;
/// the SIM gets no final row, and the next run resumes from its last written row.
/// `sids` is which ICCID each SID in the results file belongs to: no SID goes into this
/// SIM's rows while another ICCID's row holds it.
pub(crate) async fn onboard(
    gate: &Gate,
    job: Job,
    (wait, sids): (Option<Duration>, &SidLedger),
    checkpoint: &impl Checkpoint,
) -> Option<ResultRow> {
    let requested = job.requested.clone();
    let mut row = steps(gate, job, (wait, sids), checkpoint, &requested).await?;
    row.update_requested = requested;
    Some(row)
}

async fn steps(
    gate: &Gate,
    job: Job,
    (wait, sids): (Option<Duration>, &SidLedger),
    checkpoint: &impl Checkpoint,
    requested: &Option<String>,
) -> Option<ResultRow> {
    let Job {
        row, plan, resume, ..
    } = job;
    let resume = match resume {
        // An earlier row says the SIM is registered but recorded no SID (a hand-edited file,
        // or an 83003 whose lookup failed): find it by ICCID rather than drop the row.
        Some(prior) if prior.sid.is_none() => match registration::lookup(gate, &row).await {
            Ok(Some(sim)) if sim.sid.is_some() => {
                let shown = sim.sid.as_deref().unwrap_or_default();
                if let Err(holder) = sids.claim(shown, &row.iccid) {
                    let mut gave_up = ResultRow::new(row.line, &row.iccid, Outcome::GaveUp);
                    gave_up.error_message =
                        Some(registration::sid_clash_message(&row.iccid, shown, &holder));
                    return Some(gave_up);
                }
                Some(PriorSim {
                    sid: sim.sid,
                    ..prior
                })
            }
            Ok(_) => None,
            Err(Some(error)) => {
                return Some(registration::error_row(&row, Outcome::GaveUp, &error, 0));
            }
            Err(None) => return None,
        },
        other => other,
    };
    let line = row.line;
    let iccid = row.iccid.clone();
    let (outcome, sid, attempts, known) = match resume {
        Some(prior) => {
            // Only SIMs with a SID are resumed at this step: one without was looked up above.
            let sid = prior.sid?;
            // The recorded state may be stale (a lost answer, a change in the Console), so
            // the SIM is fetched before anything is sent.
            let outcome = if prior.outcome.is_done() {
                // The file says the SIM is done with what it recorded; an update sent now
                // may change that, and a kill before the final row would leave the file
                // saying the old state is done, which a rerun asking for it again would
                // skip. A checkpoint makes the rerun read the SIM again.
                let mut pending = ResultRow::new(line, &iccid, prior.outcome);
                pending.sid = Some(sid.clone());
                pending.account_sid = gate.client().account();
                pending.error_message = Some(PENDING_MESSAGE.to_string());
                pending.update_requested = requested.clone();
                checkpoint.record(pending).await;
                prior.outcome
            } else {
                Outcome::Registered
            };
            (outcome, sid, 0, None)
        }
        None => {
            let registered = registration::register(gate, row, sids).await?;
            if !registered.outcome.is_done() || plan.is_empty() {
                return Some(registered);
            }
            let Some(sid) = registered.sid.clone() else {
                // 83003 without a SID anywhere: the row already says so; nothing to update.
                return Some(registered);
            };
            let mut pending = registered.clone();
            pending.error_message = Some(PENDING_MESSAGE.to_string());
            pending.update_requested = requested.clone();
            checkpoint.record(pending).await;
            // A SIM this run created is known exactly (201: `new`, no Fleet, no name); one
            // that was on the account already is fetched.
            let known = (registered.outcome == Outcome::Registered && registered.status.is_some())
                .then(|| Sim {
                    sid: Some(sid.clone()),
                    iccid: Some(iccid.clone()),
                    status: registered.status.clone(),
                    fleet_sid: registered.fleet_sid.clone(),
                    unique_name: None,
                    account_sid: registered.account_sid.clone(),
                });
            (registered.outcome, sid, registered.attempts, known)
        }
    };
    let step = Steps {
        gate,
        line,
        iccid,
        sid,
        outcome,
        attempts,
    };
    step.update(&plan, known, wait).await
}

/// The update and wait steps of one registered SIM.
struct Steps<'a> {
    gate: &'a Gate,
    line: u64,
    iccid: String,
    sid: String,
    /// The registration outcome the final row carries when every step succeeds.
    outcome: Outcome,
    /// Create attempts of this run, for the `attempts` column.
    attempts: u32,
}

/// How a wait for a `scheduled` SIM ended, when it did not end with the change done.
enum WaitEnd {
    /// The run stopped.
    Stopped,
    /// Polling failed for good or ran out of attempts.
    Failed(ApiError, Sim),
    /// `--wait-timeout` passed; the last poll still said `scheduled`.
    TimedOut(Sim),
}

const SCHEDULED: &str = "scheduled";

impl Steps<'_> {
    /// Fetches the SIM when needed, sends the fields that differ, retries, and waits.
    async fn update(
        &self,
        plan: &SimUpdate,
        known: Option<Sim>,
        wait: Option<Duration>,
    ) -> Option<ResultRow> {
        let mut update = Update {
            steps: self,
            plan,
            wait,
            known,
            current: None,
            missing: SimUpdate::default(),
            sent: false,
        };
        with_retries(self.gate, self.line ^ 0x0b0a_4d00, &mut update).await
    }
    /// The update was accepted: 200 with the new state, or 202 with `scheduled`. A change
    /// waited for that settles without what `sent` asked (it fell back) is not done: the
    /// row is `gave_up`, showing the SIM as it is, and the next run sends it again.
    async fn after_update(
        &self,
        updated: Sim,
        sent: &SimUpdate,
        wait: Option<Duration>,
    ) -> Option<ResultRow> {
        let scheduled = updated.status.as_deref() == Some(SCHEDULED);
        match wait {
            Some(limit) if scheduled => match self.wait_until_settled(limit, updated).await {
                Ok(settled) => Some(match fell_back(sent, &settled) {
                    None => self.row(self.outcome, &settled),
                    Some(shown) => {
                        let mut row = self.row(Outcome::GaveUp, &settled);
                        row.error_message = Some(format!(
                            "the update was accepted, but once it was no longer scheduled \
                             the SIM showed {shown}; run again to send it again"
                        ));
                        row
                    }
                }),
                Err(end) => self.wait_failed(end, limit),
            },
            _ => Some(self.row(self.outcome, &updated)),
        }
    }

    /// Polls `GET /v1/Sims/{Sid}` with growing pauses until the SIM is not `scheduled` or
    /// `limit` has passed.
    async fn wait_until_settled(&self, limit: Duration, mut last: Sim) -> Result<Sim, WaitEnd> {
        let deadline = Instant::now() + limit;
        let backoff = self.gate.limits().backoff;
        let mut polls: u32 = 0;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitEnd::TimedOut(last));
            }
            // Doubling pauses from the backoff base up to its cap, never past the deadline.
            let pause = backoff
                .base
                .saturating_mul(1u32 << polls.min(16))
                .min(backoff.cap)
                .min(deadline - now);
            polls += 1;
            if !self.gate.idle(pause).await {
                return Err(WaitEnd::Stopped);
            }
            match self.fetch().await {
                Ok(sim) if sim.status.as_deref() == Some(SCHEDULED) => last = sim,
                Ok(sim) => return Ok(sim),
                // The SIM was just shown scheduled: "not found" now is an account not yet
                // consistent, not a refusal of the change; polled again until the deadline.
                Err(Some(error)) if is_not_found(&error) => {
                    tracing::debug!(line = self.line, iccid = %self.iccid, %error, "poll found no SIM; polling again");
                }
                Err(Some(error)) => return Err(WaitEnd::Failed(error, last)),
                Err(None) => return Err(WaitEnd::Stopped),
            }
        }
    }

    fn wait_failed(&self, end: WaitEnd, limit: Duration) -> Option<ResultRow> {
        match end {
            WaitEnd::Stopped => None,
            WaitEnd::Failed(error, last) => Some(self.failed(&error, Some(&last))),
            WaitEnd::TimedOut(last) => {
                let mut row = self.row(Outcome::GaveUp, &last);
                row.error_message = Some(format!(
                    "the update was still scheduled after --wait-timeout {}; run again to check it",
                    humantime::format_duration(limit)
                ));
                Some(row)
            }
        }
    }

    /// The row of a SIM found `scheduled` without `--wait`, when no update can be sent (it
    /// would be refused, 83009). The change under way may be this run's own (its answer
    /// lost), so the status asked for counts as under way; but a Fleet or a unique name is
    /// not changed asynchronously: one asked for that the SIM does not show is not done,
    /// and the row is `gave_up`, so the next run sends it.
    fn behind_scheduled(&self, plan: &SimUpdate, sim: &Sim) -> ResultRow {
        let fleet = plan
            .fleet
            .as_deref()
            .filter(|wanted| is_fleet_sid(wanted) && !sim.shows_fleet(wanted));
        let name = plan
            .unique_name
            .as_deref()
            .filter(|wanted| sim.unique_name.as_deref() != Some(*wanted));
        let missing: Vec<String> = [
            fleet.map(|fleet| format!("Fleet {fleet}")),
            name.map(|name| format!("unique name '{name}'")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if missing.is_empty() {
            return self.row(self.outcome, sim);
        }
        let mut row = self.row(Outcome::GaveUp, sim);
        row.error_message = Some(format!(
            "an earlier change of this SIM is still scheduled, so the update ({}) cannot be \
             sent yet (Twilio refuses it, 83009); run again later, or with --wait",
            missing.join(", ")
        ));
        row
    }

    /// `GET /v1/Sims/{Sid}` with the retry policy. `Err(None)` means the run stopped.
    async fn fetch(&self) -> Result<Sim, Option<ApiError>> {
        let client = self.gate.client();
        let fetched = self
            .gate
            .read_with_retries(self.line ^ 0xfe7c, || {
                client.fetch_sim(&self.sid, &self.iccid)
            })
            .await;
        let url = client.url(&format!("/v1/Sims/{}", self.sid));
        registration::halt_on_redirect(self.gate, "GET", &url, fetched)
    }

    /// A final row showing the SIM as `sim` describes it.
    fn row(&self, outcome: Outcome, sim: &Sim) -> ResultRow {
        let mut row = ResultRow::new(self.line, &self.iccid, outcome);
        row.sid = Some(sim.sid.clone().unwrap_or_else(|| self.sid.clone()));
        row.status = sim.status.clone();
        row.fleet_sid = sim.fleet_sid.clone();
        row.unique_name = sim.unique_name.clone();
        row.account_sid = sim.account_sid.clone();
        row.attempts = self.attempts;
        row
    }

    /// `update_failed` for a refusal for good, `gave_up` for a transient failure; either
    /// way with the SID, so the next run resumes at this step.
    fn failed(&self, error: &ApiError, last: Option<&Sim>) -> ResultRow {
        let outcome = match error.classify() {
            ErrorClass::Retry { .. } => Outcome::GaveUp,
            _ => Outcome::UpdateFailed,
        };
        let mut row = match last {
            Some(sim) => self.row(outcome, sim),
            None => {
                let mut row = ResultRow::new(self.line, &self.iccid, outcome);
                row.sid = Some(self.sid.clone());
                row.attempts = self.attempts;
                row
            }
        };
        row.error_code = error.code;
        row.error_message = Some(error.message.clone());
        row.http_status = error.http_status;
        row
    }
}

/// A SIM's update, as the retry loop's hooks: before each attempt the SIM is read (unless
/// its state is known) and only the fields that differ are sent; after a lost answer or an
/// 83009 it is read again, since it may have changed.
struct Update<'s, 'a> {
    steps: &'s Steps<'a>,
    plan: &'s SimUpdate,
    wait: Option<Duration>,
    /// The SIM's state when it need not be fetched before the next attempt.
    known: Option<Sim>,
    /// The SIM as the current attempt found it, and the fields that attempt sends.
    current: Option<Sim>,
    missing: SimUpdate,
    /// An update of this run may have been applied: its answer was lost or in doubt.
    sent: bool,
}

impl Hooks for Update<'_, '_> {
    type Value = Sim;
    type Final = ResultRow;

    async fn prepare(&mut self) -> Step<ResultRow> {
        let steps = self.steps;
        loop {
            let current = match self.known.take() {
                Some(sim) => sim,
                None => match steps.fetch().await {
                    Ok(sim) => sim,
                    Err(Some(error)) if is_not_found(&error) && steps.attempts > 0 => {
                        // This run's create or lookup showed the SIM a moment ago: not taken
                        // as gone (an `update_failed` a rerun would skip for good).
                        let mut row = steps.failed(&error, None);
                        row.outcome = Outcome::GaveUp;
                        row.error_message = Some(format!(
                            "{}; the account showed this SIM a moment ago, so it is not \
                             taken as gone: run again",
                            error.message
                        ));
                        return Step::End(Some(row));
                    }
                    Err(Some(error)) => return Step::End(Some(steps.failed(&error, None))),
                    Err(None) => return Step::End(None),
                },
            };
            if current.status.as_deref() == Some(SCHEDULED) {
                // An earlier change is still in progress; a new update would get 83009.
                let Some(limit) = self.wait else {
                    // After this run's own update was sent (its answer lost or in doubt),
                    // the change under way may be that update, and a Fleet it assigns may
                    // show only once it is done: no Fleet yet is not a Fleet missing. A
                    // Fleet shown is the one asked for or, the one the SIM is leaving, not
                    // done.
                    let plan = match &current.fleet_sid {
                        None if self.sent => SimUpdate {
                            fleet: None,
                            ..self.plan.clone()
                        },
                        _ => self.plan.clone(),
                    };
                    return Step::End(Some(steps.behind_scheduled(&plan, &current)));
                };
                match steps.wait_until_settled(limit, current).await {
                    Ok(settled) => {
                        self.known = Some(settled);
                        continue;
                    }
                    Err(end) => return Step::End(steps.wait_failed(end, limit)),
                }
            }
            let missing = missing_fields(self.plan, &current);
            if missing.is_empty() {
                return Step::End(Some(steps.row(steps.outcome, &current)));
            }
            self.missing = missing;
            self.current = Some(current);
            return Step::Send;
        }
    }

    fn request(&self) -> impl Future<Output = Answered<Sim>> {
        let steps = self.steps;
        steps
            .gate
            .client()
            .update_sim(&steps.sid, &steps.iccid, &self.missing)
    }

    async fn succeeded(&mut self, updated: Sim, _tries: u32) -> Option<ResultRow> {
        self.steps
            .after_update(updated, &self.missing, self.wait)
            .await
    }

    fn attempt_failed(&self, error: &ApiError, tries: u32) {
        let steps = self.steps;
        tracing::debug!(line = steps.line, iccid = %steps.iccid, attempt = tries, error = %error, "update failed");
    }

    async fn judge(&mut self, error: ApiError, _tries: u32) -> Judged<ResultRow> {
        let steps = self.steps;
        match error.classify() {
            ErrorClass::Retry { throttled } => Judged::Retry { error, throttled },
            // The loop stops the run on refused credentials before asking.
            ErrorClass::CredentialsRefused => Judged::End(None),
            ErrorClass::Rejected if error.code.is_none() && error.is_wrong_endpoint() => {
                // No Twilio error: something that is not the API answered the update.
                let url = steps.gate.client().url(&format!("/v1/Sims/{}", steps.sid));
                let sentence = registration::wrong_endpoint_sentence(&url, "POST", &error);
                steps.gate.halt(Halt::WrongEndpoint(sentence));
                Judged::End(None)
            }
            ErrorClass::Rejected if is_not_found(&error) && self.current.is_some() => {
                // The SIM was on the account a moment ago (this run created it, or read it
                // before this attempt): "not found" now is an account not yet consistent,
                // retried; if it outlasts the attempts the row is `update_failed` with it.
                Judged::Retry {
                    error,
                    throttled: false,
                }
            }
            ErrorClass::Rejected | ErrorClass::AlreadyOnAccount => {
                let mut row = steps.failed(&error, self.current.as_ref());
                if error.code == Some(crate::api::CODE_DUPLICATE_UNIQUE_NAME)
                    && let Some(name) = &self.missing.unique_name
                {
                    row.error_message = Some(name_taken_message(name, &self.missing, &error));
                }
                Judged::End(Some(row))
            }
        }
    }

    fn retrying(&mut self, error: &ApiError) {
        // After a lost answer or an 83009 the SIM may have changed: fetch it again so the
        // retry sends only what is still missing.
        self.sent |= error.maybe_processed;
        let changed =
            error.maybe_processed || error.code == Some(crate::api::CODE_UPDATE_SCHEDULED);
        if !changed {
            self.known = self.current.clone();
        }
    }

    async fn exhausted(&mut self, error: ApiError, _tries: u32) -> Option<ResultRow> {
        Some(self.steps.failed(&error, self.current.as_ref()))
    }
}

/// An update's "not found": the SIM (83005), or any resource (20404).
fn is_not_found(error: &ApiError) -> bool {
    matches!(
        error.code,
        Some(crate::api::CODE_SIM_NOT_FOUND | crate::api::CODE_NOT_FOUND)
    )
}

/// What an 83011 means for the row: the unique name that clashed (a name is not a secret),
/// and that the Fleet and status sent in the same request are not confirmed. Twilio does
/// not say whether a refused update applies any of its fields, so the row claims neither;
/// the rerun sends the whole update again, which is right either way.
fn name_taken_message(name: &str, sent: &SimUpdate, error: &ApiError) -> String {
    let steps: Vec<String> = [
        sent.fleet.as_ref().map(|fleet| format!("Fleet {fleet}")),
        sent.status
            .as_ref()
            .map(|status| format!("status {status}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let not_done = match (&sent.fleet, &sent.status) {
        (Some(_), Some(_)) => "the Fleet and the status asked for in the same request are",
        (Some(_), None) => "the Fleet asked for in the same request is",
        (None, Some(_)) => "the status asked for in the same request is",
        (None, None) => "",
    };
    let steps = if steps.is_empty() {
        "the SIM is registered".to_string()
    } else {
        format!(
            "the SIM is registered, but {not_done} not confirmed ({})",
            steps.join(", ")
        )
    };
    format!(
        "the unique name '{name}' is already used by another SIM on this account ({}); \
         {steps}: give this row another unique_name (or free the name) and run again, and \
         only the update is sent",
        error.message
    )
}

/// What a settled `sim` shows instead of the status and the Fleet (sent as its SID) `sent`
/// asked for, when it does not show them (a scheduled change that fell back), as words for
/// the row's message. The unique name was confirmed by the update's answer already.
fn fell_back(sent: &SimUpdate, sim: &Sim) -> Option<String> {
    let status = sent
        .status
        .as_deref()
        .filter(|wanted| sim.status.as_deref() != Some(*wanted))
        .map(|wanted| {
            let have = sim.status.as_deref().unwrap_or("none");
            format!("status {have}, not {wanted}")
        });
    let fleet = sent
        .fleet
        .as_deref()
        .filter(|wanted| is_fleet_sid(wanted) && !sim.shows_fleet(wanted))
        .map(|wanted| {
            let have = sim.fleet_sid.as_deref().unwrap_or("none");
            format!("Fleet {have}, not {wanted}")
        });
    let shown: Vec<String> = status.into_iter().chain(fleet).collect();
    (!shown.is_empty()).then(|| shown.join(" and "))
}

/// The fields of `plan` the SIM does not show yet. The run resolves every Fleet to its SID
/// before registering (see [`crate::run::fleets`]); a Fleet still given by unique name is
/// sent (assigning the same Fleet twice changes nothing).
fn missing_fields(plan: &SimUpdate, sim: &Sim) -> SimUpdate {
    let differs = |wanted: &Option<String>, have: &Option<String>| {
        wanted
            .clone()
            .filter(|w| have.as_deref() != Some(w.as_str()))
    };
    SimUpdate {
        fleet: plan
            .fleet
            .clone()
            .filter(|wanted| !(is_fleet_sid(wanted) && sim.shows_fleet(wanted))),
        status: differs(&plan.status, &sim.status),
        unique_name: differs(&plan.unique_name, &sim.unique_name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "HS0123456789abcdef0123456789abcdef";
    const FLEET: &str = "HF0123456789abcdef0123456789abcdef";

    fn plan(fleet: Option<&str>, status: Option<&str>) -> SimUpdate {
        SimUpdate {
            fleet: fleet.map(String::from),
            status: status.map(String::from),
            unique_name: None,
        }
    }

    #[test]
    fn only_differing_fields_are_sent() {
        let sim = Sim {
            sid: Some(SID.into()),
            iccid: None,
            status: Some("ready".into()),
            fleet_sid: Some(FLEET.into()),
            unique_name: Some("pump-7".into()),
            account_sid: None,
        };
        let wanted = SimUpdate {
            fleet: Some(FLEET.to_uppercase()),
            status: Some("active".into()),
            unique_name: Some("pump-7".into()),
        };
        assert_eq!(missing_fields(&wanted, &sim), plan(None, Some("active")));
        let by_name = plan(Some("lab"), Some("ready"));
        assert_eq!(
            missing_fields(&by_name, &sim),
            plan(Some("lab"), None),
            "an unresolved name is sent"
        );
        assert_eq!(
            missing_fields(&plan(Some(FLEET), Some("ready")), &sim),
            SimUpdate::default(),
            "a resolved SID that is the SIM's Fleet is not"
        );
    }
}
