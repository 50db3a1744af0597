//! Registering one SIM: the create request, its retries, and what an answer means for the
//! row. A create whose answer was lost may have registered the SIM, so a retry that answers
//! 83003 ("already on your account") is taken as success, and a SIM whose attempts all ended
//! in doubt is looked up before it is reported as `gave_up`. A row says `registered` or
//! `already_registered` only with a SID the account showed (the client checks every answer
//! is about the SIM asked for, on this run's account): an 83003 is confirmed by a lookup by
//! ICCID whatever SID its message names, and one the lookup does not show is retried like an
//! answer in doubt. Every request goes through the [`Gate`], and the
//! create's retries through the one retry loop (see [`crate::api::retry`]), with the
//! rules above as its hooks.

use crate::api::gate::{Gate, Halt};
use crate::api::retry::{Hooks, Judged, with_retries};
use crate::api::{Answered, ApiError, ErrorClass, Sim, sid_in_message};
use crate::results::{Outcome, ResultRow};
use crate::run::sids::SidLedger;
use crate::secret::RegistrationCode;

/// A row that passed the local checks and is to be registered.
#[derive(Debug)]
pub(crate) struct SendRow {
    pub(crate) line: u64,
    /// The normalised ICCID, as sent.
    pub(crate) iccid: String,
    pub(crate) code: RegistrationCode,
}

/// Drives one SIM to its final row. `None` means the run stopped before the SIM reached
/// a final outcome; it gets no row, so the next run tries it again. A SID that `sids` shows
/// held for another ICCID is settled by a lookup before it goes into the row.
pub(crate) async fn register(gate: &Gate, row: SendRow, sids: &SidLedger) -> Option<ResultRow> {
    let mut create = Create {
        gate,
        row: &row,
        maybe_committed: false,
    };
    let result = with_retries(gate, row.line, &mut create).await?;
    own_sid(gate, &row, result, sids).await
}

/// `result`, if no other ICCID's row holds its SID (the SID is then this ICCID's in
/// `sids`). A SID another ICCID holds is not credible, whatever the answer that showed
/// it: the SIM is looked up by ICCID, and its row gets the SID the account shows, unless
/// that one too is held for another ICCID; then the row is `gave_up` without a SID, its
/// message naming both ICCIDs and the SID.
async fn own_sid(
    gate: &Gate,
    row: &SendRow,
    result: ResultRow,
    sids: &SidLedger,
) -> Option<ResultRow> {
    let Some(answered) = result.sid.clone() else {
        return Some(result);
    };
    let Err(holder) = sids.claim(&answered, &row.iccid) else {
        return Some(result);
    };
    tracing::warn!(line = row.line, iccid = %row.iccid, sid = %answered, held_for = %holder, "the API answered a SID the results hold for another ICCID; looking the SIM up by its ICCID");
    let in_doubt = |message: String| {
        let mut gave_up = ResultRow::new(row.line, &row.iccid, Outcome::GaveUp);
        gave_up.error_message = Some(message);
        gave_up.attempts = result.attempts;
        gave_up
    };
    match lookup(gate, row).await {
        Ok(Some(sim)) => {
            let shown = sim.sid.as_deref().unwrap_or_default();
            match sids.claim(shown, &row.iccid) {
                Ok(()) => Some(success_row(row, result.outcome, &sim, result.attempts)),
                Err(holder) => Some(in_doubt(sid_clash_message(&row.iccid, shown, &holder))),
            }
        }
        Ok(None) => Some(in_doubt(format!(
            "the API answered SID {answered} for ICCID {}, but the results hold it for ICCID \
             {holder}, and a lookup by ICCID found none; the outcome is in doubt",
            row.iccid
        ))),
        Err(Some(error)) => Some(error_row(row, Outcome::GaveUp, &error, result.attempts)),
        Err(None) => None,
    }
}

/// Why a SIM whose account shows a SID another ICCID's row holds is not recorded as
/// registered. SIDs and ICCIDs are not secrets.
pub(crate) fn sid_clash_message(iccid: &str, sid: &str, holder: &str) -> String {
    format!(
        "the account shows SID {sid} for ICCID {iccid}, but the results hold that SID for \
         ICCID {holder}: one SID cannot be two SIMs, so this row is not recorded as \
         registered. Check both ICCIDs in the Console (or with reconcile)"
    )
}

