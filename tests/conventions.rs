//! End to end, the adaptive limit under each convention Twilio's documentation leaves open
//! for `Twilio-Concurrent-Requests`: on every answer, on 429s only, or never; a 429's count
//! with or without the refused request; and an admitted answer's taken as it leaves or as
//! the request was admitted. Whatever the convention, the header may only help: alone, the
//! run sees no other traffic and finds the whole limit; a limit that rises is found; one
//! that falls is followed. The bounds assert the shape of the behaviour, not throughput
//! figures, and nothing is timed, so a busy machine only makes a run longer.

mod common;

use std::time::Duration;

use common::*;
use supersim_bulk::emulator::{
    Arrivals, EmulatorConfig, HeaderConvention, LatencyDistribution, OtherApp,
};

/// How one server may use the header, named for the messages.
#[derive(Clone, Copy)]
struct Convention {
    name: &'static str,
    header: HeaderConvention,
    /// A 429's count includes the refused request.
    counts_refused: bool,
    /// An admitted answer's count is taken as the request was admitted, not as it is answered.
    counted_at_admission: bool,
}

const fn convention(name: &'static str, header: HeaderConvention) -> Convention {
    Convention {
        name,
        header,
        counts_refused: true,
        counted_at_admission: false,
    }
}

/// Each convention.
const CONVENTIONS: [Convention; 6] = [
    convention("every answer", HeaderConvention::EveryAnswer),
    Convention {
        counts_refused: false,
        ..convention(
            "every answer, refused left out",
            HeaderConvention::EveryAnswer,
        )
    },
    Convention {
        counted_at_admission: true,
        ..convention(
            "every answer, counted at admission",
            HeaderConvention::EveryAnswer,
        )
    },
    convention("429s only", HeaderConvention::On429Only),
    Convention {
        counts_refused: false,
        ..convention("429s only, refused left out", HeaderConvention::On429Only)
    },
    convention("never", HeaderConvention::Never),
];

/// An account with this limit and convention, latency 40 ms ±50% (uniform from 20 to 60).
fn account(limit: usize, convention: Convention) -> EmulatorConfig {
    EmulatorConfig {
        latency: Duration::from_millis(40),
        latency_jitter: 0.5,
        max_concurrent: Some(limit),
        concurrency_header: convention.header,
        header_counts_refused: convention.counts_refused,
        header_counted_at_admission: convention.counted_at_admission,
        seed: 19,
        ..EmulatorConfig::default()
    }
}

/// Registers `rows` SIMs with default flags; the summary's `concurrency` block and the
/// emulator's stats.
async fn run(
    config: EmulatorConfig,
    rows: u32,
) -> (serde_json::Value, supersim_bulk::emulator::Stats) {
    let (c, stats, _) = run_with(config, rows, &[]).await;
    (c, stats)
}

/// [`run`] with `flags` added; also what the run wrote to stderr.
async fn run_with(
    config: EmulatorConfig,
    rows: u32,
    flags: &[&str],
) -> (serde_json::Value, supersim_bulk::emulator::Stats, String) {
    // Runs side by side would read each other's scheduling delays as the account's.
    let _alone = common::timing_run().await;
    let env = TestEnv::with_config(config).await;
    let sims: Vec<_> = (0..rows).map(good_sim).collect();
    env.write_input(&sims);
    let summary_path = env.dir.path().join("summary.json");
    let mut args = vec!["--summary-json", summary_path.to_str().unwrap()];
    args.extend_from_slice(flags);
    let output = env.register(&args).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["this_run"]["registered"], rows, "{summary}");
    (
        summary["concurrency"].clone(),
        env.emulator.stats(),
        stderr(&output),
    )
}

fn share(part: u64, whole: u64) -> f64 {
    part as f64 / whole.max(1) as f64
}

