//! Twilio error decoding and the classification of every failure into "retry", "already
//! done", "refused for good" or "stop the run", so the retry policy can be read and tested on
//! its own.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// A Twilio error body: `{"code", "message", "more_info", "status"}`.
#[derive(Deserialize)]
pub(super) struct TwilioErrorBody {
    pub(super) code: Option<u32>,
    pub(super) message: Option<String>,
}

/// Everything that can go wrong with one request, with what the retry policy needs to know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub(crate) struct ApiError {
    /// The HTTP status, when a response arrived.
    pub(crate) http_status: Option<u16>,
    /// The Twilio error code from the body, when the body was a Twilio error.
    pub(crate) code: Option<u32>,
    /// Twilio's message, or what happened on the wire.
    pub(crate) message: String,
    /// How long the server asked us to wait (`Retry-After`).
    pub(crate) retry_after: Option<Duration>,
    /// `Twilio-Concurrent-Requests`: the account's requests in flight when this one was
    /// answered, when the server says.
    pub(crate) concurrent_requests: Option<u32>,
    /// False only when the request certainly never reached the server (connection refused).
    pub(crate) maybe_processed: bool,
}

/// How the API refused the credentials, as it answered (a 401, or a 403 with Twilio error
/// 20003): the messages that say so name what it sent, not what is usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub http_status: Option<u16>,
    pub code: Option<u32>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.http_status, self.code) {
            (Some(status), Some(code)) => write!(f, "HTTP {status}, Twilio error {code}"),
            (Some(status), None) => write!(f, "HTTP {status}"),
            (None, Some(code)) => write!(f, "Twilio error {code}"),
            (None, None) => f.write_str("no status"),
        }
    }
}

/// What to do about an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// Try again after a backoff. `throttled` marks a 429, which slows the whole pool down.
    Retry { throttled: bool },
    /// 83003: the SIM is on this account already; success.
    AlreadyOnAccount,
    /// Refused for good: retrying the same request cannot help.
    Rejected,
    /// 401 / 20003: every request would fail the same way, so the run stops.
    CredentialsRefused,
}

pub(crate) const CODE_AUTHENTICATE: u32 = 20003;
pub(crate) const CODE_TOO_MANY_REQUESTS: u32 = 20429;
pub(crate) const CODE_INTERNAL: u32 = 20500;
pub(crate) const CODE_UNAVAILABLE: u32 = 20503;
pub(crate) const CODE_REGISTRATION_INTERNAL: u32 = 83000;
pub(crate) const CODE_ALREADY_ON_ACCOUNT: u32 = 83003;
/// Any resource: not found on the account.
pub(crate) const CODE_NOT_FOUND: u32 = 20404;
/// UpdateSim/FetchSim: the Super SIM is not on the account.
pub(crate) const CODE_SIM_NOT_FOUND: u32 = 83005;
/// UpdateSim: the target Fleet does not exist.
pub(crate) const CODE_FLEET_NOT_FOUND: u32 = 83006;
/// UpdateSim: `active` asked for a SIM that belongs to no Fleet.
pub(crate) const CODE_NO_FLEET: u32 = 83007;
/// UpdateSim: refused while an earlier change is still `scheduled`; Twilio says retry later.
pub(crate) const CODE_UPDATE_SCHEDULED: u32 = 83009;
/// UpdateSim: the status change is not allowed (`ready` is only reachable from `new`).
pub(crate) const CODE_FORBIDDEN_TRANSITION: u32 = 83010;
/// UpdateSim: another Super SIM already has that UniqueName.
pub(crate) const CODE_DUPLICATE_UNIQUE_NAME: u32 = 83011;

