//! The worker side of a run: takes one SIM at a time and drives it to a final outcome,
//! within the run's rate and concurrency limits, retrying what can be retried.
//!
//! Every request (a create, a retry, a lookup, an update or a poll) goes through
//! [`Pool::send`]: it waits out any pool-wide pause, takes a slot of the adaptive
//! concurrency limit (see `adaptive`), then a token of the shared rate limiter, so both
//! `--rate` and the in-flight limit hold across all workers; the answer tells the
//! concurrency limit whether to grow or shrink. A create whose answer was lost may have registered the SIM, so a retry that
//! answers 83003 ("already on your account") is taken as success, and a SIM whose attempts
//! all ended in doubt is looked up before it is reported as `gave_up`.
//!
//! The steps after registration (Fleet, status, waiting) live in `onboard`, which sends its
//! requests through the same gate ([`Pool::send`]) and retry wait.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::adaptive::ConcurrencyLimit;

use crate::api::{ApiError, Client, ErrorClass, Sim, sid_in_message};
use crate::results::{Outcome, ResultRow};
use crate::retry::{Backoff, PoolPause, jitter_for_row};
use crate::secret::RegistrationCode;
use rand::rngs::StdRng;

/// A row that passed the local checks and is to be registered.
#[derive(Debug)]
pub struct SendRow {
    pub line: u64,
    /// The normalised ICCID, as sent.
    pub iccid: String,
    pub code: RegistrationCode,
}

/// Counters for the summary, shared by all workers.
#[derive(Debug, Default)]
pub struct RequestStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

impl RequestStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The limits a pool works within.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Requests per second, across all workers.
    pub rate: f64,
    /// Create attempts per SIM before it is `gave_up`.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Requests in flight at most (`--concurrency`): the ceiling of the adaptive limit.
    pub concurrency: usize,
    /// Whether the in-flight limit adapts to 429s (`--no-adaptive` turns it off).
    pub adaptive: bool,
}

/// What every worker shares.
pub struct Pool {
    client: Client,
    limiter: DefaultDirectRateLimiter,
    /// Requests allowed in flight right now; adapts to the account's limit.
    pub concurrency: Arc<ConcurrencyLimit>,
    /// Without adaptation, a 429 pauses every worker; with it, a `Retry-After` still does.
    pause: PoolPause,
    limits: PoolLimits,
    /// Cancelled on interrupt: no new attempts start, answers in flight are still recorded.
    stop: CancellationToken,
    /// Cancelled when the API refuses the credentials: every further request would fail too.
    credentials_refused: CancellationToken,
    pub stats: Arc<RequestStats>,
    /// Fleet unique names resolved to SIDs during this run, for the update step.
    pub(crate) fleet_names: crate::onboard::FleetNames,
}

