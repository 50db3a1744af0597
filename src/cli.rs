//! The command line: every flag, its default and its help text (clap derive types only).
//!
//! Flags are turned into checked, plain values by `config`; nothing here does I/O. No flag
//! takes a secret: credentials come from the environment only, so they never sit in shell
//! history or in `ps` output.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::TargetStatus;
use crate::run::summary::MaxFailures;

const CREDENTIALS_HELP: &str = "\
Credentials (environment only, never flags):
  TWILIO_API_KEY + TWILIO_API_SECRET      an API key pair (wins when both pairs are set)
  TWILIO_ACCOUNT_SID + TWILIO_AUTH_TOKEN  the account's own pair
  TWILIO_REGION / TWILIO_EDGE             use https://supersim.{edge}.{region}.twilio.com
  --profile NAME (or TWILIO_PROFILE)      a twilio-cli profile instead; without either, the
                                          variables above, then twilio-cli's active profile";

const TOP_EXAMPLES: &str = "\
Examples:
  # Check a file, with no network
  supersim-bulk validate sims.csv
  # Rehearse against the built-in emulator (no account, no network)
  supersim-bulk register sims.csv --emulator
  # Register for real with a twilio-cli profile, assign a Fleet and activate
  supersim-bulk register sims.csv --profile field --fleet field-devices --activate
  # Compare a results file with the account
  supersim-bulk reconcile sims.results.csv";

