//! A local emulator of the Twilio Super SIM API (`POST /v1/Sims`, `GET /v1/Sims`,
//! `GET /v1/Sims/{Sid}`, `POST /v1/Sims/{Sid}`, `GET /v1/Fleets`), with HTTP Basic auth,
//! Twilio's error bodies, a concurrent-request limit, added latency, Fleets created at
//! start-up, asynchronous status changes (202 and `scheduled`, then the target status after
//! `update_delay`), and injectable faults, including lost responses after a commit. It
//! exists so registrations can be rehearsed (`supersim-bulk emulator`, `register --emulator`)
//! and so integration tests can exercise the client's retry and resume logic over real HTTP
//! without touching a real account. It owns the emulated account's SIM store and the counters
//! (`Stats`, commits per ICCID) that tests and benchmarks read back.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The fixed test credential pair, accepted when no Twilio credentials are in the environment.
pub const TEST_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const TEST_AUTH_TOKEN: &str = "emulator-test-token";

/// Stats are served here without auth and without being counted, so observing a run does not
/// change what is observed.
pub const STATS_PATH: &str = "/_emulator/stats";

const CONCURRENT_REQUESTS_HEADER: &str = "twilio-concurrent-requests";
/// The Fleets every emulator has, besides those it is configured with.
pub const DEFAULT_FLEETS: [&str; 2] = ["field-devices", "bench"];

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// Accepted credential pairs: `TWILIO_API_KEY`+`TWILIO_API_SECRET` and
/// `TWILIO_ACCOUNT_SID`+`TWILIO_AUTH_TOKEN` when set (each pair only when both halves are set
/// and non-empty), otherwise the fixed test pair. Lets a rehearsal run with the same
/// environment as the real run.
pub fn credentials_from_env() -> Vec<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let pairs: Vec<(String, String)> = [
        ("TWILIO_API_KEY", "TWILIO_API_SECRET"),
        ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    ]
    .into_iter()
    .filter_map(|(user, secret)| Some((var(user)?, var(secret)?)))
    .collect();
    if pairs.is_empty() {
        vec![(TEST_ACCOUNT_SID.to_string(), TEST_AUTH_TOKEN.to_string())]
    } else {
        pairs
    }
}

/// The registration code the emulator expects for an ICCID: the FNV-1a 64-bit hash of
/// `"supersim-emulator/" + iccid`, reduced modulo 36^10 and written in base 36 with digits
/// `0-9A-Z`, left-padded with `0` to 10 characters. Deterministic, so sample CSVs can be
/// generated for rehearsals.
pub fn registration_code_for(iccid: &str) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = fnv1a(&[b"supersim-emulator/", iccid.as_bytes()]) % 36u64.pow(10);
    let mut code = [b'0'; 10];
    for slot in code.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    code.iter().map(|&b| b as char).collect()
}

/// The SID the emulator gives the Fleet with this unique name: `HF` and 32 hex digits from
/// two FNV-1a hashes of the name, so it is the same in every run.
pub fn fleet_sid_for(unique_name: &str) -> String {
    let high = fnv1a(&[b"supersim-emulator/fleet/", unique_name.as_bytes()]);
    let low = fnv1a(&[b"supersim-emulator/fleet-low/", unique_name.as_bytes()]);
    format!("HF{high:016x}{low:016x}")
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Added to every request while it counts as in flight, so concurrency limits bite.
    pub latency: Duration,
    /// More than this many requests in flight are answered 429 / 20429, like Twilio's
    /// per-account concurrency limit.
    pub max_concurrent: Option<usize>,
    /// Probability that a `POST /v1/Sims` gets a random [`Fault`] (each kind equally likely).
    pub fail_rate: f64,
    /// Seeds fault rolls and SID generation, so a rehearsal can be replayed exactly.
    pub seed: u64,
    /// Accepted HTTP Basic (username, password) pairs.
    pub credentials: Vec<(String, String)>,
    /// The account that owns registered SIMs (`AC` + 32 hex).
    pub account_sid: String,
    /// Unique names of the Fleets on the account (SIDs from [`fleet_sid_for`]).
    pub fleets: Vec<String>,
    /// How long an accepted status change reads `scheduled` before it takes effect. Zero
    /// still answers 202 and `scheduled`; the next read shows the new status.
    pub update_delay: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            latency: Duration::ZERO,
            max_concurrent: None,
            fail_rate: 0.0,
            seed: 0,
            credentials: vec![(TEST_ACCOUNT_SID.to_string(), TEST_AUTH_TOKEN.to_string())],
            account_sid: TEST_ACCOUNT_SID.to_string(),
            fleets: DEFAULT_FLEETS.iter().map(|name| name.to_string()).collect(),
            update_delay: Duration::ZERO,
        }
    }
}

