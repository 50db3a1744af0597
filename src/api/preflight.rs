//! The preflight: one cheap authenticated request (`GET /v1/Sims?PageSize=1`) before the
//! first registration, so a set-up mistake stops the run instead of becoming a verdict on
//! every SIM. It proves the base URL (a URL ending in `/v1`, a wrong region or edge, a web
//! page instead of the API), the credentials, and that the API can be reached at all, and
//! it learns the account the credentials belong to when a SIM or Fleet names it.
//!
//! Its answers are sentences for a person: which URL was tried, what came back, and the
//! likely fix. A transport failure is told apart as DNS, connection refused, TLS or timeout.

use std::time::Duration;

use serde::Deserialize;

use super::client::{Client, MAX_BODY, read_body_up_to};
use super::error::Refusal;

/// Tries before an unreachable or overloaded API stops the run.
const ATTEMPTS: u32 = 3;

/// Why the preflight stopped the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// The base URL or the account set-up is wrong: exit 2.
    #[error("{0}")]
    Setup(String),
    /// The API answered 401: exit 2, with the credentials' source named by the caller.
    #[error("the API refused the credentials ({0})")]
    CredentialsRefused(Refusal),
    /// The API could not be reached, or kept failing: exit 75, try again later.
    #[error("{0}")]
    Unreachable(String),
}

/// What the preflight learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proven {
    /// The account SID, when a SIM or Fleet on the account names it.
    pub account_sid: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    account_sid: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    sims: Option<Vec<Listed>>,
    fleets: Option<Vec<Listed>>,
}

/// Runs the preflight against `client`'s base URL.
pub async fn preflight(client: &Client) -> Result<Proven, PreflightError> {
    // An account without SIMs yet (every new customer's first run) needs the Fleets too, to
    // learn which account it is: both lists are asked at once, so that costs no round trip.
    let (sims, fleets) = tokio::join!(
        probe(client, "/v1/Sims?PageSize=1", "sims"),
        probe(client, "/v1/Fleets?PageSize=1", "fleets")
    );
    let sims = sims?;
    // The SIM list has proven the set-up already, so a Fleets answer that says nothing
    // leaves the account unknown.
    let proven = if sims.account_sid.is_some() {
        sims
    } else {
        fleets.unwrap_or_default()
    };
    // Every later answer about a SIM must show this account to count.
    client.know_account(proven.account_sid.as_deref());
    Ok(proven)
}

async fn probe(client: &Client, path: &str, key: &str) -> Result<Proven, PreflightError> {
    let url = client.url(path);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        let response = match client.get_authenticated(path).send().await {
            Ok(response) => response,
            Err(error) => {
                last = client.unreachable_sentence(&error, &url);
                continue;
            }
        };
        let status = response.status();
        // The server's words, as every message keeps them: no secret, no control character.
        let response_location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| client.cleaned_text(&String::from_utf8_lossy(value.as_bytes())));
        let is_html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("html"));
        // No more than any other answer's words: a server that sends without end must not
        // take the run's memory (1 GiB sent once took it to 2.1 GB).
        let (body, cut) = match read_body_up_to(response, MAX_BODY).await {
            Ok(body) => (body.bytes, body.cut),
            Err(_) => (Vec::new(), false),
        };
        let twilio_error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_u64()));
        match status.as_u16() {
            200..=299 => {
                // A body cut short is not an answer, even where its start parses.
                let page: Option<Page> =
                    (!cut).then(|| serde_json::from_slice(&body).ok()).flatten();
                let listed = page.and_then(|p| if key == "sims" { p.sims } else { p.fleets });
                return match listed {
                    Some(listed) => Ok(Proven {
                        account_sid: listed.into_iter().find_map(|l| l.account_sid),
                    }),
                    None => Err(PreflightError::Setup(format!(
                        "{url} answered {status} but not with a Super SIM list{}; check \
                         --base-url (it should be https://supersim.twilio.com, with no path)",
                        if is_html {
                            " (it sent a web page)".to_string()
                        } else if cut {
                            format!(
                                " (its body is over {} KB, where a page of one SIM is \
                                     about 1 KB)",
                                MAX_BODY / 1024
                            )
                        } else {
                            String::new()
                        }
                    ))),
                };
            }
            401 => {
                return Err(PreflightError::CredentialsRefused(Refusal {
                    http_status: Some(401),
                    code: twilio_error.and_then(|code| u32::try_from(code).ok()),
                }));
            }
            300..=399 => {
                // Never followed: a request re-sent where a redirect points would carry the
                // credentials' next requests, and the registration codes, somewhere else.
                let location = response_location
                    .as_deref()
                    .unwrap_or("nowhere (no Location)");
                return Err(PreflightError::Setup(format!(
                    "{url} answered {status} pointing to {location}: the Super SIM API does \
                     not redirect, so nothing was sent there. Check --base-url or \
                     SUPERSIM_BASE_URL: it should be https://supersim.twilio.com (no /v1 on \
                     the end), and nothing in between (a proxy) should answer for it"
                )));
            }
            429 | 500..=599 => {
                last = format!(
                    "{url} kept answering {status}; the API is overloaded or down: try again later"
                );
                continue;
            }
            404 | 405 => {
                return Err(PreflightError::Setup(format!(
                    "{url} answered {status}: this is not the Super SIM API's address. \
                     Check --base-url or SUPERSIM_BASE_URL: it should be \
                     https://supersim.twilio.com (no /v1 on the end); with TWILIO_REGION or \
                     TWILIO_EDGE set, check that both are right"
                )));
            }
            _ if is_html || twilio_error.is_none() => {
                return Err(PreflightError::Setup(format!(
                    "{url} answered {status} {}, not as the Twilio API does; check --base-url \
                     and any proxy in between",
                    if is_html {
                        "with a web page"
                    } else {
                        "without a Twilio error"
                    }
                )));
            }
            _ => {
                return Err(PreflightError::Setup(format!(
                    "{url} answered {status} (Twilio error {}): the account cannot list its \
                     Super SIMs with these credentials; check that Super SIM is enabled and \
                     the credentials' permissions",
                    twilio_error.unwrap_or_default()
                )));
            }
        }
    }
    Err(PreflightError::Unreachable(last))
}
