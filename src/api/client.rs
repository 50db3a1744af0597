//! The Super SIM API client: the requests this tool makes and the resources it reads back.
//!
//! Nothing here sleeps or retries: that is the gate's job. This module only turns one HTTP
//! exchange into a typed answer, so the retry policy can be read and tested on its own.
//! Each answer comes back as an [`Answered`]: the result with the account's
//! `Twilio-Concurrent-Requests` count it carried (success and error alike), which the gate
//! hands to the adaptive limit.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hyper_util::client::proxy::matcher::Matcher;
use serde::Deserialize;

use super::error::TwilioErrorBody;
use super::error::*;
use super::server_text::ServerText;
use crate::secret::{Credentials, Redactor, RegistrationCode};

/// The statuses `register` can move a SIM to (UpdateSim's `Status`, less `inactive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TargetStatus {
    Ready,
    Active,
}

impl TargetStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Ready => "ready",
            TargetStatus::Active => "active",
        }
    }
}

/// The parts of a Sim resource this tool records or compares.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct Sim {
    pub(crate) sid: Option<String>,
    pub(crate) iccid: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) fleet_sid: Option<String>,
    #[serde(default)]
    pub(crate) unique_name: Option<String>,
    /// The account the SIM belongs to.
    #[serde(default)]
    pub(crate) account_sid: Option<String>,
}

impl Sim {
    /// Whether the SIM is in the Fleet whose SID is `wanted` (SIDs compared without case).
    pub(crate) fn shows_fleet(&self, wanted: &str) -> bool {
        self.fleet_sid
            .as_deref()
            .is_some_and(|have| have.eq_ignore_ascii_case(wanted))
    }
}