impl ApiError {
    /// Decides by Twilio code first (the 830xx statuses are not published), HTTP status second.
    pub(crate) fn classify(&self) -> ErrorClass {
        match self.code {
            Some(CODE_AUTHENTICATE) => return ErrorClass::CredentialsRefused,
            Some(CODE_TOO_MANY_REQUESTS) => return ErrorClass::Retry { throttled: true },
            Some(
                CODE_INTERNAL
                | CODE_UNAVAILABLE
                | CODE_REGISTRATION_INTERNAL
                | CODE_UPDATE_SCHEDULED,
            ) => {
                return ErrorClass::Retry { throttled: false };
            }
            Some(CODE_ALREADY_ON_ACCOUNT) => return ErrorClass::AlreadyOnAccount,
            // Final whatever HTTP status carries them (their statuses are not published).
            Some(
                CODE_SIM_NOT_FOUND
                | CODE_FLEET_NOT_FOUND
                | CODE_NO_FLEET
                | CODE_FORBIDDEN_TRANSITION
                | CODE_DUPLICATE_UNIQUE_NAME,
            ) => return ErrorClass::Rejected,
            _ => {}
        }
        match self.http_status {
            None => ErrorClass::Retry { throttled: false },
            // A success status that is an error at all is one whose body could not be read
            // as the resource: the server may have acted, so it is an answer in doubt.
            Some(200..=299) => ErrorClass::Retry { throttled: false },
            Some(401) => ErrorClass::CredentialsRefused,
            Some(429) => ErrorClass::Retry { throttled: true },
            Some(500..) => ErrorClass::Retry { throttled: false },
            Some(_) => ErrorClass::Rejected,
        }
    }

    /// How this answer refused the credentials, for one classified
    /// [`ErrorClass::CredentialsRefused`].
    pub(crate) fn refusal(&self) -> Refusal {
        Refusal {
            http_status: self.http_status,
            code: self.code,
        }
    }

