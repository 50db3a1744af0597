//! The Super SIM API client: the requests this tool makes and the resources it reads back.
//!
//! Nothing here sleeps or retries: that is the gate's job. This module only turns one HTTP
//! exchange into a typed answer, so the retry policy can be read and tested on its own.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::error::TwilioErrorBody;
use super::*;
use crate::secret::{Credentials, RegistrationCode};

/// The statuses `register` can move a SIM to (UpdateSim's `Status`, less `inactive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetStatus {
    Ready,
    Active,
}

impl TargetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Ready => "ready",
            TargetStatus::Active => "active",
        }
    }
}

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
        if let Some(count) = concurrent_requests {
            crate::api::adaptive::note_reported(count);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