/// A failure the emulator can impose on one `POST /v1/Sims`.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 500, code 20500.
    ServerError,
    /// 503, code 20503, with `Retry-After: <seconds>` when set.
    Unavailable { retry_after: Option<u64> },
    /// 429, code 20429, with `Retry-After: <seconds>` when set.
    TooManyRequests { retry_after: Option<u64> },
    /// 502 with an HTML body, as a gateway in front of the API would answer.
    BadGatewayHtml,
    /// 500, code 83000 ("registration failed, internal error").
    InternalRegistrationError,
    /// The connection is closed without a response; nothing is registered.
    DropBeforeCommit,
    /// The request is processed (the SIM is registered), then the connection is closed
    /// without a response: the lost response a client must recover from.
    DropAfterCommit,
    /// The request is processed, then the answer is held back this long (client timeouts).
    SlowAfterCommit(Duration),
    /// The request is held this long without being processed, then answered 503; lets a
    /// test stop a client while its request is in flight.
    StallBeforeCommit(Duration),
    /// A Twilio error body with this HTTP status and code (e.g. 409 / 83009), unprocessed.
    TwilioError { status: u16, code: u32 },
}

impl Fault {
    /// The kinds `fail_rate` draws from, with the parameters a rehearsal gets.
    fn random(rng: &mut StdRng) -> Fault {
        match rng.random_range(0..8) {
            0 => Fault::ServerError,
            1 => Fault::Unavailable {
                retry_after: Some(1),
            },
            2 => Fault::TooManyRequests { retry_after: None },
            3 => Fault::BadGatewayHtml,
            4 => Fault::InternalRegistrationError,
            5 => Fault::DropBeforeCommit,
            6 => Fault::DropAfterCommit,
            _ => Fault::SlowAfterCommit(Duration::from_secs(2)),
        }
    }

    /// The answer for faults that stop the request before it is processed; `None` for faults
    /// that act after processing.
    fn response_before_commit(&self) -> Option<Response> {
        let with_retry_after = |mut response: Response, retry_after: &Option<u64>| {
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            response
        };
        Some(match self {
            Fault::ServerError => twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "An internal server error has occurred",
            ),
            Fault::Unavailable { retry_after } => with_retry_after(
                twilio_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    20503,
                    "Service is unavailable. Please try again",
                ),
                retry_after,
            ),
            Fault::TooManyRequests { retry_after } => {
                with_retry_after(too_many_requests(), retry_after)
            }
            Fault::BadGatewayHtml => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                 <center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
            )
                .into_response(),
            Fault::InternalRegistrationError => twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                83000,
                "Registration of the Super SIM failed due to an internal error. Please retry",
            ),
            Fault::DropBeforeCommit => lost_response(),
            Fault::TwilioError { status, code } => twilio_error(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                *code,
                &format!("Injected Twilio error {code}"),
            ),
            Fault::DropAfterCommit | Fault::SlowAfterCommit(_) | Fault::StallBeforeCommit(_) => {
                return None;
            }
        })
    }
}

/// Counters for tests and benchmarks; served as JSON at [`STATS_PATH`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every request except those to [`STATS_PATH`].
    pub requests: u64,
    /// `POST /v1/Sims` requests that got past auth and the concurrency limit.
    pub create_requests: u64,
    /// `GET /v1/Sims` and `GET /v1/Sims/{Sid}` requests that got past auth and the limit.
    pub lookup_requests: u64,
    pub max_in_flight: usize,
    /// 429 responses sent, whether from the limit or an injected fault.
    pub throttled: u64,
    /// 401 responses sent.
    pub unauthorized: u64,
    /// Registrations committed over HTTP (not counting [`Emulator::preregister`]).
    pub commits: u64,
    /// `POST /v1/Sims/{Sid}` requests that got past auth and the limit.
    #[serde(default)]
    pub update_requests: u64,
}

/// A SIM registered on the emulated account.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRecord {
    pub sid: String,
    pub iccid: String,
    pub status: String,
    pub fleet_sid: Option<String>,
    pub unique_name: Option<String>,
    pub account_sid: String,
    pub date_created: SystemTime,
    pub date_updated: SystemTime,
    /// While `status` is `scheduled`: the status it becomes, and when.
    pub scheduled: Option<(String, Instant)>,
}

