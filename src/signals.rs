//! The signals that stop this process, turned into one stop token that `app` hands to every
//! command: SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped ssh session) all ask
//! for the same orderly stop, and a second one leaves at once.
//!
//! Also keeps SIGXFSZ (a file grown past the process's file-size limit) from killing the
//! process: the write then fails with an error the run records and reports like a full
//! disk, instead of the process dying with rows unwritten.
//!
//! A bottom layer: it knows only the exit codes and how to log.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::exit;

/// Starts watching the stop signals and returns the token they cancel. First SIGINT,
/// SIGTERM or SIGHUP: the token is cancelled, so the command winds down and records what is
/// in flight. Second: leave at once with [`exit::INTERRUPTED`]; the results file is valid
/// after any whole row. Must be called inside the runtime.
pub(crate) fn watch() -> CancellationToken {
    let stop = CancellationToken::new();
    let mut hangup = listen(SignalKind::hangup(), "SIGHUP");
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM");
    let file_too_large = listen(SignalKind::from_raw(libc::SIGXFSZ), "SIGXFSZ");
    let cancel = stop.clone();
    tokio::spawn(async move {
        // Held so its handler stays installed; its deliveries need no action, because the
        // write that passed the limit fails with EFBIG and is reported where it happened.
        let _file_too_large = file_too_large;
        for count in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = next(&mut terminate) => {}
                Some(()) = next(&mut hangup) => {}
            }
            if count == 0 {
                tracing::warn!(
                    "interrupted: finishing the requests in flight (interrupt again to quit at once)"
                );
                cancel.cancel();
            } else {
                crate::logs::error("interrupted twice: quitting now; run again to resume");
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
    stop
}

fn listen(kind: SignalKind, name: &str) -> Option<Signal> {
    match signal(kind) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot watch {name}");
            None
        }
    }
}

/// The next delivery of `signal`, or never when it could not be watched.
async fn next(signal: &mut Option<Signal>) -> Option<()> {
    match signal.as_mut() {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}
