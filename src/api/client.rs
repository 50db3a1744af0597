//! The Super SIM API client: the requests this tool makes, Twilio error decoding, and the
//! classification of every failure into "retry", "already done", "refused for good" or
//! "stop the run".
//!
//! Nothing here sleeps or retries: that is the pool's job. This module only turns one HTTP
//! exchange into a typed answer, so the retry policy can be read and tested on its own.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::secret::{Credentials, RegistrationCode};

/// The parts of a Sim resource this tool records or compares.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Sim {
    pub sid: Option<String>,
    pub iccid: Option<String>,
    pub status: Option<String>,
    pub fleet_sid: Option<String>,
    #[serde(default)]
    pub unique_name: Option<String>,
}

/// The fields of one `POST /v1/Sims/{Sid}` (UpdateSim); `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimUpdate {
    /// A Fleet SID (`HF...`) or unique name.
    pub fleet: Option<String>,
    /// `ready` or `active`.
    pub status: Option<String>,
    pub unique_name: Option<String>,
}

impl SimUpdate {
    pub fn is_empty(&self) -> bool {
        self.fleet.is_none() && self.status.is_none() && self.unique_name.is_none()
    }
}

/// The part of a Fleet resource this tool needs: its SID, to compare with a SIM's.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Fleet {
    pub sid: Option<String>,
}

#[derive(Deserialize)]
struct SimList {
    sims: Vec<Sim>,
}

/// A Twilio error body: `{"code", "message", "more_info", "status"}`.
#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// Everything that can go wrong with one request, with what the retry policy needs to know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ApiError {
    /// The HTTP status, when a response arrived.
    pub http_status: Option<u16>,
    /// The Twilio error code from the body, when the body was a Twilio error.
    pub code: Option<u32>,
    /// Twilio's message, or what happened on the wire.
    pub message: String,
    /// How long the server asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// `Twilio-Concurrent-Requests`: the account's requests in flight when this one was
    /// answered, when the server says.
    pub concurrent_requests: Option<u32>,
    /// False only when the request certainly never reached the server (connection refused).
    pub maybe_processed: bool,
}

/// What to do about an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again after a backoff. `throttled` marks a 429, which slows the whole pool down.
    Retry { throttled: bool },
    /// 83003: the SIM is on this account already; success.
    AlreadyOnAccount,
    /// Refused for good: retrying the same request cannot help.
    Rejected,
    /// 401 / 20003: every request would fail the same way, so the run stops.
    CredentialsRefused,
}

pub const CODE_AUTHENTICATE: u32 = 20003;
pub const CODE_TOO_MANY_REQUESTS: u32 = 20429;
pub const CODE_INTERNAL: u32 = 20500;
pub const CODE_UNAVAILABLE: u32 = 20503;
pub const CODE_REGISTRATION_INTERNAL: u32 = 83000;
pub const CODE_ALREADY_ON_ACCOUNT: u32 = 83003;
/// UpdateSim/FetchSim: the Super SIM is not on the account.
pub const CODE_SIM_NOT_FOUND: u32 = 83005;
/// UpdateSim: the target Fleet does not exist.
pub const CODE_FLEET_NOT_FOUND: u32 = 83006;
/// UpdateSim: `active` asked for a SIM that belongs to no Fleet.
pub const CODE_NO_FLEET: u32 = 83007;
/// UpdateSim: refused while an earlier change is still `scheduled`; Twilio says retry later.
pub const CODE_UPDATE_SCHEDULED: u32 = 83009;
/// UpdateSim: the status change is not allowed (`ready` is only reachable from `new`).
pub const CODE_FORBIDDEN_TRANSITION: u32 = 83010;
/// UpdateSim: another Super SIM already has that UniqueName.
pub const CODE_DUPLICATE_UNIQUE_NAME: u32 = 83011;

