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
//!   checked against; `faults`: the failures a registration can be made to meet, and the
//!   ways the SIM list can misbehave.
//! - `routes`: one handler per endpoint, authentication and the concurrency limit;
//!   `responses`: Twilio's error bodies and lost responses, built in several places.
//! - `state`: the account kept across runs in an append-only journal (`--state FILE`).
//! - `server`: the listener and connection loop, and the [`Emulator`] handle;
//!   `other_app`: another app's traffic on the same account, which shares the limit.
//! - `record`: a SIM and a Fleet as the store keeps them; `config`: what an emulator is
//!   configured with, the test credentials, and the derived codes and Fleet SIDs.
//!
//! Doors open one way: `server` → `routes` → `store` → `state` → `record` → `config`,
//! `faults` → `responses`; this file only declares the files and re-exports what the rest
//! of the crate uses, and no file imports it back. The emulator imports nothing from the
//! rest of the crate, so it can be read (and replaced) on its own.

mod config;
mod faults;
mod other_app;
mod record;
mod responses;
mod routes;
mod server;
mod state;
mod store;

pub use config::{
    Arrivals, CodeRule, DEFAULT_FLEETS, EmulatorConfig, HeaderConvention, LatencyDistribution,
    OtherApp, REFUSED_CODE_PREFIX, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, fleet_sid_for,
    registration_code_for,
};
pub use faults::{Fault, PagingFault};
pub use record::SimRecord;
pub use server::Emulator;
// The rest of the crate runs the emulator as a command and checks a state file before it
// starts; tests only need the handle and the configuration.
pub(crate) use config::credentials_from_env;
pub(crate) use server::serve;
pub(crate) use state::check_state;
pub use store::Stats;

#[cfg(test)]
mod tests {
    use super::config::*;
    use super::store::*;

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