/// A Fleet SID (`HF` + 32 hex digits), as opposed to a Fleet's unique name.
pub(crate) fn is_fleet_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("HF") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The fields of one `POST /v1/Sims/{Sid}` (UpdateSim); `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SimUpdate {
    /// A Fleet SID (`HF...`) or unique name.
    pub(crate) fleet: Option<String>,
    /// `ready` or `active`.
    pub(crate) status: Option<String>,
    pub(crate) unique_name: Option<String>,
}

impl SimUpdate {
    pub(crate) fn is_empty(&self) -> bool {
        self.fleet.is_none() && self.status.is_none() && self.unique_name.is_none()
    }
}

/// The part of a Fleet resource this tool needs: its SID, to compare with a SIM's, and its
/// unique name, to list the Fleets an account has.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct Fleet {
    pub(crate) sid: Option<String>,
    #[serde(default)]
    pub(crate) unique_name: Option<String>,
}

#[derive(Deserialize)]
struct FleetList {
    fleets: Vec<Fleet>,
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
    /// Takes the credentials' secrets out of everything a server says back.
    redactor: Redactor,
    /// Why the latest request that got no answer at all could not reach the API, as one
    /// sentence (see [`super::transport`]); shared by the clones of this client.
    last_unreachable: Arc<Mutex<Option<String>>>,
    /// The account this run works on, once known (an auth token's Account SID, or what the
    /// preflight proved): an answer showing a SIM of another account does not count.
    /// Shared by the clones of this client.
    account: Arc<Mutex<Option<String>>>,
    /// The proxy requests go through, if the environment sets one, so a failure to reach it
    /// is told as the proxy's, not the API's.
    proxy: Option<super::transport::ProxyInUse>,
}

/// One exchange with the API: its result, and the `Twilio-Concurrent-Requests` count the
/// answer carried, whatever the result (a success, a Twilio error, or a 2xx that is an
/// answer in doubt). A request that got no answer at all carries no count.
#[derive(Debug)]
pub(crate) struct Answered<T> {
    pub(crate) result: Result<T, ApiError>,
    pub(crate) concurrent_requests: Option<u32>,
}

impl<T> Answered<T> {
    /// A result without any count: no answer came, or it carried none.
    pub(crate) fn uncounted(result: Result<T, ApiError>) -> Self {
        Answered {
            result,
            concurrent_requests: None,
        }
    }

    /// The result alone, for callers that do not feed an adaptive limit.
    pub(crate) fn into_result(self) -> Result<T, ApiError> {
        self.result
    }

    /// Judges a success further (`check` may turn it into an error); the count stays.
    pub(crate) fn and_then<U>(self, check: impl FnOnce(T) -> Result<U, ApiError>) -> Answered<U> {
        Answered {
            result: self.result.and_then(check),
            concurrent_requests: self.concurrent_requests,
        }
    }
}

/// The header in which Twilio reports the account's requests in flight.
pub(crate) const CONCURRENT_REQUESTS_HEADER: &str = "twilio-concurrent-requests";

/// Bodies read for a resource or an error's words (and the preflight's) are read no further
/// than this: a Sim, a Fleet or a Twilio error is a few hundred bytes, and a gateway's page
/// is not worth memory. The rest of a longer body is never fetched.
pub(crate) const MAX_BODY: usize = 64 * 1024;

impl Client {
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base_url)
            .with_context(|| format!("the API base URL {base_url:?} is not a URL"))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("supersim-bulk/", env!("CARGO_PKG_VERSION")))
            // The API never redirects. A redirect followed would re-send the ICCID and the
            // registration code to wherever it points, in clear text if it says `http://`:
            // a 3xx is answered as a wrong endpoint instead (see `ApiError::redirected_to`).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        let mut proxy = None;
        if is_loopback(&url) {
            // A proxy would receive the credentials and registration codes in clear text
            // (or could at least read them off an `http://` request): a loopback API is
            // reached directly, whatever HTTP_PROXY, ALL_PROXY or NO_PROXY say.
            builder = builder.no_proxy();
        } else if let Some(url_of_proxy) = proxy_for(&Matcher::from_system(), &url) {
            // reqwest honours the same variables; over https it tunnels (CONNECT, or SOCKS),
            // so TLS stays end to end. Only where the proxy is is logged, never its
            // credentials.
            let variable = proxy_variable(&|name| std::env::var(name).ok());
            tracing::debug!(proxy = %url_of_proxy, variable, "requests to the API go through a proxy set in the environment");
            proxy = Some(super::transport::ProxyInUse {
                url: url_of_proxy,
                variable,
            });
        }
        let http = builder.build()?;
        // An auth token's user name is the Account SID; an API key's is not, and then the
        // preflight proves the account.
        let account = is_account_sid(&credentials.username).then(|| credentials.username.clone());
        Ok(Client {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            redactor: credentials.redactor(),
            credentials,
            last_unreachable: Arc::default(),
            account: Arc::new(Mutex::new(account)),
            proxy,
        })
    }

    /// Sets the account this run works on, once the run knows it (the preflight proved it,
    /// or `TWILIO_ACCOUNT_SID` names it beside an API key); `None` leaves it as it is.
    pub(crate) fn know_account(&self, account: Option<&str>) {
        if let Some(account) = account {
            *self.account.lock().unwrap_or_else(|e| e.into_inner()) = Some(account.to_string());
        }
    }

    /// The account this run works on, if known.
    pub(crate) fn account(&self) -> Option<String> {
        self.account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The run's account, bound to `shown` when it was not known yet and `shown` is an
    /// Account SID: an API key names no account, and the preflight cannot learn one from
    /// an account with no SIM or Fleet yet, so the first account an answer about the SIM
    /// asked for confirms becomes the run's, and an answer showing another one does not
    /// count. Checked and bound in one step, so two first answers cannot both bind.
    fn bind_account(&self, shown: Option<&str>) -> Option<String> {
        let mut account = self.account.lock().unwrap_or_else(|e| e.into_inner());
        if account.is_none()
            && let Some(shown) = shown.filter(|shown| is_account_sid(shown))
        {
            tracing::info!(
                account_sid = shown,
                "the run's account, as its first answer about a SIM showed it; answers showing another account do not count"
            );
            *account = Some(shown.to_string());
        }
        account.clone()
    }

    /// Whether `sim` is the SIM asked about, on this run's account: its `iccid` is `iccid`,
    /// its `sid` is a Sim SID (and `sid` when one was asked for), and its `account_sid` is
    /// the run's account (the first one such an answer shows, when the run did not know
    /// it). Anything else is an answer in doubt: it is retried like a lost response and
    /// never written into a row.
    fn check_sim(
        &self,
        status: u16,
        sim: &Sim,
        iccid: &str,
        sid: Option<&str>,
    ) -> Result<(), ApiError> {
        let mut account = self.account();
        if account.is_none() && check_sim_answer(sim, iccid, sid, None).is_none() {
            account = self.bind_account(sim.account_sid.as_deref());
        }
        match check_sim_answer(sim, iccid, sid, account.as_deref()) {
            None => Ok(()),
            Some(what) => Err(in_doubt(status, iccid, what)),
        }
    }

    /// `POST /v1/Sims`: registers a SIM to the account.
    pub(crate) async fn create_sim(&self, iccid: &str, code: &RegistrationCode) -> Answered<Sim> {
        let request = self
            .http
            .post(format!("{}/v1/Sims", self.base_url))
            .form(&[("Iccid", iccid), ("RegistrationCode", code.expose())]);
        // A server may echo the code back as well as the credentials.
        self.send_cleaned(request, &self.redactor.with_code(code))
            .await
            .and_then(|(status, sim): (u16, Sim)| {
                self.check_sim(status, &sim, iccid, None)?;
                Ok(sim)
            })
    }

    /// The full URL of `path_and_query` on this client's API.
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// A GET of `path_and_query` with the credentials, for callers that read the raw
    /// answer (the preflight judges status codes and bodies itself).
    pub(super) fn get_authenticated(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path_and_query))
            .basic_auth(&self.credentials.username, Some(&self.credentials.password))
    }

    /// `GET /v1/Sims?Iccid=`: the SIM with this ICCID on the account, if any. A list showing
    /// two SIMs with the ICCID (Twilio lists at most one) is an answer in doubt: neither is
    /// taken as the SIM, so nothing is recorded for, or sent to, one picked at random.
    pub(crate) async fn find_sim(&self, iccid: &str) -> Answered<Option<Sim>> {
        let request = self
            .http
            .get(format!("{}/v1/Sims", self.base_url))
            .query(&[("Iccid", iccid)]);
        self.send_with_status(request)
            .await
            .and_then(|(status, list): (u16, SimList)| {
                let mut with_iccid = list
                    .sims
                    .into_iter()
                    .filter(|sim| sim.iccid.as_deref() == Some(iccid));
                let found = with_iccid.next();
                if with_iccid.next().is_some() {
                    return Err(in_doubt(status, iccid, "two SIMs with this ICCID"));
                }
                if let Some(sim) = &found {
                    self.check_sim(status, sim, iccid, None)?;
                }
                Ok(found)
            })
    }

    /// `GET /v1/Sims/{Sid}` (FetchSim): the SIM as it is now, which must be the one with
    /// `iccid` on this run's account.
    pub(crate) async fn fetch_sim(&self, sid: &str, iccid: &str) -> Answered<Sim> {
        let request = self.http.get(format!("{}/v1/Sims/{sid}", self.base_url));
        self.send_with_status(request)
            .await
            .and_then(|(status, sim): (u16, Sim)| {
                self.check_sim(status, &sim, iccid, Some(sid))?;
                Ok(sim)
            })
    }

    /// `GET /v1/Fleets/{Sid}` (FetchFleet), where a unique name may stand for the SID. The
    /// answer must be the Fleet asked for: its `sid` is `HF` and 32 hex digits, and it is
    /// the SID asked for, or the Fleet shows the unique name asked for (in any case). Any
    /// other Fleet is an answer in doubt, retried, so no SIM goes into a Fleet nobody named.
    pub(crate) async fn fetch_fleet(&self, sid_or_name: &str) -> Answered<Fleet> {
        let request = self.http.get(format!(
            "{}/v1/Fleets/{}",
            self.base_url,
            encode_path_segment(sid_or_name)
        ));
        self.send_with_status(request)
            .await
            .and_then(|(status, fleet): (u16, Fleet)| {
                let sid = fleet.sid.as_deref().unwrap_or_default();
                let same = |shown: &str| shown.eq_ignore_ascii_case(sid_or_name);
                if is_fleet_sid(sid)
                    && (same(sid) || fleet.unique_name.as_deref().is_some_and(same))
                {
                    return Ok(fleet);
                }
                Err(ApiError {
                    http_status: Some(status),
                    code: None,
                    message: format!(
                        "an answer about Fleet '{sid_or_name}' showing another Fleet, or a \
                         `sid` that is not HF and 32 hex digits; the outcome is in doubt"
                    ),
                    retry_after: None,
                    concurrent_requests: None,
                    maybe_processed: true,
                })
            })
    }

    /// `GET /v1/Fleets?PageSize=`: the first `page_size` Fleets on the account, to name
    /// them when a Fleet asked for is not among them.
    pub(crate) async fn list_fleets(&self, page_size: usize) -> Answered<Vec<Fleet>> {
        let request = self
            .http
            .get(format!("{}/v1/Fleets", self.base_url))
            .query(&[("PageSize", page_size.to_string())]);
        self.send(request)
            .await
            .and_then(|list: FleetList| Ok(list.fleets))
    }

    /// The sentence saying why the latest request that got no answer at all could not
    /// reach the API (DNS, refused, TLS or a timeout, with its URL), if one did not.
    pub(crate) fn last_unreachable(&self) -> Option<String> {
        self.last_unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `POST /v1/Sims/{Sid}` (UpdateSim). Both 200 and 202 are success; after a 202 the SIM
    /// reads `scheduled` until the change is done. The answer must show the SIM with `iccid`
    /// on this run's account, with the update applied (see [`check_update_answer`]).
    pub(crate) async fn update_sim(
        &self,
        sid: &str,
        iccid: &str,
        update: &SimUpdate,
    ) -> Answered<Sim> {
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
        self.send_with_status(request)
            .await
            .and_then(|(status, sim): (u16, Sim)| {
                self.check_sim(status, &sim, iccid, Some(sid))?;
                match check_update_answer(&sim, update) {
                    None => Ok(sim),
                    Some(what) => Err(in_doubt(status, iccid, what)),
                }
            })
    }

    /// Why `error` (a request that got no answer) could not reach `url`, as one sentence:
    /// the proxy's failure, when a proxy is in between and it is what failed.
    pub(crate) fn unreachable_sentence(&self, error: &reqwest::Error, url: &str) -> String {
        match &self.proxy {
            Some(proxy) => super::transport::unreachable_through_proxy(error, url, proxy),
            None => super::transport::unreachable_sentence(error, url),
        }
    }

    /// The error for a request that got no answer, remembering why in words.
    fn unreachable(&self, error: &reqwest::Error) -> ApiError {
        let url = error
            .url()
            .map(url_without_query)
            .unwrap_or_else(|| self.base_url.clone());
        self.remember_unreachable(self.unreachable_sentence(error, &url));
        ApiError::transport(error)
    }

    /// Keeps `sentence` as why the latest request got no whole answer.
    fn remember_unreachable(&self, sentence: String) {
        *self
            .last_unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(sentence);
    }

    async fn send<T: Resource>(&self, request: reqwest::RequestBuilder) -> Answered<T> {
        self.send_with_status(request)
            .await
            .and_then(|(_, resource)| Ok(resource))
    }

    /// [`Client::send`], with the 2xx status the resource came with.
    async fn send_with_status<T: Resource>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Answered<(u16, T)> {
        self.send_cleaned(request, &self.redactor).await
    }

    /// [`Client::send_with_status`], every piece of server text in the answer (the
    /// resource's or the error's) cleaned with `redactor`: see [`super::server_text`].
    async fn send_cleaned<T: Resource>(
        &self,
        request: reqwest::RequestBuilder,
        redactor: &Redactor,
    ) -> Answered<(u16, T)> {
        let sent = request
            .basic_auth(&self.credentials.username, Some(&self.credentials.password))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => return Answered::uncounted(Err(self.unreachable(&error))),
        };
        let (retry_after, concurrent_requests) = answer_headers(&response);
        let status = response.status();
        let url = url_without_query(response.url());
        let result: Result<(u16, T), ApiError> =
            read_answer(response, retry_after, concurrent_requests, |error| {
                self.remember_unreachable(super::transport::cut_short_sentence(
                    error, &url, status,
                ));
            })
            .await;
        Answered {
            result: result
                .map(|(status, resource)| (status, resource.cleaned(redactor)))
                .map_err(|error| error.cleaned(redactor)),
            concurrent_requests,
        }
    }

    /// Server text (a `Location` the preflight names) as [`super::server_text`] keeps it.
    pub(super) fn cleaned_text(&self, text: &str) -> String {
        super::server_text::clean(text, &self.redactor)
    }
}

