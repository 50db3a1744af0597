//! The verdicts of `reconcile`: how one SIM of the file compares with the account, what to
//! say about it, and the counts by verdict that decide the exit code.

use super::layout::FileRow;
use crate::exit;
use crate::results::Outcome;
use crate::results::cell::spreadsheet_safe;

/// How a SIM compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// On the account as the file says.
    Match,
    /// On the account, but its status, Fleet, name or SID differ from the file, or the file
    /// says it was not registered.
    Differs,
    /// The file says it is on the account; the account has no SIM with its ICCID.
    Missing,
    /// The file says it was not registered (rejected, gave_up), and the account agrees.
    NotRegistered,
    /// On the account, not in the file (reported with `--all`).
    Extra,
}

impl Verdict {
    pub(super) fn word(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Differs => "differs",
            Verdict::Missing => "missing",
            Verdict::NotRegistered => "not-registered",
            Verdict::Extra => "extra",
        }
    }
}

/// SIMs by verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) file_sims: u64,
    pub(crate) account_sims: u64,
    pub(crate) matched: u64,
    pub(crate) differ: u64,
    pub(crate) missing: u64,
    pub(crate) not_registered: u64,
    pub(crate) extra: u64,
    /// Rows skipped: an ICCID that is not one, or a row cut short.
    pub(crate) unreadable: u64,
}

impl Counts {
    pub(super) fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Match => self.matched += 1,
            Verdict::Differs => self.differ += 1,
            Verdict::Missing => self.missing += 1,
            Verdict::NotRegistered => self.not_registered += 1,
            Verdict::Extra => self.extra += 1,
        }
    }

    /// 0 when everything matches, 1 when something differs.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.differ + self.missing + self.extra > 0 {
            exit::ROWS_FAILED
        } else {
            exit::SUCCESS
        }
    }
}

/// One SIM of the account, from the spool (in export column order).
pub(super) struct AccountSim {
    pub(super) sid: String,
    pub(super) iccid: String,
    pub(super) status: String,
    pub(super) fleet_sid: String,
    pub(super) unique_name: String,
}

/// The verdict for one ICCID, and what to say about it.
pub(super) fn judge(
    results: bool,
    row: Option<&FileRow>,
    sim: Option<&AccountSim>,
) -> (Verdict, String) {
    let shown = |value: &str| {
        if value.is_empty() {
            "(none)".to_string()
        } else {
            value.to_string()
        }
    };
    match (row, sim) {
        (None, None) => (Verdict::Match, String::new()),
        (None, Some(sim)) => (
            Verdict::Extra,
            format!(
                "on the account (status {}), not in the file",
                shown(&sim.status)
            ),
        ),
        (Some(row), None) => match row.outcome {
            Some(outcome) if !on_account(outcome, !row.sid.is_empty()) => (
                Verdict::NotRegistered,
                format!("the file says {outcome}; the account does not have it either"),
            ),
            Some(outcome) => (
                Verdict::Missing,
                format!("the file says {outcome}; the account has no SIM with this ICCID"),
            ),
            None => (
                Verdict::Missing,
                "in the file; the account has no SIM with this ICCID".to_string(),
            ),
        },
        (Some(row), Some(sim)) => {
            if let Some(outcome) = row.outcome
                && !on_account(outcome, !row.sid.is_empty())
            {
                return (
                    Verdict::Differs,
                    format!(
                        "the file says {outcome}; the account has it (status {})",
                        shown(&sim.status)
                    ),
                );
            }
            let mut differences = Vec::new();
            // A results file marks a server's text that looks like a formula (see
            // `results::cell`); the account's value, marked the same way, compares with it.
            let same =
                |file: &str, account: &str| spreadsheet_safe(file) == spreadsheet_safe(account);
            let mut compare = |field: &str, file: &str, account: &str| {
                if !same(file, account) {
                    differences.push(format!(
                        "{field}: file {}, account {}",
                        shown(file),
                        shown(account)
                    ));
                }
            };
            if !row.sid.is_empty() {
                compare("sid", &row.sid, &sim.sid);
            }
            let status_matches = if results {
                match row.status.as_str() {
                    // Not recorded: nothing to compare.
                    "" => true,
                    // A change was under way: any settled status but `new` is where it went.
                    "scheduled" => sim.status != "new",
                    status => same(status, &sim.status),
                }
            } else {
                same(&row.status, &sim.status)
            };
            if !status_matches {
                compare("status", &row.status, &sim.status);
            }
            // Only a row that recorded the SIM resource recorded its Fleet.
            if !results || !row.sid.is_empty() {
                compare("fleet_sid", &row.fleet_sid, &sim.fleet_sid);
            }
            if let Some(name) = &row.unique_name {
                compare("unique_name", name, &sim.unique_name);
            }
            if differences.is_empty() {
                (Verdict::Match, "as the file says".to_string())
            } else {
                let mut text = differences.join("; ");
                if row.pending {
                    text.push_str(
                        " (the file's last row is a checkpoint: its update step had not finished)",
                    );
                }
                (Verdict::Differs, text)
            }
        }
    }
}

/// Whether a results row says the SIM is on the account, as a resumed run reads it: done,
/// or registered with a SID and then stopped at its update step (`update_failed`, or
/// `gave_up` when the update or `--wait` ran out of time).
fn on_account(outcome: Outcome, has_sid: bool) -> bool {
    outcome.is_done() || (has_sid && matches!(outcome, Outcome::GaveUp | Outcome::UpdateFailed))
}

#[cfg(test)]
mod tests {
    use super::on_account;
    use crate::api::SimUpdate;
    use crate::results::{Outcome, PriorSim, SimStatus};
    use crate::run::resume::{Resume, resume};

    /// Reconcile and a resumed run must read a row alike: a SIM the run would register
    /// again is not on the account, any other is.
    #[test]
    fn a_row_is_on_the_account_exactly_when_a_resumed_run_would_not_register_it() {
        for outcome in Outcome::ALL {
            for sid in [None, Some("HS0123456789abcdef0123456789abcdef")] {
                let prior = PriorSim {
                    outcome,
                    sid: sid.map(String::from),
                    status: SimStatus::New,
                    fleet_sid: None,
                    pending: false,
                    error_code: None,
                    request_key: 0,
                    code_fingerprint: None,
                };
                let registers_again = matches!(
                    resume(Some(prior), &SimUpdate::default(), None, None, false),
                    Resume::Register | Resume::Skip(Outcome::Rejected)
                );
                assert_eq!(
                    on_account(outcome, sid.is_some()),
                    !registers_again,
                    "{outcome} with sid {sid:?}"
                );
            }
        }
    }
}