#[derive(Debug, Parser)]
#[command(
    name = "supersim-bulk",
    version,
    about = "Register Twilio Super SIMs in bulk from a CSV, resumably, within the API's limits",
    after_help = format!("{}\n\n{TOP_EXAMPLES}", crate::exit::HELP),
    // A flag given twice takes its last value, so a wrapper's defaults can be overridden.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Logging")]
    pub(crate) verbose: u8,

    /// Only errors on stderr
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Logging"
    )]
    pub(crate) quiet: bool,

    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = "Logging")]
    pub(crate) log_format: LogFormat,

    /// Colour in logs and the progress bar: auto (on a terminal, unless NO_COLOR is set or
    /// TERM=dumb), always or never
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, help_heading = "Logging")]
    pub(crate) color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Register every SIM in a CSV of ICCIDs and registration codes; resumes from its results file
    #[command(after_help = format!("{CREDENTIALS_HELP}\n\n{}\n\n{REGISTER_EXAMPLES}", crate::exit::HELP))]
    Register(RegisterArgs),
    /// Serve the local Super SIM API emulator, for rehearsals and other tools
    #[command(after_help = EMULATOR_HELP)]
    Emulator(EmulatorArgs),
    /// Check a SIM CSV as register would, sending nothing: no network, no credentials
    #[command(
        after_help = format!("{VALIDATE_EXIT_HELP}\n\n{VALIDATE_EXAMPLES}"),
        mut_arg("failed_out", |arg| arg.help(VALIDATE_FAILED_OUT_HELP))
    )]
    Validate(ValidateArgs),
    /// List the account's Super SIMs as CSV (every page of GET /v1/Sims)
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Compare a results file with what the account holds, row by row
    #[command(after_help = RECONCILE_HELP)]
    Reconcile(ReconcileArgs),
    /// Check the set-up without a CSV: API, credentials, account, reachability, Fleets
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell) to stdout
    #[command(after_help = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout
    #[command(after_help = MAN_HELP)]
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// CSV of ICCIDs and registration codes (header row optional); `-` reads stdin
    pub(crate) input: PathBuf,

    /// Results CSV [default: the input's name with .results.csv, beside it]
    #[arg(short, long, value_name = "PATH")]
    pub(crate) output: Option<PathBuf>,

    /// Run against a built-in emulator on a free loopback port (no credentials, no network)
    #[arg(long, conflicts_with = "base_url")]
    pub(crate) emulator: bool,

    /// API base URL [env: SUPERSIM_BASE_URL]; plain http:// only for loopback hosts
    // The variable is read by `config`, not by clap, so an error names the one that was used.
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,

    /// Use this twilio-cli profile's credentials (from ~/.twilio-cli/config.json, or TWILIO_CONFIG_DIR); without it, the credential variables, then twilio-cli's active profile
    #[arg(short = 'p', long, value_name = "NAME", env = "TWILIO_PROFILE")]
    pub(crate) profile: Option<String>,

    /// Most requests in flight at once; the pool starts low and adapts below this to the account's limit (Twilio accounts commonly allow about 100)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Limits")]
    pub(crate) concurrency: u32,

    /// Most of the account's concurrency limit this run takes once it has found it, e.g. 50% to leave half to the account's other traffic [default: 100%: all that the other traffic the API reports leaves]
    #[arg(long, value_name = "PERCENT", value_parser = percent, help_heading = "Limits")]
    pub(crate) max_share: Option<f64>,

    /// Keep --concurrency fixed instead of adapting it to 429s
    #[arg(long, help_heading = "Limits")]
    pub(crate) no_adaptive: bool,

    /// Most requests per second, every attempt and lookup included [default: no cap; the account's concurrency limit sets the pace]
    #[arg(long, value_parser = rate, help_heading = "Limits")]
    pub(crate) rate: Option<f64>,

    /// Attempts per SIM before it is recorded as gave_up
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100), help_heading = "Limits")]
    pub(crate) max_attempts: u32,

    /// Time limit of one request, e.g. 30s or 1500ms
    #[arg(long, default_value = "30s", value_parser = request_timeout, help_heading = "Limits")]
    pub(crate) timeout: Duration,

    /// First retry waits up to this long; each further retry doubles it
    #[arg(long, default_value = "500ms", value_parser = backoff, help_heading = "Limits")]
    pub(crate) backoff_base: Duration,

    /// Longest wait between two attempts (a server's Retry-After can ask for more)
    #[arg(long, default_value = "30s", value_parser = backoff, help_heading = "Limits")]
    pub(crate) backoff_cap: Duration,

    /// Send again the SIMs an earlier run recorded as rejected
    #[arg(long)]
    pub(crate) retry_rejected: bool,

    /// Check the set-up and say what a run would do: the preflight, the Fleets and the
    /// plan, with no registration, no update and no results written
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// How often a plain progress line is logged when stderr is not a terminal
    #[arg(long, default_value = "10s", value_parser = progress_interval, help_heading = "Unattended runs")]
    pub(crate) progress_interval: Duration,

    /// After an interrupt, how long requests in flight may take to finish [default: --timeout]
    #[arg(long, value_parser = grace, value_name = "DURATION", help_heading = "Unattended runs")]
    pub(crate) grace: Option<Duration>,

    /// Write a JSON summary of the run here at the end (atomically), also on interrupt; `-` writes it to stdout (the summary then goes to stderr)
    #[arg(long, value_name = "PATH", help_heading = "Unattended runs")]
    pub(crate) summary_json: Option<PathBuf>,

    /// Write an HTML report of the run here at the end, also when it stops early: timeline charts (rows, requests, 429s, in-flight limit, other traffic, latency), outcomes and the rows that need a person; one self-contained file
    #[arg(long, value_name = "PATH", help_heading = "Unattended runs")]
    pub(crate) report: Option<PathBuf>,

    /// Write the run's metrics here at the end (atomically, also when it fails), in the Prometheus text format node_exporter's textfile collector reads
    #[arg(long, value_name = "FILE.prom", help_heading = "Unattended runs")]
    pub(crate) metrics_file: Option<PathBuf>,

    /// Stop taking new rows once more than N rows (or N% of rows, judged after 100) were refused for good
    #[arg(long, value_name = "N|N%", value_parser = max_failures, help_heading = "Unattended runs")]
    pub(crate) max_failures: Option<MaxFailures>,

    /// Assign every SIM to this Fleet (SID or unique name); a `fleet` input column overrides it per row
    #[arg(long, value_name = "HF...|NAME", value_parser = non_empty, help_heading = "Onboarding")]
    pub(crate) fleet: Option<String>,

    /// Set every SIM's status to active after registration (same as --status active; needs a Fleet)
    #[arg(long, conflicts_with = "status", help_heading = "Onboarding")]
    pub(crate) activate: bool,

    /// Set every SIM's status after registration (active needs a Fleet)
    #[arg(long, value_enum, help_heading = "Onboarding")]
    pub(crate) status: Option<TargetStatus>,

    /// Poll each updated SIM until it is no longer `scheduled`, and record its final status
    #[arg(long, help_heading = "Onboarding")]
    pub(crate) wait: bool,

    /// Longest time --wait polls one SIM before it is recorded as gave_up
    #[arg(long, default_value = "5m", value_parser = wait_timeout, help_heading = "Onboarding")]
    pub(crate) wait_timeout: Duration,

    #[command(flatten)]
    pub(crate) input_options: InputArgs,

    /// How the built-in emulator's account behaves (only with --emulator).
    #[command(flatten)]
    pub(crate) emulated_account: Box<EmulatedAccountArgs>,
}

