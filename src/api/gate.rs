//! The one gate every request passes (a create, a retry, a lookup, an update or a poll):
//! `Gate::send` waits out any pool-wide pause, takes a slot of the adaptive concurrency
//! limit (see [`super::adaptive`]), then a token of the shared rate limiter, so both `--rate`
//! and the in-flight limit hold across all workers; and if a pause began while it waited for
//! those, it gives them back, waits the pause out and starts over, so a `Retry-After` holds
//! at the moment a request is sent. The answer, with the `Twilio-Concurrent-Requests` count
//! the client returned beside it (see [`Answered`]), tells the concurrency limit whether to
//! grow or shrink, and a `Retry-After` on a retryable answer pauses the whole pool. It also owns
//! the retry waits, and watches the two stops (the run's stop token, and a [`Halt`] in the
//! [`HaltRegistry`]: refused credentials, an API that never answers, an endpoint that is not
//! the API), so no request of any kind starts after either.
//!
//! Because it sees every answer, the gate also tells an unreachable API from a flaky one:
//! while nothing has answered yet in this run, [`UNREACHABLE_AFTER`] requests in a row
//! without any answer (DNS, refused, TLS, timeout) stop the run rather than wear every SIM
//! down to `gave_up`; later, a request whose attempts run out unable to connect, after as
//! many requests in a row as its attempts got no answer, stops it too (an API gone
//! mid-run), where a request that fails while others are answered ends as its own.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use rand::rngs::StdRng;

use super::adaptive::{Answer, ConcurrencyLimit, RequestSlot};
use super::backoff::{Backoff, PoolPause};
pub(crate) use super::halt::Halt;
use super::halt::HaltRegistry;
use super::latency::Latencies;
use super::{Answered, ApiError, Client, ErrorClass, Refusal};

/// Counters for the summary, shared by all workers.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) throttled: AtomicU64,
    /// How long each HTTP answer took, for the report's timeline.
    pub(crate) latency: Latencies,
}

impl RequestStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Requests in a row that got no answer at all, before any answer in this run, that stop
/// the run as unreachable (fewer when `--max-attempts` is lower, so no SIM gives up first).
pub(crate) const UNREACHABLE_AFTER: u32 = 5;

/// The limits a pool works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GateLimits {
    /// Requests per second, across all workers (`f64::INFINITY`: no cap, the default).
    pub(crate) rate: f64,
    /// Create attempts per SIM before it is `gave_up`.
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    /// Requests in flight at most (`--concurrency`): the ceiling of the adaptive limit.
    pub(crate) concurrency: usize,
    /// Whether the in-flight limit adapts to 429s (`--no-adaptive` turns it off).
    pub(crate) adaptive: bool,
    /// Most of the account's learned limit this run takes, 0 to 1 (`--max-share`).
    pub(crate) max_share: f64,
}

/// What every worker shares.
pub(crate) struct Gate {
    client: Client,
    limiter: DefaultDirectRateLimiter,
    /// Requests allowed in flight right now; adapts to the account's limit.
    pub(crate) concurrency: Arc<ConcurrencyLimit>,
    /// A `Retry-After` on any retryable answer pauses every worker; so does a 429 without
    /// adaptation.
    pause: PoolPause,
    limits: GateLimits,
    /// Cancelled when no request may start (an interrupt, or the run's own stop): answers
    /// in flight are still recorded.
    stop: CancellationToken,
    /// The API side's reasons to stop, first one kept.
    halts: HaltRegistry,
    /// Set once any request got an HTTP answer: the API is reachable.
    answered: AtomicBool,
    /// Requests without any answer, counted until the first answer.
    unanswered: AtomicU32,
    pub(crate) stats: Arc<RequestStats>,
}

impl Gate {
    pub(crate) fn new(client: Client, limits: GateLimits, stop: CancellationToken) -> Self {
        Self::for_run(client, limits, stop, 0)
    }

