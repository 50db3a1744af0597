//! The emulated account: its SIMs and Fleets, the counters tests read back, and the rules
//! each request is checked against before anything changes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::config::*;
use super::record::{FleetRecord, SimRecord};
use super::state::StateFile;
use super::{faults::*, responses::*};

/// Counters for tests and benchmarks; served as JSON at [`STATS_PATH`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Every request except those to [`STATS_PATH`].
    pub requests: u64,
    /// `POST /v1/Sims` requests that got past auth and the concurrency limit.
    pub create_requests: u64,
    /// `GET /v1/Sims?Iccid=` and `GET /v1/Sims/{Sid}` requests that got past auth and the
    /// limit: a client looking for one SIM.
    pub lookup_requests: u64,
    /// `GET /v1/Sims` requests without `Iccid` (listings, a preflight) past auth and the limit.
    #[serde(default)]
    pub list_requests: u64,
    /// The most admitted requests in flight at once (a refused request holds no slot).
    pub max_in_flight: usize,
    /// 429 responses sent, whether from the limit or an injected fault.
    pub throttled: u64,
    /// 401 responses sent.
    pub unauthorized: u64,
    /// Registrations committed over HTTP (not counting [`super::Emulator::preregister`]).
    pub commits: u64,
    /// `POST /v1/Sims/{Sid}` requests that got past auth and the limit.
    #[serde(default)]
    pub update_requests: u64,
    /// The other app's requests (not over HTTP; not in `requests`).
    #[serde(default)]
    pub other_requests: u64,
    /// The other app's requests refused because the account was at its limit.
    #[serde(default)]
    pub other_throttled: u64,
    /// Admitted answers given while the account was at its limit, this request included:
    /// how often a client reading the count saw the account full. Beside `other_throttled`
    /// it shows how far that is from how often the other app found it full.
    #[serde(default)]
    pub answers_at_limit: u64,
    /// Bytes of padding sent after SIM list answers under [`super::PagingFault::PaddedBody`].
    #[serde(default)]
    pub padding_sent: u64,
}

/// What the emulator remembers. One lock, never held across an await.
#[derive(Default)]
pub(super) struct Store {
    /// In registration order, which is the listing order.
    pub(super) sims: Vec<SimRecord>,
    pub(super) fleets: Vec<FleetRecord>,
    /// Faults for `POST /v1/Sims/{Sid}`, by the SIM's ICCID.
    pub(super) injected_updates: HashMap<String, VecDeque<Fault>>,
    /// Faults for `GET /v1/Sims/{Sid}`, by the SIM's ICCID.
    pub(super) injected_fetches: HashMap<String, VecDeque<Fault>>,
    /// Faults for `GET /v1/Fleets/{Sid}`, by the SID or unique name asked for.
    pub(super) injected_fleets: HashMap<String, VecDeque<Fault>>,
    pub(super) by_iccid: HashMap<String, usize>,
    pub(super) commits: HashMap<String, u32>,
    pub(super) injected: HashMap<String, VecDeque<Fault>>,
    /// POSTs seen per ICCID, so each attempt gets its own fault roll whatever the interleaving.
    pub(super) attempts: HashMap<String, u64>,
    pub(super) in_flight: usize,
    pub(super) stats: Stats,
    /// Fleets made up for a rehearsal ([`EmulatorConfig::make_up_fleets`]), in order.
    pub(super) made_up_fleets: Vec<String>,
}

pub(super) struct Shared {
    pub(super) config: EmulatorConfig,
    /// `Basic <base64>` values, precomputed so each request is one comparison per pair.
    pub(super) authorizations: Vec<String>,
    /// Used for resource URLs when a request carries no `Host` header.
    pub(super) fallback_base_url: String,
    pub(super) store: Mutex<Store>,
    /// Update requests seen, for tests that act once a client reached its update step.
    pub(super) updates_seen: tokio::sync::watch::Sender<u64>,
    /// Where the account is kept across runs, if anywhere.
    pub(super) state: Option<StateFile>,
    /// When the first API request came: the schedule's and the other app's time zero.
    pub(super) epoch: std::sync::OnceLock<Instant>,
    pub(super) epoch_set: tokio::sync::Notify,
    /// Draws latency jitter; not the per-ICCID fault rolls, so those stay reproducible.
    pub(super) jitter: Mutex<StdRng>,
}

