//! What an emulator is configured with ([`EmulatorConfig`] and the conventions it picks
//! between), the fixed test credentials, and the values tests and rehearsals derive the same
//! way the emulator does (registration codes, Fleet SIDs). The bottom of the emulator: every
//! other file may import it, it imports none of them.

use std::time::Duration;

/// The fixed test credential pair, accepted when no Twilio credentials are in the environment.
pub const TEST_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const TEST_AUTH_TOKEN: &str = "emulator-test-token";

/// Stats are served here without auth and without being counted, so observing a run does not
/// change what is observed.
pub(crate) const STATS_PATH: &str = "/_emulator/stats";

pub(super) const CONCURRENT_REQUESTS_HEADER: &str = "twilio-concurrent-requests";
/// The Fleets every emulator has, besides those it is configured with.
pub const DEFAULT_FLEETS: [&str; 2] = ["field-devices", "bench"];

pub(super) const DEFAULT_PAGE_SIZE: usize = 50;
pub(super) const MAX_PAGE_SIZE: usize = 1000;

/// Accepted credential pairs: `TWILIO_API_KEY`+`TWILIO_API_SECRET` and
/// `TWILIO_ACCOUNT_SID`+`TWILIO_AUTH_TOKEN` when set (each pair only when both halves are set
/// and non-empty), otherwise the fixed test pair. Lets a rehearsal run with the same
/// environment as the real run.
pub(crate) fn credentials_from_env() -> Vec<(String, String)> {
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

pub(super) fn fnv1a(parts: &[&[u8]]) -> u64 {
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
    /// The network's round trip between the client and the account, on top of `latency`:
    /// a request is counted half of it after it was sent, and its answer arrives half of it
    /// after its slot was freed. So the client's requests in flight are more than the
    /// account counts, and a slot an answer frees stays free for a whole round trip before
    /// the client's next request can take it, as against Twilio (loopback has none).
    pub network_delay: Duration,
    pub latency_distribution: LatencyDistribution,
    /// Which answers carry `Twilio-Concurrent-Requests` (Twilio documents it as "may").
    pub concurrency_header: HeaderConvention,
    /// Whether a 429's count includes the refused request itself (Twilio does not say).
    pub header_counts_refused: bool,
    /// Whether an admitted answer's count is the account's as the request was admitted, not
    /// as it is answered (Twilio does not say which). Counted at admission, it includes
    /// requests that ended while this one was in flight and leaves out those that came after.
    pub header_counted_at_admission: bool,
    /// The limit's 429s carry `Retry-After` with this many seconds, as Twilio's newer APIs
    /// answer a 429 (for Super SIM it is not documented either way).
    pub limit_retry_after: Option<u64>,
    /// How long the limit's 429s take to come back, on top of the network: a server that
    /// authenticates, or slows refusals down, before it answers one. The request is counted
    /// as it arrives and holds no slot meanwhile (Twilio does not say how quick its 429s
    /// are; the client's quickest 429 is its guess at the network's round trip).
    pub limit_latency: Duration,
    /// Another app on the same account, from the first API request on.
    pub other_app: Option<OtherApp>,
    /// Probability that a `POST /v1/Sims` gets a random [`Fault`](super::Fault) (each kind equally likely).
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
    /// (a rehearsal names the real account's Fleets); `Emulator::made_up_fleets` lists them.
    pub make_up_fleets: bool,
    /// A fault for tests: the SIM list's last page (after the first) names the first page
    /// as its next, so a client that follows `next_page_url` blindly goes round for ever.
    pub paging_cycle: bool,
    /// A fault for tests: how the SIM list misbehaves for a client paging through it.
    pub paging_fault: Option<super::faults::PagingFault>,
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
            network_delay: Duration::ZERO,
            latency_distribution: LatencyDistribution::Uniform,
            concurrency_header: HeaderConvention::EveryAnswer,
            header_counts_refused: true,
            header_counted_at_admission: false,
            limit_retry_after: None,
            limit_latency: Duration::ZERO,
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
            paging_fault: None,
        }
    }
}