/// The window went to `highest` at least, and the limit last learned is `learned` at least.
/// A run may end in a slow start (after a probe found a rise), with no limit learned at that
/// moment; a probe or a climb to a count shows the limit it started from.
fn assert_limit_reached(name: &str, c: &serde_json::Value, highest: u64, learned: u64) {
    assert!(c["highest"].as_u64().unwrap() >= highest, "{name}: {c}");
    assert!(
        c["learned_limit"]
            .as_u64()
            .is_none_or(|found| found >= learned),
        "{name}: {c}"
    );
}

/// Alone, the account's count is this run's own: whatever it shows is no other traffic.
fn assert_no_other_traffic_imagined(name: &str, c: &serde_json::Value) {
    if let Some(mean) = c["other_in_flight"].as_f64() {
        assert!(mean < 0.5, "{name}: other traffic imagined: {c}");
        assert!(
            c["other_peak"].as_u64().unwrap() <= 2,
            "{name}: other traffic imagined: {c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alone_the_whole_limit_is_found_and_no_other_traffic_imagined() {
    // Also where the server answers its 429s 30 ms late, having authenticated or slowed
    // them down (Twilio does not say how quick they are). Beside another app with counts
    // on 429s only such 429s do not hold: see docs/design.md, "A 429 that takes its time".
    let cases = CONVENTIONS.into_iter().flat_map(|convention| {
        [Duration::ZERO, Duration::from_millis(30)].map(|late| (convention, late))
    });
    for (convention @ Convention { header, .. }, limit_latency) in cases {
        let name = &format!("{}, 429s {limit_latency:?} late", convention.name);
        let config = EmulatorConfig {
            limit_latency,
            ..account(20, convention)
        };
        let (c, stats) = run(config, 800).await;
        assert_no_other_traffic_imagined(name, &c);
        // What the summary tells the reader it could see of other traffic.
        assert_eq!(
            c["header_on_admitted"],
            header == HeaderConvention::EveryAnswer,
            "{name}: {c}"
        );
        // Where admitted answers carry counts too, a 429's count is exact news and the
        // whole limit is found. (Without them, the header on 429s only as without it, the
        // run reads its room from its own in-flight count, which a busy machine can leave a
        // few low for a while until a probe puts it right. A run may also end in a probe's
        // slow start, with no limit learned at that moment.)
        assert!(c["highest"].as_u64().unwrap() >= 20, "{name}: {c}");
        if header == HeaderConvention::EveryAnswer {
            let learned = c["learned_limit"].as_u64();
            assert!(
                learned.is_none_or(|learned| learned >= 19),
                "{name}: the limit found: {c}"
            );
            assert!(
                c["settled"].as_u64().unwrap() >= 17,
                "{name}: settled below the limit: {c}"
            );
        }
        // Slow start's step past the limit (further on a busy machine, where 429s are
        // handled late) and a probe every few round trips, in a run of 40 round trips: a
        // few percent, up to about 7. A storm would be far more.
        assert!(
            share(stats.throttled, stats.requests) < 0.15,
            "{name}: above the limit for long: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_that_rises_is_found_in_every_convention() {
    for convention @ Convention { name, .. } in CONVENTIONS {
        // 8 until 1.5 s, then 24. At best 300 rows go at 8 and the rest take over 2 s at 24,
        // so a run finds the rise (probes come every few round trips of 40 ms) at any speed.
        let config = EmulatorConfig {
            limit_schedule: vec![(Duration::from_millis(1500), 24)],
            ..account(8, convention)
        };
        let (c, stats) = run(config, 1800).await;
        assert!(
            c["lowest"].as_u64().unwrap() <= 9,
            "{name}: never at the first limit: {c}"
        );
        assert!(
            c["highest"].as_u64().unwrap() >= 20 && c["settled"].as_u64().unwrap() >= 18,
            "{name}: the rise was not found: {c}"
        );
        assert!(
            share(stats.throttled, stats.requests) < 0.10,
            "{name}: {stats:?}"
        );
        assert_no_other_traffic_imagined(name, &c);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_that_falls_is_followed_in_every_convention() {
    for convention @ Convention { name, .. } in CONVENTIONS {
        let config = EmulatorConfig {
            limit_schedule: vec![(Duration::from_millis(800), 6)],
            ..account(20, convention)
        };
        let (c, stats) = run(config, 900).await;
        let settled = c["settled"].as_u64().unwrap();
        assert!(
            (5..=7).contains(&settled) && c["lowest"].as_u64().unwrap() <= 6,
            "{name}: did not follow the fall: {c}"
        );
        // The fall refuses the window's excess at once (14 of 20), and slow start's step
        // past 20 and a probe every few round trips at 6 add theirs, in a run of about 1,000
        // requests: around a tenth. A storm would be far more (the naive loop: 45%).
        assert!(
            share(stats.throttled, stats.requests) < 0.15,
            "{name}: above the limit for long: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_tail_or_a_poisson_neighbour_changes_nothing_alone_or_shared() {
    // Long-tailed latency, alone: still the whole limit, still no other traffic imagined.
    for convention @ Convention { name, .. } in CONVENTIONS {
        let config = EmulatorConfig {
            latency_distribution: LatencyDistribution::LongTail,
            ..account(20, convention)
        };
        let (c, stats) = run(config, 800).await;
        assert_no_other_traffic_imagined(name, &c);
        assert_limit_reached(name, &c, 20, 18);
        assert!(
            share(stats.throttled, stats.requests) < 0.15,
            "{name}: {stats:?}"
        );
    }
    // Another app arriving at random, 150/s × 40 ms: 6 slots on average, often more. With
    // the header on every answer the run leaves it room for its usual high, and finds the
    // whole limit whether a 429's count includes the refused request or not.
    for convention @ Convention { name, .. } in &CONVENTIONS[..2] {
        let config = EmulatorConfig {
            other_app: Some(OtherApp {
                rate: 150.0,
                latency: Duration::from_millis(40),
                arrivals: Arrivals::Poisson,
            }),
            ..account(20, *convention)
        };
        let (c, stats) = run(config, 1200).await;
        assert!(c["other_in_flight"].as_f64().unwrap() >= 3.0, "{name}: {c}");
        assert!(
            c["settled"].as_u64().unwrap() <= 14,
            "{name}: room was left: {c}"
        );
        // A 429 that counts 20 in flight leaves itself out at a limit of 20, or counts
        // itself at 19. Which one shows only where an admitted answer counted the account
        // full not long before, and whether one did depends on timing: with both cores
        // busy, a run read 19. The reading itself is pinned by the unit tests that drive
        // the controller round by round, in `api::adaptive::tests`
        // (`beside_other_traffic_a_429_that_leaves_itself_out_reads_the_whole_limit` and
        // those after it). Here, whatever the timing, the limit is read neither above the
        // account's nor more than one below it.
        let limit = c["learned_limit"].as_u64().unwrap();
        assert!((19..=20).contains(&limit), "{name}: the limit found: {c}");
        // The goal is under 2% of the other app refused (1.3% measured by the benchmark
        // with a Poisson neighbour). On a busy machine the emulated app's timers fire late
        // and its requests come in bunches, so a bound near the goal fails for the
        // machine's sake (12% seen with the test suite and two builds alongside); this one
        // catches a run that ignores the other app (a window of 20 refuses it far more
        // often). The rule itself is tested in `api::adaptive::other`.
        assert!(
            share(stats.other_throttled, stats.other_requests) < 0.15,
            "{name}: the other app was refused: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_that_rises_beside_another_app_is_found_wherever_counts_come() {
    // The other app as above, 6 slots on average; the limit goes from 20 to 34 after 1.5 s.
    // Beside it the run leaves room for its usual high, and the account is rarely full by
    // this run's doing. With counts on every answer a window one above the polite share
    // showed nothing; with counts on 429s only no probe was made at all: in both, the
    // window stayed at the old polite share to the end. At best 300 rows go before the
    // rise and the rest take over 2 s after it, so the rise is there to find at any speed.
    for convention @ Convention { name, .. } in CONVENTIONS
        .into_iter()
        .filter(|c| c.header != HeaderConvention::Never)
    {
        let config = EmulatorConfig {
            limit_schedule: vec![(Duration::from_millis(1500), 34)],
            other_app: Some(OtherApp {
                rate: 150.0,
                latency: Duration::from_millis(40),
                arrivals: Arrivals::Poisson,
            }),
            ..account(20, convention)
        };
        let (c, stats) = run(config, 2400).await;
        // Room for the other app's high under 34 still leaves over 16, the most under 20.
        assert_limit_reached(&format!("{name}, the rise"), &c, 18, 30);
        assert!(
            share(stats.other_throttled, stats.other_requests) < 0.15,
            "{name}: the other app was refused: {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_on_the_limits_429s_holds_a_probes_request_not_the_run() {
    // Twilio's newer APIs answer a 429 with `Retry-After`, and a server that names a wait
    // pauses every worker. A probe's 429 is the answer to the run's own question: with
    // each one pausing every worker for a second, a run alone at a limit of 20 went at 86.9
    // rows/s where 192.9 were possible. The pauses are counted from the run's debug lines,
    // not timed. Slow start's first 429s, news of the limit, still pause the run, and come
    // before any probe (more of them on a busy machine, where 429s are handled late).
    const PAUSE: &str = "Retry-After: every worker waits";
    const HELD: &str = "Retry-After on a probe's 429";
    for convention @ Convention { name, .. } in CONVENTIONS {
        let config = EmulatorConfig {
            limit_retry_after: Some(1),
            ..account(20, convention)
        };
        let (c, stats, log) = run_with(config, 1500, &["-v"]).await;
        let held = log.matches(HELD).count();
        let after_the_first_probe = log.find(HELD).map_or(&log[..0], |at| &log[at..]);
        let pauses = after_the_first_probe.matches(PAUSE).count();
        let message = format!(
            "{name}: {} pauses of every worker ({pauses} after the first probe's 429), {held} \
             probes' requests held: {stats:?} {c}",
            log.matches(PAUSE).count()
        );
        assert!(held >= 2, "{message}");
        assert!(pauses <= 2, "{message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_a_network_round_trip_the_limit_costs_no_storm_in_any_convention() {
    // Requests on the way to the account and answers on the way back are in this run's
    // flight but not in the account's count, so the room this run's window has wanders with
    // the latencies, and a 429 comes back a round trip after the request that overshot.
    // Probes then held by luck and the climbs after them overshot. Where admitted answers
    // carry no count (three conventions), the 429s are summed over them: each run's share
    // wanders with the machine (one in 15 went over 3% with both cores busy, at 16 ms on
    // 40 ms holds), their sum much less. Before the budget on what probes cost, the sum was
    // 3.6% here (one of them alone 3.9% in another run); with it, 1.7% and 2.1% with both
    // cores busy. The goal is under 2%; the bound leaves a busy machine some room. The round
    // trip and the holds are twice the other tests' 40 ms, so a busy machine's delays are
    // less of them.
    let (mut refused, mut requests) = (0, 0);
    for convention @ Convention { name, header, .. } in CONVENTIONS {
        let config = EmulatorConfig {
            latency: Duration::from_millis(80),
            network_delay: Duration::from_millis(32),
            ..account(20, convention)
        };
        let (c, stats) = run(config, 2500).await;
        assert_no_other_traffic_imagined(name, &c);
        assert!(c["highest"].as_u64().unwrap() >= 20, "{name}: {c}");
        // Alone, a count on 429s only is not taken for this run's limit: requests on the
        // wire are in the run's flight but not in the count, and the run's room is larger.
        // Where admitted answers carry counts, the limit is the account's. (Whose limit a
        // count shows is known from the answers, whether or not the run ends with one.)
        assert_eq!(
            c["limit_counted"],
            header == HeaderConvention::EveryAnswer,
            "{name}: {c}"
        );
        if header == HeaderConvention::EveryAnswer {
            assert!(
                share(stats.throttled, stats.requests) < 0.03,
                "{name}: a storm: {stats:?} {c}"
            );
        } else {
            refused += stats.throttled;
            requests += stats.requests;
        }
    }
    assert!(
        share(refused, requests) < 0.03,
        "without counts on admitted answers, storms: {refused} 429s in {requests} requests"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_a_network_a_refills_429_does_not_sink_the_window_beside_another_app() {
    // With counts on 429s only, a 429 of a request sent into a slot this run's own answer
    // freed shows that the other app took the slot first. Over loopback that is rare; over
    // a network the refill reaches the account a round trip late, and such 429s come as
    // often as the app finds the account full. Kept for 2,048 answers, as over loopback,
    // each lowered the window by two slots until one came per 2,048 answers. Here (100 ms
    // holds, 40 ms away, with both cores of the machine kept busy), the run made 0.67 and
    // 0.99 of what a client fixed at 8 (the loopback's polite share) makes before such a
    // 429 was kept for fewer answers the longer the round trip, and 1.19 to 1.30 after,
    // under both conventions. At a 32 ms round trip and 80 ms holds the two overlapped
    // (up to 1.08 before, from 1.07 after). The runs share the machine's state, so their
    // ratio holds on a busy one.
    let config = EmulatorConfig {
        latency: Duration::from_millis(100),
        network_delay: Duration::from_millis(40),
        other_app: Some(OtherApp {
            rate: 60.0,
            latency: Duration::from_millis(100),
            arrivals: Arrivals::Poisson,
        }),
        ..account(20, CONVENTIONS[3])
    };
    let rows = 3000;
    let started = std::time::Instant::now();
    run_with(
        config.clone(),
        rows,
        &["--no-adaptive", "--concurrency", "8"],
    )
    .await;
    let fixed = started.elapsed();
    for convention @ Convention { name, .. } in &CONVENTIONS[3..5] {
        let config = EmulatorConfig {
            concurrency_header: convention.header,
            header_counts_refused: convention.counts_refused,
            ..config.clone()
        };
        let started = std::time::Instant::now();
        let (c, stats, _) = run_with(config, rows, &[]).await;
        let adaptive = started.elapsed();
        assert!(c["other_in_flight"].as_f64().unwrap() > 0.0, "{name}: {c}");
        let ratio = fixed.as_secs_f64() / adaptive.as_secs_f64();
        assert!(
            ratio > 1.1,
            "{name}: {ratio:.2} of a client fixed at 8 ({adaptive:?} against {fixed:?}): \
             {c} {stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn register_emulator_takes_the_conventions_and_imagines_no_other_traffic() {
    // The README's run: the built-in emulator in the same process, no limit, no latency.
    // Its counts are this run's own, whatever the moment it reads them at.
    for flags in [
        &[][..],
        &["--concurrency-header", "on-429", "--max-concurrent", "20"][..],
        &[
            "--max-concurrent",
            "20",
            "--latency",
            "20ms",
            "--latency-jitter",
            "0.5",
        ][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sims: Vec<_> = (0..1000).map(good_sim).collect();
        let mut text = String::from("Iccid,RegistrationCode\n");
        for (iccid, code) in &sims {
            text.push_str(&format!("{iccid},{code}\n"));
        }
        std::fs::write(dir.path().join("sims.csv"), text).unwrap();
        let output = binary_command()
            .current_dir(dir.path())
            .args(["register", "sims.csv", "--emulator", "-q"])
            .args(["--summary-json", "summary.json"])
            .args(flags)
            .output()
            .await
            .unwrap();
        assert_eq!(exit_code(&output), 0, "{flags:?}: {}", stderr(&output));
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        )
        .unwrap();
        let c = &summary["concurrency"];
        let name = format!("{flags:?}");
        assert_no_other_traffic_imagined(&name, c);
        if flags.contains(&"--max-concurrent") {
            assert!(
                c["learned_limit"]
                    .as_u64()
                    .is_none_or(|learned| learned >= 18),
                "{name}: {c}"
            );
        }
    }
}