    /// [`Gate::new`] for a run that sends at least `planned` SIMs: a long run
    /// starts its in-flight window wider (see [`ConcurrencyLimit::for_run`]).
    pub(crate) fn for_run(
        client: Client,
        limits: GateLimits,
        stop: CancellationToken,
        planned: u64,
    ) -> Self {
        let period = Duration::from_secs_f64(1.0 / limits.rate.max(0.001));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::MIN);
        Gate {
            client,
            limiter: RateLimiter::direct(quota),
            concurrency: ConcurrencyLimit::for_run(
                limits.concurrency,
                limits.adaptive,
                limits.max_share,
                planned,
            ),
            pause: PoolPause::default(),
            limits,
            stop,
            halts: HaltRegistry::default(),
            answered: AtomicBool::new(false),
            unanswered: AtomicU32::new(0),
            stats: Arc::default(),
        }
    }

    /// How the API refused the credentials, once it has (even if the run halted first
    /// for another reason).
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        self.halts.refusal()
    }

    /// Cancelled once the run is halted for any [`Halt`] reason.
    pub(crate) fn halted(&self) -> &CancellationToken {
        self.halts.halted()
    }

    /// Why the run was halted, if it was: the first reason wins.
    pub(crate) fn halt_reason(&self) -> Option<Halt> {
        self.halts.reason()
    }

    /// Stops the run for `why`; a later reason does not replace the first.
    pub(crate) fn halt(&self, why: Halt) {
        self.halts.halt(why);
    }

    /// Counts an answer (any HTTP status) or a request that got none; before the first
    /// answer, enough of the latter in a row halt the run as unreachable.
    fn observe(&self, got_an_answer: bool) {
        if got_an_answer {
            self.answered.store(true, Ordering::Relaxed);
            self.unanswered.store(0, Ordering::Relaxed);
            return;
        }
        let unanswered = self.unanswered.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.answered.load(Ordering::Relaxed)
            && unanswered >= UNREACHABLE_AFTER.min(self.limits.max_attempts.max(1))
        {
            self.halt_unreachable();
        }
    }

    /// Whether the attempts that just ran out on `error` ran out on an API gone from the
    /// network rather than on this request: the last attempt could not connect, and as many
    /// requests in a row as a request's attempts, across the run, got no answer at all. Then
    /// the run is halted as unreachable (the request is left for the next run), as before
    /// the first answer: an API that goes away mid-run would otherwise be a `gave_up`
    /// verdict on every SIM left, one after another. A request that times out while others
    /// are answered is its own failure, and still ends as one.
    pub(crate) fn halt_if_gone(&self, error: &ApiError) -> bool {
        let could_not_connect = error.http_status.is_none() && !error.maybe_processed;
        if could_not_connect
            && self.unanswered.load(Ordering::Relaxed) >= self.limits.max_attempts.max(1)
        {
            self.halt_unreachable();
            return true;
        }
        false
    }

    fn halt_unreachable(&self) {
        let sentence = self.client.last_unreachable().unwrap_or_else(|| {
            format!(
                "cannot reach the API at {}: no request got an answer; check the network, \
                 then run again",
                self.client.url("")
            )
        });
        self.halt(Halt::Unreachable(sentence));
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn limits(&self) -> &GateLimits {
        &self.limits
    }

    /// Stops the run: the API refused the credentials, so every further request would too.
    pub(crate) fn refuse_credentials(&self, error: &ApiError) {
        tracing::error!(
            http_status = error.http_status,
            error_code = error.code,
            "the API refused the credentials; stopping the run"
        );
        self.halt(Halt::CredentialsRefused(error.refusal()));
    }

    /// Sends one request through the run's gates (any pool pause, a slot of the concurrency
    /// limit, a rate token, and no pause at the moment it is sent) and tells the concurrency
    /// limit how it went, with the account's count the answer carried. `None` when the run stopped before the request could be sent, or
    /// when it failed and the run is halted meanwhile (the row is left for the next run).
    /// `request` is not polled before that, so nothing reaches the server without passing
    /// the gates.
    pub(crate) async fn send<T>(
        &self,
        request: impl Future<Output = Answered<T>>,
    ) -> Option<Result<T, ApiError>> {
        // `biased`: once the run is stopping, no new request starts, even when a slot and
        // a rate token are free at that very moment.
        let slot = tokio::select! {
            biased;
            _ = self.stop.cancelled() => return None,
            _ = self.halts.halted().cancelled() => return None,
            slot = self.admit() => slot,
        };
        RequestStats::bump(&self.stats.requests);
        let sent_at = tokio::time::Instant::now();
        let Answered {
            result: answer,
            concurrent_requests: reported,
        } = request.await;
        let got_an_answer = !matches!(&answer, Err(error) if error.http_status.is_none());
        self.observe(got_an_answer);
        let took = sent_at.elapsed();
        if got_an_answer {
            self.stats.latency.record(took);
        }
        if let Err(error) = &answer
            && let Some(asked) = error.retry_after
            && let ErrorClass::Retry { throttled } = error.classify()
        {
            if throttled && self.concurrency.probes_with(&slot) {
                // A probe's 429 answers this run's own question (did the limit rise?), and
                // the window it probed from is still the account's: only the probe's request
                // waits (its retry does). Pausing every worker for each one, with a limit
                // answering `Retry-After: 1`, ran at 86.9 rows/s where 192.9 was possible.
                tracing::debug!(?asked, "Retry-After on a probe's 429: its request waits");
            } else {
                // The server named a wait: nobody sends before it is over, whatever the
                // status (429, 503, ...), starting now rather than when this worker gets to
                // its retry.
                tracing::debug!(?asked, "Retry-After: every worker waits");
                self.pause.obey_retry_after(asked);
            }
        }
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
        self.concurrency
            .on_answer_after(&slot, verdict, reported, took);
        drop(slot);
        if answer.is_err() && self.halts.halted().is_cancelled() {
            // Halted (by this answer or another): the failure is not this SIM's verdict.
            return None;
        }
        Some(answer)
    }

    /// Waits until a request may be sent: no pool-wide pause, a slot of the concurrency
    /// limit, a rate token, and still no pause once both are held. A pause can begin while a
    /// worker waits for its slot or token (an answer with `Retry-After` arrives); then the
    /// slot and token are given back and taken again after the pause, so the pause holds at
    /// the moment of sending and the workers it held do not all send at once when it ends.
    async fn admit(&self) -> RequestSlot {
        loop {
            self.pause.wait().await;
            let slot = self.concurrency.acquire().await;
            self.limiter.until_ready().await;
            if !self.pause.is_paused() {
                return slot;
            }
        }
    }

    /// Sleeps before retry number `tries` after a retryable `error`. A 429 slows the whole
    /// pool, because the limit is the account's; a `Retry-After` has paused the whole pool
    /// already (in [`Gate::send`]). False when the run stopped meanwhile.
    pub(crate) async fn retry_wait(
        &self,
        tries: u32,
        error: &ApiError,
        throttled: bool,
        jitter: &mut StdRng,
    ) -> bool {
        let mut backoff = self.limits.backoff;
        if throttled && self.limits.adaptive {
            // The adaptive window has already slowed the whole pool for this 429; the row
            // itself waits about a round trip (growing with each refusal, as ever), not a
            // backoff sized for a server in trouble that the last rows would sit out alone.
            if let Some(round_trip) = self.concurrency.admitted_round_trip() {
                backoff.base = backoff.base.min(round_trip);
            }
        }
        let wait = backoff.delay(tries, error.retry_after, jitter);
        if throttled {
            RequestStats::bump(&self.stats.throttled);
            // The adaptive limit already slows the whole pool; a fixed one can only pause it.
            if !self.limits.adaptive {
                self.pause.pause_for(wait);
            }
        }
        self.back_off(wait).await
    }

    /// Sleeps between two polls of a scheduled SIM (not a retry); false when the run stopped.
    pub(crate) async fn idle(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = self.halts.halted().cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Sleeps before a retry; false when the run stopped meanwhile.
    async fn back_off(&self, wait: Duration) -> bool {
        RequestStats::bump(&self.stats.retries);
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = self.halts.halted().cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backoff::{Backoff, MAX_RETRY_AFTER, jitter_for_row};
    use crate::secret::Credentials;
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    /// Limits for a gate under test: one slot, three attempts, adaptation on.
    fn limits() -> GateLimits {
        GateLimits {
            rate: 1_000_000.0,
            max_attempts: 3,
            backoff: Backoff::default(),
            concurrency: 1,
            adaptive: true,
            max_share: 1.0,
        }
    }

    fn gate_with(limits: GateLimits) -> Gate {
        let credentials = Credentials {
            username: "ACx".into(),
            password: "t".into(),
        };
        // Never contacted: the requests below are futures that answer by themselves.
        let client = Client::new("http://127.0.0.1:9", credentials, Duration::from_secs(1))
            .expect("a client");
        Gate::new(client, limits, CancellationToken::new())
    }

    fn gate(adaptive: bool) -> Arc<Gate> {
        Arc::new(gate_with(GateLimits {
            adaptive,
            ..limits()
        }))
    }

    fn answer(status: u16, code: u32, retry_after: Option<u64>) -> ApiError {
        ApiError {
            http_status: Some(status),
            code: Some(code),
            message: "answer".into(),
            retry_after: retry_after.map(Duration::from_secs),
            concurrent_requests: None,
            maybe_processed: false,
        }
    }

    /// With one slot, a first request in flight answers `first`, while a second request is
    /// already waiting at the gate; returns when (tokio's clock, paused) the second one was
    /// sent, measured from when the first was answered.
    async fn second_request_after(first: ApiError, adaptive: bool) -> Duration {
        let gate = gate(adaptive);
        let (in_flight, first_sent) = oneshot::channel();
        let (answer_now, answered) = oneshot::channel::<()>();
        let one = Arc::clone(&gate);
        let first_task = tokio::spawn(async move {
            one.send(async move {
                in_flight.send(()).unwrap();
                answered.await.unwrap();
                Answered::uncounted(Err::<Instant, _>(first))
            })
            .await
        });
        first_sent.await.unwrap();
        let two = Arc::clone(&gate);
        let second_task = tokio::spawn(async move {
            two.send(async { Answered::uncounted(Ok(Instant::now())) })
                .await
        });
        // Let the second request reach the gate and wait there for the only slot.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let answered_at = Instant::now();
        answer_now.send(()).unwrap();
        assert!(first_task.await.unwrap().unwrap().is_err());
        let sent_at = second_task.await.unwrap().unwrap().unwrap();
        sent_at - answered_at
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_on_a_503_holds_a_request_already_at_the_gate() {
        let waited = second_request_after(answer(503, 20503, Some(5)), true).await;
        assert!(waited >= Duration::from_secs(5), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_on_a_429_holds_a_request_already_at_the_gate() {
        let waited = second_request_after(answer(429, 20429, Some(3)), true).await;
        assert!(waited >= Duration::from_secs(3), "{waited:?}");
        let waited = second_request_after(answer(429, 20429, Some(3)), false).await;
        assert!(waited >= Duration::from_secs(3), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_is_clamped() {
        let waited = second_request_after(answer(503, 20503, Some(86_400)), true).await;
        assert!(waited >= MAX_RETRY_AFTER, "{waited:?}");
        assert!(
            waited < MAX_RETRY_AFTER + Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_pause_without_a_retry_after_or_for_an_answer_that_is_not_retried() {
        let waited = second_request_after(answer(503, 20503, None), true).await;
        assert_eq!(waited, Duration::ZERO);
        // A refusal for good is not retried, so its Retry-After pauses nobody.
        let waited = second_request_after(answer(400, 83002, Some(5)), true).await;
        assert_eq!(waited, Duration::ZERO);
    }

    fn no_answer() -> ApiError {
        ApiError {
            http_status: None,
            code: None,
            message: "could not connect".into(),
            retry_after: None,
            concurrent_requests: None,
            maybe_processed: false,
        }
    }

    fn gate_with_attempts(max_attempts: u32) -> Gate {
        gate_with(GateLimits {
            max_attempts,
            concurrency: 4,
            ..limits()
        })
    }

    #[tokio::test]
    async fn requests_without_any_answer_before_the_first_answer_halt_the_run() {
        let gate = gate_with_attempts(10);
        for _ in 1..UNREACHABLE_AFTER {
            let sent = gate
                .send(async { Answered::uncounted(Err::<(), _>(no_answer())) })
                .await;
            assert!(matches!(sent, Some(Err(_))), "not yet halted");
        }
        assert!(!gate.halted().is_cancelled());
        let sent = gate
            .send(async { Answered::uncounted(Err::<(), _>(no_answer())) })
            .await;
        assert!(sent.is_none(), "the failure that halts is no SIM's verdict");
        assert!(gate.halted().is_cancelled());
        match gate.halt_reason() {
            Some(Halt::Unreachable(sentence)) => {
                assert!(sentence.contains("http://127.0.0.1:9"), "{sentence}")
            }
            other => panic!("{other:?}"),
        }
        // Nothing more is sent once halted.
        assert!(
            gate.send(async { Answered::uncounted(Ok::<_, ApiError>(())) })
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn any_answer_resets_the_count_and_once_answered_the_api_is_reachable() {
        let gate = gate_with_attempts(10);
        for _ in 1..UNREACHABLE_AFTER {
            let _ = gate
                .send(async { Answered::uncounted(Err::<(), _>(no_answer())) })
                .await;
        }
        // A 503 is an answer: the API is there.
        let _ = gate
            .send(async { Answered::uncounted(Err::<(), _>(answer(503, 20503, None))) })
            .await;
        for _ in 0..3 * UNREACHABLE_AFTER {
            let sent = gate
                .send(async { Answered::uncounted(Err::<(), _>(no_answer())) })
                .await;
            assert!(matches!(sent, Some(Err(_))));
        }
        assert!(!gate.halted().is_cancelled());
        assert_eq!(gate.halt_reason(), None);
    }

    #[tokio::test]
    async fn fewer_attempts_than_the_threshold_halt_before_any_sim_could_give_up() {
        let gate = gate_with_attempts(2);
        let _ = gate
            .send(async { Answered::uncounted(Err::<(), _>(no_answer())) })
            .await;
        assert!(!gate.halted().is_cancelled());
        assert!(
            gate.send(async { Answered::uncounted(Err::<(), _>(no_answer())) })
                .await
                .is_none()
        );
        assert!(matches!(gate.halt_reason(), Some(Halt::Unreachable(_))));
    }

    #[tokio::test]
    async fn the_first_halt_reason_wins() {
        let gate = gate_with_attempts(3);
        gate.halt(Halt::WrongEndpoint("the endpoint".into()));
        gate.refuse_credentials(&answer(401, 20003, None));
        assert_eq!(
            gate.halt_reason(),
            Some(Halt::WrongEndpoint("the endpoint".into()))
        );
        assert_eq!(
            gate.refusal().map(|refusal| refusal.to_string()),
            Some("HTTP 401, Twilio error 20003".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_pause_sends_nothing() {
        let gate = gate(true);
        gate.pause.obey_retry_after(Duration::from_secs(60));
        let stopper = Arc::clone(&gate);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.stop.cancel();
        });
        let sent = gate
            .send(async { Answered::uncounted(Ok::<_, ApiError>(())) })
            .await;
        assert!(sent.is_none());
    }

    #[tokio::test]
    async fn the_count_returned_with_a_success_or_an_error_reaches_the_adaptive_limit() {
        // A success: the account shows 7 in flight while this run had 1, so 6 are another's.
        let gate = gate(true);
        let sent = gate
            .send(async {
                Answered {
                    result: Ok::<_, ApiError>(()),
                    concurrent_requests: Some(7),
                }
            })
            .await;
        assert!(matches!(sent, Some(Ok(()))));
        let seen = gate.concurrency.observed();
        assert!(seen.header_seen);
        assert_eq!(seen.other_peak, Some(6));

        // A refusal for good whose error does not carry the count itself: the count the
        // answer came with still counts.
        let gate = self::gate(true);
        let sent = gate
            .send(async {
                Answered {
                    result: Err::<(), _>(answer(400, 83002, None)),
                    concurrent_requests: Some(4),
                }
            })
            .await;
        assert!(matches!(sent, Some(Err(_))));
        assert_eq!(gate.concurrency.observed().other_peak, Some(3));

        // No count: nothing is learned about other traffic.
        let gate = self::gate(true);
        let _ = gate
            .send(async { Answered::uncounted(Ok::<_, ApiError>(())) })
            .await;
        assert!(!gate.concurrency.observed().header_seen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_under_adaptation_is_retried_within_about_a_round_trip() {
        // The window already slows the pool; a row refused once need not also sit out an
        // exponential backoff meant for a server in trouble (the last rows of a run would
        // wait for it alone). Without adaptation, the configured backoff stays.
        for adaptive in [true, false] {
            let gate = gate(adaptive);
            for _ in 0..4 {
                let answered = gate.send(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Answered::uncounted(Ok::<_, ApiError>(()))
                });
                assert!(answered.await.is_some());
            }
            let refused = answer(429, 20429, None);
            let mut longest = Duration::ZERO;
            for seed in 0..40 {
                let start = Instant::now();
                assert!(
                    gate.retry_wait(1, &refused, true, &mut jitter_for_row(seed))
                        .await
                );
                longest = longest.max(start.elapsed());
            }
            if adaptive {
                assert!(longest <= Duration::from_millis(100), "{longest:?}");
            } else {
                assert!(longest > Duration::from_millis(100), "{longest:?}");
            }
        }
    }
}