impl Shared {
    /// The emulated account of `config`, with the SIMs its state file holds, if it has one.
    pub(super) fn new(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<Shared> {
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
        let jitter_seed = fnv1a(&[b"jitter/", &config.seed.to_le_bytes()]);
        let mut store = Store {
            fleets,
            ..Store::default()
        };
        let state = match &config.state {
            Some(path) => {
                let (file, saved) = StateFile::open(path)?;
                for sim in saved {
                    store.by_iccid.insert(sim.iccid.clone(), store.sims.len());
                    store.sims.push(sim.into_record());
                }
                Some(file)
            }
            None => None,
        };
        Ok(Shared {
            config,
            authorizations,
            fallback_base_url: format!("http://{addr}"),
            store: Mutex::new(store),
            updates_seen: tokio::sync::watch::Sender::new(0),
            state,
            epoch: std::sync::OnceLock::new(),
            epoch_set: tokio::sync::Notify::new(),
            jitter: Mutex::new(StdRng::seed_from_u64(jitter_seed)),
        })
    }

    /// Starts the account's clock at the first API request.
    pub(super) fn start_clock(&self) {
        if self.epoch.set(Instant::now()).is_ok() {
            self.epoch_set.notify_waiters();
        }
    }

    /// The concurrency limit now: the schedule's step in force, else `max_concurrent`.
    pub(super) fn limit_now(&self) -> Option<usize> {
        let base = self.config.max_concurrent;
        let Some(epoch) = self.epoch.get() else {
            return base;
        };
        let elapsed = epoch.elapsed();
        self.config
            .limit_schedule
            .iter()
            .rev()
            .find(|(at, _)| *at <= elapsed)
            .map(|&(_, limit)| Some(limit))
            .unwrap_or(base)
    }

    /// A slot of the account's concurrency limit, if one is free now, for an HTTP request
    /// or one of the other app's alike; the guard frees it when dropped (not while `store`
    /// is still held).
    pub(super) fn take_slot(self: &Arc<Self>, store: &mut Store) -> Option<InFlight> {
        if self
            .limit_now()
            .is_some_and(|max| store.in_flight + 1 > max)
        {
            return None;
        }
        store.in_flight += 1;
        store.stats.max_in_flight = store.stats.max_in_flight.max(store.in_flight);
        Some(InFlight {
            shared: Arc::clone(self),
        })
    }

    /// One request's latency: `latency` on average, drawn as `latency_distribution` says.
    pub(super) fn jittered(&self, latency: std::time::Duration) -> std::time::Duration {
        if latency.is_zero() {
            return latency;
        }
        let jitter = self.config.latency_jitter.clamp(0.0, 1.0);
        let mut rng = self.jitter.lock().unwrap_or_else(|e| e.into_inner());
        let factor = match self.config.latency_distribution {
            LatencyDistribution::Uniform if jitter == 0.0 => return latency,
            LatencyDistribution::Uniform => rng.random_range((1.0 - jitter)..=(1.0 + jitter)),
            LatencyDistribution::LongTail => long_tail_factor(&mut rng),
        };
        latency.mul_f64(factor)
    }

    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-updated in a way that
        // matters to an emulator, so a poisoned lock is still used.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn is_authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| self.authorizations.iter().any(|auth| auth == value))
    }

