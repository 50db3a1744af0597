//! supersim-bulk registers Twilio Super SIMs in bulk: it streams a CSV of ICCIDs and
//! registration codes through a rate- and concurrency-limited pool of workers that call
//! the Super SIM API with retries, and writes a results CSV that a later run resumes from.
//!
//! # Layout
//! Folders follow the architecture; each folder's `mod.rs` says what it owns. Doors open one
//! way: a layer imports the ones below it, never the ones above, and no two files import
//! each other. A folder's `mod.rs` declares its files and re-exports what the layers above
//! use; its files import their siblings by name. Where a `mod.rs` also defines the folder's
//! shared vocabulary (`results/`: the columns and outcome words; `input/`: the row and its
//! source), its files import that from it, and it imports nothing of theirs but the
//! re-exports. Items are `pub(crate)` unless an integration test, a benchmark or `main.rs`
//! needs them, so the dead-code lint sees the whole crate; `emulator` is public, since tests
//! start it as a library.
//!
//! - [`secret`], [`exit`], [`extsort`], [`paths`], [`logs`], [`signals`]: the secret types
//!   that never print, the exit codes, the external sort that keeps planning and compaction
//!   flat in memory, files compared by identity (device and inode, or real path) and opened
//!   without following a planted symlink, how this process logs (JSON or text, colour or
//!   not, never failing on a closed stderr), and the signals that stop it.
//! - [`input`]: reading the CSV (framing, sniffing, the reader), the ICCID and code checks,
//!   the per-row screen, and the failed-out file. No network.
//! - [`results`]: the results file: its columns and outcome words, the append-only writer,
//!   reading back what earlier runs wrote, and compaction when a run ends.
//! - [`api`]: the HTTP client, Twilio error classification, retry and backoff, the adaptive
//!   in-flight limit, the gate every request passes, and the preflight.
//! - [`run`]: the `register` job: the plan (dedupe and resume, on disk), the Fleets resolved
//!   before anything is sent, per-SIM registration and onboarding, the one writer, the
//!   lock, progress, the summary, and the dry run.
//! - [`emulator`]: a local Super SIM API for rehearsals and tests; it imports nothing else.
//! - [`commands`]: thin entry points for `register`, `validate`, `export`, `reconcile`, `check`,
//!   `emulator`, `completions` and `man`, and connecting to the account; [`report`] and
//!   [`metrics`]: the HTML report and the Prometheus metrics file a run writes at its end,
//!   above [`run`], whose record of the run they read; [`cli`]: the
//!   clap types; [`config`]: flags and environment resolved into a checked run
//!   configuration before any I/O, with [`profiles`]: twilio-cli's profiles as a source of
//!   credentials; [`app`]: logging, the stop token, and dispatch to the commands.
//!
//! Where a change belongs: the retry loop in `api/retry.rs` (its hooks beside each request),
//! backoff in `api/backoff.rs`, CSV reading in `input/`, the results file in `results/`,
//! the emulator in `emulator/`.

// These docs are for people working on the tool, read with `--document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod api;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod emulator;
pub mod exit;
pub mod extsort;
pub mod logs;
pub mod metrics;
pub mod paths;
pub mod profiles;
pub mod report;
pub mod signals;

pub mod input;
pub mod results;
pub mod run;

pub mod secret;