impl SimRecord {
    /// Applies a scheduled status change whose time has come. Called before every read, so
    /// no background task is needed and a zero delay is visible at the next request.
    fn settle(&mut self, now: Instant) {
        if let Some((status, due)) = self.scheduled.take() {
            if now >= due {
                self.status = status;
                self.date_updated = SystemTime::now();
            } else {
                self.scheduled = Some((status, due));
            }
        }
    }

    fn to_json(&self, base_url: &str) -> serde_json::Value {
        let url = format!("{base_url}/v1/Sims/{}", self.sid);
        json!({
            "sid": self.sid,
            "unique_name": self.unique_name,
            "account_sid": self.account_sid,
            "iccid": self.iccid,
            "status": self.status,
            "fleet_sid": self.fleet_sid,
            "date_created": humantime::format_rfc3339_seconds(self.date_created).to_string(),
            "date_updated": humantime::format_rfc3339_seconds(self.date_updated).to_string(),
            "links": {
                "billing_periods": format!("{url}/BillingPeriods"),
                "sim_ip_addresses": format!("{url}/IpAddresses"),
            },
            "url": url,
        })
    }
}

/// A Fleet on the emulated account.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetRecord {
    pub sid: String,
    pub unique_name: String,
    pub date_created: SystemTime,
}

impl FleetRecord {
    /// `components.schemas["supersim.v1.fleet"]`, with Twilio's documented defaults.
    fn to_json(&self, base_url: &str, account_sid: &str) -> serde_json::Value {
        let date = humantime::format_rfc3339_seconds(self.date_created).to_string();
        let profile = format!(
            "HA{:016x}{:016x}",
            fnv1a(&[b"nap/", self.unique_name.as_bytes()]),
            fnv1a(&[b"nap-low/", self.unique_name.as_bytes()])
        );
        json!({
            "account_sid": account_sid,
            "sid": self.sid,
            "unique_name": self.unique_name,
            "date_created": date,
            "date_updated": date,
            "url": format!("{base_url}/v1/Fleets/{}", self.sid),
            "data_enabled": true,
            "data_limit": 250,
            "data_metering": "payg",
            "sms_commands_enabled": false,
            "sms_commands_url": null,
            "sms_commands_method": "POST",
            "network_access_profile_sid": profile,
            "ip_commands_url": null,
            "ip_commands_method": "POST",
        })
    }
}

/// What the emulator remembers. One lock, never held across an await.
#[derive(Default)]
struct Store {
    /// In registration order, which is the listing order.
    sims: Vec<SimRecord>,
    fleets: Vec<FleetRecord>,
    /// Faults for `POST /v1/Sims/{Sid}`, by the SIM's ICCID.
    injected_updates: HashMap<String, VecDeque<Fault>>,
    by_iccid: HashMap<String, usize>,
    commits: HashMap<String, u32>,
    injected: HashMap<String, VecDeque<Fault>>,
    /// POSTs seen per ICCID, so each attempt gets its own fault roll whatever the interleaving.
    attempts: HashMap<String, u64>,
    in_flight: usize,
    stats: Stats,
}