    /// Seeds derived from (seed, purpose, ICCID, ...) rather than one shared RNG, so what a
    /// row experiences does not depend on how concurrent workers interleave.
    pub(super) fn rng_for(&self, purpose: &str, iccid: &str, attempt: u64) -> StdRng {
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
    pub(super) fn next_fault(&self, iccid: Option<&str>) -> Option<Fault> {
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
    pub(super) fn insert_sim(&self, store: &mut Store, iccid: &str) -> SimRecord {
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
            scheduled_fleet: None,
        };
        store.by_iccid.insert(iccid.to_string(), store.sims.len());
        store.sims.push(record.clone());
        if let Some(state) = &self.state {
            state.save(&record);
        }
        record
    }

    /// `POST /v1/Sims` without faults: validate, then commit or refuse.
    pub(super) fn register(&self, params: CreateParams, base_url: &str) -> Response {
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
            && self.config.codes.accepts(&iccid, &code);
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
    pub(super) fn update(&self, sid: &str, params: UpdateParams, base_url: &str) -> Response {
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
        if let Some(state) = &self.state {
            state.save(sim);
        }
        (answer, Json(sim.to_json(base_url))).into_response()
    }

    /// [`Fault::SuccessUnapplied`]: 200 with the SIM as it is, nothing changed.
    pub(super) fn unchanged(&self, sid: &str, base_url: &str) -> Response {
        let mut store = self.store();
        let now = Instant::now();
        match store
            .sims
            .iter_mut()
            .find(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid))
        {
            Some(sim) => {
                sim.settle(now);
                Json(sim.to_json(base_url)).into_response()
            }
            None => not_found_error(&format!("/v1/Sims/{sid}")),
        }
    }

    /// [`Shared::update`] under a fault that acts on the status change it schedules, if
    /// any: [`Fault::ScheduledThenReverts`] makes it end at the status the SIM had;
    /// [`Fault::FleetWithScheduledChange`] holds the Fleet it assigns back until it is done.
    pub(super) fn update_scheduling(
        &self,
        sid: &str,
        params: UpdateParams,
        base_url: &str,
        fault: &Fault,
    ) -> Response {
        let find = |store: &mut Store| -> Option<usize> {
            store
                .sims
                .iter()
                .position(|sim| sim.sid == sid || sim.unique_name.as_deref() == Some(sid))
        };
        let before = {
            let mut store = self.store();
            find(&mut store).map(|i| {
                store.sims[i].settle(Instant::now());
                (
                    store.sims[i].status.clone(),
                    store.sims[i].fleet_sid.clone(),
                )
            })
        };
        let response = self.update(sid, params, base_url);
        let Some((status_before, fleet_before)) = before else {
            return response;
        };
        let mut store = self.store();
        let Some(index) = find(&mut store) else {
            return response;
        };
        let sim = &mut store.sims[index];
        let Some((target, _)) = sim.scheduled.as_mut() else {
            return response;
        };
        match fault {
            Fault::ScheduledThenReverts => *target = status_before,
            Fault::FleetWithScheduledChange if sim.fleet_sid != fleet_before => {
                sim.scheduled_fleet = Some(std::mem::replace(&mut sim.fleet_sid, fleet_before));
            }
            _ => return response,
        }
        if let Some(state) = &self.state {
            state.save(sim);
        }
        (response.status(), Json(sim.to_json(base_url))).into_response()
    }

    /// The injected fault for this update, if any (updates get no random faults).
    pub(super) fn next_update_fault(&self, iccid: &str) -> Option<Fault> {
        self.store()
            .injected_updates
            .get_mut(iccid)
            .and_then(VecDeque::pop_front)
    }
}

#[derive(Default, Deserialize)]
pub(super) struct CreateParams {
    #[serde(rename = "Iccid")]
    pub(super) iccid: Option<String>,
    #[serde(rename = "RegistrationCode")]
    pub(super) registration_code: Option<String>,
}

#[derive(Default, Deserialize)]
pub(super) struct UpdateParams {
    #[serde(rename = "Fleet")]
    pub(super) fleet: Option<String>,
    #[serde(rename = "Status")]
    pub(super) status: Option<String>,
    #[serde(rename = "UniqueName")]
    pub(super) unique_name: Option<String>,
}

/// Keeps a request counted as in flight until it is dropped, including when its future is
/// cancelled.
pub(super) struct InFlight {
    pub(super) shared: Arc<Shared>,
}

/// A lognormal factor of mean 1 whose 99th percentile is five times its median
/// (σ = ln 5 / z₀.₉₉), drawn by Box-Muller.
pub(super) fn long_tail_factor(rng: &mut StdRng) -> f64 {
    const Z_99: f64 = 2.326_347_874;
    let sigma = 5f64.ln() / Z_99;
    // 1 - u is in (0, 1], so its logarithm is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    // The mean of exp(σZ) is exp(σ²/2): divided out, so `latency` stays the mean.
    (sigma * normal - sigma * sigma / 2.0).exp()
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.store().in_flight -= 1;
    }
}