fn max_failures(text: &str) -> Result<MaxFailures, String> {
    let invalid = || "must be a number of rows (50) or a percentage (5%)".to_string();
    match text.trim().strip_suffix('%') {
        Some(percent) => match percent.trim().parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxFailures::Percent(p)),
            _ => Err(invalid()),
        },
        None => text
            .trim()
            .parse()
            .map(MaxFailures::Count)
            .map_err(|_| invalid()),
    }
}

#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// TCP port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 8080)]
    pub(crate) port: u16,

    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) host: std::net::IpAddr,

    #[command(flatten)]
    pub(crate) account: EmulatedAccountArgs,

    /// Share of registrations (0 to 1) that meet an injected fault: 5xx, an HTML 502, a slow or lost response
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub(crate) fail_rate: f64,

    /// Seed for fault injection and SIDs, so a rehearsal can be repeated exactly
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,

    /// Also create a Fleet with this unique name (repeatable); its SID is listed at start-up
    #[arg(long = "fleet", value_name = "NAME", value_parser = non_empty)]
    pub(crate) fleets: Vec<String>,

    /// How long an accepted status change stays `scheduled` before it takes effect
    #[arg(long, default_value = "2s", value_parser = update_delay)]
    pub(crate) update_delay: Duration,

    /// Keep the account's SIMs in this file across runs (created at the first change if missing)
    #[arg(long, value_name = "FILE")]
    pub(crate) state: Option<PathBuf>,
}

