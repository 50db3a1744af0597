//! Tests of `retry`: the loop against a scripted admission and scripted answers.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use super::*;

/// Admits every attempt at once; records the waits asked for and refused credentials.
struct Scripted {
    max_attempts: u32,
    /// Whether the run is still going when a wait ends.
    keep_going: bool,
    waits: RefCell<Vec<u32>>,
    refused: Cell<bool>,
}

impl Scripted {
    fn new(max_attempts: u32) -> Self {
        Scripted {
            max_attempts,
            keep_going: true,
            waits: RefCell::default(),
            refused: Cell::new(false),
        }
    }
}

impl Admission for Scripted {
    async fn send<T>(
        &self,
        request: impl Future<Output = Answered<T>>,
    ) -> Option<Result<T, ApiError>> {
        Some(request.await.result)
    }

    async fn retry_wait(
        &self,
        tries: u32,
        _error: &ApiError,
        _throttled: bool,
        _jitter: &mut StdRng,
    ) -> bool {
        self.waits.borrow_mut().push(tries);
        self.keep_going
    }

    fn refuse_credentials(&self, _error: &ApiError) {
        self.refused.set(true);
    }

    fn max_attempts(&self) -> u32 {
        self.max_attempts
    }
}

fn error(status: u16, code: u32) -> ApiError {
    ApiError {
        http_status: Some(status),
        code: Some(code),
        message: format!("error {code}"),
        retry_after: None,
        concurrent_requests: None,
        maybe_processed: status >= 500,
    }
}

/// Answers in the order given; records what the loop told it.
#[derive(Default)]
struct Answers {
    script: RefCell<VecDeque<Result<&'static str, ApiError>>>,
    /// Attempts `prepare` lets through before it ends the loop (`None`: all).
    prepared: Option<u32>,
    judged: Vec<Option<u32>>,
    retried: Vec<Option<u32>>,
    exhausted_at: Option<u32>,
}

fn answers(script: Vec<Result<&'static str, ApiError>>) -> Answers {
    Answers {
        script: RefCell::new(script.into()),
        ..Answers::default()
    }
}

impl Hooks for Answers {
    type Value = &'static str;
    type Final = String;

    async fn prepare(&mut self) -> Step<String> {
        match &mut self.prepared {
            Some(0) => Step::End(Some("settled before sending".into())),
            Some(left) => {
                *left -= 1;
                Step::Send
            }
            None => Step::Send,
        }
    }

    fn request(&self) -> impl Future<Output = Answered<&'static str>> {
        let answer = self
            .script
            .borrow_mut()
            .pop_front()
            .expect("an answer left");
        async move { Answered::uncounted(answer) }
    }

    async fn succeeded(&mut self, value: &'static str, tries: u32) -> Option<String> {
        Some(format!("{value} after {tries}"))
    }

    async fn judge(&mut self, error: ApiError, _tries: u32) -> Judged<String> {
        self.judged.push(error.code);
        Judged::by_class(error, |error| Some(format!("final {:?}", error.code)))
    }

    fn retrying(&mut self, error: &ApiError) {
        self.retried.push(error.code);
    }

    async fn exhausted(&mut self, error: ApiError, tries: u32) -> Option<String> {
        self.exhausted_at = Some(tries);
        Some(format!("gave up on {:?}", error.code))
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_an_answer_succeeds() {
    let admission = Scripted::new(5);
    let mut hooks = answers(vec![
        Err(error(503, 20503)),
        Err(error(429, 20429)),
        Ok("created"),
    ]);
    let end = with_retries(&admission, 1, &mut hooks).await;
    assert_eq!(end.as_deref(), Some("created after 3"));
    assert_eq!(*admission.waits.borrow(), [1, 2]);
    assert_eq!(hooks.retried, [Some(20503), Some(20429)]);
}

#[tokio::test]
async fn the_last_attempt_is_told_to_the_hooks_before_they_give_up() {
    let admission = Scripted::new(2);
    let mut hooks = answers(vec![Err(error(503, 20503)), Err(error(500, 20500))]);
    let end = with_retries(&admission, 1, &mut hooks).await;
    assert_eq!(end.as_deref(), Some("gave up on Some(20500)"));
    assert_eq!(hooks.exhausted_at, Some(2));
    // What the last failure says (it may have committed) counts for the end too.
    assert_eq!(hooks.retried, [Some(20503), Some(20500)]);
    assert_eq!(
        *admission.waits.borrow(),
        [1],
        "no wait after the last attempt"
    );
}

#[tokio::test]
async fn a_final_answer_ends_at_once() {
    let admission = Scripted::new(5);
    let mut hooks = answers(vec![Err(error(400, 83002))]);
    let end = with_retries(&admission, 1, &mut hooks).await;
    assert_eq!(end.as_deref(), Some("final Some(83002)"));
    assert!(admission.waits.borrow().is_empty());
}

#[tokio::test]
async fn refused_credentials_stop_the_run_before_any_hook_judges_them() {
    let admission = Scripted::new(5);
    let mut hooks = answers(vec![Err(error(401, 20003))]);
    assert_eq!(with_retries(&admission, 1, &mut hooks).await, None);
    assert!(admission.refused.get());
    assert!(hooks.judged.is_empty());
}

#[tokio::test]
async fn a_stop_during_the_wait_ends_without_another_attempt() {
    let admission = Scripted {
        keep_going: false,
        ..Scripted::new(5)
    };
    let mut hooks = answers(vec![Err(error(503, 20503)), Ok("never sent")]);
    assert_eq!(with_retries(&admission, 1, &mut hooks).await, None);
    assert_eq!(
        hooks.script.borrow().len(),
        1,
        "the second answer was not asked for"
    );
}

#[tokio::test]
async fn what_is_settled_before_an_attempt_can_end_the_loop_unsent() {
    let admission = Scripted::new(5);
    let mut hooks = answers(vec![Err(error(503, 20503)), Ok("never sent")]);
    hooks.prepared = Some(1);
    let end = with_retries(&admission, 1, &mut hooks).await;
    assert_eq!(end.as_deref(), Some("settled before sending"));
    assert_eq!(hooks.script.borrow().len(), 1);
}

#[tokio::test]
async fn a_read_ends_with_its_value_or_its_last_error() {
    let admission = Scripted::new(3);
    let tries = Cell::new(0);
    let read = Read {
        request: || {
            tries.set(tries.get() + 1);
            let answer = if tries.get() < 3 {
                Err(error(503, 20503))
            } else {
                Ok(tries.get())
            };
            async move { Answered::uncounted(answer) }
        },
    };
    assert_eq!(
        with_retries(&admission, 1, &mut { read })
            .await
            .map(|r| r.ok()),
        Some(Some(3))
    );
    let refused = Read {
        request: || async { Answered::uncounted(Err::<(), _>(error(404, 20404))) },
    };
    let end = with_retries(&admission, 1, &mut { refused }).await;
    assert_eq!(end.and_then(|r| r.err()).and_then(|e| e.code), Some(20404));
}