struct Shared {
    config: EmulatorConfig,
    /// `Basic <base64>` values, precomputed so each request is one comparison per pair.
    authorizations: Vec<String>,
    /// Used for resource URLs when a request carries no `Host` header.
    fallback_base_url: String,
    store: Mutex<Store>,
    /// Update requests seen, for tests that act once a client reached its update step.
    updates_seen: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn new(config: EmulatorConfig, addr: SocketAddr) -> Shared {
        let authorizations = config
            .credentials
            .iter()
            .map(|(user, password)| {
                format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
            })
            .collect();
        let now = SystemTime::now();
        let mut fleets: Vec<FleetRecord> = Vec::new();
        for name in &config.fleets {
            if fleets.iter().all(|fleet| &fleet.unique_name != name) {
                fleets.push(FleetRecord {
                    sid: fleet_sid_for(name),
                    unique_name: name.clone(),
                    date_created: now,
                });
            }
        }
        Shared {
            config,
            authorizations,
            fallback_base_url: format!("http://{addr}"),
            store: Mutex::new(Store {
                fleets,
                ..Store::default()
            }),
            updates_seen: tokio::sync::watch::Sender::new(0),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-updated in a way that
        // matters to an emulator, so a poisoned lock is still used.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| self.authorizations.iter().any(|auth| auth == value))
    }

    /// Seeds derived from (seed, purpose, ICCID, ...) rather than one shared RNG, so what a
    /// row experiences does not depend on how concurrent workers interleave.
    fn rng_for(&self, purpose: &str, iccid: &str, attempt: u64) -> StdRng {
        let seed = fnv1a(&[
            &self.config.seed.to_le_bytes(),
            purpose.as_bytes(),
            iccid.as_bytes(),
            &attempt.to_le_bytes(),
        ]);
        StdRng::seed_from_u64(seed)
    }

    /// The fault for this POST: the ICCID's injected queue first, else a roll against
    /// `fail_rate`.
    fn next_fault(&self, iccid: Option<&str>) -> Option<Fault> {
        let iccid = iccid.unwrap_or_default();
        let attempt = {
            let mut store = self.store();
            if let Some(fault) = store.injected.get_mut(iccid).and_then(VecDeque::pop_front) {
                return Some(fault);
            }
            let attempt = store.attempts.entry(iccid.to_string()).or_default();
            *attempt += 1;
            *attempt
        };
        let fail_rate = self.config.fail_rate.clamp(0.0, 1.0);
        if fail_rate == 0.0 {
            return None;
        }
        let mut rng = self.rng_for("fault/", iccid, attempt);
        rng.random_bool(fail_rate).then(|| Fault::random(&mut rng))
    }

    /// Adds the SIM to the account; the caller has checked it is not there yet.
    fn insert_sim(&self, store: &mut Store, iccid: &str) -> SimRecord {
        let mut rng = self.rng_for("sid/", iccid, 0);
        let sid: String = std::iter::once("HS".to_string())
            .chain((0..16).map(|_| format!("{:02x}", rng.random::<u8>())))
            .collect();
        let now = SystemTime::now();
        let record = SimRecord {
            sid,
            iccid: iccid.to_string(),
            status: "new".to_string(),
            fleet_sid: None,
            unique_name: None,
            account_sid: self.config.account_sid.clone(),
            date_created: now,
            date_updated: now,
            scheduled: None,
        };
        store.by_iccid.insert(iccid.to_string(), store.sims.len());
        store.sims.push(record.clone());
        record
    }

    /// `POST /v1/Sims` without faults: validate, then commit or refuse.
    fn register(&self, params: CreateParams, base_url: &str) -> Response {
        let (Some(iccid), Some(code)) = (
            params.iccid.filter(|s| !s.is_empty()),
            params.registration_code.filter(|s| !s.is_empty()),
        ) else {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                83001,
                "Missing required parameter: Iccid and RegistrationCode are both required",
            );
        };
        let mut store = self.store();
        if let Some(&index) = store.by_iccid.get(&iccid) {
            let sid = &store.sims[index].sid;
            return twilio_error(
                StatusCode::CONFLICT,
                83003,
                &format!("The Super SIM {sid} is already registered to your account"),
            );
        }
        let registrable = (19..=20).contains(&iccid.len())
            && iccid.starts_with("89")
            && iccid.bytes().all(|b| b.is_ascii_digit())
            && code == registration_code_for(&iccid);
        if !registrable {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                83002,
                "The ICCID and registration code do not match a Super SIM that can be registered",
            );
        }
        let record = self.insert_sim(&mut store, &iccid);
        *store.commits.entry(iccid).or_default() += 1;
        store.stats.commits += 1;
        (StatusCode::CREATED, Json(record.to_json(base_url))).into_response()
    }
}