/// A SIM's create, as the retry loop's hooks: an 83003 is settled by a lookup (its message's
/// SID is only a hint); attempts that all ended in doubt are settled by a lookup too.
struct Create<'a> {
    gate: &'a Gate,
    row: &'a SendRow,
    /// Set once an attempt may have reached the server: an 83003 after that is most likely
    /// our own earlier attempt, so the SIM counts as registered by this run.
    maybe_committed: bool,
}

impl Hooks for Create<'_> {
    type Value = Sim;
    type Final = ResultRow;

    fn request(&self) -> impl Future<Output = Answered<Sim>> {
        self.gate
            .client()
            .create_sim(&self.row.iccid, &self.row.code)
    }

    async fn succeeded(&mut self, sim: Sim, attempts: u32) -> Option<ResultRow> {
        Some(success_row(self.row, Outcome::Registered, &sim, attempts))
    }

    fn attempt_failed(&self, error: &ApiError, attempts: u32) {
        let row = self.row;
        if error.classify() == ErrorClass::AlreadyOnAccount {
            // 83003 is a success: the SIM is on the account.
            tracing::debug!(line = row.line, iccid = %row.iccid, attempt = attempts, "already on the account (83003)");
        } else {
            tracing::debug!(line = row.line, iccid = %row.iccid, attempt = attempts, error = %error, "create failed");
        }
    }

    async fn judge(&mut self, error: ApiError, attempts: u32) -> Judged<ResultRow> {
        let (gate, row) = (self.gate, self.row);
        match error.classify() {
            ErrorClass::AlreadyOnAccount => {
                let outcome = if self.maybe_committed {
                    Outcome::Registered
                } else {
                    Outcome::AlreadyRegistered
                };
                match already_on_account(gate, row, outcome, &error, attempts).await {
                    Confirmed::Row(row) => Judged::End(row.map(|row| *row)),
                    // Not shown by the account: retried, and `gave_up` if it never is.
                    Confirmed::NotShown(unproven) => Judged::Retry {
                        error: unproven,
                        throttled: false,
                    },
                }
            }
            ErrorClass::Rejected if error.is_wrong_endpoint() => {
                // A 3xx, a 404, a 405 or a 4xx without a Twilio error: the URL is not the
                // API's Sims endpoint, and every SIM would get the same answer. Not
                // `rejected`, and a redirect is not followed.
                gate.halt(Halt::WrongEndpoint(wrong_endpoint_sentence(
                    &gate.client().url("/v1/Sims"),
                    "POST",
                    &error,
                )));
                Judged::End(None)
            }
            ErrorClass::Rejected => {
                Judged::End(Some(error_row(row, Outcome::Rejected, &error, attempts)))
            }
            // The loop stops the run on refused credentials before asking.
            ErrorClass::CredentialsRefused => Judged::End(None),
            ErrorClass::Retry { throttled } => Judged::Retry { error, throttled },
        }
    }

    fn retrying(&mut self, error: &ApiError) {
        self.maybe_committed |= error.maybe_processed;
    }

    async fn exhausted(&mut self, error: ApiError, attempts: u32) -> Option<ResultRow> {
        give_up(self.gate, self.row, &error, attempts, self.maybe_committed).await
    }
}

/// The sentence for an answer that says `url` is not the endpoint asked for.
pub(crate) fn wrong_endpoint_sentence(url: &str, method: &str, error: &ApiError) -> String {
    if let (Some(status), Some(location)) = (error.http_status, error.redirected_to()) {
        return format!(
            "{method} {url} answered HTTP {status} pointing to {location}: the Super SIM API \
             does not redirect, so nothing was sent there and the run stopped. Check \
             --base-url or SUPERSIM_BASE_URL: it should be https://supersim.twilio.com (no \
             /v1 on the end), and nothing in between (a proxy) should answer for it"
        );
    }
    let status = error
        .http_status
        .map_or_else(|| "an error".to_string(), |s| format!("HTTP {s}"));
    let body = match error.code {
        Some(code) => format!(" (Twilio error {code})"),
        None => " without a Twilio error".to_string(),
    };
    format!(
        "{method} {url} answered {status}{body}: that is the endpoint, not one SIM, so the run \
         stopped instead of recording it against every SIM. Check --base-url or SUPERSIM_BASE_URL: it should be \
         https://supersim.twilio.com (no /v1 on the end), and nothing in between (a proxy) \
         should answer for it"
    )
}