/// A URL as messages name it: without its query.
fn url_without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// The resource a 2xx answer carries, with its status, or the error any other answer is.
/// `cut_short` hears of a body that did not come whole.
async fn read_answer<T: Resource>(
    response: reqwest::Response,
    retry_after: Option<Duration>,
    concurrent_requests: Option<u32>,
    cut_short: impl FnOnce(&reqwest::Error),
) -> Result<(u16, T), ApiError> {
    let status = response.status();
    if status.is_redirection() {
        return Err(ApiError::redirect(status.as_u16(), location(&response)));
    }
    let body = read_body_up_to(response, MAX_BODY).await.map_err(|error| {
        cut_short(&error);
        ApiError::transport(&error)
    })?;
    if status.is_success() {
        // A resource cut short is no answer, even where its start parses.
        let whole: &[u8] = if body.cut { &[] } else { &body.bytes };
        return Ok((status.as_u16(), decode_success(status.as_u16(), whole)?));
    }
    let body = body.bytes;
    Err(error_answer(
        status,
        &body,
        retry_after,
        concurrent_requests,
    ))
}

/// Where a 3xx answer points (its `Location`), as given, or `None` when it names nowhere.
fn location(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Whether `text` is an Account SID: `AC` and 32 hex digits.
fn is_account_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("AC") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `text` is a Super SIM SID: `HS` and 32 hex digits, nothing else.
pub(crate) fn is_sim_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("HS") && text[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// What is wrong with `sim` as the answer about `iccid` (and `sid`, when one was asked
/// for) on `account` (when known), if anything, as words for the error message. Values
/// from the answer are not quoted: a SID that is not one may hold anything.
fn check_sim_answer(
    sim: &Sim,
    iccid: &str,
    sid: Option<&str>,
    account: Option<&str>,
) -> Option<&'static str> {
    let shown_sid = sim.sid.as_deref().unwrap_or_default();
    if sim.iccid.as_deref() != Some(iccid) {
        Some("another ICCID, or none")
    } else if !is_sim_sid(shown_sid) {
        Some("a `sid` that is not HS and 32 hex digits")
    } else if sid.is_some_and(|asked| !asked.eq_ignore_ascii_case(shown_sid)) {
        Some("another SID than the one asked for")
    } else if account.is_some_and(|account| sim.account_sid.as_deref() != Some(account)) {
        Some("another account than this run's, or none")
    } else {
        None
    }
}

/// What `sim`, an UpdateSim answer, does not show of `update`, if anything: the Fleet sent
/// (when sent as a SID: a unique name cannot be compared), and the status sent or
/// `scheduled` (the change under way). A UniqueName is not compared: a server may store it
/// otherwise than sent (trimmed, say), and the row shows it as the answer does; but an
/// answer showing none, where one was sent, dropped it (a name is not changed
/// asynchronously), and a row written from it would be skipped by every later run. A
/// `scheduled` answer may show no Fleet yet (a server may assign it with the status
/// change), but not another. A success that shows the SIM otherwise (an update dropped, or
/// another Fleet) does not confirm the update: it is an answer in doubt, and the SIM is read
/// again before anything is recorded.
fn check_update_answer(sim: &Sim, update: &SimUpdate) -> Option<&'static str> {
    let scheduled = sim.status.as_deref() == Some("scheduled");
    let fleet_shown = |wanted: &str| {
        !is_fleet_sid(wanted) || sim.shows_fleet(wanted) || (sim.fleet_sid.is_none() && scheduled)
    };
    let status_shown = |wanted: &str| {
        sim.status
            .as_deref()
            .is_some_and(|have| have == wanted || have == "scheduled")
    };
    if !update.fleet.as_deref().is_none_or(fleet_shown) {
        Some("another Fleet than the one asked for, or none")
    } else if !update.status.as_deref().is_none_or(status_shown) {
        Some("another status than the one asked for (and not `scheduled`)")
    } else if update.unique_name.is_some() && sim.unique_name.is_none() {
        Some("no unique name where one was asked for")
    } else {
        None
    }
}

