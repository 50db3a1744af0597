//! Talking to the Super SIM API: everything between a row that is fit to send and the
//! answer that decides its outcome.
//!
//! - [`client`]: the HTTP client, the requests this tool makes and the resources it reads;
//!   [`error`]: Twilio error decoding and the classification of every failure into "retry",
//!   "already done", "refused for good" or "stop the run".
//! - [`retry`]: the one retry loop for creates, updates and reads, with what differs as
//!   hooks; [`backoff`]: backoff, `Retry-After`, and the pool-wide pause after a 429;
//!   [`adaptive`]: the in-flight limit that adapts to the account's concurrency limit.
//! - [`gate`]: the one gate every request passes, within the run's rate and concurrency
//!   limits, and the retry waits; [`admission`]: the gate as the retry loop's way to send
//!   (where the two meet, so neither imports the other); [`halt`]: the registry of why the API side stopped a run; [`preflight`]: one cheap request that proves the base URL,
//!   the credentials and the network before anything is registered; [`transport`]: why the
//!   API could not be reached (DNS, refused, TLS, timeout), as one sentence;
//!   [`server_text`]: what every piece of text a server sends goes through before it is
//!   kept or printed (secrets removed, control characters replaced).
//!
//! Nothing here knows about CSV files or results rows: this layer turns requests into typed
//! answers, and the run decides what they mean for a SIM.

pub(crate) mod adaptive;
pub(crate) mod admission;
pub(crate) mod backoff;
pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod gate;
pub(crate) mod halt;
pub(crate) mod latency;
pub mod preflight;
pub(crate) mod retry;
pub(crate) mod server_text;
pub(crate) mod transport;

pub use client::Client;
pub(crate) use client::{
    Answered, ListedSim, Sim, SimFilter, SimUpdate, TargetStatus, is_fleet_sid,
};
pub(crate) use error::*;
