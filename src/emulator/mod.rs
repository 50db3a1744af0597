//! A local emulator of the Twilio Super SIM API (`POST /v1/Sims`, `GET /v1/Sims`,
//! `GET /v1/Sims/{Sid}`, `POST /v1/Sims/{Sid}`, `GET /v1/Fleets`), with HTTP Basic auth,
//! Twilio's error bodies, a concurrent-request limit (fixed or on a schedule, shared with
//! another app's synthetic traffic, arriving evenly or as a Poisson stream), added latency
//! (uniform or long-tailed), the `Twilio-Concurrent-Requests` header under each convention
//! Twilio's documentation leaves open (on every answer, on 429s only, or never; a 429's
//! count with or without the refused request), Fleets created at
//! start-up, asynchronous status changes (202 and `scheduled`, then the target status after
//! `update_delay`), and injectable faults, including lost responses after a commit. It
//! exists so registrations can be rehearsed (`supersim-bulk emulator`, `register --emulator`)
//! and so integration tests can exercise the client's retry and resume logic over real HTTP
//! without touching a real account. It owns the emulated account's SIM store and the counters
//! (`Stats`, commits per ICCID) that tests and benchmarks read back.
//!
//! - `store`: the emulated account (SIMs, Fleets, counters) and the rules a request is
//!   checked against; `faults`: the failures a registration can be made to meet.
//! - `routes`: one handler per endpoint, authentication and the concurrency limit;
//!   `responses`: Twilio's error bodies and lost responses, built in several places.
//! - `state`: the account kept across runs in an append-only journal (`--state FILE`).
//! - `server`: the listener and connection loop, and the [`Emulator`] handle;
//!   `other_app`: another app's traffic on the same account, which shares the limit.
//!
//! Doors open one way: `server` → `routes` → `store` → `state`, `faults` → `responses`. The emulator
//! imports nothing from the rest of the crate, so it can be read (and replaced) on its own.

mod faults;
mod other_app;
mod responses;
mod routes;
mod server;
mod state;
mod store;

pub use faults::Fault;
pub use server::{Emulator, serve};
pub use state::check_state;
pub use store::{FleetRecord, SimRecord, Stats};

use std::time::Duration;

/// The fixed test credential pair, accepted when no Twilio credentials are in the environment.
pub const TEST_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const TEST_AUTH_TOKEN: &str = "emulator-test-token";

/// Stats are served here without auth and without being counted, so observing a run does not
/// change what is observed.
pub const STATS_PATH: &str = "/_emulator/stats";

const CONCURRENT_REQUESTS_HEADER: &str = "twilio-concurrent-requests";
/// The Fleets every emulator has, besides those it is configured with.
pub const DEFAULT_FLEETS: [&str; 2] = ["field-devices", "bench"];

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

/// Accepted credential pairs: `TWILIO_API_KEY`+`TWILIO_API_SECRET` and
/// `TWILIO_ACCOUNT_SID`+`TWILIO_AUTH_TOKEN` when set (each pair only when both halves are set
/// and non-empty), otherwise the fixed test pair. Lets a rehearsal run with the same
/// environment as the real run.
pub fn credentials_from_env() -> Vec<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let pairs: Vec<(String, String)> = [
        ("TWILIO_API_KEY", "TWILIO_API_SECRET"),
        ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"),
    ]
    .into_iter()
    .filter_map(|(user, secret)| Some((var(user)?, var(secret)?)))
    .collect();
    if pairs.is_empty() {
        vec![(TEST_ACCOUNT_SID.to_string(), TEST_AUTH_TOKEN.to_string())]
    } else {
        pairs
    }
}

/// The registration code the emulator expects for an ICCID: the FNV-1a 64-bit hash of
/// `"supersim-emulator/" + iccid`, reduced modulo 36^10 and written in base 36 with digits
/// `0-9A-Z`, left-padded with `0` to 10 characters. Deterministic, so sample CSVs can be
/// generated for rehearsals.
pub fn registration_code_for(iccid: &str) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut n = fnv1a(&[b"supersim-emulator/", iccid.as_bytes()]) % 36u64.pow(10);
    let mut code = [b'0'; 10];
    for slot in code.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    code.iter().map(|&b| b as char).collect()
}

