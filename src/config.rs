//! Turns the parsed flags and the environment into a checked [`RegisterConfig`] before any
//! I/O: where the results go, which host to talk to, with which credentials. The only thing
//! it looks at on disk is which paths name one file (so one file is never given two roles).
//!
//! The environment is passed in as a lookup function, so tests can resolve a configuration
//! without touching the process environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::client::is_loopback;
use crate::api::gate::GateLimits;
use crate::api::retry::Backoff;
use crate::cli::{EmulatedAccountArgs, InputArgs, RegisterArgs};
use crate::input::failed_out::FailedOut;
use crate::input::{InputSource, ReadOptions};
use crate::paths;
use crate::profiles::{self, Profile};
pub(crate) use crate::run::config::{RegisterConfig, Target};
use crate::run::lock::lock_path;
use crate::run::resume::OnboardConfig;
use crate::secret::Credentials;

pub(crate) const DEFAULT_BASE_URL: &str = "https://supersim.twilio.com";

/// The variable that sets the API base URL when `--base-url` is not given.
pub(crate) const BASE_URL_VAR: &str = "SUPERSIM_BASE_URL";

const API_KEY_VARS: &str = "TWILIO_API_KEY and TWILIO_API_SECRET";
const AUTH_TOKEN_VARS: &str = "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN";

impl RegisterConfig {
    pub(crate) fn resolve(
        args: &RegisterArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let input = InputSource::from_arg(&args.input);
        let output = match (&args.output, &input) {
            (Some(path), _) => path.clone(),
            // A pipe or a device by name (`<(...)`, `/dev/stdin`), read once as standard
            // input is, has no folder of its own to write beside.
            (None, InputSource::File(path)) if input.reads_once() => {
                bail!(
                    "{} is a pipe or a device, so there is no folder beside it for the results: \
                     pass --output PATH for the results file",
                    path.display()
                )
            }
            (None, InputSource::File(path)) => default_output(path, args.emulator),
            (None, InputSource::Stdin) => {
                bail!("reading standard input needs --output PATH for the results file")
            }
        };
        if !args.emulator
            && let Some(flag) = args.emulated_account.first_given()
        {
            bail!("{flag} sets how the built-in emulator behaves: add --emulator, or leave it out");
        }
        let profile = chosen_profile(args.emulator, args.profile.as_deref(), &env)?;
        let env = environment(profile.as_ref(), &env);
        let target = resolve_target(args.emulator, args.base_url.as_deref(), &env)?;
        let target = sourced_from(target, profile.as_ref());
        // A rehearsal keeps its emulated account beside its results, so it can be resumed
        // and onboarded in a later run exactly like a real account.
        let target = match target {
            Target::Emulator { credentials, .. } => Target::Emulator {
                credentials,
                state: Some(emulator_state_beside(&output)),
                account: Box::new(emulated_account(&args.emulated_account)),
            },
            api => api,
        };
        let failed_out = args.input_options.failed_out.clone();
        let written_at_end = [
            ("--summary-json", args.summary_json.as_deref()),
            ("--report", args.report.as_deref()),
            ("--metrics-file", args.metrics_file.as_deref()),
        ];
        let journal = match &target {
            Target::Emulator { state, .. } => state.as_deref(),
            Target::Api { .. } => None,
        };
        check_distinct_files(
            &input,
            &output,
            journal,
            failed_out.as_deref(),
            &written_at_end,
        )?;
        let account_sid = account_of(&target, &env);
        Ok(RegisterConfig {
            account_sid,
            input,
            output,
            target,
            limits: GateLimits {
                rate: args.rate.unwrap_or(f64::INFINITY),
                max_share: args.max_share.unwrap_or(1.0),
                concurrency: args.concurrency as usize,
                adaptive: !args.no_adaptive,
                max_attempts: args.max_attempts,
                backoff: Backoff {
                    base: args.backoff_base,
                    cap: args.backoff_cap.max(args.backoff_base),
                },
            },
            timeout: args.timeout,
            retry_rejected: args.retry_rejected,
            progress_interval: args.progress_interval,
            grace: args.grace.unwrap_or(args.timeout),
            summary_json: args.summary_json.clone(),
            report: args.report.clone(),
            metrics_file: args.metrics_file.clone(),
            max_failures: args.max_failures,
            onboard: OnboardConfig {
                fleet: args.fleet.clone(),
                status: if args.activate {
                    Some(crate::api::TargetStatus::Active)
                } else {
                    args.status
                },
                wait: args.wait,
                wait_timeout: args.wait_timeout,
            },
            read: read_options(&args.input_options),
            strict: args.input_options.strict,
            failed_out,
        })
    }
}

