//! The one retry loop: every request that is retried (a SIM's create and update, and the
//! idempotent reads: a lookup by ICCID, a fetch or a `--wait` poll of a SIM, a Fleet, a page
//! of SIMs) goes through [`with_retries`], which owns the attempts, the wait before each
//! retry (backoff with jitter, or the server's `Retry-After`, see [`super::backoff`]), the
//! stop on refused credentials, and the run's stop and halts.
//!
//! The loop's shape: what it needs from the gate comes through the small [`Admission`]
//! trait (send one attempt within the run's limits, wait before a retry, stop the run on
//! refused credentials, the attempts allowed), implemented for the gate in
//! [`super::admission`], so this module and the gate do not know each other. What differs
//! between requests comes through [`Hooks`]: what to settle before an attempt (an update
//! fetches the SIM it will change), what a success comes to, what a failure comes to (an
//! 83003 is settled by a lookup, its message's SID a hint only; a refusal for good or a
//! wrong endpoint is final), what a retryable failure tells the next attempt (an update
//! re-fetches the SIM after a lost or in-doubt answer; a create remembers it may have
//! committed), and what is left when the attempts run out.
//!
//! The backoff itself and the pool-wide pause live in [`super::backoff`]; [`Backoff`] is
//! named here too, where the run's configuration has always found it.

use rand::rngs::StdRng;

pub(crate) use super::backoff::Backoff;
use super::backoff::jitter_for_row;
use super::{Answered, ApiError, ErrorClass};

/// What the loop needs from whoever admits requests (the gate).
pub(crate) trait Admission {
    /// Sends one attempt within the run's limits; `None` when the run stopped or was halted
    /// before it could be sent, or when it failed and the run is halted meanwhile.
    fn send<T>(
        &self,
        request: impl Future<Output = Answered<T>>,
    ) -> impl Future<Output = Option<Result<T, ApiError>>>;

    /// Sleeps before retry number `tries` after the retryable `error`; false when the run
    /// stopped meanwhile.
    fn retry_wait(
        &self,
        tries: u32,
        error: &ApiError,
        throttled: bool,
        jitter: &mut StdRng,
    ) -> impl Future<Output = bool>;

    /// Stops the run: the API refused the credentials, so every further request would too.
    fn refuse_credentials(&self, error: &ApiError);

    /// Attempts per request before a retryable failure is final (`--max-attempts`).
    fn max_attempts(&self) -> u32;

    /// Whether the attempts that ran out on `error` ran out on an API nobody can reach; if
    /// so the run is halted and the request left for the next run rather than ended.
    fn halt_if_gone(&self, _error: &ApiError) -> bool {
        false
    }
}

/// Before an attempt: send it, or end without sending.
pub(crate) enum Step<F> {
    Send,
    /// The loop ends with this (`None`: the run stopped).
    End(Option<F>),
}

/// What a failed attempt comes to.
pub(crate) enum Judged<F> {
    /// The loop ends with this (`None`: the run stopped, or the hook halted it).
    End(Option<F>),
    /// Retried while attempts remain (`throttled`: a 429, which slows the whole pool).
    Retry { error: ApiError, throttled: bool },
}

impl<F> Judged<F> {
    /// A retryable error is retried; anything else ends the loop as `end(error)`.
    pub(crate) fn by_class(error: ApiError, end: impl FnOnce(ApiError) -> Option<F>) -> Self {
        match error.classify() {
            ErrorClass::Retry { throttled } => Judged::Retry { error, throttled },
            _ => Judged::End(end(error)),
        }
    }
}

/// What differs between the requests the loop retries.
pub(crate) trait Hooks {
    /// What a successful attempt carries.
    type Value;
    /// What the loop hands back.
    type Final;

    /// Before each attempt: anything to settle first. Sends by default.
    fn prepare(&mut self) -> impl Future<Output = Step<Self::Final>> {
        async { Step::Send }
    }

    /// The attempt itself (not polled until the gate admits it).
    fn request(&self) -> impl Future<Output = Answered<Self::Value>>;

    /// What a success comes to.
    fn succeeded(
        &mut self,
        value: Self::Value,
        tries: u32,
    ) -> impl Future<Output = Option<Self::Final>>;

    /// Every failed attempt, first, for the log. Nothing by default.
    fn attempt_failed(&self, _error: &ApiError, _tries: u32) {}

    /// What a failure comes to; refused credentials never get here (the loop stops the run).
    fn judge(&mut self, error: ApiError, tries: u32) -> impl Future<Output = Judged<Self::Final>>;

    /// A failure to be retried: what it tells the next attempt, or the end. Nothing by
    /// default.
    fn retrying(&mut self, _error: &ApiError) {}

    /// The attempts ran out on the retryable `error`.
    fn exhausted(
        &mut self,
        error: ApiError,
        tries: u32,
    ) -> impl Future<Output = Option<Self::Final>>;
}

/// Runs `hooks`' request through `admission` until it comes to an end: `None` when the run
/// stopped (or was halted) first. `jitter_seed` seeds the backoff's jitter, so a run is
/// reproducible.
pub(crate) async fn with_retries<A: Admission, H: Hooks>(
    admission: &A,
    jitter_seed: u64,
    hooks: &mut H,
) -> Option<H::Final> {
    let mut jitter = jitter_for_row(jitter_seed);
    let mut tries = 0;
    loop {
        if let Step::End(end) = hooks.prepare().await {
            return end;
        }
        let answer = admission.send(hooks.request()).await?;
        tries += 1;
        let error = match answer {
            Ok(value) => return hooks.succeeded(value, tries).await,
            Err(error) => error,
        };
        hooks.attempt_failed(&error, tries);
        if error.classify() == ErrorClass::CredentialsRefused {
            admission.refuse_credentials(&error);
            return None;
        }
        match hooks.judge(error, tries).await {
            Judged::End(end) => return end,
            Judged::Retry { error, throttled } => {
                hooks.retrying(&error);
                if tries >= admission.max_attempts() {
                    if admission.halt_if_gone(&error) {
                        return None;
                    }
                    return hooks.exhausted(error, tries).await;
                }
                if !admission
                    .retry_wait(tries, &error, throttled, &mut jitter)
                    .await
                {
                    return None;
                }
            }
        }
    }
}

/// An idempotent read: retried while it fails transiently, its last error final.
pub(crate) struct Read<R> {
    /// Makes one attempt.
    pub(crate) request: R,
}

impl<T, R, F> Hooks for Read<R>
where
    R: Fn() -> F,
    F: Future<Output = Answered<T>>,
{
    type Value = T;
    type Final = Result<T, ApiError>;

    fn request(&self) -> impl Future<Output = Answered<T>> {
        (self.request)()
    }

    async fn succeeded(&mut self, value: T, _tries: u32) -> Option<Self::Final> {
        Some(Ok(value))
    }

    async fn judge(&mut self, error: ApiError, _tries: u32) -> Judged<Self::Final> {
        Judged::by_class(error, |error| Some(Err(error)))
    }

    async fn exhausted(&mut self, error: ApiError, _tries: u32) -> Option<Self::Final> {
        Some(Err(error))
    }
}

#[cfg(test)]
mod tests;
