//! supersim-bulk registers Twilio Super SIMs in bulk: it streams a CSV of ICCIDs and
//! registration codes through a rate- and concurrency-limited pool of workers that call
//! the Super SIM API with retries, and writes a results CSV that a later run resumes from.
//!
//! # Layout
//! - [`app`]: logging, signals and exit codes around the jobs.
//! - [`cli`]: the command line (clap types); [`config`]: flags and environment resolved
//!   into checked values before any I/O.
//! - [`input`]: the streaming CSV reader; [`validate`]: pure ICCID and code checks;
//!   [`screen`]: checks and dedupe per row, shared by `register` and `validate`;
//!   [`report`]: the `validate` command; [`failed_out`]: the fix-and-refeed file.
//! - [`plan`]: which rows repeat an earlier one and what earlier runs recorded, worked out
//!   on disk before the main pass so memory stays flat; [`extsort`]: its external sort.
//! - [`api`]: the Super SIM HTTP client and Twilio error classification; [`retry`]: backoff
//!   and the pool-wide pause after a 429; [`adaptive`]: the in-flight limit that adapts to
//!   the account's concurrency limit.
//! - [`pool`]: registers one SIM within the run's limits; [`onboard`]: the steps after
//!   registration (Fleet, status, UniqueName, waiting) and resuming per step.
//! - [`results`]: the results CSV, its writer and the stream of earlier rows; [`lock`]: one
//!   run at a time per results file.
//! - [`register`]: the `register` job, wiring reader, pool and writer together.
//! - [`progress`]: the live progress display; [`summary`]: how a run ended, its summary
//!   and exit code; [`exit`]: the exit codes.
//! - [`emulator`]: a local Super SIM API for rehearsals and tests.

pub mod api;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod emulator;
pub mod exit;

pub mod input;
pub mod results;
pub mod run;

pub mod secret;