/// The twilio-cli profile whose credentials a command uses (see [`profiles`]); none for a
/// rehearsal, which needs no credentials.
fn chosen_profile(
    emulator: bool,
    named: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Profile>> {
    if emulator {
        return Ok(None);
    }
    profiles::choose(named, env)
}

/// A lookup of environment variables by name.
type Environment<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The environment as the command sees it: with a profile's credentials in place of the
/// credential variables when one is used.
fn environment<'a>(
    profile: Option<&'a Profile>,
    env: &'a impl Fn(&str) -> Option<String>,
) -> Box<Environment<'a>> {
    match profile {
        Some(profile) => Box::new(profile.overlay(env)),
        None => Box::new(env),
    }
}

/// `target`, with its credentials' source naming the profile they came from, if any.
fn sourced_from(target: Target, profile: Option<&Profile>) -> Target {
    match (target, profile) {
        (
            Target::Api {
                base_url,
                credentials,
                ..
            },
            Some(profile),
        ) => Target::Api {
            base_url,
            credentials,
            credentials_source: profile.source(),
        },
        (target, _) => target,
    }
}

/// The emulated account the flags describe (limit, latency, other traffic, header
/// conventions), on the emulator's defaults otherwise; shared by `emulator` and `register
/// --emulator`.
pub(crate) fn emulated_account(args: &EmulatedAccountArgs) -> crate::emulator::EmulatorConfig {
    use crate::cli::{ArrivalsArg, HeaderArg, LatencyDistributionArg};
    use crate::emulator::{
        Arrivals, EmulatorConfig, HeaderConvention, LatencyDistribution, OtherApp,
    };
    let defaults = EmulatorConfig::default();
    let header = match (args.no_concurrency_header, args.concurrency_header) {
        (true, _) | (false, Some(HeaderArg::Never)) => HeaderConvention::Never,
        (false, Some(HeaderArg::On429)) => HeaderConvention::On429Only,
        (false, Some(HeaderArg::Every) | None) => HeaderConvention::EveryAnswer,
    };
    let other_rate = args.other_rate.unwrap_or(0.0);
    EmulatorConfig {
        latency: args.latency.unwrap_or(defaults.latency),
        max_concurrent: args.max_concurrent,
        limit_schedule: args
            .limit_schedule
            .clone()
            .map(|schedule| schedule.0)
            .unwrap_or_default(),
        latency_jitter: args.latency_jitter.unwrap_or(defaults.latency_jitter),
        network_delay: args.network_delay.unwrap_or(defaults.network_delay),
        latency_distribution: match args.latency_distribution {
            Some(LatencyDistributionArg::LongTail) => LatencyDistribution::LongTail,
            Some(LatencyDistributionArg::Uniform) | None => LatencyDistribution::Uniform,
        },
        concurrency_header: header,
        header_counts_refused: !args.header_leaves_out_refused,
        header_counted_at_admission: args.header_counted_at_admission,
        limit_retry_after: args.limit_retry_after,
        limit_latency: args.limit_latency.unwrap_or_default(),
        other_app: (other_rate > 0.0).then_some(OtherApp {
            rate: other_rate,
            latency: args.other_latency.unwrap_or(Duration::from_millis(100)),
            arrivals: match args.other_arrivals {
                Some(ArrivalsArg::Poisson) => Arrivals::Poisson,
                Some(ArrivalsArg::Regular) | None => Arrivals::Regular,
            },
        }),
        ..defaults
    }
}