/// A 2xx answer that does not show what was asked about `iccid`, as an error in doubt: with
/// its status (an answer came, so the API is reachable), retried like a lost response and
/// never written into a row.
fn in_doubt(status: u16, iccid: &str, what: &str) -> ApiError {
    ApiError {
        http_status: Some(status),
        code: None,
        message: format!("an answer about ICCID {iccid} showing {what}; the outcome is in doubt"),
        retry_after: None,
        concurrent_requests: None,
        maybe_processed: true,
    }
}

/// The variable a proxy for an `https://` API comes from, in the order the HTTP client
/// reads them, for messages about the proxy.
fn proxy_variable(env: &dyn Fn(&str) -> Option<String>) -> &'static str {
    ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find(|name| env(name).is_some_and(|value| !value.is_empty()))
        .unwrap_or("the proxy settings")
}

/// The `Retry-After` wait and the `Twilio-Concurrent-Requests` count an answer carries.
fn answer_headers(response: &reqwest::Response) -> (Option<Duration>, Option<u32>) {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    (
        header(reqwest::header::RETRY_AFTER.as_str())
            .and_then(|v| parse_retry_after(v, SystemTime::now())),
        header(CONCURRENT_REQUESTS_HEADER).and_then(|v| v.trim().parse().ok()),
    )
}