/// How the emulated account behaves: its concurrency limit, latency and other traffic, and
/// the conventions of the `Twilio-Concurrent-Requests` header that Twilio's documentation
/// leaves open. Flags of `emulator`, and of `register` with `--emulator`; each is unset
/// unless given, so `register` can tell that one was given without `--emulator`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct EmulatedAccountArgs {
    /// Delay added to every response, its mean whatever the distribution, e.g. 100ms [default: 0ms]
    #[arg(long, value_parser = latency, help_heading = EMULATED_ACCOUNT)]
    pub(crate) latency: Option<Duration>,

    /// Answer 429 (Twilio error 20429) when more requests than this are in flight on the account
    #[arg(long, value_name = "N", value_parser = max_concurrent, help_heading = EMULATED_ACCOUNT)]
    pub(crate) max_concurrent: Option<usize>,

    /// Change the concurrency limit on a schedule, counted from the first API request, e.g. `5s=8,12s=25`
    #[arg(long, value_name = "AT=LIMIT,...", value_parser = limit_schedule, help_heading = EMULATED_ACCOUNT)]
    pub(crate) limit_schedule: Option<LimitSchedule>,

    /// Spread each request's latency uniformly by this share either way (0 to 1), e.g. 0.2 for ±20% [default: 0]
    #[arg(long, value_parser = fraction, help_heading = EMULATED_ACCOUNT)]
    pub(crate) latency_jitter: Option<f64>,

    /// A network round trip between client and account on top of --latency, e.g. 40ms: a slot an answer frees stays free that long before the client's next request can take it [default: 0ms]
    #[arg(long, value_parser = latency, help_heading = EMULATED_ACCOUNT)]
    pub(crate) network_delay: Option<Duration>,

    /// How latency is drawn: uniform (with --latency-jitter) or long-tail (lognormal, 99th percentile 5x the median) [default: uniform]
    #[arg(long, value_name = "SHAPE", help_heading = EMULATED_ACCOUNT)]
    pub(crate) latency_distribution: Option<LatencyDistributionArg>,

    /// Another app on the same account: this many requests per second of its own, each holding a slot of the limit for --other-latency; its 429s are counted in the stats [default: 0]
    #[arg(long, value_parser = non_negative_rate, help_heading = EMULATED_ACCOUNT)]
    pub(crate) other_rate: Option<f64>,

    /// How long each of the other app's requests holds its slot, on average [default: 100ms]
    #[arg(long, value_parser = latency, help_heading = EMULATED_ACCOUNT)]
    pub(crate) other_latency: Option<Duration>,

    /// How the other app's requests arrive: regular (evenly spaced) or poisson (at random) [default: regular]
    #[arg(long, value_name = "HOW", help_heading = EMULATED_ACCOUNT)]
    pub(crate) other_arrivals: Option<ArrivalsArg>,

    /// Which answers carry the Twilio-Concurrent-Requests header (Twilio documents it as "may") [default: every]
    #[arg(long, value_name = "WHICH", conflicts_with = "no_concurrency_header", help_heading = EMULATED_ACCOUNT)]
    pub(crate) concurrency_header: Option<HeaderArg>,

    /// Leave out the Twilio-Concurrent-Requests header: the same as --concurrency-header never
    #[arg(long, help_heading = EMULATED_ACCOUNT)]
    pub(crate) no_concurrency_header: bool,

    /// A 429's Twilio-Concurrent-Requests count leaves out the refused request (by default it includes it)
    #[arg(long, help_heading = EMULATED_ACCOUNT)]
    pub(crate) header_leaves_out_refused: bool,

    /// An admitted answer's Twilio-Concurrent-Requests count is the account's as the request was admitted (by default, as it is answered)
    #[arg(long, help_heading = EMULATED_ACCOUNT)]
    pub(crate) header_counted_at_admission: bool,

    /// The limit's 429s carry Retry-After with this many seconds [default: none]
    #[arg(long, value_name = "SECONDS", help_heading = EMULATED_ACCOUNT)]
    pub(crate) limit_retry_after: Option<u64>,

    /// The limit's 429s come back after this long, e.g. 30ms; the refused request holds no slot meanwhile [default: 0ms]
    #[arg(long, value_parser = latency, help_heading = EMULATED_ACCOUNT)]
    pub(crate) limit_latency: Option<Duration>,
}

const EMULATED_ACCOUNT: &str = "Emulated account (emulator, register --emulator)";