impl Shared {
    /// `POST /v1/Sims/{Sid}` without faults: every check first, then all changes at once.
    fn update(&self, sid: &str, params: UpdateParams, base_url: &str) -> Response {
        let delay = self.config.update_delay;
        let mut store = self.store();
        let now = Instant::now();
        let Some(index) = store
            .sims
            .iter()
            .position(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid))
        else {
            return twilio_error(
                StatusCode::NOT_FOUND,
                83005,
                &format!("The Super SIM {sid} was not found on this account"),
            );
        };
        store.sims[index].settle(now);
        let sim = &store.sims[index];
        if sim.status == "scheduled" {
            return twilio_error(
                StatusCode::CONFLICT,
                83009,
                "The Super SIM cannot be updated while a status change is scheduled. Please retry later",
            );
        }
        let status = match params.status.filter(|s| !s.is_empty()) {
            None => None,
            Some(status) if ["ready", "active", "inactive"].contains(&status.as_str()) => {
                Some(status)
            }
            Some(_) => {
                return twilio_error(
                    StatusCode::BAD_REQUEST,
                    20001,
                    "Invalid Status: must be one of ready, active, inactive",
                );
            }
        };
        let fleet_sid = match params.fleet.filter(|f| !f.is_empty()) {
            None => sim.fleet_sid.clone(),
            Some(wanted) => match store
                .fleets
                .iter()
                .find(|fleet| fleet.sid == wanted || fleet.unique_name == wanted)
            {
                Some(fleet) => Some(fleet.sid.clone()),
                None => {
                    return twilio_error(
                        StatusCode::BAD_REQUEST,
                        83006,
                        "The Fleet was not found: check the Fleet SID or unique name",
                    );
                }
            },
        };
        let unique_name = params.unique_name.filter(|n| !n.is_empty());
        if let Some(name) = &unique_name {
            let taken = store
                .sims
                .iter()
                .enumerate()
                .any(|(i, other)| i != index && other.unique_name.as_ref() == Some(name));
            if taken {
                return twilio_error(
                    StatusCode::CONFLICT,
                    83011,
                    "A Super SIM with this UniqueName already exists on this account",
                );
            }
        }
        let change = status.filter(|target| *target != sim.status);
        if let Some(target) = &change {
            if target == "active" && fleet_sid.is_none() {
                return twilio_error(
                    StatusCode::BAD_REQUEST,
                    83007,
                    "The Super SIM cannot be activated because it is not assigned to a Fleet",
                );
            }
            let allowed = match target.as_str() {
                "ready" => sim.status == "new",
                "inactive" => sim.status != "new",
                _ => true,
            };
            if !allowed {
                return twilio_error(
                    StatusCode::BAD_REQUEST,
                    83010,
                    &format!(
                        "The Super SIM status cannot change from {} to {target}",
                        sim.status
                    ),
                );
            }
        }
        let sim = &mut store.sims[index];
        sim.fleet_sid = fleet_sid;
        if unique_name.is_some() {
            sim.unique_name = unique_name;
        }
        sim.date_updated = SystemTime::now();
        let answer = match change {
            Some(target) => {
                sim.status = "scheduled".to_string();
                sim.scheduled = Some((target, now + delay));
                StatusCode::ACCEPTED
            }
            None => StatusCode::OK,
        };
        (answer, Json(sim.to_json(base_url))).into_response()
    }

    /// The injected fault for this update, if any (updates get no random faults).
    fn next_update_fault(&self, iccid: &str) -> Option<Fault> {
        self.store()
            .injected_updates
            .get_mut(iccid)
            .and_then(VecDeque::pop_front)
    }
}

/// Keeps a request counted as in flight until it is dropped, including when its future is
/// cancelled.
struct InFlight {
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.store().in_flight -= 1;
    }
}