/// A non-2xx answer as an error: Twilio's code and message when the body is a Twilio error.
fn error_answer(
    status: reqwest::StatusCode,
    body: &[u8],
    retry_after: Option<Duration>,
    concurrent_requests: Option<u32>,
) -> ApiError {
    let decoded: Option<TwilioErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match decoded {
        Some(error) => (error.code, error.message.unwrap_or_default()),
        None => (
            None,
            format!("{status} with a body that is not a Twilio error"),
        ),
    };
    ApiError {
        http_status: Some(status.as_u16()),
        code,
        message,
        retry_after,
        concurrent_requests,
        // A 5xx may come after the server committed; a 4xx answer means it did not act.
        maybe_processed: status.is_server_error(),
    }
}

/// A resource read from a 2xx answer, with the check that it is the resource asked for.
trait Resource: serde::de::DeserializeOwned + ServerText {
    /// What is missing for this answer to be trusted, if anything.
    fn missing(&self) -> Option<&'static str>;
}

fn has_sid(sid: &Option<String>) -> bool {
    sid.as_deref().is_some_and(|sid| !sid.trim().is_empty())
}

impl ServerText for Fleet {
    fn cleaned(self, redactor: &Redactor) -> Self {
        Fleet {
            sid: self.sid.cleaned(redactor),
            unique_name: self.unique_name.cleaned(redactor),
        }
    }
}