impl EmulatedAccountArgs {
    /// The first of these flags given, to name when it cannot be used.
    pub(crate) fn first_given(&self) -> Option<&'static str> {
        [
            (self.latency.is_some(), "--latency"),
            (self.max_concurrent.is_some(), "--max-concurrent"),
            (self.limit_schedule.is_some(), "--limit-schedule"),
            (self.latency_jitter.is_some(), "--latency-jitter"),
            (self.network_delay.is_some(), "--network-delay"),
            (
                self.latency_distribution.is_some(),
                "--latency-distribution",
            ),
            (self.other_rate.is_some(), "--other-rate"),
            (self.other_latency.is_some(), "--other-latency"),
            (self.other_arrivals.is_some(), "--other-arrivals"),
            (self.concurrency_header.is_some(), "--concurrency-header"),
            (self.no_concurrency_header, "--no-concurrency-header"),
            (
                self.header_leaves_out_refused,
                "--header-leaves-out-refused",
            ),
            (
                self.header_counted_at_admission,
                "--header-counted-at-admission",
            ),
            (self.limit_retry_after.is_some(), "--limit-retry-after"),
            (self.limit_latency.is_some(), "--limit-latency"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// `--concurrency-header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HeaderArg {
    /// On every answer
    Every,
    /// On 429 answers only
    #[value(name = "on-429")]
    On429,
    /// On no answer
    Never,
}

/// `--latency-distribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LatencyDistributionArg {
    /// Uniform, spread by --latency-jitter
    Uniform,
    /// Lognormal: 99th percentile five times the median
    LongTail,
}

/// `--other-arrivals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ArrivalsArg {
    /// Evenly spaced
    Regular,
    /// A Poisson stream (seeded by --seed with `emulator`)
    Poisson,
}

const VALIDATE_EXIT_HELP: &str = "\
Exit codes:
  0  every row would be sent (repeated ICCIDs aside)
  1  some rows are invalid (listed as `line N: column: reason`)
  2  the file cannot be read as a SIM list (the message names the fix)";

/// How the input is read and checked; the same for `register` and `validate`.
#[derive(Debug, Args)]
pub(crate) struct InputArgs {
    /// Field delimiter: `,` `;` `|` `tab`, or another single character [default: detected from the header line]
    #[arg(long, value_name = "CHAR", value_parser = delimiter, help_heading = "Input")]
    pub(crate) delimiter: Option<u8>,

    /// The file has no header row: columns are ICCID, registration code, then anything
    #[arg(long, help_heading = "Input")]
    pub(crate) no_header: bool,

    /// Count warnings (Luhn check digit, unknown ICCID prefix, lowercase code) as invalid
    #[arg(long, help_heading = "Input")]
    pub(crate) strict: bool,

    /// Write the input rows that failed (invalid, rejected, gave_up) to PATH, in the input's columns plus `reason`; created owner-only (0600) as it holds registration codes
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub(crate) failed_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// CSV of ICCIDs and registration codes; `-` reads stdin
    pub(crate) input: PathBuf,

    /// List every problem, not only the first 50
    #[arg(long)]
    pub(crate) all: bool,

    #[command(flatten)]
    pub(crate) input_options: InputArgs,
}

const REGISTER_EXAMPLES: &str = "\
Examples:
  # Rehearse against the built-in emulator (no account, no network)
  supersim-bulk register sims.csv --emulator
  # Register for real, assign a Fleet and activate, waiting for each SIM to settle
  supersim-bulk register sims.csv --fleet field-devices --activate --wait
  # From cron: keep the log, write a summary for monitoring
  supersim-bulk register /data/sims.csv --summary-json /data/last-run.json >> register.log 2>&1";

const EMULATOR_HELP: &str = "\
Credentials accepted: TWILIO_API_KEY + TWILIO_API_SECRET and TWILIO_ACCOUNT_SID +
TWILIO_AUTH_TOKEN when set in the emulator's environment (each pair only when both halves
are set), otherwise the fixed test pair AC00000000000000000000000000000000 /
emulator-test-token.

Examples:
  # Serve on port 8080 with the test pair, and point a run at it
  supersim-bulk emulator
  TWILIO_ACCOUNT_SID=AC00000000000000000000000000000000 TWILIO_AUTH_TOKEN=emulator-test-token \\
    supersim-bulk register sims.csv --base-url http://127.0.0.1:8080
  # Rehearse a bad day: 10% faults, 200ms latency, the account's limit at 20 in flight
  supersim-bulk emulator --fail-rate 0.1 --latency 200ms --max-concurrent 20";

