//! Set-up mistakes stop the run instead of becoming per-SIM verdicts (issue 11, part 2): an
//! unknown Fleet named by `--fleet` or by `fleet` cells, an API that cannot be reached at
//! all, and an endpoint that answers `POST /v1/Sims` with a bare 404 partway through a run.
//! The real binary runs against the emulator (or a closed port) on loopback.

mod common;

use common::{TestEnv, binary_command, exit_code, good_sim, stderr, stdout, summary_json};
use supersim_bulk::emulator::{Fault, fleet_sid_for};

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_fleet_by_flag_stops_the_run_listing_the_account_fleets() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..4).map(good_sim).collect();
    env.write_input(&sims);

    let output = env.register(&["--fleet", "bnech", "--activate"]).await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    assert!(
        err.contains("Fleet 'bnech' is not on this account (it has: field-devices, bench)"),
        "{err}"
    );
    assert!(err.contains("--fleet"), "{err}");
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 0, "nothing registered");
    assert_eq!(stats.update_requests, 0);
    for (iccid, _) in &sims {
        assert!(env.emulator.sim(iccid).is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_fleet_in_the_column_makes_its_rows_invalid_and_the_rest_go_on() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (10..15).map(good_sim).collect();
    let fleets = ["bench", "benhc", "", "benhc", &fleet_sid_for("bench")];
    let mut csv = String::from("iccid,code,fleet\n");
    for ((iccid, code), fleet) in sims.iter().zip(fleets) {
        csv.push_str(&format!("{iccid},{code},{fleet}\n"));
    }
    env.write_csv(&csv);

    let output = env
        .register(&["--fleet", "field-devices", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let last = env.last_rows();
    for typo in [&sims[1].0, &sims[3].0] {
        let row = &last[typo];
        assert_eq!(row["outcome"], "invalid", "{row:?}");
        assert!(
            row["error_message"]
                .contains("Fleet 'benhc' is not on this account (it has: field-devices, bench)"),
            "{row:?}"
        );
        assert!(env.emulator.sim(typo).is_none(), "never sent");
    }
    let fleet_of = |n: usize| env.emulator.sim(&sims[n].0).unwrap().fleet_sid;
    for n in [0, 4] {
        assert_eq!(last[&sims[n].0]["outcome"], "registered");
        assert_eq!(fleet_of(n), Some(fleet_sid_for("bench")));
    }
    assert_eq!(last[&sims[2].0]["outcome"], "registered");
    assert_eq!(fleet_of(2), Some(fleet_sid_for("field-devices")));
    for n in [0, 2, 4] {
        assert_eq!(env.emulator.sim(&sims[n].0).unwrap().status, "active");
    }
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 3);
    assert_eq!(stats.update_requests, 3);

    // Once the Fleet name is fixed, the next run sends those rows.
    env.write_csv(&csv.replace("benhc", "bench"));
    let output = env
        .register(&["--fleet", "field-devices", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let last = env.last_rows();
    for n in [1, 3] {
        assert_eq!(last[&sims[n].0]["outcome"], "registered");
        assert_eq!(fleet_of(n), Some(fleet_sid_for("bench")));
    }
    assert_eq!(env.emulator.stats().create_requests, 5);

    // A rerun over the finished file looks no Fleet up: it sends nothing.
    let before = env.emulator.stats().requests;
    let output = env
        .register(&["--fleet", "field-devices", "--activate", "--wait"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().requests, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_api_stops_the_run_with_75_and_no_row_gives_up() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (20..32).map(good_sim).collect();
    env.write_input(&sims);
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let summary = env.dir.path().join("summary.json");

    let output = binary_command()
        .arg("register")
        .arg(env.input_path())
        .args(["--base-url", &base, "--concurrency", "3"])
        .args(["--backoff-base", "5ms", "--backoff-cap", "20ms"])
        .args(["--summary-json", summary.to_str().unwrap()])
        .envs(TestEnv::test_credentials())
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(exit_code(&output), 75, "{said}");
    assert!(said.contains("refused"), "{said}");
    assert!(said.contains(&base), "{said}");
    let rows = if env.results_path().exists() {
        env.results()
    } else {
        Vec::new()
    };
    assert!(
        rows.iter().all(|row| row["outcome"] != "gave_up"),
        "rows are left unfinished, not gave_up: {rows:?}"
    );
    let json = summary_json(&summary);
    assert_eq!(json["exit_code"], 75, "{json}");
    if json["end"] != "error" {
        assert_eq!(json["end"], "unreachable", "{json}");
        assert!(json["reason"].as_str().unwrap().contains(&base), "{json}");
    }

    // The same file against a reachable API registers everything.
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().commits, sims.len() as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bare_404_on_create_mid_run_stops_the_run_and_nothing_is_rejected() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (40..46).map(good_sim).collect();
    env.write_input(&sims);
    env.emulator.inject(&sims[3].0, vec![Fault::NotFoundPage]);
    let summary = env.dir.path().join("summary.json");

    let output = env
        .register(&[
            "--concurrency",
            "1",
            "--summary-json",
            summary.to_str().unwrap(),
        ])
        .await;
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(exit_code(&output), 2, "{said}");
    let url = format!("{}/v1/Sims", env.emulator.base_url());
    assert!(said.contains(&url), "{said}");
    assert!(said.contains("404"), "{said}");
    let rows = env.results();
    assert!(
        rows.iter().all(|row| row["outcome"] == "registered"),
        "no rejected row, nothing else written: {rows:?}"
    );
    assert_eq!(rows.len(), 3, "the rows before it are registered: {rows:?}");
    assert_eq!(
        env.emulator.stats().create_requests,
        4,
        "none sent after it"
    );
    let json = summary_json(&summary);
    assert_eq!(json["end"], "wrong_endpoint", "{json}");
    assert_eq!(json["exit_code"], 2);

    // The rows it left are sent by the next run.
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let last = env.last_rows();
    for (iccid, _) in &sims {
        assert_eq!(last[iccid]["outcome"], "registered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_with_a_twilio_code_on_create_stays_a_rejected_sim() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (50..53).map(good_sim).collect();
    env.write_input(&sims);
    env.emulator.inject(
        &sims[1].0,
        vec![Fault::TwilioError {
            status: 400,
            code: 83002,
        }],
    );
    let output = env.register(&["--concurrency", "1"]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let last = env.last_rows();
    assert_eq!(last[&sims[1].0]["outcome"], "rejected");
    assert_eq!(last[&sims[0].0]["outcome"], "registered");
    assert_eq!(last[&sims[2].0]["outcome"], "registered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_naming_more_than_1000_fleets_stops_before_anything_is_sent() {
    let env = TestEnv::new().await;
    let mut csv = String::from("iccid,code,fleet\n");
    for n in 0..1001 {
        let (iccid, code) = good_sim(1000 + n);
        csv.push_str(&format!("{iccid},{code},fleet-{n}\n"));
    }
    env.write_csv(&csv);
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 2, "{}", stdout(&output));
    let err = stderr(&output);
    assert!(err.contains("more than 1000 distinct Fleets"), "{err}");
    let stats = env.emulator.stats();
    assert_eq!(stats.create_requests, 0);
    assert_eq!(stats.update_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_not_the_api_stops_the_fleet_lookup_naming_the_url() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (60..63).map(good_sim).collect();
    env.write_input(&sims);
    // A web server answering every path with a bare 404 page.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::NOT_FOUND,
            axum::response::Html("<html><body>Not Found</body></html>"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let output = binary_command()
        .arg("register")
        .arg(env.input_path())
        .args(["--base-url", &base, "--fleet", "bench"])
        .envs(TestEnv::test_credentials())
        .output()
        .await
        .unwrap();
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert_eq!(exit_code(&output), 2, "{said}");
    assert!(said.contains(&base), "{said}");
    assert!(said.contains("404"), "{said}");
    let rows = if env.results_path().exists() {
        env.results()
    } else {
        Vec::new()
    };
    assert!(
        rows.is_empty(),
        "nothing is written against the SIMs: {rows:?}"
    );
}

/// A monitor reads `--summary-json`: a run that failed on its set-up must not leave the last
/// run's green summary in place. It writes its own (`end: error`, exit 2), but never over the
/// input or the results when the mistake is naming one of them.
#[tokio::test]
async fn a_set_up_failure_writes_the_summary_json_too() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let summary = env.dir.path().join("last-run.json");
    std::fs::write(&summary, r#"{"end":"finished","exit_code":0}"#).unwrap();
    // No credentials at all.
    let output = binary_command()
        .arg("register")
        .arg(env.input_path())
        .args(["--base-url", &env.emulator.base_url()])
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    let json = summary_json(&summary);
    assert_eq!(json["end"], "error", "{json}");
    assert_eq!(json["exit_code"], 2);
    assert!(
        json["reason"]
            .as_str()
            .unwrap()
            .contains("no Twilio credentials"),
        "{json}"
    );
    // The summary named as the input: the input is left as it was.
    let before = std::fs::read(env.input_path()).unwrap();
    let output = env
        .register(&["--summary-json", env.input_path().to_str().unwrap()])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    assert_eq!(std::fs::read(env.input_path()).unwrap(), before);
}

/// `TWILIO_REGION` and `TWILIO_EDGE` (also a twilio-cli profile's `region` and `edge`) are
/// words in Twilio's host name, `supersim.{edge}.{region}.twilio.com`. A value that is not
/// one (a URL pasted in, a `#` or a `/`) would move the host elsewhere, and the credentials
/// with it (`supersim.example.net#.twilio.com` is the host `supersim.example.net`): it is
/// refused as a set-up error naming the variable, before any request.
#[tokio::test(flavor = "multi_thread")]
async fn a_region_or_edge_that_is_not_a_host_name_word_is_refused() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    for (variable, value) in [
        ("TWILIO_REGION", "example.net#"),
        ("TWILIO_REGION", "https://supersim.ie1.twilio.com"),
        ("TWILIO_EDGE", "example.net/"),
        ("TWILIO_EDGE", "dublin?"),
    ] {
        let output = binary_command()
            .current_dir(env.dir.path())
            .args(["check"])
            .envs(TestEnv::test_credentials())
            .env(variable, value)
            .output()
            .await
            .unwrap();
        let err = stderr(&output);
        assert_eq!(exit_code(&output), 2, "{variable}={value}: {err}");
        assert!(err.contains(variable), "{variable}={value}: {err}");
    }
}