impl ServerText for FleetList {
    fn cleaned(self, redactor: &Redactor) -> Self {
        FleetList {
            fleets: self.fleets.cleaned(redactor),
        }
    }
}

impl ServerText for SimList {
    fn cleaned(self, redactor: &Redactor) -> Self {
        SimList {
            sims: self.sims.cleaned(redactor),
        }
    }
}

impl Resource for Sim {
    fn missing(&self) -> Option<&'static str> {
        (!has_sid(&self.sid)).then_some("a Sim without a `sid`")
    }
}

impl Resource for Fleet {
    fn missing(&self) -> Option<&'static str> {
        (!has_sid(&self.sid)).then_some("a Fleet without a `sid`")
    }
}

impl Resource for FleetList {
    fn missing(&self) -> Option<&'static str> {
        self.fleets
            .iter()
            .any(|fleet| !has_sid(&fleet.sid))
            .then_some("a list of Fleets with one that has no `sid`")
    }
}

impl Resource for SimList {
    fn missing(&self) -> Option<&'static str> {
        self.sims
            .iter()
            .any(|sim| !has_sid(&sim.sid))
            .then_some("a list of Sims with one that has no `sid`")
    }
}

/// A 2xx answer as the resource asked for. A 2xx whose body cannot be read as that resource
/// (a gateway's HTML page, `{}`, a Sim without its SID) is no answer: the server may or may
/// not have acted, so it is an error in doubt (`maybe_processed`), retried like a lost
/// response, never taken as a refusal nor as a success without a SID.
fn decode_success<T: Resource>(status: u16, body: &[u8]) -> Result<T, ApiError> {
    let doubt = |what: &str| ApiError {
        http_status: Some(status),
        code: None,
        message: format!("a success status with {what}; the outcome is in doubt"),
        retry_after: None,
        concurrent_requests: None,
        maybe_processed: true,
    };
    let resource: T =
        serde_json::from_slice(body).map_err(|_| doubt("a body that is not the expected JSON"))?;
    match resource.missing() {
        Some(what) => Err(doubt(what)),
        None => Ok(resource),
    }
}

