//! The gate as the retry loop's [`Admission`]: where [`super::gate`] and [`super::retry`]
//! meet, so neither has to know the other. Also the gate's idempotent read with retries,
//! which is the loop with the [`Read`] hooks.

use rand::rngs::StdRng;

use super::gate::Gate;
use super::retry::{Admission, Read, with_retries};
use super::{Answered, ApiError};

impl Admission for Gate {
    fn send<T>(
        &self,
        request: impl Future<Output = Answered<T>>,
    ) -> impl Future<Output = Option<Result<T, ApiError>>> {
        Gate::send(self, request)
    }

    fn retry_wait(
        &self,
        tries: u32,
        error: &ApiError,
        throttled: bool,
        jitter: &mut StdRng,
    ) -> impl Future<Output = bool> {
        Gate::retry_wait(self, tries, error, throttled, jitter)
    }

    fn refuse_credentials(&self, error: &ApiError) {
        Gate::refuse_credentials(self, error);
    }

    fn max_attempts(&self) -> u32 {
        self.limits().max_attempts
    }

    fn halt_if_gone(&self, error: &ApiError) -> bool {
        Gate::halt_if_gone(self, error)
    }
}

impl Gate {
    /// An idempotent read (a lookup, a fetch, a poll, a Fleet, a page of SIMs) through the
    /// gate, retrying transient failures up to `--max-attempts`. `Err(None)` means the run
    /// stopped or was halted (see [`super::gate::Halt`]); `Err(Some(error))` is the error
    /// that ended it.
    pub(crate) async fn read_with_retries<T, F>(
        &self,
        jitter_seed: u64,
        request: impl Fn() -> F,
    ) -> Result<T, Option<ApiError>>
    where
        F: Future<Output = Answered<T>>,
    {
        match with_retries(self, jitter_seed, &mut Read { request }).await {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(Some(error)),
            None => Err(None),
        }
    }
}
