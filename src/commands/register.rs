//! The `register` command: flags and environment resolved into a run, the API client (or
//! the built-in emulator) to run it against, and the run's end turned into a summary, the
//! summary JSON and an exit code.

use std::io::Write;

use tokio_util::sync::CancellationToken;

use crate::api::Client;
use crate::cli::RegisterArgs;
use crate::config::RegisterConfig;
use crate::emulator::Emulator;
use crate::exit;
use crate::input::failed_out::FailedOut;
use crate::paths;
use crate::run::dry_run::dry_run;
use crate::run::job::{self, RunError};
use crate::run::record::{About, RunRecord};
use crate::run::summary::{EndReason, write_json_atomically};

/// `register`: resolves the flags, connects (starting the built-in emulator for
/// `--emulator`), runs the job until it ends or `stop` (the signals) ends it, prints the
/// summary and writes `--summary-json`.
pub(crate) async fn run(args: RegisterArgs, stop: CancellationToken) -> u8 {
    let started_at = std::time::SystemTime::now();
    let config = match RegisterConfig::resolve(&args, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(error) => return set_up_failed(&args, started_at, &error),
    };
    // Files written at the end of the run are checked now, before anything is sent: a
    // summary or failed-out file that cannot be written is a set-up error, not a surprise
    // after thousands of SIMs were registered.
    if let Err(error) = check_writable(&config) {
        return set_up_failed(&args, started_at, &error);
    }
    log_start(&config, args.dry_run);
    let credentials_source = super::connect::credentials_source(&config.target).to_string();
    let (client, emulator) = match connect(&config).await {
        Ok(connected) => connected,
        Err(error) => return set_up_failed(&args, started_at, &error),
    };
    if args.dry_run {
        return match dry_run(&config, client, stop).await {
            Ok(plan) => {
                let mut out = super::Stdout::lock();
                let _ = out.write_all(plan.render().as_bytes());
                let _ = out.write_all(made_up_note(emulator.as_ref()).as_bytes());
                plan.exit_code()
            }
            Err(RunError::CredentialsRefused(refusal)) => {
                crate::logs::error(format_args!(
                    "the API refused the credentials ({refusal}); check {credentials_source}"
                ));
                exit::USAGE_OR_CONFIG
            }
            Err(error) => {
                crate::logs::error(format_args!("{error}"));
                error.exit_code()
            }
        };
    }
    let summary_json = config.summary_json.clone();
    let end_files = EndFiles::of(&config);
    let about = about_run(&args, Some(&config));
    let ended = job::run(config, client, stop).await;
    let timeline = ended.timeline;
    let (code, json, record) = match ended.result {
        Ok(summary) => {
            summary.log();
            // `-q`: errors only; the summary JSON and the exit code still say how it ended.
            if !crate::logs::quiet() {
                let text = summary.render() + &made_up_note(emulator.as_ref());
                print_summary(&text, summary_json.as_deref());
            }
            if let EndReason::CredentialsRefused(refusal) = &summary.end {
                crate::logs::error(format_args!(
                    "the API refused the credentials ({refusal}); check {credentials_source}"
                ));
            }
            let json = serde_json::to_value(summary.to_json());
            (
                summary.exit_code(),
                Some(json),
                RunRecord::of_summary(summary, timeline, about),
            )
        }
        Err(RunError::CredentialsRefused(refusal)) => {
            let message =
                format!("the API refused the credentials ({refusal}); check {credentials_source}");
            crate::logs::error(format_args!("{message}"));
            write_error_summary(summary_json.as_deref(), exit::USAGE_OR_CONFIG, &message);
            let record =
                RunRecord::of_error(started_at, exit::USAGE_OR_CONFIG, message, timeline, about);
            (exit::USAGE_OR_CONFIG, None, record)
        }
        Err(RunError::Locked(error)) => {
            // The other run owns the results, the summary, the report and the metrics:
            // touch none of them.
            crate::logs::error(format_args!("{error}"));
            return exit::TEMPORARY_FAILURE;
        }
        Err(error) => {
            crate::logs::error(format_args!("{error}"));
            if let RunError::OtherAccount { written_on, .. } = &error
                && written_on == crate::emulator::TEST_ACCOUNT_SID
            {
                crate::logs::note(format_args!(
                    "{written_on} is the built-in emulator's account: that file holds a \
                     rehearsal's results (--emulator now writes <input>.emulator.results.csv)"
                ));
            }
            let code = error.exit_code();
            let json = serde_json::json!({
                "tool": "supersim-bulk",
                "version": env!("CARGO_PKG_VERSION"),
                "end": "error",
                "reason": error.to_string(),
                "exit_code": code,
            });
            let record = RunRecord::of_error(started_at, code, error.to_string(), timeline, about);
            (code, Some(Ok(json)), record)
        }
    };
    // Written while the run still holds the lock on the results file, so the next run on
    // it cannot start (and write its own summary) before this one's is in place.
    if let (Some(path), Some(Ok(json))) = (summary_json, json) {
        write_summary_json(&path, &json);
    }
    end_files.write(&record);
    drop(ended.lock);
    code
}