const VALIDATE_FAILED_OUT_HELP: &str = "Write the input rows that are invalid to PATH, in the input's columns plus `reason`; created owner-only (0600) as it holds registration codes. Never the input, and only a regular file or a new path is replaced";

const VALIDATE_EXAMPLES: &str = "\
Examples:
  # Check a supplier's file before a run
  supersim-bulk validate sims.csv
  # Copy the invalid rows out for fixing, with the reason of each
  supersim-bulk validate sims.csv --failed-out fix.csv
  # A semicolon-separated file without a header row, warnings counted as invalid
  supersim-bulk validate sims.csv --delimiter ';' --no-header --strict";

const EXPORT_HELP: &str = "\
Columns: sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid

Exit codes:
  0  every page was read and written
  2  usage, configuration or API error (nothing is left at -o FILE)

Examples:
  # Every SIM on the account, to a file
  supersim-bulk export -o account.csv
  # The active SIMs of one Fleet, to stdout
  supersim-bulk export --status active --fleet field-devices
  # What a rehearsal emulator holds
  supersim-bulk export --base-url http://127.0.0.1:8080
  # What a rehearsal with --emulator left, as JSON Lines for jq
  supersim-bulk export --emulator --state sims.emulator.results.state.jsonl --format json";

const CHECK_HELP: &str = "\
Exit codes (the ones register would give for the same set-up):
  0   the API answers, the credentials are accepted, the Fleets are listed
  2   a set-up mistake: no or refused credentials, a base URL that is not the API,
      TWILIO_ACCOUNT_SID naming another account than the credentials'
  75  the API cannot be reached now (DNS, connection, TLS, timeout): try again later

Examples:
  # Before the first run, or in a monitoring probe
  supersim-bulk check
  # With a twilio-cli profile
  supersim-bulk check --profile field
  # Against an edge location (TWILIO_EDGE and TWILIO_REGION name it too)
  supersim-bulk check --base-url https://supersim.dublin.ie1.twilio.com";

const RECONCILE_HELP: &str = "\
Exit codes:
  0  every SIM in the file is on the account as the file says
  1  something differs: a status, Fleet or name, a SIM missing from the account,
     or (with --all, or --fleet) a SIM on the account (in that Fleet) that the file
     does not mention
  2  usage, configuration or API error

Examples:
  # After a run: is every SIM the results file lists on the account as recorded?
  supersim-bulk reconcile sims.results.csv
  # Also list the SIMs on the account that the file does not mention
  supersim-bulk reconcile sims.results.csv --all
  # On a shared account: only this Fleet's SIMs count as extra; JSON Lines for jq
  supersim-bulk reconcile sims.results.csv --fleet field-devices --format json
  # Against a rehearsal emulator, listing the matches as well
  supersim-bulk reconcile sims.results.csv --base-url http://127.0.0.1:8080 --matches";

const COMPLETIONS_HELP: &str = "\
Examples:
  supersim-bulk completions bash > ~/.local/share/bash-completion/completions/supersim-bulk
  supersim-bulk completions zsh > ~/.zfunc/_supersim-bulk
  supersim-bulk completions fish > ~/.config/fish/completions/supersim-bulk.fish";

const MAN_HELP: &str = "\
Examples:
  supersim-bulk man > ~/.local/share/man/man1/supersim-bulk.1 && man supersim-bulk
  supersim-bulk man | man -l -";

/// Where `export` and `reconcile` read the account from, and within which limits.
#[derive(Debug, Args)]
pub(crate) struct AccountArgs {
    /// Run against a built-in emulator on a free loopback port (it starts empty, unless --state names a journal)
    #[arg(long, conflicts_with = "base_url")]
    pub(crate) emulator: bool,