/// A running emulator. Dropping it or calling [`Emulator::shutdown`] stops it.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Emulator {
    /// Binds `addr` (use `127.0.0.1:0` in tests) and serves in a spawned task.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config, addr));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_shared(Arc::clone(&shared), listener, async move {
            // A dropped sender means the Emulator was dropped: stop as well.
            let _ = stopped.await;
        }));
        Ok(Emulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, to use in place of `https://supersim.twilio.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared.store().stats.clone()
    }

    /// How many times a registration of this ICCID committed over HTTP: 0 or 1 for a correct
    /// client, since a re-POST of a registered SIM answers 83003 without committing again.
    pub fn commits(&self, iccid: &str) -> u32 {
        self.shared.store().commits.get(iccid).copied().unwrap_or(0)
    }

    /// The registered SIM, if any, with any scheduled change that is due applied.
    pub fn sim(&self, iccid: &str) -> Option<SimRecord> {
        let mut store = self.shared.store();
        let index = *store.by_iccid.get(iccid)?;
        store.sims[index].settle(Instant::now());
        Some(store.sims[index].clone())
    }

    /// Returns once `POST /v1/Sims/{Sid}` has been requested `count` times in all.
    pub async fn wait_for_updates(&self, count: u64) {
        let mut seen = self.shared.updates_seen.subscribe();
        let _ = seen.wait_for(|seen| *seen >= count).await;
    }

    /// Makes every scheduled status change take effect now, whatever `update_delay` says.
    pub fn finish_scheduled(&self) {
        let mut store = self.shared.store();
        for sim in &mut store.sims {
            if let Some((_, due)) = sim.scheduled.as_mut() {
                *due = Instant::now();
            }
            sim.settle(Instant::now());
        }
    }

    /// Sets a SIM's status directly (as if changed in the Console); for tests.
    pub fn set_status(&self, iccid: &str, status: &str, fleet: Option<&str>) {
        let mut store = self.shared.store();
        if let Some(&index) = store.by_iccid.get(iccid) {
            let sim = &mut store.sims[index];
            sim.status = status.to_string();
            sim.scheduled = None;
            sim.fleet_sid = fleet.map(fleet_sid_for);
        }
    }

    /// The Fleets on the account, in creation order.
    pub fn fleets(&self) -> Vec<FleetRecord> {
        self.shared.store().fleets.clone()
    }

    /// The next `POST /v1/Sims/{Sid}` requests for the SIM with this ICCID get these faults,
    /// one per request, in order.
    pub fn inject_update(&self, iccid: &str, faults: Vec<Fault>) {
        self.shared
            .store()
            .injected_updates
            .entry(iccid.to_string())
            .or_default()
            .extend(faults);
    }

    /// Registers the ICCID on the account out of band (as if done earlier, in the Console)
    /// and returns its SID. Not counted as a commit.
    pub fn preregister(&self, iccid: &str) -> String {
        let mut store = self.shared.store();
        match store.by_iccid.get(iccid) {
            Some(&i) => store.sims[i].sid.clone(),
            None => self.shared.insert_sim(&mut store, iccid).sid,
        }
    }

    /// The next `POST /v1/Sims` requests for this ICCID get these faults, one per request,
    /// in order, before any random fault.
    pub fn inject(&self, iccid: &str, faults: Vec<Fault>) {
        self.shared
            .store()
            .injected
            .entry(iccid.to_string())
            .or_default()
            .extend(faults);
    }

    /// Stops accepting connections and waits for requests in progress to finish.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Dropping `stop` signals the serving task; it finishes on its own.
        self.stop.take();
    }
}

/// Serves the emulator on `listener` until `shutdown` completes, then lets requests in
/// progress finish. Used by the `emulator` subcommand.
pub async fn serve(
    config: EmulatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(config, listener.local_addr()?));
    serve_shared(shared, listener, shutdown).await
}

/// Marks a response that must be lost: the connection is closed instead of answering.
#[derive(Clone, Copy)]
struct LoseResponse;

#[derive(Debug)]
struct ResponseLost;

impl std::fmt::Display for ResponseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("emulated lost response")
    }
}

impl std::error::Error for ResponseLost {}

fn lost_response() -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(LoseResponse);
    response
}

/// Hyper's connection loop rather than `axum::serve`, because only here can a handler's
/// answer become a service error, which makes hyper close the connection without writing
/// anything: the client sees a connection error, as with a real lost response.
async fn serve_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = TowerToHyperService::new(router(shared));
    let service = hyper::service::service_fn(move |request| {
        let answer = hyper::service::Service::call(&router, request);
        async move {
            let response: Response = answer
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            if response.extensions().get::<LoseResponse>().is_some() {
                Err(ResponseLost)
            } else {
                Ok(response)
            }
        }
    });
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Per-connection failures (reset before accept, too many open files) must
                // not stop the server; the pause avoids a busy loop while they last.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are lost responses and client disconnects: expected, not reported.
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/Sims", get(list_sims).post(create_sim))
        .route("/v1/Sims/{sid}", get(fetch_sim).post(update_sim))
        .route("/v1/Fleets", get(list_fleets))
        .route("/v1/Fleets/{sid}", get(fetch_fleet))
        .route(STATS_PATH, get(stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            admit_request,
        ))
        .with_state(shared)
}

/// What every request goes through, in the order Twilio is assumed to apply it: counting,
/// the concurrency limit, auth, then latency while in flight.
async fn admit_request(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == STATS_PATH {
        return next.run(request).await;
    }
    let in_flight = {
        let mut store = shared.store();
        store.in_flight += 1;
        store.stats.requests += 1;
        store.stats.max_in_flight = store.stats.max_in_flight.max(store.in_flight);
        store.in_flight
    };
    let _guard = InFlight {
        shared: Arc::clone(&shared),
    };
    let over_limit = shared
        .config
        .max_concurrent
        .is_some_and(|max| in_flight > max);
    let mut response = if over_limit {
        too_many_requests()
    } else if request.uri().path().starts_with("/v1") && !shared.is_authorized(request.headers()) {
        let mut response = twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        response
    } else {
        tokio::time::sleep(shared.config.latency).await;
        next.run(request).await
    };
    let mut store = shared.store();
    match response.status() {
        StatusCode::TOO_MANY_REQUESTS => store.stats.throttled += 1,
        StatusCode::UNAUTHORIZED => store.stats.unauthorized += 1,
        _ => {}
    }
    response.headers_mut().insert(
        CONCURRENT_REQUESTS_HEADER,
        HeaderValue::from(store.in_flight),
    );
    response
}

#[derive(Default, Deserialize)]
struct CreateParams {
    #[serde(rename = "Iccid")]
    iccid: Option<String>,
    #[serde(rename = "RegistrationCode")]
    registration_code: Option<String>,
}

async fn create_sim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<CreateParams>, FormRejection>,
) -> Response {
    shared.store().stats.create_requests += 1;
    // An unreadable body is answered like a missing parameter, as Twilio does.
    let params = form.map(|Form(params)| params).unwrap_or_default();
    let fault = shared.next_fault(params.iccid.as_deref());
    if let Some(Fault::StallBeforeCommit(stall)) = fault {
        tokio::time::sleep(stall).await;
        return Fault::Unavailable { retry_after: None }
            .response_before_commit()
            .unwrap_or_else(lost_response);
    }
    if let Some(response) = fault.as_ref().and_then(Fault::response_before_commit) {
        return response;
    }
    let response = shared.register(params, &base_url(&shared, &headers));
    match fault {
        Some(Fault::DropAfterCommit) => lost_response(),
        Some(Fault::SlowAfterCommit(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        _ => response,
    }
}

#[derive(Default, Deserialize)]
struct UpdateParams {
    #[serde(rename = "Fleet")]
    fleet: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "UniqueName")]
    unique_name: Option<String>,
}

async fn update_sim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
    form: Result<Form<UpdateParams>, FormRejection>,
) -> Response {
    let iccid = {
        let mut store = shared.store();
        store.stats.update_requests += 1;
        store
            .sims
            .iter()
            .find(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid.as_str()))
            .map(|sim| sim.iccid.clone())
    };
    shared.updates_seen.send_modify(|seen| *seen += 1);
    let params = form.map(|Form(params)| params).unwrap_or_default();
    let fault = iccid.and_then(|iccid| shared.next_update_fault(&iccid));
    if let Some(Fault::StallBeforeCommit(stall)) = fault {
        tokio::time::sleep(stall).await;
        return Fault::Unavailable { retry_after: None }
            .response_before_commit()
            .unwrap_or_else(lost_response);
    }
    if let Some(response) = fault.as_ref().and_then(Fault::response_before_commit) {
        return response;
    }
    let response = shared.update(&sid, params, &base_url(&shared, &headers));
    match fault {
        Some(Fault::DropAfterCommit) => lost_response(),
        Some(Fault::SlowAfterCommit(delay)) => {
            tokio::time::sleep(delay).await;
            response
        }
        _ => response,
    }
}

#[derive(Deserialize)]
struct PageParams {
    #[serde(rename = "PageSize")]
    page_size: Option<String>,
    #[serde(rename = "Page")]
    page: Option<String>,
}

async fn list_fleets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<PageParams>,
) -> Response {
    let (page, page_size) = match params.resolve() {
        Ok(paging) => paging,
        Err(parameter) => return invalid_parameter(parameter),
    };
    let base = base_url(&shared, &headers);
    let store = shared.store();
    let page_url = |page: usize| format!("{base}/v1/Fleets?PageSize={page_size}&Page={page}");
    list_page(
        "fleets",
        &store.fleets,
        (page, page_size),
        |fleet| fleet.to_json(&base, &shared.config.account_sid),
        page_url,
    )
}

async fn fetch_fleet(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let store = shared.store();
    match store
        .fleets
        .iter()
        .find(|fleet| fleet.sid == sid || fleet.unique_name == sid)
    {
        Some(fleet) => {
            Json(fleet.to_json(&base_url(&shared, &headers), &shared.config.account_sid))
                .into_response()
        }
        None => not_found_error(&format!("/v1/Fleets/{sid}")),
    }
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(rename = "Iccid")]
    iccid: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Fleet")]
    fleet: Option<String>,
    #[serde(flatten)]
    paging: PageParams,
}

async fn list_sims(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    let mut store = shared.store();
    store.stats.lookup_requests += 1;
    let now = Instant::now();
    store.sims.iter_mut().for_each(|sim| sim.settle(now));
    let (page, page_size) = match params.paging.resolve() {
        Ok(paging) => paging,
        Err(parameter) => return invalid_parameter(parameter),
    };
    let wanted = |filter: &Option<String>, value: Option<&str>| {
        filter.is_none() || filter.as_deref() == value
    };
    let base = base_url(&shared, &headers);
    let selected: Vec<&SimRecord> = store
        .sims
        .iter()
        .filter(|sim| {
            wanted(&params.iccid, Some(&sim.iccid))
                && wanted(&params.status, Some(&sim.status))
                && wanted(&params.fleet, sim.fleet_sid.as_deref())
        })
        .collect();
    let filters: String = [
        ("Status", &params.status),
        ("Fleet", &params.fleet),
        ("Iccid", &params.iccid),
    ]
    .iter()
    .filter_map(|(name, value)| Some(format!("{name}={}&", percent_encode(value.as_deref()?))))
    .collect();
    let page_url =
        |page: usize| format!("{base}/v1/Sims?{filters}PageSize={page_size}&Page={page}");
    list_page(
        "sims",
        &selected,
        (page, page_size),
        |sim| sim.to_json(&base),
        page_url,
    )
}

impl PageParams {
    /// `(Page, PageSize)` as Twilio reads them: a size above the maximum is capped, a value
    /// that is not a number is refused: the error names the parameter.
    fn resolve(&self) -> Result<(usize, usize), &'static str> {
        let number =
            |value: &Option<String>, name, default| match value.as_deref().map(str::parse::<usize>)
            {
                None => Ok(default),
                Some(Ok(n)) => Ok(n),
                Some(Err(_)) => Err(name),
            };
        let page_size = number(&self.page_size, "PageSize", DEFAULT_PAGE_SIZE)?;
        Ok((
            number(&self.page, "Page", 0)?,
            page_size.clamp(1, MAX_PAGE_SIZE),
        ))
    }
}

/// One page of a list answer under `key`, with the `meta` block every Twilio list has.
fn list_page<T>(
    key: &str,
    all: &[T],
    (page, page_size): (usize, usize),
    to_json: impl Fn(&T) -> serde_json::Value,
    page_url: impl Fn(usize) -> String,
) -> Response {
    let items: Vec<serde_json::Value> = all
        .iter()
        .skip(page.saturating_mul(page_size))
        .take(page_size)
        .map(to_json)
        .collect();
    let has_next = page.saturating_add(1).saturating_mul(page_size) < all.len();
    Json(json!({
        key: items,
        "meta": {
            "first_page_url": page_url(0),
            "key": key,
            "next_page_url": has_next.then(|| page_url(page + 1)),
            "page": page,
            "page_size": page_size,
            "previous_page_url": (page > 0).then(|| page_url(page - 1)),
            "url": page_url(page),
        },
    }))
    .into_response()
}

async fn fetch_sim(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    let mut store = shared.store();
    store.stats.lookup_requests += 1;
    // Twilio lets a SIM be addressed by its unique name in place of its SID.
    let found = store
        .sims
        .iter_mut()
        .find(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid.as_str()))
        .map(|sim| {
            sim.settle(Instant::now());
            &*sim
        });
    match found {
        Some(sim) => Json(sim.to_json(&base_url(&shared, &headers))).into_response(),
        None => not_found_error(&format!("/v1/Sims/{sid}")),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.store().stats.clone())
}

async fn not_found(uri: Uri) -> Response {
    not_found_error(uri.path())
}

async fn method_not_allowed() -> Response {
    twilio_error(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed")
}

fn not_found_error(path: &str) -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {path} was not found"),
    )
}

fn invalid_parameter(name: &str) -> Response {
    twilio_error(
        StatusCode::BAD_REQUEST,
        20001,
        &format!("Invalid {name}: must be a non-negative integer"),
    )
}

fn too_many_requests() -> Response {
    twilio_error(
        StatusCode::TOO_MANY_REQUESTS,
        20429,
        "Too many concurrent requests",
    )
}

/// Twilio's error body. Callers never pass a registration code or a credential into
/// `message`.
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

/// Resource URLs point back at the host the client used, so they work through any address.
fn base_url(shared: &Shared, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(|host| format!("http://{host}"))
        .unwrap_or_else(|| shared.fallback_base_url.clone())
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_codes_are_ten_stable_base36_chars() {
        let code = registration_code_for("89883070000123456789");
        assert_eq!(code.len(), 10);
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        assert_eq!(code, registration_code_for("89883070000123456789"));
        assert_ne!(code, registration_code_for("89883070000123456788"));
    }

    #[test]
    fn fault_rolls_depend_only_on_seed_iccid_and_attempt() {
        let rolls = |seed, fail_rate| {
            let shared = Shared::new(
                EmulatorConfig {
                    seed,
                    fail_rate,
                    ..EmulatorConfig::default()
                },
                "127.0.0.1:0".parse().unwrap(),
            );
            (0..40)
                .map(|_| shared.next_fault(Some("89883070000123456789")))
                .collect::<Vec<_>>()
        };
        assert_eq!(rolls(1, 0.5), rolls(1, 0.5));
        assert_ne!(rolls(1, 0.5), rolls(2, 0.5));
        assert!(rolls(1, 0.5).iter().any(Option::is_none));
        assert!(rolls(1, 1.0).iter().all(Option::is_some));
        assert!(rolls(1, 0.0).iter().all(Option::is_none));
    }
}