/// Where requests go, from `--emulator`, `--base-url` (or `TWILIO_REGION`/`TWILIO_EDGE`) and
/// the credential variables; shared by every command that talks to the API.
pub(crate) fn resolve_target(
    emulator: bool,
    base_url: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Target> {
    if emulator {
        return Ok(Target::Emulator {
            credentials: credentials_from_env(env)?
                .map(|(c, _)| c)
                .unwrap_or_else(|| Credentials {
                    username: crate::emulator::TEST_ACCOUNT_SID.to_string(),
                    password: crate::emulator::TEST_AUTH_TOKEN.to_string(),
                }),
            state: None,
            account: Box::default(),
        });
    }
    let (base_url, source) = base_url_and_source(base_url, env);
    if source == REGION_SOURCE {
        check_host_words(env)?;
    }
    check_base_url(&base_url, source)?;
    let (credentials, credentials_source) = credentials_from_env(env)?.context(
        "no Twilio credentials: set TWILIO_API_KEY and TWILIO_API_SECRET \
         (or TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN), or name a twilio-cli profile with \
         --profile; to rehearse without an account, add --emulator",
    )?;
    Ok(Target::Api {
        base_url,
        credentials,
        credentials_source: credentials_source.to_string(),
    })
}

/// The account the target's credentials belong to, when they say: the emulator's own
/// account, an auth token's Account SID, or `TWILIO_ACCOUNT_SID` beside an API key (as
/// twilio-cli and Twilio's helper libraries take it). `None` leaves it to the preflight.
fn account_of(target: &Target, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let is_account = |sid: &str| sid.starts_with("AC") && sid.len() == 34;
    match target {
        Target::Emulator { .. } => Some(crate::emulator::TEST_ACCOUNT_SID.to_string()),
        Target::Api { credentials, .. } if is_account(&credentials.username) => {
            Some(credentials.username.clone())
        }
        Target::Api { .. } => env("TWILIO_ACCOUNT_SID").filter(|sid| is_account(sid)),
    }
}

/// `export` and `reconcile`: where the account is read from, and within which limits.
#[derive(Debug, Clone)]
pub(crate) struct AccountConfig {
    pub(crate) target: Target,
    pub(crate) limits: GateLimits,
    pub(crate) timeout: std::time::Duration,
    pub(crate) page_size: u32,
    /// The account the credentials name, when they do (see [`account_of`]).
    pub(crate) account_sid: Option<String>,
}

impl AccountConfig {
    pub(crate) fn resolve(
        args: &crate::cli::AccountArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let defaults = Backoff {
            base: std::time::Duration::from_millis(500),
            cap: std::time::Duration::from_secs(30),
        };
        let profile = chosen_profile(args.emulator, args.profile.as_deref(), &env)?;
        let env = environment(profile.as_ref(), &env);
        let target = match resolve_target(args.emulator, args.base_url.as_deref(), &env)? {
            // The account of a rehearsal, or of a standalone emulator's journal: only read.
            Target::Emulator {
                credentials,
                account,
                ..
            } => Target::Emulator {
                credentials,
                state: args.state.clone(),
                account,
            },
            api => api,
        };
        Ok(AccountConfig {
            account_sid: account_of(&target, &env),
            target: sourced_from(target, profile.as_ref()),
            limits: GateLimits {
                rate: args.rate,
                max_attempts: args.max_attempts,
                backoff: defaults,
                // Pages are read one after another: each names the next.
                concurrency: 1,
                adaptive: false,
                max_share: 1.0,
            },
            timeout: args.timeout,
            page_size: args.page_size,
        })
    }
}

pub(crate) fn read_options(args: &InputArgs) -> ReadOptions {
    ReadOptions {
        delimiter: args.delimiter,
        no_header: args.no_header,
    }
}

/// Refuses to give one file two roles: the results written over the input, the failed-out
/// file or a file written at the end (the summary, the report, the metrics) renamed over
/// the results, the input or another of them. Files are
/// compared by identity (device and inode, or the real path of one not yet created), so
/// `./x.csv`, `sub/../x.csv`, a symlink and a hard link are all caught. The failed-out file
/// may be the input (it is replaced whole when the run ends, never truncated under the
/// reader). A rehearsal's `journal` (its emulated account) is no place for any of them
/// either. A path whose identity cannot be worked out is left to fail when it is opened.
fn check_distinct_files(
    input: &InputSource,
    output: &Path,
    journal: Option<&Path>,
    failed_out: Option<&Path>,
    written_at_end: &[(&str, Option<&Path>)],
) -> anyhow::Result<()> {
    if let InputSource::File(input) = input
        && paths::same_file(input, output)
    {
        bail!(
            "-o {} is the input file {}; the results need a file of their own: \
             pass -o (--output) with another name",
            output.display(),
            input.display()
        );
    }
    // The lock beside the results file is named after its real path.
    let lock = paths::resolve(output).ok().map(|real| lock_path(&real));
    if let Some(failed_out) = failed_out {
        // It is written beside itself as `PATH.partial` first, which must not be the results
        // (or their lock) either.
        let partial = FailedOut::partial_path(failed_out);
        for (role, path) in [
            ("the results file", Some(output)),
            ("the lock", lock.as_deref()),
            ("the emulator's state journal", journal),
        ] {
            if let Some(path) = path
                && (paths::same_file(failed_out, path) || paths::same_file(&partial, path))
            {
                bail!(
                    "--failed-out {} is {role} {}; give it another name",
                    failed_out.display(),
                    path.display()
                );
            }
        }
    }
    // `--summary-json -` is standard output: no file of its own.
    let at_end: Vec<(&str, &Path)> = written_at_end
        .iter()
        .filter_map(|&(flag, path)| Some((flag, path?)))
        .filter(|(_, path)| path.as_os_str() != "-")
        .collect();
    for (n, &(flag, file)) in at_end.iter().enumerate() {
        let mut taken = vec![("the results file".to_string(), output)];
        if let Some(lock) = &lock {
            taken.push(("the lock".to_string(), lock));
        }
        if let Some(journal) = journal {
            taken.push(("the emulator's state journal".to_string(), journal));
        }
        if let InputSource::File(input) = input {
            taken.push(("the input file".to_string(), input));
        }
        if let Some(failed_out) = failed_out {
            taken.push(("the --failed-out file".to_string(), failed_out));
        }
        for &(other_flag, other) in &at_end[..n] {
            taken.push((format!("the {other_flag} file"), other));
        }
        for (role, path) in taken {
            if paths::same_file(file, path) {
                bail!(
                    "{flag} {} is {role} {}; give it another name",
                    file.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// The emulator's state file of a rehearsal writing `results`: `<results stem>.state.jsonl`.
/// A symlink to the results is followed to its file first, as the run's lock is, so every
/// way of naming one results file rehearses against one emulated account.
pub(crate) fn emulator_state_beside(results: &Path) -> PathBuf {
    let real = match std::fs::symlink_metadata(results) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(results).unwrap_or_else(|_| results.to_path_buf())
        }
        _ => results.to_path_buf(),
    };
    real.with_extension("state.jsonl")
}

/// `<stem>.results.csv` beside the input; `<stem>.emulator.results.csv` for a rehearsal,
/// so a rehearsal never writes the file the real run will resume from.
pub(crate) fn default_output(input: &Path, emulator: bool) -> PathBuf {
    let stem = input
        .file_stem()
        .map_or_else(|| "sims".into(), |s| s.to_string_lossy().into_owned());
    let kind = if emulator { ".emulator" } else { "" };
    input.with_file_name(format!("{stem}{kind}.results.csv"))
}

/// `https://supersim.{edge}.{region}.twilio.com`, as Twilio's own tools build it.
pub(crate) fn regional_base_url(region: Option<String>, edge: Option<String>) -> String {
    let region = region.filter(|r| !r.is_empty());
    let edge = edge.filter(|e| !e.is_empty());
    match (edge, region) {
        (None, None) => DEFAULT_BASE_URL.to_string(),
        (None, Some(region)) => format!("https://supersim.{region}.twilio.com"),
        (Some(edge), region) => {
            let region = region.unwrap_or_else(|| "us1".to_string());
            format!("https://supersim.{edge}.{region}.twilio.com")
        }
    }
}

/// The API base URL and where it came from, so an error names what the user set: the
/// `--base-url` flag, else `SUPERSIM_BASE_URL` (an empty value counts as unset), else the
/// host `TWILIO_REGION` and `TWILIO_EDGE` select.
fn base_url_and_source(
    flag: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> (String, &'static str) {
    if let Some(url) = flag {
        return (url.to_string(), "--base-url");
    }
    if let Some(url) = env(BASE_URL_VAR).filter(|url| !url.is_empty()) {
        return (url, BASE_URL_VAR);
    }
    (
        regional_base_url(env("TWILIO_REGION"), env("TWILIO_EDGE")),
        REGION_SOURCE,
    )
}

/// Where a base URL that no flag or variable gave comes from.
const REGION_SOURCE: &str = "the host that TWILIO_REGION and TWILIO_EDGE select,";

/// Refuses a `TWILIO_REGION` or `TWILIO_EDGE` (or a profile's region or edge) that is not a
/// word of a host name: letters, digits and `-`. Anything else (`#`, `/`, `?`, `@`, a URL
/// pasted in) would move the host `supersim.{edge}.{region}.twilio.com` elsewhere, and the
/// credentials with it.
fn check_host_words(env: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    for (variable, what, example) in [
        ("TWILIO_REGION", "region", "ie1"),
        ("TWILIO_EDGE", "edge", "dublin"),
    ] {
        let Some(value) = env(variable).filter(|v| !v.is_empty()) else {
            continue;
        };
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            let shown = if value.contains('@') {
                "(not shown: it contains `@`)".to_string()
            } else {
                format!("{value:?}")
            };
            bail!(
                "{variable} (or a twilio-cli profile's {what}) {shown} is not a Twilio {what}: \
                 it is a word of the API's host name, letters, digits and `-` only, such as \
                 {example}"
            );
        }
    }
    Ok(())
}

/// Refuses URLs that would send credentials in clear text over a network. `source` names
/// where the URL came from (a flag or a variable).
fn check_base_url(url: &str, source: &str) -> anyhow::Result<()> {
    // A URL that does not parse is echoed only when it cannot hold a password.
    let shown = if url.contains('@') {
        "(not shown: it contains `@`)".to_string()
    } else {
        format!("{url:?}")
    };
    let parsed = reqwest::Url::parse(url).with_context(|| {
        format!("{source} {shown} is not a URL; give one such as https://supersim.twilio.com")
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        bail!(
            "{source} holds a user name or password; remove it: credentials come from \
             TWILIO_API_KEY and TWILIO_API_SECRET (or TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)"
        );
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        // Past here the URL is echoed: not one that holds an `@`, as `user:password@host`
        // does (it parses, its user read as a scheme).
        _ if url.contains('@') => {
            bail!(
                "{source} {shown} is not an https:// URL; give one such as https://supersim.twilio.com"
            )
        }
        "http" => bail!(
            "{source} {url} would send credentials unencrypted; use https://, \
             or http:// only with a loopback host such as 127.0.0.1"
        ),
        other => bail!("{source} {url} has scheme {other:?}; use https://"),
    }
}

/// The credential pair from the environment: the API key pair wins over the auth token.
/// A half-set pair is an error that names the missing variable.
fn credentials_from_env(
    env: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<(Credentials, &'static str)>> {
    let get = |name: &str| env(name).filter(|v| !v.is_empty());
    for (user_var, secret_var, source) in [
        ("TWILIO_API_KEY", "TWILIO_API_SECRET", API_KEY_VARS),
        ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", AUTH_TOKEN_VARS),
    ] {
        match (get(user_var), get(secret_var)) {
            (Some(username), Some(password)) => {
                return Ok(Some((Credentials { username, password }, source)));
            }
            (Some(_), None) => bail!("{user_var} is set but {secret_var} is not; set both"),
            (None, Some(_)) => bail!("{secret_var} is set but {user_var} is not; set both"),
            (None, None) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> RegisterArgs {
        let mut argv = vec!["supersim-bulk", "register", "box/sims.csv"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Register(args) => args,
            _ => unreachable!(),
        }
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn api_key_pair_wins() {
        let env = env_of(&[
            ("TWILIO_ACCOUNT_SID", "ACx"),
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_API_KEY", "SKx"),
            ("TWILIO_API_SECRET", "secret"),
        ]);
        let config = RegisterConfig::resolve(&args(&[]), env).unwrap();
        let Target::Api {
            credentials,
            credentials_source,
            base_url,
        } = config.target
        else {
            panic!("expected the API target")
        };
        assert_eq!(credentials.username, "SKx");
        assert_eq!(credentials_source, API_KEY_VARS);
        assert_eq!(base_url, DEFAULT_BASE_URL);
        assert_eq!(config.output, PathBuf::from("box/sims.results.csv"));
    }

    #[test]
    fn missing_credentials_name_the_variables_and_no_secret() {
        let err = RegisterConfig::resolve(&args(&[]), env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TWILIO_API_KEY") && err.contains("TWILIO_AUTH_TOKEN"),
            "{err}"
        );
        let err = RegisterConfig::resolve(
            &args(&[]),
            env_of(&[("TWILIO_AUTH_TOKEN", "canary-secret")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("TWILIO_ACCOUNT_SID is not"), "{err}");
        assert!(!err.contains("canary-secret"), "{err}");
    }

    #[test]
    fn half_set_api_key_pair_is_an_error_even_beside_a_full_token_pair() {
        let env = env_of(&[
            ("TWILIO_API_KEY", "SKx"),
            ("TWILIO_ACCOUNT_SID", "ACx"),
            ("TWILIO_AUTH_TOKEN", "t"),
        ]);
        let err = RegisterConfig::resolve(&args(&[]), env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TWILIO_API_SECRET is not"), "{err}");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        let env = || env_of(&[("TWILIO_ACCOUNT_SID", "ACx"), ("TWILIO_AUTH_TOKEN", "t")]);
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://example.com",
        ] {
            RegisterConfig::resolve(&args(&["--base-url", ok]), env()).unwrap();
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "nonsense",
        ] {
            assert!(
                RegisterConfig::resolve(&args(&["--base-url", bad]), env()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn base_url_errors_name_where_the_url_came_from() {
        let from_env = RegisterConfig::resolve(
            &args(&[]),
            env_of(&[
                ("TWILIO_ACCOUNT_SID", "ACx"),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("SUPERSIM_BASE_URL", "http://example.com"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(from_env.contains("SUPERSIM_BASE_URL"), "{from_env}");
        assert!(!from_env.contains("--base-url"), "{from_env}");

        let env = || {
            env_of(&[
                ("TWILIO_ACCOUNT_SID", "ACx"),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("SUPERSIM_BASE_URL", "https://example.com"),
            ])
        };
        let from_flag = RegisterConfig::resolve(&args(&["--base-url", "nonsense"]), env())
            .unwrap_err()
            .to_string();
        assert!(from_flag.contains("--base-url"), "{from_flag}");
        assert!(!from_flag.contains("SUPERSIM_BASE_URL"), "{from_flag}");

        // The flag wins over the variable; an empty variable counts as unset.
        let config = RegisterConfig::resolve(&args(&[]), env()).unwrap();
        assert!(
            matches!(config.target, Target::Api { ref base_url, .. } if base_url == "https://example.com")
        );
        let empty = env_of(&[
            ("TWILIO_ACCOUNT_SID", "ACx"),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("SUPERSIM_BASE_URL", ""),
        ]);
        let config = RegisterConfig::resolve(&args(&[]), empty).unwrap();
        assert!(
            matches!(config.target, Target::Api { ref base_url, .. } if base_url == DEFAULT_BASE_URL)
        );

        let region = RegisterConfig::resolve(
            &args(&[]),
            env_of(&[
                ("TWILIO_ACCOUNT_SID", "ACx"),
                ("TWILIO_AUTH_TOKEN", "t"),
                ("TWILIO_REGION", "a b"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(region.contains("TWILIO_REGION"), "{region}");
        assert!(!region.contains("--base-url"), "{region}");
    }

    #[test]
    fn a_base_url_with_a_password_is_refused_without_echoing_it() {
        let env = || env_of(&[("TWILIO_ACCOUNT_SID", "ACx"), ("TWILIO_AUTH_TOKEN", "t")]);
        for bad in [
            "https://user:canary-pw@example.com",
            "https://user:canary pw@example.com",
        ] {
            let err = RegisterConfig::resolve(&args(&["--base-url", bad]), env())
                .unwrap_err()
                .to_string();
            assert!(!err.contains("canary"), "{err}");
            assert!(err.contains("--base-url"), "{err}");
        }
    }

    #[test]
    fn region_and_edge_pick_the_host() {
        assert_eq!(regional_base_url(None, None), DEFAULT_BASE_URL);
        assert_eq!(
            regional_base_url(Some("ie1".into()), Some("dublin".into())),
            "https://supersim.dublin.ie1.twilio.com"
        );
        assert_eq!(
            regional_base_url(None, Some("sydney".into())),
            "https://supersim.sydney.us1.twilio.com"
        );
    }

    #[test]
    fn one_file_in_two_roles_is_refused_however_it_is_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("sims.csv");
        std::fs::write(&input, "Iccid,RegistrationCode\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(&input, dir.path().join("link.csv")).unwrap();
        let input = InputSource::File(input);
        let at = |name: &str| dir.path().join(name);
        let output = at("x.results.csv");
        let refused = |out: &Path, failed: Option<&Path>, summary: Option<&Path>| {
            check_distinct_files(&input, out, None, failed, &[("--summary-json", summary)])
                .map_err(|e| e.to_string())
                .err()
        };
        assert!(
            refused(&at("link.csv"), None, None)
                .unwrap()
                .contains("is the input file")
        );
        assert!(refused(&at("sub/../sims.csv"), None, None).is_some());
        let results_twice = refused(&output, Some(&at("sub/../x.results.csv")), None);
        assert!(results_twice.unwrap().contains("is the results file"));
        assert!(refused(&output, None, Some(&at("./sims.csv"))).is_some());
        assert!(refused(&output, None, Some(&at("x.results.csv.lock"))).is_some());
        let partial = refused(&at("fix.csv.partial"), Some(&at("fix.csv")), None);
        assert!(
            partial.is_some(),
            "the failed-out file's .partial is the results file"
        );
        assert_eq!(
            refused(&output, Some(&at("sims.csv")), None),
            None,
            "failed-out may be the input"
        );
        assert_eq!(
            refused(&output, Some(&at("fix.csv")), Some(&at("s.json"))),
            None
        );
        // The report and the metrics file are renamed over their path at the end: never the
        // results, nor each other.
        let at_end = |report: &Path, metrics: &Path| {
            let files = [
                ("--report", Some(report)),
                ("--metrics-file", Some(metrics)),
            ];
            check_distinct_files(&input, &output, None, None, &files)
                .map_err(|e| e.to_string())
                .err()
        };
        let over_results = at_end(&at("sub/../x.results.csv"), &at("run.prom")).unwrap();
        assert!(over_results.starts_with("--report "), "{over_results}");
        assert!(
            over_results.contains("is the results file"),
            "{over_results}"
        );
        let twice = at_end(&at("run.html"), &at("./run.html")).unwrap();
        assert!(twice.contains("is the --report file"), "{twice}");
        assert_eq!(at_end(&at("run.html"), &at("run.prom")), None);
    }

    #[test]
    fn emulator_needs_no_credentials() {
        let config = RegisterConfig::resolve(&args(&["--emulator"]), env_of(&[])).unwrap();
        assert!(matches!(config.target, Target::Emulator { .. }));
    }

    #[test]
    fn stdin_needs_an_output() {
        let argv = ["supersim-bulk", "register", "-", "--emulator"];
        let crate::cli::Command::Register(args) = crate::cli::Cli::parse_from(argv).command else {
            panic!()
        };
        assert!(RegisterConfig::resolve(&args, env_of(&[])).is_err());
    }

    #[test]
    fn emulated_account_flags_need_the_emulator_and_reach_it() {
        use crate::emulator::{Arrivals, HeaderConvention, LatencyDistribution};
        let parse = |argv: &[&str]| {
            let crate::cli::Command::Register(args) = crate::cli::Cli::parse_from(argv).command
            else {
                panic!()
            };
            RegisterConfig::resolve(&args, env_of(&[]))
        };
        let error = parse(&[
            "supersim-bulk",
            "register",
            "in.csv",
            "--max-concurrent",
            "20",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("--max-concurrent") && error.contains("--emulator"),
            "{error}"
        );
        let config = parse(&[
            "supersim-bulk",
            "register",
            "in.csv",
            "--emulator",
            "--max-concurrent",
            "20",
            "--concurrency-header",
            "on-429",
            "--header-leaves-out-refused",
            "--header-counted-at-admission",
            "--limit-retry-after",
            "2",
            "--latency-distribution",
            "long-tail",
            "--other-rate",
            "60",
            "--other-arrivals",
            "poisson",
            "--network-delay",
            "40ms",
            "--limit-latency",
            "30ms",
        ])
        .unwrap();
        let Target::Emulator { account, .. } = config.target else {
            panic!("{:?}", config.target)
        };
        assert_eq!(account.max_concurrent, Some(20));
        assert_eq!(account.concurrency_header, HeaderConvention::On429Only);
        assert!(!account.header_counts_refused);
        assert!(account.header_counted_at_admission);
        assert_eq!(account.limit_retry_after, Some(2));
        assert_eq!(account.latency_distribution, LatencyDistribution::LongTail);
        assert_eq!(account.network_delay, Duration::from_millis(40));
        assert_eq!(account.limit_latency, Duration::from_millis(30));
        let other = account.other_app.unwrap();
        assert_eq!((other.rate, other.arrivals), (60.0, Arrivals::Poisson));
    }
}