/// Whether the URL's host is this machine: `localhost`, 127.0.0.0/8 or ::1 (also written as
/// an IPv4-mapped IPv6 address). Such a host is reached directly, never through a proxy,
/// and is the only kind that may be spoken to in plain `http://`.
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.eq_ignore_ascii_case("localhost")
        }
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// The proxy `matcher` sends requests to `target` through, as `scheme://host:port`: the
/// proxy URL's user name and password are left out, as they are a secret.
fn proxy_for(matcher: &Matcher, target: &reqwest::Url) -> Option<String> {
    let uri: hyper::Uri = target.as_str().parse().ok()?;
    let proxy = matcher.intercept(&uri)?;
    let proxy = proxy.uri();
    let scheme = proxy.scheme_str().unwrap_or("http");
    let host = proxy.host().unwrap_or("?");
    let port = proxy.port_u16().or(match scheme {
        "http" => Some(80),
        "https" => Some(443),
        s if s.starts_with("socks") => Some(1080),
        _ => None,
    });
    Some(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// A Sim resource as `export` writes it: every field of `supersim.v1.sim` but the URLs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct ListedSim {
    pub(crate) sid: Option<String>,
    pub(crate) iccid: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) fleet_sid: Option<String>,
    pub(crate) unique_name: Option<String>,
    pub(crate) date_created: Option<String>,
    pub(crate) date_updated: Option<String>,
    pub(crate) account_sid: Option<String>,
}

/// One page of `GET /v1/Sims` (ListSim): its SIMs, and where the next page is.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SimPage {
    pub(crate) sims: Vec<ListedSim>,
    /// `meta.next_page_url` as the API sent it, `None` on the last page. Whether it may be
    /// followed is the listing's to judge ([`next_page_path`]): a page that names a next
    /// page it will not follow was still answered.
    pub(crate) next_page_url: Option<String>,
}

/// What a page of SIMs may take, per SIM asked for: a Sim resource is about 600 bytes, so
/// this leaves room for long names and fields to come. A page of 1,000 (the most asked
/// for) may take 8 MiB and 64 KiB; a body longer than the SIMs asked for can be is not a
/// page of SIMs, and no more of it is read.
const PAGE_BODY_PER_SIM: usize = 8 * 1024;
/// What a page of SIMs may take besides its SIMs (`meta`, the JSON around them).
const PAGE_BODY_BESIDES_SIMS: usize = 64 * 1024;

/// Which SIMs a listing asks for: `Status`, `Fleet` and `PageSize` of ListSim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SimFilter {
    pub(crate) status: Option<String>,
    pub(crate) fleet: Option<String>,
    pub(crate) page_size: u32,
}

impl SimFilter {
    /// The most bytes a page of this listing may take (see [`PAGE_BODY_PER_SIM`]). The page
    /// size this tool asks for bounds it, whatever a `next_page_url` says.
    pub(crate) fn page_body_limit(&self) -> usize {
        PAGE_BODY_BESIDES_SIMS + PAGE_BODY_PER_SIM * self.page_size.max(1) as usize
    }

    /// The path and query of the first page.
    pub(crate) fn first_page(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(status) = &self.status {
            query.append_pair("Status", status);
        }
        if let Some(fleet) = &self.fleet {
            query.append_pair("Fleet", fleet);
        }
        query.append_pair("PageSize", &self.page_size.max(1).to_string());
        format!("/v1/Sims?{}", query.finish())
    }
}

/// The path and query of a `next_page_url`, to be sent to the configured base URL: Twilio's
/// page URLs name the public host, which may not be the one this run talks to (a region, a
/// proxy, an emulator). Anything but a SIM listing (`None`) is not followed.
pub(crate) fn next_page_path(next_page_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(next_page_url).ok()?;
    if url.path() != "/v1/Sims" {
        return None;
    }
    Some(match url.query() {
        Some(query) => format!("/v1/Sims?{query}"),
        None => "/v1/Sims".to_string(),
    })
}

#[derive(Deserialize)]
struct SimPageBody {
    sims: Vec<ListedSim>,
    #[serde(default)]
    meta: Option<PageMeta>,
}

#[derive(Deserialize)]
struct PageMeta {
    next_page_url: Option<String>,
}