impl ApiError {
    /// Decides by Twilio code first (the 830xx statuses are not published), HTTP status second.
    pub fn classify(&self) -> ErrorClass {
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
            Some(401) => ErrorClass::CredentialsRefused,
            Some(429) => ErrorClass::Retry { throttled: true },
            Some(500..) => ErrorClass::Retry { throttled: false },
            Some(_) => ErrorClass::Rejected,
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

    fn transport(err: &reqwest::Error) -> Self {
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

/// Finds a Sim SID (`HS` + 32 hex digits) in a Twilio message, as 83003 messages carry one.
pub fn sid_in_message(message: &str) -> Option<String> {
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
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A client for one account on one Super SIM API host.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    credentials: Credentials,
}

/// The header in which Twilio reports the account's requests in flight.
pub const CONCURRENT_REQUESTS_HEADER: &str = "twilio-concurrent-requests";

/// Error bodies larger than this are not read further: a gateway page is not worth memory.
const MAX_ERROR_BODY: usize = 64 * 1024;

impl Client {
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("supersim-bulk/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Client {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            credentials,
        })
    }

    /// `POST /v1/Sims`: registers a SIM to the account.
    pub async fn create_sim(&self, iccid: &str, code: &RegistrationCode) -> Result<Sim, ApiError> {
        let request = self
            .http
            .post(format!("{}/v1/Sims", self.base_url))
            .form(&[("Iccid", iccid), ("RegistrationCode", code.expose())]);
        let sim: Sim = self.send(request).await.map_err(|e| e.redact(code))?;
        Ok(sim)
    }

    /// `GET /v1/Sims?Iccid=`: the SIM with this ICCID on the account, if any.
    pub async fn find_sim(&self, iccid: &str) -> Result<Option<Sim>, ApiError> {
        let request = self
            .http
            .get(format!("{}/v1/Sims", self.base_url))
            .query(&[("Iccid", iccid)]);
        let list: SimList = self.send(request).await?;
        Ok(list
            .sims
            .into_iter()
            .find(|sim| sim.iccid.as_deref() == Some(iccid)))
    }

    /// `GET /v1/Sims/{Sid}` (FetchSim): the SIM as it is now.
    pub async fn fetch_sim(&self, sid: &str) -> Result<Sim, ApiError> {
        let request = self.http.get(format!("{}/v1/Sims/{sid}", self.base_url));
        self.send(request).await
    }

    /// `GET /v1/Fleets/{Sid}` (FetchFleet), where a unique name may stand for the SID.
    pub async fn fetch_fleet(&self, sid_or_name: &str) -> Result<Fleet, ApiError> {
        let request = self.http.get(format!(
            "{}/v1/Fleets/{}",
            self.base_url,
            encode_path_segment(sid_or_name)
        ));
        self.send(request).await
    }

    /// `POST /v1/Sims/{Sid}` (UpdateSim). Both 200 and 202 are success; after a 202 the SIM
    /// reads `scheduled` until the change is done.
    pub async fn update_sim(&self, sid: &str, update: &SimUpdate) -> Result<Sim, ApiError> {
        let fields: Vec<(&str, &str)> = [
            ("Fleet", &update.fleet),
            ("Status", &update.status),
            ("UniqueName", &update.unique_name),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref()?)))
        .collect();
        let request = self
            .http
            .post(format!("{}/v1/Sims/{sid}", self.base_url))
            .form(&fields);
        self.send(request).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = request
            .basic_auth(&self.credentials.username, Some(&self.credentials.password))
            .send()
            .await
            .map_err(|e| ApiError::transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let concurrent_requests = response
            .headers()
            .get(CONCURRENT_REQUESTS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = read_capped(response).await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| ApiError {
                http_status: Some(status.as_u16()),
                code: None,
                message: "the response body was not the expected JSON".to_string(),
                retry_after: None,
                concurrent_requests: None,
                maybe_processed: true,
            });
        }
        let decoded: Option<TwilioErrorBody> = serde_json::from_slice(&body).ok();
        let (code, message) = match decoded {
            Some(error) => (error.code, error.message.unwrap_or_default()),
            None => (
                None,
                format!("{} with a body that is not a Twilio error", status),
            ),
        };
        Err(ApiError {
            http_status: Some(status.as_u16()),
            code,
            message,
            retry_after,
            concurrent_requests,
            // A 5xx may come after the server committed; a 4xx answer means it did not act.
            maybe_processed: status.is_server_error(),
        })
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a name in a path.
fn encode_path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ApiError::transport(&e))?
    {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

impl ApiError {
    /// Removes the registration code from a server's message, in case a server ever echoes it.
    fn redact(mut self, code: &RegistrationCode) -> Self {
        if !code.expose().is_empty() && self.message.contains(code.expose()) {
            self.message = self.message.replace(code.expose(), "[redacted]");
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(http_status: Option<u16>, code: Option<u32>) -> ApiError {
        ApiError {
            http_status,
            code,
            message: String::new(),
            retry_after: None,
            concurrent_requests: None,
            maybe_processed: false,
        }
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

    #[test]
    fn debug_output_hides_secrets() {
        let credentials = Credentials {
            username: "SKuser".into(),
            password: "hunter2-canary".into(),
        };
        assert!(!format!("{credentials:?}").contains("hunter2-canary"));
        let code = RegistrationCode::new("CANARY1234".into());
        assert!(!format!("{code:?}").contains("CANARY1234"));
    }
}
