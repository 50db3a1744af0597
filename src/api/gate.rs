//! The one gate every request passes (a create, a retry, a lookup, an update or a poll):
//! `Gate::send` waits out any pool-wide pause, takes a slot of the adaptive concurrency
//! limit (see [`super::adaptive`]), then a token of the shared rate limiter, so both `--rate`
//! and the in-flight limit hold across all workers; the answer tells the concurrency limit
//! whether to grow or shrink. It also owns the retry waits and the stop signals (an
//! interrupt, refused credentials), so no request of any kind starts after a stop.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use rand::rngs::StdRng;

use super::adaptive::{self, Answer, ConcurrencyLimit};
use super::retry::{Backoff, PoolPause, jitter_for_row};
use super::{ApiError, Client, ErrorClass};

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
pub struct GateLimits {
    /// Requests per second, across all workers (`f64::INFINITY`: no cap, the default).
    pub rate: f64,
    /// Create attempts per SIM before it is `gave_up`.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Requests in flight at most (`--concurrency`): the ceiling of the adaptive limit.
    pub concurrency: usize,
    /// Whether the in-flight limit adapts to 429s (`--no-adaptive` turns it off).
    pub adaptive: bool,
    /// Most of the account's learned limit this run takes, 0 to 1 (`--max-share`).
    pub max_share: f64,
}

/// What every worker shares.
pub struct Gate {
    client: Client,
    limiter: DefaultDirectRateLimiter,
    /// Requests allowed in flight right now; adapts to the account's limit.
    pub concurrency: Arc<ConcurrencyLimit>,
    /// Without adaptation, a 429 pauses every worker; with it, a `Retry-After` still does.
    pause: PoolPause,
    limits: GateLimits,
    /// Cancelled on interrupt: no new attempts start, answers in flight are still recorded.
    stop: CancellationToken,
    /// Cancelled when the API refuses the credentials: every further request would fail too.
    credentials_refused: CancellationToken,
    pub stats: Arc<RequestStats>,
}

impl Gate {
    pub fn new(client: Client, limits: GateLimits, stop: CancellationToken) -> Self {
        let period = Duration::from_secs_f64(1.0 / limits.rate.max(0.001));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::MIN);
        Gate {
            client,
            limiter: RateLimiter::direct(quota),
            concurrency: ConcurrencyLimit::new(
                limits.concurrency,
                limits.adaptive,
                limits.max_share,
            ),
            pause: PoolPause::default(),
            limits,
            stop,
            credentials_refused: CancellationToken::new(),
            stats: Arc::default(),
        }
    }

    /// Cancelled once the API has refused the credentials.
    pub fn credentials_refused(&self) -> &CancellationToken {
        &self.credentials_refused
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn limits(&self) -> &GateLimits {
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
        // The client notes `Twilio-Concurrent-Requests` of any answer, success included.
        let (answer, reported) = adaptive::observe(request).await;
        let (verdict, reported) = match &answer {
            Err(error) => match error.classify() {
                ErrorClass::Retry { throttled: true } => {
                    (Answer::Throttled, reported.or(error.concurrent_requests))
                }
                // A server error or a timeout says nothing about the account's limit.
                ErrorClass::Retry { throttled: false } => (Answer::Neutral, reported),
                _ => (Answer::Admitted, reported.or(error.concurrent_requests)),
            },
            Ok(_) => (Answer::Admitted, reported),
        };
        self.concurrency.on_answer(&slot, verdict, reported);
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
