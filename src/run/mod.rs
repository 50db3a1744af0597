//! The `register` run: the [`job`] wires the reader, the workers and the one results writer
//! together.
//!
//! - [`plan`] (with the crate's external sort): which rows repeat an earlier one and
//!   what earlier runs recorded, worked out on disk before the main pass so memory stays
//!   flat.
//! - [`triage`]: each input row read, checked and turned into work for the dispatcher;
//!   [`fleets`]: every Fleet the run names, resolved to its SID before anything is sent.
//! - [`registration`]: one SIM's create and what its answer means; [`onboard`]: the steps
//!   after registration (Fleet, status, UniqueName, waiting); [`resume`]: what each row
//!   still needs, given what onboarding asks and what earlier runs recorded; [`sids`]: which
//!   ICCID each SID in the results file belongs to, so no SID goes on two SIMs' rows.
//! - [`dispatch`]: hands the work to workers within `--concurrency`; [`writer`]: the one
//!   task that writes the results file during a run; [`lock`]: one run at a time per
//!   results file; [`progress`]: the live display; [`config`]: what a run needs, already
//!   checked.
//! - [`stop`]: the one owner of "this run must stop now", and why a run ended mapped to
//!   its exit code; [`summary`]: the summary people and scripts read; [`error`]: why a
//!   run ended before it had a summary; [`timeline`]: the run second by second, for the
//!   report, in flat memory; [`record`]: the run as the report and the metrics file see
//!   it; [`account`]: the account a run proves, shared by
//!   the run and the dry run.
//! - [`dry_run`]: `register --dry-run`, what a run would do, sending nothing.
//!
//! The run sits above the input, the results file and the API, and below the command line.

pub(crate) mod account;
pub(crate) mod config;
pub(crate) mod dispatch;
pub(crate) mod dry_run;
pub(crate) mod error;
pub(crate) mod fleets;
pub(crate) mod job;
pub(crate) mod lock;
pub(crate) mod onboard;
pub mod plan;
pub(crate) mod progress;
pub(crate) mod record;
pub(crate) mod registration;
pub(crate) mod resume;
pub(crate) mod sids;
pub(crate) mod stop;
pub(crate) mod summary;
pub(crate) mod timeline;
pub(crate) mod triage;
#[cfg(test)]
mod verdicts_test;
pub(crate) mod writer;
