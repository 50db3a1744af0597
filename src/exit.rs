//! The process exit codes: the contract that wrapper scripts and cron jobs branch on.
//!
//! They are listed in `--help` and in docs/reference.md; change them only by adding new ones.
//! A code describes this run: the rows it finished, not rows an earlier run left failed in
//! the results file (those are in the summary).
//! Why a started run stopped maps to one of them in one place,
//! [`crate::run::stop::EndReason::ending`]; a panic never leaves with Rust's own 101.

/// Every row this run finished ended `registered` or `already_registered` (repeated ICCIDs
/// aside).
pub(crate) const SUCCESS: u8 = 0;
/// The run finished and some rows it finished are `rejected`, `invalid` or `update_failed`,
/// or `--max-failures` stopped it: a person has to look at them.
pub(crate) const ROWS_FAILED: u8 = 1;
/// Usage, configuration or input-file error, or the API refused the credentials.
pub const USAGE_OR_CONFIG: u8 = 2;
/// Nothing was refused for good, but some rows `gave_up` on transient errors; the API could
/// not be reached; the input changed under the run; the results file could not be written
/// (a full disk, an I/O error); or another run holds the results file: run again later.
pub(crate) const TEMPORARY_FAILURE: u8 = 75;
/// An internal error (a bug): a row's work, the reader or the writer failed unexpectedly.
/// The rows concerned are left unfinished, so the next run tries them again; please report it.
pub const INTERNAL_ERROR: u8 = 70;
/// Interrupted (Ctrl-C, SIGTERM or SIGHUP) after the rows in flight were written; run again
/// to resume.
pub(crate) const INTERRUPTED: u8 = 130;

/// The text `--help` shows after the flags.
pub(crate) const HELP: &str = "\
Exit codes:
  0    every row this run finished ended registered or already_registered
  1    the run finished; some rows it finished are rejected, invalid or
       update_failed (see the results file),
       or --max-failures stopped it (end: max_failures)
  2    usage, configuration or input-file error (end: error), credentials refused
       (end: error at the start, credentials_refused once the run has started),
       or the URL is not the API (end: wrong_endpoint)
  75   run again later: some rows gave_up, the API was unreachable (end: unreachable),
       the input changed (end: input_changed), the results file could not be written,
       as on a full disk (end: writer_failed), or another run holds its lock
  70   internal error (a bug; end: internal_error): rows left unfinished for the next run
  130  interrupted; rows in flight were written: run again to resume
       (Ctrl-C, SIGTERM or SIGHUP; end: interrupted)";

/// What `code` means, in a few words, for the report and the metrics' readers.
pub(crate) fn meaning(code: u8) -> &'static str {
    match code {
        SUCCESS => "every row finished registered or already registered",
        ROWS_FAILED => {
            "some rows were refused and need a person (or --max-failures stopped the run)"
        }
        USAGE_OR_CONFIG => "usage, configuration or input error, or the credentials were refused",
        TEMPORARY_FAILURE => {
            "run again later: rows gave up, the API was unreachable, or a file could not be written"
        }
        INTERNAL_ERROR => "internal error (a bug): rows were left for the next run",
        INTERRUPTED => "interrupted: run the same command again to resume",
        _ => "not an exit code of this tool",
    }
}