    /// With --emulator: the emulated account is the one this state journal holds (a rehearsal's `<results stem>.state.jsonl`, or one `emulator --state` wrote); it is only read
    #[arg(long, value_name = "FILE", requires = "emulator")]
    pub(crate) state: Option<PathBuf>,

    /// API base URL [env: SUPERSIM_BASE_URL]; plain http:// only for loopback hosts
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,

    /// Use this twilio-cli profile's credentials (from ~/.twilio-cli/config.json, or TWILIO_CONFIG_DIR); without it, the credential variables, then twilio-cli's active profile
    #[arg(short = 'p', long, value_name = "NAME", env = "TWILIO_PROFILE")]
    pub(crate) profile: Option<String>,

    /// Most requests per second
    #[arg(long, default_value_t = 25.0, value_parser = rate, help_heading = "Limits")]
    pub(crate) rate: f64,

    /// Attempts per page before giving up
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100), help_heading = "Limits")]
    pub(crate) max_attempts: u32,

    /// Time limit of one request, e.g. 30s or 1500ms
    #[arg(long, default_value = "30s", value_parser = request_timeout, help_heading = "Limits")]
    pub(crate) timeout: Duration,

    /// SIMs asked for per page (1 to 1000)
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Limits")]
    pub(crate) page_size: u32,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Only SIMs with this status
    #[arg(long, value_enum)]
    pub(crate) status: Option<SimStatusFilter>,

    /// Only SIMs in this Fleet (SID or unique name)
    #[arg(long, value_name = "HF...|NAME", value_parser = non_empty)]
    pub(crate) fleet: Option<String>,

    /// Write the export here (atomically, replacing an earlier export) instead of to stdout
    #[arg(short, long, value_name = "PATH")]
    pub(crate) output: Option<PathBuf>,

    /// csv, or json: JSON Lines, one object per SIM with the CSV's columns as keys
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub(crate) format: ExportFormat,

    #[command(flatten)]
    pub(crate) account: AccountArgs,
}

/// How `export` writes the SIMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Csv,
    /// JSON Lines: one object per SIM, as it arrives.
    Json,
}

/// How `reconcile` writes its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Text,
    /// JSON Lines: one object per SIM listed, then `{"summary": {...}}`.
    Json,
}

/// The statuses a SIM can have, for `export --status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SimStatusFilter {
    New,
    Ready,
    Active,
    Inactive,
    Scheduled,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) account: AccountArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReconcileArgs {
    /// A results file written by register (or a CSV written by export)
    pub(crate) results: PathBuf,

    /// Also report the SIMs on the account that the file does not mention
    #[arg(long)]
    pub(crate) all: bool,

    /// Also list the rows that match, not only the differences
    #[arg(long)]
    pub(crate) matches: bool,

    /// Report as extra the SIMs in this Fleet (SID or unique name) that the file does not mention, not the whole account's
    #[arg(long, value_name = "HF...|NAME", value_parser = non_empty)]
    pub(crate) fleet: Option<String>,

    /// text, or json: JSON Lines, one object per SIM listed, then one with the summary
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub(crate) format: ReportFormat,

    #[command(flatten)]
    pub(crate) account: AccountArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

fn delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        "comma" => Ok(b','),
        "semicolon" => Ok(b';'),
        "pipe" => Ok(b'|'),
        _ => match text.as_bytes() {
            [byte] if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => Ok(*byte),
            _ => {
                Err("must be one ASCII character other than a quote or a line end, or `tab`".into())
            }
        },
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A duration from `min` to `max`, both inclusive. Durations are bounded so that none can
/// overflow a clock (`500000000000y` parses) and none makes a run meaningless (a zero
/// request timeout fails every request).
fn duration_in(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let range = || format!("must be from {} to {}", shown(min), shown(max));
    match humantime::parse_duration(text) {
        Ok(d) if (min..=max).contains(&d) => Ok(d),
        Ok(_) => Err(format!("{} (examples: 30s, 1500ms, 2m)", range())),
        Err(humantime::DurationError::NumberOverflow) => Err(range()),
        Err(e) => Err(format!(
            "{e}; a duration {} (examples: 30s, 1500ms, 2m)",
            range()
        )),
    }
}

/// `d` as a short duration word: `0s`, `1ms`, `1h`, `24h`.
fn shown(d: Duration) -> String {
    match (d.as_secs(), d.subsec_millis()) {
        (0, 0) => "0s".to_string(),
        (secs, 0) if secs % 3600 == 0 => format!("{}h", secs / 3600),
        (secs, 0) => format!("{secs}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// `--timeout`: one request's time limit; zero would fail every request.
fn request_timeout(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::from_millis(1), HOUR)
}

/// `--backoff-base`, `--backoff-cap`: zero retries at once, still within `--rate`.
fn backoff(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::ZERO, HOUR)
}

/// `--progress-interval`: zero would log without pause.
fn progress_interval(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::from_millis(1), DAY)
}

/// `--grace`: zero stops at once on an interrupt.
fn grace(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::ZERO, DAY)
}

