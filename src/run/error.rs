//! Why a run (or `--dry-run`) ended before it had a summary of its own: a set-up mistake,
//! an input that cannot be read, a results file locked by another run or written against
//! another account, and the preflight's refusals. [`RunError::exit_code`] is the one
//! mapping from these to exit codes; how a started run stopped is [`super::stop`]'s.

use crate::api::Refusal;
use crate::exit;
use crate::input::InputError;
use crate::run::lock::LockError;
use crate::run::plan::PlanError;

/// Why a run ended without a summary worth an exit code of its own.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    /// Another run holds the results file (exit 75: try again later).
    #[error(transparent)]
    Locked(LockError),
    #[error("{0:#}")]
    Setup(anyhow::Error),
    /// The results file was written against another account (or the emulator's).
    #[error(
        "{results} was written against account {written_on}, and this run registers on \
         {this_run}: its rows say nothing true about this account. Write this run's results \
         elsewhere (-o NEW.results.csv), or delete {results} if it is no longer needed"
    )]
    OtherAccount {
        results: String,
        written_on: String,
        this_run: String,
    },
    /// The API refused the credentials, as it answered (the preflight's 401, or a request's).
    #[error("the API refused the credentials ({0})")]
    CredentialsRefused(Refusal),
    /// The API could not be reached: try again later.
    #[error("{0}")]
    Unreachable(String),
    /// The input changed between the plan and the main pass: try again later.
    #[error("{0}")]
    InputChanged(String),
    /// Interrupted (SIGINT, SIGTERM, SIGHUP) before the dry run finished.
    #[error("interrupted before the dry run finished; nothing was sent")]
    Interrupted,
}

impl RunError {
    /// The exit code: what can be fixed by waiting (a lock, an unreachable API, an input
    /// still being written, a full disk) is 75, everything else is a set-up error, 2.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            RunError::Locked(_) | RunError::Unreachable(_) | RunError::InputChanged(_) => {
                exit::TEMPORARY_FAILURE
            }
            // A full disk (or a file-size limit, a quota) while setting up, as while running,
            // is fixed by freeing space, not by changing the set-up.
            RunError::Setup(error) if out_of_space(error) => exit::TEMPORARY_FAILURE,
            RunError::Interrupted => exit::INTERRUPTED,
            RunError::Input(_)
            | RunError::Setup(_)
            | RunError::OtherAccount { .. }
            | RunError::CredentialsRefused(_) => exit::USAGE_OR_CONFIG,
        }
    }
}

/// True when `error` was caused by a disk that is full, a file-size limit or a quota.
pub(crate) fn out_of_space(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::FileTooLarge
                    | std::io::ErrorKind::QuotaExceeded
            )
        })
    })
}

impl From<LockError> for RunError {
    /// Only a lock held by another run is worth waiting for; a lock that cannot be created
    /// is a set-up error, like any other file that cannot be written.
    fn from(error: LockError) -> Self {
        match error {
            LockError::Busy { .. } | LockError::BusyElsewhere { .. } => RunError::Locked(error),
            // The message already says why; kept as one sentence, not a chain.
            LockError::Io { .. } | LockError::Planted { .. } => {
                RunError::Setup(anyhow::anyhow!("{error}"))
            }
        }
    }
}

impl From<PlanError> for RunError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Input(error) => RunError::Input(error),
            PlanError::Other(error) => RunError::Setup(error),
        }
    }
}