/// The SID the emulator gives the Fleet with this unique name: `HF` and 32 hex digits from
/// two FNV-1a hashes of the name, so it is the same in every run.
pub fn fleet_sid_for(unique_name: &str) -> String {
    let high = fnv1a(&[b"supersim-emulator/fleet/", unique_name.as_bytes()]);
    let low = fnv1a(&[b"supersim-emulator/fleet-low/", unique_name.as_bytes()]);
    format!("HF{high:016x}{low:016x}")
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Added to every request while it counts as in flight, so concurrency limits bite.
    pub latency: Duration,
    /// More than this many requests in flight are answered 429 / 20429, like Twilio's
    /// per-account concurrency limit. The other app's requests count too.
    pub max_concurrent: Option<usize>,
    /// The limit from each time on, counted from the first API request ([`Self::max_concurrent`]
    /// before the first step): a limit that falls or rises during a run.
    pub limit_schedule: Vec<(Duration, usize)>,
    /// Each request's latency (the app's and the other app's) is drawn uniformly from
    /// `latency × (1 ± latency_jitter)`, or from a long tail (see [`LatencyDistribution`]).
    pub latency_jitter: f64,
    pub latency_distribution: LatencyDistribution,
    /// Which answers carry `Twilio-Concurrent-Requests` (Twilio documents it as "may").
    pub concurrency_header: HeaderConvention,
    /// Whether a 429's count includes the refused request itself (Twilio does not say).
    pub header_counts_refused: bool,
    /// Another app on the same account, from the first API request on.
    pub other_app: Option<OtherApp>,
    /// Probability that a `POST /v1/Sims` gets a random [`Fault`] (each kind equally likely).
    pub fail_rate: f64,
    /// Seeds fault rolls and SID generation, so a rehearsal can be replayed exactly.
    pub seed: u64,
    /// Accepted HTTP Basic (username, password) pairs.
    pub credentials: Vec<(String, String)>,
    /// The account that owns registered SIMs (`AC` + 32 hex).
    pub account_sid: String,
    /// Unique names of the Fleets on the account (SIDs from [`fleet_sid_for`]).
    pub fleets: Vec<String>,
    /// How long an accepted status change reads `scheduled` before it takes effect. Zero
    /// still answers 202 and `scheduled`; the next read shows the new status.
    pub update_delay: Duration,
    /// Keep the account's SIMs in this file across runs (an append-only journal); `None`
    /// starts empty and forgets everything on exit.
    pub state: Option<std::path::PathBuf>,
    /// Which registration codes the emulated SIMs accept.
    pub codes: CodeRule,
    /// A Fleet looked up by a unique name the account does not have is made up on the spot
    /// (a rehearsal names the real account's Fleets); [`Emulator::made_up_fleets`] lists
    /// them.
    pub make_up_fleets: bool,
    /// A fault for tests: the SIM list's last page (after the first) names the first page
    /// as its next, so a client that follows `next_page_url` blindly goes round for ever.
    pub paging_cycle: bool,
}

/// Another app's traffic on the emulated account: requests that take slots of the
/// concurrency limit (and are refused when it is full) without going over HTTP.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OtherApp {
    /// Its requests per second, on average.
    pub rate: f64,
    /// How long each of its requests holds a slot, on average (drawn like the run's own).
    pub latency: Duration,
    /// Whether its requests come evenly spaced or at random.
    pub arrivals: Arrivals,
}

/// Which answers carry `Twilio-Concurrent-Requests`. Twilio documents the header as "may"
/// and says no more, so a client must work with each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderConvention {
    /// Every answer, admitted or refused (the count taken when the answer is ready).
    #[default]
    EveryAnswer,
    /// Only 429s (the count taken when the request is refused): while nothing is refused,
    /// a client sees no count at all.
    On429Only,
    /// No answer.
    Never,
}

/// How each request's latency is drawn; `latency` is its mean in each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LatencyDistribution {
    /// Uniform over `latency × (1 ± latency_jitter)` (exactly `latency` without jitter).
    #[default]
    Uniform,
    /// Lognormal, its 99th percentile five times its median: most requests are quick, a few
    /// hold their slot for long, as a busy API's are.
    LongTail,
}