    /// True for an answer that says the request went to the wrong place rather than that this
    /// one resource was refused: a 404 or 405, or any other 4xx (but 401 and 429) without a
    /// Twilio error body. On `POST /v1/Sims` it is the endpoint, not the SIM, so the run
    /// stops instead of writing every SIM as `rejected`; a 4xx with a Twilio code (83002)
    /// stays about the SIM.
    ///
    /// A 3xx is one too: the API never redirects, and no redirect is followed.
    pub(crate) fn is_wrong_endpoint(&self) -> bool {
        match self.http_status {
            Some(300..=399) => true,
            Some(404 | 405) => true,
            Some(401 | 429) => false,
            Some(400..=499) => self.code.is_none(),
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match (self.http_status, self.code) {
            (Some(status), Some(code)) => {
                format!("HTTP {status}, Twilio error {code}: {}", self.message)
            }
            (Some(status), None) => format!("HTTP {status}: {}", self.message),
            (None, _) => self.message.clone(),
        }
    }

    /// A 3xx answer, which is never followed: it names where it pointed, if anywhere. The
    /// request was not acted on where it was sent.
    pub(super) fn redirect(status: u16, location: Option<String>) -> Self {
        let message = match location {
            Some(location) => format!("{REDIRECTED_TO}{location}"),
            None => "a redirect that names no Location".to_string(),
        };
        ApiError {
            http_status: Some(status),
            code: None,
            message,
            retry_after: None,
            concurrent_requests: None,
            maybe_processed: false,
        }
    }

    /// Where a 3xx answer pointed (its `Location`), for a 3xx; `None` for anything else.
    pub(crate) fn redirected_to(&self) -> Option<&str> {
        match self.http_status {
            Some(300..=399) => Some(
                self.message
                    .strip_prefix(REDIRECTED_TO)
                    .unwrap_or("nowhere (no Location)"),
            ),
            _ => None,
        }
    }

    pub(super) fn transport(err: &reqwest::Error) -> Self {
        let message = if err.is_timeout() {
            "request timed out".to_string()
        } else if err.is_connect() {
            "could not connect".to_string()
        } else {
            "connection lost before the response was complete".to_string()
        };
        // reqwest's error chain names the URL, which holds no secret, and the OS reason.
        let detail = std::error::Error::source(err).map(|s| s.to_string());
        ApiError {
            http_status: None,
            code: None,
            message: match detail {
                Some(detail) => format!("{message} ({detail})"),
                None => message,
            },
            retry_after: None,
            concurrent_requests: None,
            maybe_processed: !err.is_connect(),
        }
    }
}

/// How the message of a 3xx answer begins, before its `Location`.
const REDIRECTED_TO: &str = "a redirect to ";

/// Finds a Sim SID (`HS` + 32 hex digits) in a Twilio message, as 83003 messages carry one.
pub(crate) fn sid_in_message(message: &str) -> Option<String> {
    let bytes = message.as_bytes();
    (0..bytes.len().saturating_sub(33)).find_map(|start| {
        let candidate = &message.get(start..start + 34)?;
        let is_sid = candidate.starts_with("HS")
            && candidate[2..].bytes().all(|b| b.is_ascii_hexdigit())
            && !bytes
                .get(start + 34)
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric());
        is_sid.then(|| candidate.to_string())
    })
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
impl ApiError {
    /// An answer with this status and Twilio code and nothing else, for tests of how
    /// answers are judged.
    pub(crate) fn answer(http_status: Option<u16>, code: Option<u32>) -> ApiError {
        ApiError {
            http_status,
            code,
            message: String::new(),
            retry_after: None,
            concurrent_requests: None,
            maybe_processed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(http_status: Option<u16>, code: Option<u32>) -> ApiError {
        ApiError::answer(http_status, code)
    }

    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let cases = [
            (Some(429), Some(20429), Retry { throttled: true }),
            (Some(429), None, Retry { throttled: true }),
            (Some(500), Some(20500), Retry { throttled: false }),
            (Some(503), Some(20503), Retry { throttled: false }),
            (Some(502), None, Retry { throttled: false }),
            (Some(400), Some(83000), Retry { throttled: false }),
            (None, None, Retry { throttled: false }),
            (Some(200), None, Retry { throttled: false }),
            (Some(201), None, Retry { throttled: false }),
            (Some(202), None, Retry { throttled: false }),
            (Some(409), Some(83003), AlreadyOnAccount),
            (Some(409), Some(83009), Retry { throttled: false }),
            (Some(400), Some(83006), Rejected),
            (Some(500), Some(83007), Rejected),
            (Some(400), Some(83010), Rejected),
            (Some(409), Some(83011), Rejected),
            (Some(404), Some(83005), Rejected),
            (Some(400), Some(83003), AlreadyOnAccount),
            (Some(400), Some(83001), Rejected),
            (Some(400), Some(83002), Rejected),
            (Some(404), Some(20404), Rejected),
            (Some(401), Some(20003), CredentialsRefused),
            (Some(401), None, CredentialsRefused),
            (Some(403), Some(20003), CredentialsRefused),
        ];
        for (status, code, expected) in cases {
            assert_eq!(
                error(status, code).classify(),
                expected,
                "{status:?} {code:?}"
            );
        }
    }

    #[test]
    fn wrong_endpoint_answers() {
        for (status, code) in [
            (Some(307), None),
            (Some(301), None),
            (Some(404), None),
            (Some(404), Some(20404)),
            (Some(405), None),
            (Some(400), None),
            (Some(403), None),
        ] {
            assert!(
                error(status, code).is_wrong_endpoint(),
                "{status:?} {code:?}"
            );
        }
        for (status, code) in [
            (Some(400), Some(83002)),
            (Some(409), Some(83003)),
            (Some(401), None),
            (Some(429), None),
            (Some(500), None),
            (Some(502), None),
            (None, None),
        ] {
            assert!(
                !error(status, code).is_wrong_endpoint(),
                "{status:?} {code:?}"
            );
        }
    }

    #[test]
    fn a_redirect_names_where_it_pointed_and_is_refused_for_good() {
        let redirect = ApiError::redirect(307, Some("http://elsewhere.example/v1/Sims".into()));
        assert_eq!(
            redirect.redirected_to(),
            Some("http://elsewhere.example/v1/Sims")
        );
        assert_eq!(redirect.classify(), ErrorClass::Rejected);
        assert!(redirect.is_wrong_endpoint());
        assert!(!redirect.maybe_processed);
        assert_eq!(
            ApiError::redirect(302, None).redirected_to(),
            Some("nowhere (no Location)")
        );
        assert_eq!(error(Some(404), None).redirected_to(), None);
    }

    #[test]
    fn finds_sid_in_83003_message() {
        let sid = "HS0123456789abcdef0123456789abcdef";
        assert_eq!(
            sid_in_message(&format!("The Super SIM {sid} is already registered.")),
            Some(sid.to_string())
        );
        assert_eq!(sid_in_message(&format!("({sid})")), Some(sid.to_string()));
        assert_eq!(sid_in_message(sid), Some(sid.to_string()));
        assert_eq!(sid_in_message("no sid here"), None);
        assert_eq!(sid_in_message(&format!("{sid}0")), None);
        assert_eq!(sid_in_message("HS0123456789abcdef0123456789abcdeg"), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