/// The report and metrics files a run writes at its end, whatever ended it.
struct EndFiles {
    report: Option<std::path::PathBuf>,
    metrics: Option<std::path::PathBuf>,
}

impl EndFiles {
    fn of(config: &RegisterConfig) -> Self {
        EndFiles {
            report: config.report.clone(),
            metrics: config.metrics_file.clone(),
        }
    }

    /// Writes each file asked for; one that cannot be written is said on stderr, and the
    /// exit code stays the run's.
    fn write(&self, record: &RunRecord) {
        if let Some(path) = &self.report {
            let written = match replace_refusal("--report", path) {
                Some(refusal) => Err(refusal),
                None => crate::report::write(path, record).map_err(|error| error.to_string()),
            };
            if let Err(error) = written {
                crate::logs::error(format_args!(
                    "cannot write --report {}: {error}",
                    path.display()
                ));
            }
        }
        if let Some(path) = &self.metrics {
            let written = match replace_refusal("--metrics-file", path) {
                Some(refusal) => Err(refusal),
                None => crate::metrics::write(path, record).map_err(|error| error.to_string()),
            };
            if let Err(error) = written {
                crate::logs::error(format_args!(
                    "cannot write --metrics-file {}: {error}",
                    path.display()
                ));
            }
        }
    }
}

/// What the run ran, for the report: its command line with no secret in it, the account
/// the credentials name, and the API (the configuration's once resolved, else the flags').
fn about_run(args: &RegisterArgs, config: Option<&RegisterConfig>) -> About {
    let api = match config.map(|config| &config.target) {
        Some(crate::config::Target::Api { base_url, .. }) => without_userinfo(base_url),
        Some(crate::config::Target::Emulator { .. }) => "the built-in emulator".to_string(),
        None if args.emulator => "the built-in emulator".to_string(),
        None => args.base_url.as_deref().map_or_else(
            || crate::config::DEFAULT_BASE_URL.to_string(),
            without_userinfo,
        ),
    };
    About {
        command_line: command_line(),
        account: config.and_then(|config| config.account_sid.clone()),
        api,
    }
}

