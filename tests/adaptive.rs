//! End to end, one test per shape of the account's concurrency limit (issue 12): small,
//! large, shared with another app, falling and rising, each with and without the
//! `Twilio-Concurrent-Requests` header. The controller's decisions are unit-tested in
//! `src/api/adaptive.rs`; here the bounds are loose on purpose, and nothing is timed, so a
//! loaded machine cannot make them flake: a slow client only runs longer.

mod common;

use std::time::Duration;

use common::*;
use supersim_bulk::emulator::{Arrivals, EmulatorConfig, HeaderConvention, OtherApp};

/// Registers `rows` SIMs with default flags; returns the summary JSON and the emulator's
/// stats.
async fn run(
    config: EmulatorConfig,
    rows: u32,
    extra: &[&str],
) -> (serde_json::Value, supersim_bulk::emulator::Stats) {
    // Runs side by side would read each other's scheduling delays as the account's.
    let _alone = common::timing_run().await;
    let env = TestEnv::with_config(config).await;
    let sims: Vec<_> = (0..rows).map(good_sim).collect();
    env.write_input(&sims);
    let summary_path = env.dir.path().join("summary.json");
    let mut args = vec!["--summary-json", summary_path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = env.register(&args).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    for (iccid, _) in &sims {
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    (summary, env.emulator.stats())
}

fn config(limit: usize, latency_ms: u64, header: bool) -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(latency_ms),
        latency_jitter: 0.1,
        max_concurrent: Some(limit),
        concurrency_header: if header {
            HeaderConvention::EveryAnswer
        } else {
            HeaderConvention::Never
        },
        ..EmulatorConfig::default()
    }
}

fn share(part: u64, whole: u64) -> f64 {
    part as f64 / whole.max(1) as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_limit_is_found_from_a_low_start_with_few_429s() {
    for header in [true, false] {
        let (summary, stats) = run(config(5, 30, header), 300, &[]).await;
        let c = &summary["concurrency"];
        assert_eq!(c["ceiling"], 100, "the default ceiling");
        assert_eq!(c["header_seen"], header, "{summary}");
        assert!(
            share(stats.throttled, stats.requests) < 0.10,
            "header {header}: {stats:?}"
        );
        let learned = c["learned_limit"].as_u64().unwrap();
        assert!((4..=7).contains(&learned), "header {header}: {summary}");
        assert!(stats.max_in_flight <= 12, "a low start: {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_limit_is_grown_to() {
    for header in [true, false] {
        let (summary, stats) = run(config(60, 30, header), 1500, &[]).await;
        let highest = summary["concurrency"]["highest"].as_u64().unwrap();
        assert!(highest >= 30, "header {header}: {summary}");
        assert!(
            share(stats.throttled, stats.requests) < 0.10,
            "header {header}: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_account_leaves_the_other_app_room() {
    for header in [true, false] {
        let config = EmulatorConfig {
            other_app: Some(OtherApp {
                rate: 100.0,
                latency: Duration::from_millis(60),
                arrivals: Arrivals::Regular,
            }),
            ..config(20, 50, header)
        };
        let (summary, stats) = run(config, 800, &[]).await;
        let c = &summary["concurrency"];
        assert!(stats.other_requests > 0, "{stats:?}");
        assert!(
            share(stats.throttled, stats.requests) < 0.15,
            "header {header}: {stats:?}"
        );
        if header {
            let other = c["other_in_flight"].as_f64().unwrap();
            assert!(other >= 1.0, "the other app's 6 slots were seen: {summary}");
            // At least the other app's mean (6 of 20) is left; the run aims at its high.
            assert!(
                c["settled"].as_u64().unwrap() <= 14,
                "room was left: {summary}"
            );
            assert!(
                share(stats.other_throttled, stats.other_requests) < 0.15,
                "{stats:?}"
            );
        } else {
            assert!(c["other_in_flight"].is_null(), "{summary}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_that_falls_and_rises_is_followed() {
    for header in [true, false] {
        // Falls from 20 to 6 after 1 s, rises to 24 after 3 s. The run lasts long enough
        // for both at any speed: at best 1200 rows take over 4 s at these levels.
        let config = EmulatorConfig {
            limit_schedule: vec![(Duration::from_secs(1), 6), (Duration::from_secs(3), 24)],
            ..config(20, 40, header)
        };
        let (summary, stats) = run(config, 1200, &[]).await;
        let c = &summary["concurrency"];
        assert!(
            c["lowest"].as_u64().unwrap() <= 7,
            "followed down, header {header}: {summary}"
        );
        assert!(
            c["settled"].as_u64().unwrap() >= 10,
            "grew back past the old low, header {header}: {summary}"
        );
        assert!(
            share(stats.throttled, stats.requests) < 0.15,
            "header {header}: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_share_leaves_room_on_purpose() {
    let (summary, _) = run(config(20, 30, true), 600, &["--max-share", "50%"]).await;
    let c = &summary["concurrency"];
    assert_eq!(c["max_share"], 0.5);
    assert!(c["settled"].as_u64().unwrap() <= 10, "{summary}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_can_leave_the_header_out() {
    for header in [true, false] {
        let env = TestEnv::with_config(config(5, 0, header)).await;
        // No proxy: the suite passes on a machine that exports one.
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = client
            .get(format!("{}/v1/Sims", env.emulator.base_url()))
            .basic_auth(
                supersim_bulk::emulator::TEST_ACCOUNT_SID,
                Some(supersim_bulk::emulator::TEST_AUTH_TOKEN),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .contains_key("twilio-concurrent-requests"),
            header
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_run_starts_wider_and_its_resume_with_a_few_rows_left_does_not() {
    // The start window is sized by the SIMs the results file has no row for: 12 for
    // 3,000, and 6 for the ten rows a second run over the same file has left. "lowest" is
    // where the window started, at a limit nothing here reaches.
    let _alone = common::timing_run().await;
    let env = TestEnv::with_config(config(1000, 0, false)).await;
    let summary_path = env.dir.path().join("summary.json");
    let summary_args = ["--summary-json", summary_path.to_str().unwrap()];
    let lowest = || {
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
        summary["concurrency"]["lowest"].as_u64().unwrap()
    };
    let mut sims: Vec<_> = (0..3_000).map(good_sim).collect();
    env.write_input(&sims);
    let output = env.register(&summary_args).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(lowest(), 12, "3,000 rows");
    sims.extend((3_000..3_010).map(good_sim));
    env.write_input(&sims);
    let output = env.register(&summary_args).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(lowest(), 6, "ten rows left of 3,010");
    assert_eq!(env.emulator.stats().throttled, 0);
    for (iccid, _) in &sims {
        assert_eq!(env.emulator.commits(iccid), 1, "{iccid} registered once");
    }
}