impl Client {
    /// `GET /v1/Sims` (ListSim), one page: `path` is [`SimFilter::first_page`] or the
    /// [`next_page_path`] of the page before's [`SimPage::next_page_url`]. An idempotent
    /// read, safe to retry. A body longer than `filter`'s pages can be is refused.
    pub(crate) async fn list_sims_page(&self, path: &str, filter: &SimFilter) -> Answered<SimPage> {
        let sent = self
            .http
            .get(format!("{}{path}", self.base_url))
            .basic_auth(&self.credentials.username, Some(&self.credentials.password))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // Remembered in words, so an API that never answers is named as such.
            Err(error) => return Answered::uncounted(Err(self.unreachable(&error))),
        };
        let (retry_after, concurrent_requests) = answer_headers(&response);
        let result = read_sim_page(response, filter, retry_after, concurrent_requests).await;
        Answered {
            result: result
                .map(|page| SimPage {
                    sims: page.sims.cleaned(&self.redactor),
                    next_page_url: page.next_page_url.cleaned(&self.redactor),
                })
                .map_err(|error| error.cleaned(&self.redactor)),
            concurrent_requests,
        }
    }
}

/// The page of SIMs a 2xx answer carries, or the error any other answer is.
async fn read_sim_page(
    response: reqwest::Response,
    filter: &SimFilter,
    retry_after: Option<Duration>,
    concurrent_requests: Option<u32>,
) -> Result<SimPage, ApiError> {
    let status = response.status();
    if status.is_redirection() {
        return Err(ApiError::redirect(status.as_u16(), location(&response)));
    }
    if !status.is_success() {
        let body = read_capped(response).await?;
        return Err(error_answer(
            status,
            &body,
            retry_after,
            concurrent_requests,
        ));
    }
    let not_a_page = |what: &str| ApiError {
        http_status: Some(status.as_u16()),
        code: None,
        message: format!("the response was not a page of SIMs: {what}"),
        retry_after: None,
        concurrent_requests: None,
        maybe_processed: false,
    };
    let limit = filter.page_body_limit();
    let body = read_body_up_to(response, limit)
        .await
        .map_err(|e| ApiError::transport(&e))?;
    if body.cut {
        let sims = filter.page_size.max(1);
        return Err(not_a_page(&format!(
            "its body is over {} KiB, more than a page of {sims} SIM{} can be",
            limit / 1024,
            if sims == 1 { "" } else { "s" }
        )));
    }
    let page: SimPageBody =
        serde_json::from_slice(&body.bytes).map_err(|_| not_a_page("not the expected JSON"))?;
    Ok(SimPage {
        sims: page.sims,
        next_page_url: page
            .meta
            .and_then(|meta| meta.next_page_url)
            .filter(|url| !url.is_empty()),
    })
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn the_first_page_carries_the_filters_encoded() {
        let filter = SimFilter {
            status: Some("active".into()),
            fleet: Some("my fleet&co".into()),
            page_size: 1000,
        };
        assert_eq!(
            filter.first_page(),
            "/v1/Sims?Status=active&Fleet=my+fleet%26co&PageSize=1000"
        );
    }

    #[test]
    fn a_next_page_url_keeps_its_path_and_query_and_drops_its_host() {
        let next = next_page_path(
            "https://supersim.twilio.com/v1/Sims?Status=new&PageSize=50&Page=1&PageToken=PA%3D%3D",
        )
        .unwrap();
        assert_eq!(
            next,
            "/v1/Sims?Status=new&PageSize=50&Page=1&PageToken=PA%3D%3D"
        );
        assert!(next_page_path("https://evil.example/v1/Fleets?Page=1").is_none());
        assert!(next_page_path("http://127.0.0.1:1/v1/Sims/../Fleets?Page=1").is_none());
        assert!(next_page_path("not a url").is_none());
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

/// The first [`MAX_BODY`] bytes of an answer's body: all a resource or an error needs.
async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    read_body_up_to(response, MAX_BODY)
        .await
        .map(|body| body.bytes)
        .map_err(|e| ApiError::transport(&e))
}

/// An answer's body, read no further than a limit.
pub(crate) struct CappedBody {
    /// The body, or its first `limit` bytes.
    pub(crate) bytes: Vec<u8>,
    /// Whether the body went on past the limit (the rest was not read).
    pub(crate) cut: bool,
}

/// Reads `response`'s body up to `limit` bytes and stops there: the rest is never fetched
/// (the connection is dropped with the response), so a server that sends without end costs
/// neither memory nor the time to read it.
pub(crate) async fn read_body_up_to(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<CappedBody, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(CappedBody { bytes, cut: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(CappedBody { bytes, cut: false })
}

#[cfg(test)]
mod tests;