impl Pool {
    pub fn new(client: Client, limits: PoolLimits, stop: CancellationToken) -> Self {
        let period = Duration::from_secs_f64(1.0 / limits.rate.max(0.001));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::MIN);
        Pool {
            client,
            limiter: RateLimiter::direct(quota),
            concurrency: ConcurrencyLimit::new(limits.concurrency, limits.adaptive),
            pause: PoolPause::default(),
            limits,
            stop,
            credentials_refused: CancellationToken::new(),
            stats: Arc::default(),
            fleet_names: crate::onboard::FleetNames::default(),
        }
    }

    /// Cancelled once the API has refused the credentials.
    pub fn credentials_refused(&self) -> &CancellationToken {
        &self.credentials_refused
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// Stops the run: the API refused the credentials, so every further request would too.
    pub(crate) fn refuse_credentials(&self, error: &ApiError) {
        tracing::error!(http_status = ?error.http_status, error_code = ?error.code, "the API refused the credentials; stopping the run");
        self.credentials_refused.cancel();
    }

    /// Sends one request through the run's gates (any pool pause, a slot of the concurrency
    /// limit, a rate token) and tells the concurrency limit how it went. `None` when the run
    /// stopped before the request could be sent. `request` is not polled before that, so
    /// nothing reaches the server without passing the gates.
    pub(crate) async fn send<T>(
        &self,
        request: impl Future<Output = Result<T, ApiError>>,
    ) -> Option<Result<T, ApiError>> {
        // `biased`: once the run is stopping, no new request starts, even when a slot and
        // a rate token are free at that very moment.
        let slot = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return None,
            _ = self.credentials_refused.cancelled() => return None,
            slot = async {
                self.pause.wait().await;
                let slot = self.concurrency.acquire().await;
                self.limiter.until_ready().await;
                slot
            } => slot,
        };
        RequestStats::bump(&self.stats.requests);
        let answer = request.await;
        match &answer {
            Err(error) => match error.classify() {
                ErrorClass::Retry { throttled: true } => {
                    self.concurrency.on_throttled(error.concurrent_requests);
                }
                // A server error or a timeout says nothing about the account's limit.
                ErrorClass::Retry { throttled: false } => {}
                _ => self.concurrency.on_success(),
            },
            Ok(_) => self.concurrency.on_success(),
        }
        drop(slot);
        Some(answer)
    }

    /// Sleeps before retry number `tries` after a retryable `error`. A 429 slows the whole
    /// pool, because the limit is the account's. False when the run stopped meanwhile.
    pub(crate) async fn retry_wait(
        &self,
        tries: u32,
        error: &ApiError,
        throttled: bool,
        jitter: &mut StdRng,
    ) -> bool {
        let wait = self.limits.backoff.delay(tries, error.retry_after, jitter);
        if throttled {
            RequestStats::bump(&self.stats.throttled);
            // The adaptive limit already slows the whole pool; a fixed one can only pause it.
            // A server that names a wait is obeyed either way.
            if !self.limits.adaptive || error.retry_after.is_some() {
                self.pause.pause_for(wait);
            }
        }
        self.back_off(wait).await
    }

    /// Sleeps between two polls of a scheduled SIM (not a retry); false when the run stopped.
    pub(crate) async fn idle(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = self.credentials_refused.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Sleeps before a retry; false when the run stopped meanwhile.
    async fn back_off(&self, wait: Duration) -> bool {
        RequestStats::bump(&self.stats.retries);
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = self.credentials_refused.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Drives one SIM to its final row. `None` means the run stopped before the SIM reached
    /// a final outcome; it gets no row, so the next run tries it again.
    pub async fn register(&self, row: SendRow) -> Option<ResultRow> {
        let mut jitter = jitter_for_row(row.line);
        let mut attempts = 0;
        // Set once an attempt may have reached the server: an 83003 after that is most likely
        // our own earlier attempt, so the SIM counts as registered by this run.
        let mut maybe_committed = false;
        loop {
            let answer = self
                .send(self.client.create_sim(&row.iccid, &row.code))
                .await?;
            attempts += 1;
            let error = match answer {
                Ok(sim) => return Some(success_row(&row, Outcome::Registered, &sim, attempts)),
                Err(error) => error,
            };
            tracing::debug!(line = row.line, iccid = %row.iccid, attempt = attempts, error = %error, "create failed");
            match error.classify() {
                ErrorClass::AlreadyOnAccount => {
                    let outcome = if maybe_committed {
                        Outcome::Registered
                    } else {
                        Outcome::AlreadyRegistered
                    };
                    return self
                        .already_on_account(&row, outcome, &error, attempts)
                        .await;
                }
                ErrorClass::Rejected => {
                    return Some(error_row(&row, Outcome::Rejected, &error, attempts));
                }
                ErrorClass::CredentialsRefused => {
                    self.refuse_credentials(&error);
                    return None;
                }
                ErrorClass::Retry { throttled } => {
                    maybe_committed |= error.maybe_processed;
                    if attempts >= self.limits.max_attempts {
                        return self.give_up(&row, &error, attempts, maybe_committed).await;
                    }
                    if !self
                        .retry_wait(attempts, &error, throttled, &mut jitter)
                        .await
                    {
                        return None;
                    }
                }
            }
        }
    }

    /// 83003: the SIM is on the account. Its SID comes from the message, else from a lookup.
    async fn already_on_account(
        &self,
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
        match self.lookup(row).await {
            Ok(Some(sim)) => Some(success_row(row, outcome, &sim, attempts)),
            Ok(None) => {
                let mut result = error_row(row, outcome, error, attempts);
                result.error_message = Some(
                    "the API says the SIM is on this account, but a lookup by ICCID found none"
                        .to_string(),
                );
                Some(result)
            }
            Err(Some(lookup_error)) => {
                Some(error_row(row, Outcome::GaveUp, &lookup_error, attempts))
            }
            Err(None) => None,
        }
    }

    /// Attempts ran out on transient errors. If any attempt may have registered the SIM,
    /// a lookup settles it before the SIM is reported as not registered.
    async fn give_up(
        &self,
        row: &SendRow,
        error: &ApiError,
        attempts: u32,
        maybe_committed: bool,
    ) -> Option<ResultRow> {
        if maybe_committed {
            match self.lookup(row).await {
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
    async fn lookup(&self, row: &SendRow) -> Result<Option<Sim>, Option<ApiError>> {
        self.read_with_retries(row.line ^ 0x5eed, || self.client.find_sim(&row.iccid))
            .await
    }

    /// An idempotent read (a lookup or a fetch) through the gate, retrying transient
    /// failures up to `--max-attempts`. `Err(None)` means the run stopped or the credentials
    /// were refused; `Err(Some(error))` is the error that ended it.
    pub(crate) async fn read_with_retries<T, F>(
        &self,
        jitter_seed: u64,
        mut request: impl FnMut() -> F,
    ) -> Result<T, Option<ApiError>>
    where
        F: Future<Output = Result<T, ApiError>>,
    {
        let mut jitter = jitter_for_row(jitter_seed);
        let mut tries = 0;
        loop {
            let Some(answer) = self.send(request()).await else {
                return Err(None);
            };
            tries += 1;
            let error = match answer {
                Ok(found) => return Ok(found),
                Err(error) => error,
            };
            match error.classify() {
                ErrorClass::Retry { throttled } if tries < self.limits.max_attempts => {
                    if !self.retry_wait(tries, &error, throttled, &mut jitter).await {
                        return Err(None);
                    }
                }
                ErrorClass::CredentialsRefused => {
                    self.refuse_credentials(&error);
                    return Err(None);
                }
                _ => return Err(Some(error)),
            }
        }
    }
}

fn success_row(row: &SendRow, outcome: Outcome, sim: &Sim, attempts: u32) -> ResultRow {
    let mut result = ResultRow::new(row.line, &row.iccid, outcome);
    result.sid = sim.sid.clone();
    result.status = sim.status.clone();
    result.fleet_sid = sim.fleet_sid.clone();
    result.attempts = attempts;
    result
}

fn error_row(row: &SendRow, outcome: Outcome, error: &ApiError, attempts: u32) -> ResultRow {
    let mut result = ResultRow::new(row.line, &row.iccid, outcome);
    result.error_code = error.code;
    result.error_message = Some(error.message.clone());
    result.http_status = error.http_status;
    result.attempts = attempts;
    result
}