/// This process's command line, each word quoted when it needs it, and any URL's user and
/// password replaced: credentials come from the environment or a profile, never from here,
/// but a base URL may carry them.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(n, word)| {
            let word = if n == 0 {
                "supersim-bulk".to_string()
            } else {
                without_userinfo(&word)
            };
            if !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,%@+".contains(c))
            {
                word
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `word` with the user and password of any URL in it replaced by `***`, wherever the URL
/// stands in it (`--base-url=http://user:password@host` as much as the URL alone), however
/// it is spelled: a URL parser finds a user and password in `https:user:pw@host` and
/// `https:\\user:pw@host` too, a password may hold a `/`, and an operator may leave the
/// scheme out (`user:pw@host`). So in each space-separated part holding an `@`, all that
/// stands before its last `@` is replaced, but for a flag's `name=` and the URL's
/// `scheme://` (or `http:`/`https:` without slashes).
fn without_userinfo(word: &str) -> String {
    word.split(' ')
        .map(|part| {
            let Some(at) = part.rfind('@') else {
                return part.to_string();
            };
            let value = match part.split_once('=') {
                Some((name, _))
                    if !name.is_empty()
                        && name.len() < at
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    name.len() + 1
                }
                _ => 0,
            };
            let kept = value + scheme_len(&part[value..at]);
            format!("{}***{}", &part[..kept], &part[at..])
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The length of the `scheme:` and the slashes after it that `text` starts with, if it
/// starts with a URL's scheme: one followed by a slash, or `http:`/`https:` alone (which a
/// URL parser reads as such). Anything else (`user:pw`) is no scheme: 0.
fn scheme_len(text: &str) -> usize {
    let Some((scheme, rest)) = text.split_once(':') else {
        return 0;
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let slashes = rest.len() - rest.trim_start_matches(['/', '\\']).len();
    let web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    if is_scheme && (slashes > 0 || web) {
        scheme.len() + 1 + slashes
    } else {
        0
    }
}

/// The start line: what this run is, against what, within which limits. Never a secret:
/// the account SID is an identifier, the token is not logged. On a terminal this whole
/// configuration is a debug line (`-v`): the run's own short start line follows its plan.
fn log_start(config: &RegisterConfig, dry_run: bool) {
    let (api, state) = match &config.target {
        crate::config::Target::Api { base_url, .. } => (base_url.clone(), None),
        crate::config::Target::Emulator { state, .. } => (
            "emulator".to_string(),
            state.as_ref().map(|p| p.display().to_string()),
        ),
    };
    macro_rules! starting {
        ($level:ident) => {
            tracing::$level!(
                version = env!("CARGO_PKG_VERSION"),
                command = "register",
                dry_run,
                input = %config.input.display_name(),
                results = %config.output.display(),
                api = %api,
                emulator_state = state,
                account_sid = config.account_sid.as_deref(),
                pid = std::process::id(),
                concurrency = config.limits.concurrency as u64,
                adaptive = config.limits.adaptive,
                // No cap is infinity, which JSON cannot hold: the field is left out then.
                rate = config.limits.rate.is_finite().then_some(config.limits.rate),
                "starting"
            )
        };
    }
    if crate::logs::interactive() {
        starting!(debug);
    } else {
        starting!(info);
    }
}

/// The `--summary-json` of a run that stopped before it started.
fn write_error_summary(path: Option<&std::path::Path>, code: u8, reason: &str) {
    let Some(path) = path else { return };
    let json = serde_json::json!({
        "tool": "supersim-bulk",
        "version": env!("CARGO_PKG_VERSION"),
        "end": "error",
        "reason": reason,
        "exit_code": code,
    });
    write_summary_json(path, &json);
}

/// A set-up failure before the run started (no credentials, a flag that cannot be used, a
/// file that cannot be written): said on stderr, and written as the `--summary-json` too, so
/// a monitor reading it sees this run failed instead of the last one's green summary. Not
/// when the summary path names one of the run's other files (that mistake may be the very
/// failure): a summary never replaces the input or the results.
fn set_up_failed(
    args: &RegisterArgs,
    started_at: std::time::SystemTime,
    error: &anyhow::Error,
) -> u8 {
    let message = format!("{error:#}");
    crate::logs::error(&message);
    if let Some(path) = args.summary_json.as_deref()
        && summary_has_its_own_path(args, path)
    {
        write_error_summary(Some(path), exit::USAGE_OR_CONFIG, &message);
    }
    // The report and the metrics too, each only where it has a path of its own and a
    // regular file (or nothing) is there.
    let own = |path: &Option<std::path::PathBuf>| {
        path.clone().filter(|path| {
            !is_stdout(path)
                && summary_has_its_own_path(args, path)
                && [&args.summary_json, &args.report, &args.metrics_file]
                    .into_iter()
                    .flatten()
                    .filter(|other| paths::same_file(path, other))
                    .count()
                    <= 1
        })
    };
    let end_files = EndFiles {
        report: own(&args.report),
        metrics: own(&args.metrics_file),
    };
    let record = RunRecord::of_error(
        started_at,
        exit::USAGE_OR_CONFIG,
        message,
        None,
        about_run(args, None),
    );
    end_files.write(&record);
    exit::USAGE_OR_CONFIG
}

/// True when `summary` (or another file written at the end) names no other file of the
/// run (input, results, their lock, a rehearsal's journal, failed-out).
fn summary_has_its_own_path(args: &RegisterArgs, summary: &std::path::Path) -> bool {
    if is_stdout(summary) {
        return true;
    }
    let input = (args.input.as_os_str() != "-").then(|| args.input.clone());
    let output = args.output.clone().or_else(|| {
        input
            .as_deref()
            .map(|input| crate::config::default_output(input, args.emulator))
    });
    // A file renamed over the lock would be a new lock, which another run could take while
    // one under way holds the old.
    let lock = output
        .as_deref()
        .and_then(|output| paths::resolve(output).ok())
        .map(|real| crate::run::lock::lock_path(&real));
    let journal = output
        .as_deref()
        .filter(|_| args.emulator)
        .map(crate::config::emulator_state_beside);
    [
        input,
        output,
        lock,
        journal,
        args.input_options.failed_out.clone(),
    ]
    .iter()
    .flatten()
    .all(|other| !paths::same_file(summary, other))
}

/// `--summary-json -`: the JSON goes to standard output (and the human summary to stderr).
fn is_stdout(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes the `--summary-json` document: to standard output for `-`, else to a new file
/// beside `path` renamed over it, unless something other than a regular file has taken
/// `path`'s place since the run was checked. When that fails (a full disk, say), the
/// summary goes to stderr instead, as one line, so whatever reads the logs still learns how
/// the run ended; the exit code stays the run's.
fn write_summary_json(path: &std::path::Path, json: &serde_json::Value) {
    let written = if is_stdout(path) {
        let mut out = super::Stdout::lock();
        serde_json::to_writer_pretty(&mut out, json)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
            .and_then(|()| out.flush())
            .map_err(|error| error.to_string())
    } else {
        match summary_json_refusal(path) {
            Some(refusal) => Err(refusal),
            None => write_json_atomically(path, json).map_err(|error| error.to_string()),
        }
    };
    if let Err(error) = written {
        crate::logs::error(format_args!(
            "cannot write the summary to {}: {error}; the summary follows on stderr",
            path.display()
        ));
        crate::logs::document(json);
    }
}

/// Why the summary may not replace what is at `path` (a symbolic link, a device, a pipe):
/// it is written beside `path` and renamed over it.
fn summary_json_refusal(path: &std::path::Path) -> Option<String> {
    replace_refusal("--summary-json", path)
        .map(|refusal| format!("{refusal}, or - for standard output"))
}

/// Why the file `flag` names may not replace what is at `path` (a symbolic link, a device,
/// a pipe): it is written beside `path` and renamed over it.
fn replace_refusal(flag: &str, path: &std::path::Path) -> Option<String> {
    match paths::not_replaceable(path) {
        Ok(None) => None,
        Ok(Some(what)) => Some(format!(
            "{flag} {} is {what}: the file is written beside it and renamed over it, which \
             replaces only a regular file; pass the path of a regular file or a new one",
            path.display()
        )),
        Err(error) => Some(format!("cannot check {flag} {}: {error}", path.display())),
    }
}

/// Checks the `--summary-json` and `--failed-out` files can be created where they are asked
/// for, and replace only a regular file or a new path, naming the flag and the path when
/// not.
fn check_writable(config: &RegisterConfig) -> anyhow::Result<()> {
    if let Some(path) = &config.summary_json
        && !is_stdout(path)
        && let Some(refusal) = summary_json_refusal(path)
    {
        anyhow::bail!(refusal);
    }
    if let Some(path) = &config.failed_out {
        FailedOut::check_replaceable(path)?;
    }
    let at_end = [
        ("--report", config.report.as_ref()),
        ("--metrics-file", config.metrics_file.as_ref()),
    ];
    for (flag, path) in at_end {
        if let Some(refusal) = path.and_then(|path| replace_refusal(flag, path)) {
            anyhow::bail!(refusal);
        }
    }
    let summary_json = config.summary_json.as_ref().filter(|path| !is_stdout(path));
    let targets = [
        ("--summary-json", summary_json),
        ("--failed-out", config.failed_out.as_ref()),
        at_end[0],
        at_end[1],
    ];
    for (flag, path) in targets {
        if let Some(path) = path {
            paths::check_writable(path).map_err(|error| {
                anyhow::anyhow!(
                    "cannot write {flag} {}: {error}; \
                     pass {flag} with a file in a folder you can write to",
                    path.display()
                )
            })?;
        }
    }
    Ok(())
}

/// For a rehearsal: the Fleets the emulated account made up because the run named them, so
/// no one takes their existence as proof that the real account has them.
fn made_up_note(emulator: Option<&Emulator>) -> String {
    let made_up = emulator.map(Emulator::made_up_fleets).unwrap_or_default();
    if made_up.is_empty() {
        return String::new();
    }
    format!(
        "rehearsal: Fleet{} {} made up on the emulated account because the run named {}; \
         the real account must have {} (supersim-bulk check lists them)\n",
        if made_up.len() == 1 { "" } else { "s" },
        made_up.join(", "),
        if made_up.len() == 1 { "it" } else { "them" },
        if made_up.len() == 1 { "it" } else { "them" },
    )
}

/// Prints the summary, to stderr when `--summary-json -` keeps stdout for the JSON. A
/// closed stdout (`| head -1`) is not an error: the summary JSON and the exit code still
/// say how the run ended.
fn print_summary(text: &str, summary_json: Option<&std::path::Path>) {
    let printed = if summary_json.is_some_and(is_stdout) {
        // On stderr, among the log lines: dated like them off a terminal.
        text.lines().for_each(crate::logs::line);
        Ok(())
    } else {
        let mut out = super::Stdout::lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
    if let Err(error) = printed {
        crate::logs::warning(format_args!("cannot print the summary: {error}"));
    }
}

/// Starts the in-process emulator when asked to, and builds the API client.
async fn connect(config: &RegisterConfig) -> anyhow::Result<(Client, Option<Emulator>)> {
    super::connect::connect(&config.target, config.timeout).await
}

#[cfg(test)]
mod tests {
    use super::without_userinfo;

    #[test]
    fn a_urls_user_and_password_are_replaced_wherever_it_stands() {
        for (word, shown) in [
            ("http://u:pw@127.0.0.1:9/v1", "http://***@127.0.0.1:9/v1"),
            (
                "--base-url=https://u:pw@host",
                "--base-url=https://***@host",
            ),
            // A password may hold a `/`: all before the last `@` goes.
            ("https://host/path@x", "https://***@x"),
            ("https://u:pa/ss@host/v1", "https://***@host/v1"),
            ("https:u:pw@host", "https:***@host"),
            (r"https:\\u:pw@host", r"https:\\***@host"),
            ("HTTPS:/u:pw@host", "HTTPS:/***@host"),
            ("u:pw@host", "***@host"),
            ("--base-url=u:pw@host", "--base-url=***@host"),
            ("pw@host", "***@host"),
            ("sims.csv", "sims.csv"),
            ("a=http://p@h b=ftp://q:r@i", "a=http://***@h b=ftp://***@i"),
        ] {
            assert_eq!(without_userinfo(word), shown, "{word}");
        }
    }
}
