//! Tests of `cli`: the value parsers and their ranges.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_definition_is_consistent() {
    Cli::command().debug_assert();
}

fn register_error(flags: &[&str]) -> Option<String> {
    let argv = ["supersim-bulk", "register", "sims.csv"]
        .iter()
        .chain(flags);
    Cli::try_parse_from(argv).err().map(|e| e.to_string())
}

#[test]
fn meaningless_or_overflowing_values_are_refused_with_their_range() {
    for (flags, range) in [
        (&["--timeout", "0s"][..], "from 1ms to 1h"),
        (&["--timeout", "2h"], "from 1ms to 1h"),
        (&["--grace", "500000000000y"], "from 0s to 24h"),
        (&["--grace", "99999999999999999999999y"], "from 0s to 24h"),
        (&["--wait-timeout", "500000000000y"], "from 1ms to 24h"),
        (&["--wait-timeout", "0s"], "from 1ms to 24h"),
        (&["--progress-interval", "0s"], "from 1ms to 24h"),
        (&["--backoff-cap", "500000000000y"], "from 0s to 1h"),
        (&["--rate", "0"], "from 0.001 to 1000000"),
        (&["--rate", "NaN"], "from 0.001 to 1000000"),
        (&["--rate", "inf"], "from 0.001 to 1000000"),
        (&["--concurrency", "0"], "1..=1000"),
        (&["--max-attempts", "0"], "1..=100"),
    ] {
        let error = register_error(flags).unwrap_or_else(|| panic!("{flags:?} was accepted"));
        assert!(error.contains(flags[0]), "{flags:?}: {error}");
        assert!(error.contains(range), "{flags:?}: {error}");
    }
    for flags in [
        &["--timeout", "1ms"][..],
        &["--grace", "0s"],
        &["--backoff-base", "0ms"],
        &["--rate", "1000000"],
        &["--rate", "0.5"],
        &["--wait-timeout", "20ms"],
    ] {
        assert_eq!(register_error(flags), None, "{flags:?}");
    }
    let error = Cli::try_parse_from(["supersim-bulk", "emulator", "--max-concurrent", "0"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--max-concurrent"), "{error}");
    assert!(error.contains("from 1 to"), "{error}");
    let error = Cli::try_parse_from(["supersim-bulk", "emulator", "--latency", "1000y"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("--latency"), "{error}");
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