/// How the other app's requests arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arrivals {
    /// Evenly spaced, `1 / rate` apart.
    #[default]
    Regular,
    /// A Poisson stream: independent arrivals, exponential gaps of mean `1 / rate` (seeded
    /// by `seed`), so bursts come as they do from real users.
    Poisson,
}

/// Which registration codes the emulator accepts for an ICCID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CodeRule {
    /// Only the code [`registration_code_for`] gives: tests and generated samples.
    #[default]
    Derived,
    /// Any well-formed code (10 ASCII letters or digits) except one starting with
    /// [`REFUSED_CODE_PREFIX`]: a rehearsal with a real box's file, where every row that
    /// would be sent registers, and a refusal can still be rehearsed on purpose.
    AnyWellFormed,
}

/// Under [`CodeRule::AnyWellFormed`], codes starting with this are refused (83002), as the
/// sample's `WR0NGC0DE1` row is.
pub const REFUSED_CODE_PREFIX: &str = "WR0NG";

impl CodeRule {
    /// True when `code` registers `iccid` under this rule.
    pub fn accepts(self, iccid: &str, code: &str) -> bool {
        match self {
            CodeRule::Derived => code == registration_code_for(iccid),
            CodeRule::AnyWellFormed => {
                code.len() == 10
                    && code.bytes().all(|b| b.is_ascii_alphanumeric())
                    && !code.to_ascii_uppercase().starts_with(REFUSED_CODE_PREFIX)
            }
        }
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            latency: Duration::ZERO,
            max_concurrent: None,
            limit_schedule: Vec::new(),
            latency_jitter: 0.0,
            latency_distribution: LatencyDistribution::Uniform,
            concurrency_header: HeaderConvention::EveryAnswer,
            header_counts_refused: true,
            other_app: None,
            fail_rate: 0.0,
            seed: 0,
            credentials: vec![(TEST_ACCOUNT_SID.to_string(), TEST_AUTH_TOKEN.to_string())],
            account_sid: TEST_ACCOUNT_SID.to_string(),
            fleets: DEFAULT_FLEETS.iter().map(|name| name.to_string()).collect(),
            update_delay: Duration::ZERO,
            state: None,
            codes: CodeRule::Derived,
            make_up_fleets: false,
            paging_cycle: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::store::*;
    use super::*;

    #[test]
    fn registration_codes_are_ten_stable_base36_chars() {
        let code = registration_code_for("89883070000123456789");
        assert_eq!(code.len(), 10);
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        assert_eq!(code, registration_code_for("89883070000123456789"));
        assert_ne!(code, registration_code_for("89883070000123456788"));
    }

    #[test]
    fn fault_rolls_depend_only_on_seed_iccid_and_attempt() {
        let rolls = |seed, fail_rate| {
            let shared = Shared::new(
                EmulatorConfig {
                    seed,
                    fail_rate,
                    ..EmulatorConfig::default()
                },
                "127.0.0.1:0".parse().unwrap(),
            )
            .unwrap();
            (0..40)
                .map(|_| shared.next_fault(Some("89883070000123456789")))
                .collect::<Vec<_>>()
        };
        assert_eq!(rolls(1, 0.5), rolls(1, 0.5));
        assert_ne!(rolls(1, 0.5), rolls(2, 0.5));
        assert!(rolls(1, 0.5).iter().any(Option::is_none));
        assert!(rolls(1, 1.0).iter().all(Option::is_some));
        assert!(rolls(1, 0.0).iter().all(Option::is_none));
    }

    #[test]
    fn a_long_tail_keeps_the_mean_with_a_p99_five_times_the_median() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut drawn: Vec<f64> = (0..40_000).map(|_| long_tail_factor(&mut rng)).collect();
        drawn.sort_by(f64::total_cmp);
        let mean = drawn.iter().sum::<f64>() / drawn.len() as f64;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        let (median, p99) = (drawn[20_000], drawn[39_600]);
        assert!((4.5..5.5).contains(&(p99 / median)), "{median} {p99}");
    }
}