/// `--wait-timeout`: zero would give up on every scheduled SIM before its first poll.
fn wait_timeout(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::from_millis(1), DAY)
}

/// `emulator --latency`.
fn latency(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::ZERO, HOUR)
}

/// `emulator --update-delay`.
fn update_delay(text: &str) -> Result<Duration, String> {
    duration_in(text, Duration::ZERO, DAY)
}

/// `emulator --max-concurrent`: zero would answer every request with a 429.
fn max_concurrent(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("must be a number of requests from 1 to 1000000".to_string()),
    }
}

fn non_empty(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(text.to_string())
    }
}

/// `--rate`: requests per second. Below one request every 1000 seconds a run is not
/// meaningful (and the limiter could not represent it).
fn rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (0.001..=1_000_000.0).contains(&rate) => Ok(rate),
        _ => Err("must be a number of requests per second from 0.001 to 1000000".to_string()),
    }
}

fn non_negative_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err("must be a number of requests per second, 0 or more".to_string()),
    }
}

/// The emulator's `--limit-schedule`: (from, limit) steps in time order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LimitSchedule(pub Vec<(Duration, usize)>);

/// `5s=8,12s=25`: from 5 s the limit is 8, from 12 s it is 25.
fn limit_schedule(text: &str) -> Result<LimitSchedule, String> {
    let mut steps = Vec::new();
    for step in text.split(',') {
        let (at, limit) = step
            .split_once('=')
            .ok_or_else(|| format!("`{step}`: expected AT=LIMIT, e.g. 5s=8"))?;
        let at = duration_in(at.trim(), Duration::ZERO, 24 * HOUR)?;
        let limit: usize = limit
            .trim()
            .parse()
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| format!("`{step}`: the limit must be a whole number above 0"))?;
        steps.push((at, limit));
    }
    steps.sort_by_key(|&(at, _)| at);
    Ok(LimitSchedule(steps))
}

/// `50%`, `50` or `0.5`: a share from above 0 up to 1.
fn percent(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let (number, is_percent) = match trimmed.strip_suffix('%') {
        Some(number) => (number.trim(), true),
        None => (trimmed, false),
    };
    let value = number.parse::<f64>().ok().filter(|v| v.is_finite());
    let share = match value {
        Some(v) if is_percent || v > 1.0 => v / 100.0,
        Some(v) => v,
        None => return Err("must be a percentage such as 50% (above 0, at most 100%)".into()),
    };
    if share > 0.0 && share <= 1.0 {
        Ok(share)
    } else {
        Err("must be a percentage above 0 and at most 100%".to_string())
    }
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("must be a number from 0 to 1".to_string()),
    }
}

#[cfg(test)]
mod tests;
