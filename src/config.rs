//! Turns the parsed flags and the environment into a checked [`RegisterConfig`] before any
//! I/O: where the results go, which host to talk to, with which credentials.
//!
//! The environment is passed in as a lookup function, so tests can resolve a configuration
//! without touching the process environment.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::api::gate::GateLimits;
use crate::api::retry::Backoff;
use crate::cli::{InputArgs, RegisterArgs};
use crate::input::{InputSource, ReadOptions};
pub use crate::run::config::{RegisterConfig, Target};
use crate::run::resume::OnboardConfig;
use crate::secret::Credentials;

pub const DEFAULT_BASE_URL: &str = "https://supersim.twilio.com";

const API_KEY_VARS: &str = "TWILIO_API_KEY and TWILIO_API_SECRET";
const AUTH_TOKEN_VARS: &str = "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN";

impl RegisterConfig {
    pub fn resolve(
        args: &RegisterArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let input = InputSource::from_arg(&args.input);
        let output = match (&args.output, &input) {
            (Some(path), _) => path.clone(),
            (None, InputSource::File(path)) => default_output(path),
            (None, InputSource::Stdin) => {
                bail!("reading standard input needs --output PATH for the results file")
            }
        };
        let target = if args.emulator {
            Target::Emulator {
                credentials: credentials_from_env(&env)?
                    .map(|(c, _)| c)
                    .unwrap_or_else(|| Credentials {
                        username: crate::emulator::TEST_ACCOUNT_SID.to_string(),
                        password: crate::emulator::TEST_AUTH_TOKEN.to_string(),
                    }),
            }
        } else {
            let base_url = match &args.base_url {
                Some(url) => url.clone(),
                None => regional_base_url(env("TWILIO_REGION"), env("TWILIO_EDGE")),
            };
            check_base_url(&base_url)?;
            let (credentials, credentials_source) = credentials_from_env(&env)?.context(
                "no Twilio credentials: set TWILIO_API_KEY and TWILIO_API_SECRET \
                 (or TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN); \
                 to rehearse without an account, add --emulator",
            )?;
            Target::Api {
                base_url,
                credentials,
                credentials_source,
            }
        };
        let failed_out = failed_out_path(&args.input_options, &output)?;
        Ok(RegisterConfig {
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

pub fn read_options(args: &InputArgs) -> ReadOptions {
    ReadOptions {
        delimiter: args.delimiter,
        no_header: args.no_header,
    }
}

/// The failed-out path, refused when it would overwrite the results file.
fn failed_out_path(args: &InputArgs, results: &Path) -> anyhow::Result<Option<PathBuf>> {
    match &args.failed_out {
        Some(path) if path == results => {
            bail!(
                "--failed-out {} is the results file; give it another name",
                path.display()
            )
        }
        other => Ok(other.clone()),
    }
}

/// `sims.csv` -> `sims.results.csv`, in the same folder.
pub fn default_output(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map_or_else(|| "sims".into(), |s| s.to_string_lossy().into_owned());
    input.with_file_name(format!("{stem}.results.csv"))
}

/// `https://supersim.{edge}.{region}.twilio.com`, as Twilio's own tools build it.
pub fn regional_base_url(region: Option<String>, edge: Option<String>) -> String {
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

/// Refuses URLs that would send credentials in clear text over a network.
fn check_base_url(url: &str) -> anyhow::Result<()> {
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("--base-url {url:?} is not a URL"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => bail!(
            "--base-url {url} would send credentials unencrypted; use https://, \
             or http:// only with a loopback host such as 127.0.0.1"
        ),
        other => bail!("--base-url {url} has scheme {other:?}; use https://"),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
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
}
