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
  TWILIO_REGION / TWILIO_EDGE             use https://supersim.{edge}.{region}.twilio.com";

#[derive(Debug, Parser)]
#[command(
    name = "supersim-bulk",
    version,
    about = "Register Twilio Super SIMs in bulk from a CSV, resumably, within the API's limits",
    after_help = crate::exit::HELP,
    // A flag given twice takes its last value, so a wrapper's defaults can be overridden.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Logging")]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Logging"
    )]
    pub quiet: bool,

    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = "Logging")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register every SIM in a CSV of ICCIDs and registration codes; resumes from its results file
    #[command(after_help = format!("{CREDENTIALS_HELP}\n\n{}", crate::exit::HELP))]
    Register(RegisterArgs),
    /// Serve the local Super SIM API emulator, for rehearsals and other tools
    Emulator(EmulatorArgs),
    /// Check a SIM CSV as register would, sending nothing: no network, no credentials
    #[command(after_help = VALIDATE_EXIT_HELP)]
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// CSV of ICCIDs and registration codes (header row optional); `-` reads stdin
    pub input: PathBuf,

    /// Results CSV [default: the input's name with .results.csv, beside it]
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Run against a built-in emulator on a free loopback port (no credentials, no network)
    #[arg(long, conflicts_with = "base_url")]
    pub emulator: bool,

    /// API base URL; plain http:// only for loopback hosts
    #[arg(
        long,
        env = "SUPERSIM_BASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub base_url: Option<String>,

    /// Most requests in flight at once; the pool starts low and adapts below this to the account's limit (Twilio accounts commonly allow about 100)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "Limits")]
    pub concurrency: u32,

    /// Most of the account's concurrency limit this run takes once it has found it, e.g. 50% to leave half to the account's other traffic [default: 100%: all that the other traffic the API reports leaves]
    #[arg(long, value_name = "PERCENT", value_parser = percent, help_heading = "Limits")]
    pub max_share: Option<f64>,

    /// Keep --concurrency fixed instead of adapting it to 429s
    #[arg(long, help_heading = "Limits")]
    pub no_adaptive: bool,

    /// Most requests per second, every attempt and lookup included [default: no cap; the account's concurrency limit sets the pace]
    #[arg(long, value_parser = positive_rate, help_heading = "Limits")]
    pub rate: Option<f64>,

    /// Attempts per SIM before it is recorded as gave_up
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100), help_heading = "Limits")]
    pub max_attempts: u32,

    /// Time limit of one request, e.g. 30s or 1500ms
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = "Limits")]
    pub timeout: Duration,

    /// First retry waits up to this long; each further retry doubles it
    #[arg(long, default_value = "500ms", value_parser = duration, help_heading = "Limits")]
    pub backoff_base: Duration,

    /// Longest wait between two attempts (a server's Retry-After can ask for more)
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = "Limits")]
    pub backoff_cap: Duration,

    /// Send again the SIMs an earlier run recorded as rejected
    #[arg(long)]
    pub retry_rejected: bool,

    /// How often a plain progress line is logged when stderr is not a terminal
    #[arg(long, default_value = "10s", value_parser = duration, help_heading = "Unattended runs")]
    pub progress_interval: Duration,

    /// After an interrupt, how long requests in flight may take to finish [default: --timeout]
    #[arg(long, value_parser = duration, value_name = "DURATION", help_heading = "Unattended runs")]
    pub grace: Option<Duration>,

    /// Write a JSON summary of the run here at the end (atomically), also on interrupt
    #[arg(long, value_name = "PATH", help_heading = "Unattended runs")]
    pub summary_json: Option<PathBuf>,

    /// Stop taking new rows once more than N rows (or N% of rows, judged after 100) were refused for good
    #[arg(long, value_name = "N|N%", value_parser = max_failures, help_heading = "Unattended runs")]
    pub max_failures: Option<MaxFailures>,

    /// Assign every SIM to this Fleet (SID or unique name); a `fleet` input column overrides it per row
    #[arg(long, value_name = "HF...|NAME", value_parser = non_empty, help_heading = "Onboarding")]
    pub fleet: Option<String>,

    /// Set every SIM's status to active after registration (same as --status active; needs a Fleet)
    #[arg(long, conflicts_with = "status", help_heading = "Onboarding")]
    pub activate: bool,

    /// Set every SIM's status after registration (active needs a Fleet)
    #[arg(long, value_enum, help_heading = "Onboarding")]
    pub status: Option<TargetStatus>,

    /// Poll each updated SIM until it is no longer `scheduled`, and record its final status
    #[arg(long, help_heading = "Onboarding")]
    pub wait: bool,

    /// Longest time --wait polls one SIM before it is recorded as gave_up
    #[arg(long, default_value = "5m", value_parser = duration, help_heading = "Onboarding")]
    pub wait_timeout: Duration,

    #[command(flatten)]
    pub input_options: InputArgs,
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
pub struct EmulatorArgs {
    /// TCP port to listen on (0 picks a free one)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,

