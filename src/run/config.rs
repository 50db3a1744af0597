//! What a `register` run needs, already checked: built from the flags and the environment
//! by `crate::config` before any I/O, so the run itself never sees a flag.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::gate::GateLimits;
use crate::input::{InputSource, ReadOptions};
use crate::run::resume::OnboardConfig;
use crate::run::summary::MaxFailures;
use crate::secret::Credentials;

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A real (or external) API at this base URL.
    Api {
        base_url: String,
        credentials: Credentials,
        /// Where the credentials came from (variables or a twilio-cli profile), for error
        /// messages.
        credentials_source: String,
    },
    /// An emulator started in-process for this run.
    Emulator {
        credentials: Credentials,
        /// Where the emulator keeps its account across runs, if anywhere.
        state: Option<PathBuf>,
        /// How the emulated account behaves (its limit, latency, other traffic and header
        /// conventions); its credentials and state are the fields above.
        account: Box<crate::emulator::EmulatorConfig>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct RegisterConfig {
    pub(crate) input: InputSource,
    pub(crate) output: PathBuf,
    pub(crate) target: Target,
    pub(crate) limits: GateLimits,
    pub(crate) timeout: Duration,
    pub(crate) retry_rejected: bool,
    pub(crate) progress_interval: Duration,
    /// After an interrupt, how long the requests in flight may take to finish.
    pub(crate) grace: Duration,
    pub(crate) summary_json: Option<PathBuf>,
    /// The HTML report written at the end, if asked for.
    pub(crate) report: Option<PathBuf>,
    /// The Prometheus metrics file written at the end, if asked for.
    pub(crate) metrics_file: Option<PathBuf>,
    pub(crate) max_failures: Option<MaxFailures>,
    /// What happens after registration: Fleet, status, waiting.
    pub(crate) onboard: OnboardConfig,
    pub(crate) read: ReadOptions,
    /// Warnings count as invalid.
    pub(crate) strict: bool,
    /// Where the rows that failed are copied for fixing, if anywhere.
    pub(crate) failed_out: Option<PathBuf>,
    /// The account this run registers on, when known (from the credentials, or learned by
    /// the preflight). Rows are stamped with it, and a results file written against another
    /// account is never resumed.
    pub(crate) account_sid: Option<String>,
}