/// What an 83003 came to.
enum Confirmed {
    /// The SIM's row (`None`: the run stopped meanwhile). Boxed: a row is large, and this
    /// is handed back once per 83003.
    Row(Option<Box<ResultRow>>),
    /// A lookup by ICCID did not show the SIM (whatever SID the 83003 named): an answer in
    /// doubt, as this error.
    NotShown(ApiError),
}

/// 83003: the API says the SIM is on the account. Twilio leaves the message's wording open,
/// so a SID in it is a hint only: the row is written with the SID a lookup by ICCID shows
/// (on this run's account), and a SIM the lookup does not show is in doubt, whatever the
/// message named.
async fn already_on_account(
    gate: &Gate,
    row: &SendRow,
    outcome: Outcome,
    error: &ApiError,
    attempts: u32,
) -> Confirmed {
    let hinted = sid_in_message(&error.message);
    match lookup(gate, row).await {
        Ok(Some(sim)) => {
            if let Some(hinted) = hinted.filter(|hinted| sim.sid.as_deref() != Some(hinted)) {
                tracing::warn!(line = row.line, iccid = %row.iccid, named = %hinted, shown = sim.sid.as_deref().unwrap_or(""), "an 83003 named another SID than the account shows for this ICCID; the account's is recorded");
            }
            Confirmed::Row(Some(Box::new(success_row(row, outcome, &sim, attempts))))
        }
        Ok(None) => {
            let what = if hinted.is_some() {
                "naming a SID"
            } else {
                "without its SID"
            };
            Confirmed::NotShown(ApiError {
                message: format!(
                    "the API says the SIM is on this account (83003) {what}, and a lookup by \
                     ICCID found none; the outcome is in doubt"
                ),
                retry_after: None,
                ..error.clone()
            })
        }
        Err(Some(lookup_error)) => Confirmed::Row(Some(Box::new(error_row(
            row,
            Outcome::GaveUp,
            &lookup_error,
            attempts,
        )))),
        Err(None) => Confirmed::Row(None),
    }
}

/// Attempts ran out on transient errors. If any attempt may have registered the SIM,
/// a lookup settles it before the SIM is reported as not registered.
async fn give_up(
    gate: &Gate,
    row: &SendRow,
    error: &ApiError,
    attempts: u32,
    maybe_committed: bool,
) -> Option<ResultRow> {
    if maybe_committed {
        match lookup(gate, row).await {
            Ok(Some(sim)) => {
                return Some(success_row(row, Outcome::Registered, &sim, attempts));
            }
            Ok(None) | Err(Some(_)) => {}
            Err(None) => return None,
        }
    }
    Some(error_row(row, Outcome::GaveUp, error, attempts))
}

/// `GET /v1/Sims?Iccid=` with the same retry policy. `Err(None)` means the run stopped.
pub(crate) async fn lookup(gate: &Gate, row: &SendRow) -> Result<Option<Sim>, Option<ApiError>> {
    let found = gate
        .read_with_retries(row.line ^ 0x5eed, || gate.client().find_sim(&row.iccid))
        .await;
    halt_on_redirect(gate, "GET", &gate.client().url("/v1/Sims"), found)
}

/// Stops the run when a read was answered with a redirect (never followed): the URL is not
/// the API's, for this SIM and every other. Other answers pass through.
pub(crate) fn halt_on_redirect<T>(
    gate: &Gate,
    method: &str,
    url: &str,
    answer: Result<T, Option<ApiError>>,
) -> Result<T, Option<ApiError>> {
    match answer {
        Err(Some(error)) if error.redirected_to().is_some() => {
            gate.halt(Halt::WrongEndpoint(wrong_endpoint_sentence(
                url, method, &error,
            )));
            Err(None)
        }
        other => other,
    }
}

fn success_row(row: &SendRow, outcome: Outcome, sim: &Sim, attempts: u32) -> ResultRow {
    let mut result = ResultRow::new(row.line, &row.iccid, outcome);
    result.sid = sim.sid.clone();
    result.status = sim.status.clone();
    result.fleet_sid = sim.fleet_sid.clone();
    result.unique_name = sim.unique_name.clone();
    result.account_sid = sim.account_sid.clone();
    result.attempts = attempts;
    result
}

pub(crate) fn error_row(
    row: &SendRow,
    outcome: Outcome,
    error: &ApiError,
    attempts: u32,
) -> ResultRow {
    let mut result = ResultRow::new(row.line, &row.iccid, outcome);
    result.error_code = error.code;
    result.error_message = Some(error.message.clone());
    result.http_status = error.http_status;
    result.attempts = attempts;
    result
}
