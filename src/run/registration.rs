//! Registering one SIM: the create request, its retries, and what an answer means for the
//! row. A create whose answer was lost may have registered the SIM, so a retry that answers
//! 83003 ("already on your account") is taken as success, and a SIM whose attempts all ended
//! in doubt is looked up before it is reported as `gave_up`. Every request goes through the
//! [`Gate`].

use crate::api::gate::{Gate, Halt};
use crate::api::retry::jitter_for_row;
use crate::api::{ApiError, ErrorClass, Sim, sid_in_message};
use crate::results::{Outcome, ResultRow};
use crate::secret::RegistrationCode;

/// A row that passed the local checks and is to be registered.
#[derive(Debug)]
pub struct SendRow {
    pub line: u64,
    /// The normalised ICCID, as sent.
    pub iccid: String,
    pub code: RegistrationCode,
}

/// Drives one SIM to its final row. `None` means the run stopped before the SIM reached
/// a final outcome; it gets no row, so the next run tries it again.
pub async fn register(gate: &Gate, row: SendRow) -> Option<ResultRow> {
    let mut jitter = jitter_for_row(row.line);
    let mut attempts = 0;
    // Set once an attempt may have reached the server: an 83003 after that is most likely
    // our own earlier attempt, so the SIM counts as registered by this run.
    let mut maybe_committed = false;
    loop {
        let answer = gate
            .send(gate.client().create_sim(&row.iccid, &row.code))
            .await?;
        attempts += 1;
        let error = match answer {
            Ok(sim) => return Some(success_row(&row, Outcome::Registered, &sim, attempts)),
            Err(error) => error,
        };
        let class = error.classify();
        if class == ErrorClass::AlreadyOnAccount {
            // 83003 is a success: the SIM is on the account.
            tracing::debug!(line = row.line, iccid = %row.iccid, attempt = attempts, "already on the account (83003)");
        } else {
            tracing::debug!(line = row.line, iccid = %row.iccid, attempt = attempts, error = %error, "create failed");
        }
        match class {
            ErrorClass::AlreadyOnAccount => {
                let outcome = if maybe_committed {
                    Outcome::Registered
                } else {
                    Outcome::AlreadyRegistered
                };
                return already_on_account(gate, &row, outcome, &error, attempts).await;
            }
            ErrorClass::Rejected if error.is_wrong_endpoint() => {
                // A 404, a 405 or a 4xx without a Twilio error: the URL is not the API's
                // Sims endpoint, and every SIM would get the same answer. Not `rejected`.
                gate.halt(Halt::WrongEndpoint(wrong_endpoint_sentence(
                    &gate.client().url("/v1/Sims"),
                    "POST",
                    &error,
                )));
                return None;
            }
            ErrorClass::Rejected => {
                return Some(error_row(&row, Outcome::Rejected, &error, attempts));
            }
            ErrorClass::CredentialsRefused => {
                gate.refuse_credentials(&error);
                return None;
            }
            ErrorClass::Retry { throttled } => {
                maybe_committed |= error.maybe_processed;
                if attempts >= gate.limits().max_attempts {
                    return give_up(gate, &row, &error, attempts, maybe_committed).await;
                }
                if !gate
                    .retry_wait(attempts, &error, throttled, &mut jitter)
                    .await
                {
                    return None;
                }
            }
        }
    }
}

/// The sentence for an answer that says `url` is not the endpoint asked for.
pub(crate) fn wrong_endpoint_sentence(url: &str, method: &str, error: &ApiError) -> String {
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

/// 83003: the SIM is on the account. Its SID comes from the message, else from a lookup.
async fn already_on_account(
    gate: &Gate,
    row: &SendRow,
    outcome: Outcome,
    error: &ApiError,
    attempts: u32,
) -> Option<ResultRow> {
    if let Some(sid) = sid_in_message(&error.message) {
        let mut result = ResultRow::new(row.line, &row.iccid, outcome);
        result.sid = Some(sid);
        result.attempts = attempts;
        return Some(result);
    }
    match lookup(gate, row).await {
        Ok(Some(sim)) => Some(success_row(row, outcome, &sim, attempts)),
        Ok(None) => {
            let mut result = error_row(row, outcome, error, attempts);
            result.error_message = Some(
                "the API says the SIM is on this account, but a lookup by ICCID found none"
                    .to_string(),
            );
            Some(result)
        }
        Err(Some(lookup_error)) => Some(error_row(row, Outcome::GaveUp, &lookup_error, attempts)),
        Err(None) => None,
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
    gate.read_with_retries(row.line ^ 0x5eed, || gate.client().find_sim(&row.iccid))
        .await
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