    /// Delay added to every response, e.g. 100ms
    #[arg(long, default_value = "0ms", value_parser = duration)]
    pub latency: Duration,

    /// Answer 429 (Twilio error 20429) when more requests than this are in flight on the account
    #[arg(long)]
    pub max_concurrent: Option<usize>,

    /// Change the concurrency limit on a schedule, counted from the first API request, e.g. `5s=8,12s=25`
    #[arg(long, value_name = "AT=LIMIT,...", value_parser = limit_schedule)]
    pub limit_schedule: Option<LimitSchedule>,

    /// Spread each request's latency uniformly by this share either way (0 to 1), e.g. 0.2 for ±20%
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub latency_jitter: f64,

    /// Another app on the same account: this many requests per second of its own, each holding a slot of the limit for --other-latency (with --latency-jitter); its 429s are counted in the stats
    #[arg(long, default_value_t = 0.0, value_parser = non_negative_rate)]
    pub other_rate: f64,

    /// How long each of the other app's requests holds its slot
    #[arg(long, default_value = "100ms", value_parser = duration)]
    pub other_latency: Duration,

    /// Leave out the Twilio-Concurrent-Requests header (Twilio documents it as "may")
    #[arg(long)]
    pub no_concurrency_header: bool,

    /// Share of registrations (0 to 1) that meet an injected fault: 5xx, an HTML 502, a slow or lost response
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    pub fail_rate: f64,

    /// Seed for fault injection and SIDs, so a rehearsal can be repeated exactly
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Also create a Fleet with this unique name (repeatable); its SID is listed at start-up
    #[arg(long = "fleet", value_name = "NAME", value_parser = non_empty)]
    pub fleets: Vec<String>,

    /// How long an accepted status change stays `scheduled` before it takes effect
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub update_delay: Duration,
}

const VALIDATE_EXIT_HELP: &str = "\
Exit codes:
  0  every row would be sent (repeated ICCIDs aside)
  1  some rows are invalid (listed as `line N: column: reason`)
  2  the file cannot be read as a SIM list (the message names the fix)";

/// How the input is read and checked; the same for `register` and `validate`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Field delimiter: `,` `;` `|` `tab`, or another single character [default: detected from the header line]
    #[arg(long, value_name = "CHAR", value_parser = delimiter, help_heading = "Input")]
    pub delimiter: Option<u8>,

    /// The file has no header row: columns are ICCID, registration code, then anything
    #[arg(long, help_heading = "Input")]
    pub no_header: bool,

    /// Count warnings (Luhn check digit, unknown ICCID prefix, lowercase code) as invalid
    #[arg(long, help_heading = "Input")]
    pub strict: bool,

    /// Write the input rows that failed (invalid, rejected, gave_up) to PATH, in the input's columns plus `reason`; created owner-only (0600) as it holds registration codes
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub failed_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// CSV of ICCIDs and registration codes; `-` reads stdin
    pub input: PathBuf,

    /// List every problem, not only the first 50
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub input_options: InputArgs,
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

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 1500ms, 2m)"))
}

fn non_empty(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(text.to_string())
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
pub struct LimitSchedule(pub Vec<(Duration, usize)>);

/// `5s=8,12s=25`: from 5 s the limit is 8, from 12 s it is 25.
fn limit_schedule(text: &str) -> Result<LimitSchedule, String> {
    let mut steps = Vec::new();
    for step in text.split(',') {
        let (at, limit) = step
            .split_once('=')
            .ok_or_else(|| format!("`{step}`: expected AT=LIMIT, e.g. 5s=8"))?;
        let at = duration(at.trim())?;
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

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("must be a number of requests per second above 0".to_string()),
    }
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
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn max_failures_forms_and_thresholds() {
        assert_eq!(max_failures("50"), Ok(MaxFailures::Count(50)));
        assert_eq!(max_failures("5%"), Ok(MaxFailures::Percent(5.0)));
        assert!(max_failures("-1").is_err());
        assert!(max_failures("150%").is_err());
        assert!(max_failures("lots").is_err());

        assert!(MaxFailures::Count(2).exceeded(2, 10).is_none());
        assert!(MaxFailures::Count(2).exceeded(3, 10).is_some());
        assert!(
            MaxFailures::Percent(10.0).exceeded(50, 99).is_none(),
            "judged after 100 rows"
        );
        assert!(MaxFailures::Percent(10.0).exceeded(10, 100).is_none());
        assert!(MaxFailures::Percent(10.0).exceeded(11, 100).is_some());
    }
}
