//! The process exit codes: the contract that wrapper scripts and cron jobs branch on.
//!
//! They are listed in `--help` and in docs/reference.md; change them only by adding new ones.

/// Every input row ended `registered` or `already_registered` (repeated ICCIDs aside).
pub const SUCCESS: u8 = 0;
/// The run finished and some rows are `rejected` or `invalid`: a person has to look at them.
pub const ROWS_FAILED: u8 = 1;
/// Usage, configuration or input-file error, or the API refused the credentials.
pub const USAGE_OR_CONFIG: u8 = 2;
/// Nothing was refused for good, but some rows `gave_up` on transient errors, or another run
/// holds the results file: run again later.
pub const TEMPORARY_FAILURE: u8 = 75;
/// An internal error (a bug): a row's work failed unexpectedly. Its row is left unfinished,
/// so the next run tries it again; please report it.
pub const INTERNAL_ERROR: u8 = 70;
/// Interrupted (Ctrl-C or SIGTERM) after the rows in flight were written; run again to resume.
pub const INTERRUPTED: u8 = 130;

/// The text `--help` shows after the flags.
pub const HELP: &str = "\
Exit codes:
  0    every input row ended registered or already_registered
  1    the run finished; some rows are rejected or invalid (see the results file),
       or --max-failures stopped it
  2    usage, configuration or input-file error, or credentials refused
  75   nothing was refused for good, but some rows gave_up: run again later to resume;
       or another run holds the results file's lock
  70   internal error (a bug): some rows were left unfinished for the next run
  130  interrupted; rows in flight were written: run again to resume";
