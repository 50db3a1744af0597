//! `supersim-bulk export` against the emulator (and a stand-in server for page URLs that
//! name another host), over real loopback HTTP.

mod common;

use common::{TestEnv, binary_command, exit_code, good_sim, iccid, stderr, stdout};

const HEADER: &str = "sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid";

fn rows(csv_text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader
            .headers()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
            .join(","),
        HEADER
    );
    reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_follows_every_page_and_lists_each_sim_once() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..23).map(good_sim).collect();
    env.write_input(&sims);
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));

    let lists_before = env.emulator.stats().list_requests;
    let output = env.account_command("export", &["--page-size", "5"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    // 23 SIMs at 5 a page: 5 pages, each one request.
    assert_eq!(env.emulator.stats().list_requests - lists_before, 5);
    let exported = rows(&stdout(&output));
    assert_eq!(exported.len(), 23);
    let mut iccids: Vec<_> = exported.iter().map(|row| row[1].clone()).collect();
    iccids.sort();
    let mut expected: Vec<_> = sims.iter().map(|(iccid, _)| iccid.clone()).collect();
    expected.sort();
    assert_eq!(iccids, expected);
    for row in &exported {
        let sim = env.emulator.sim(&row[1]).unwrap();
        assert_eq!(row[0], sim.sid);
        assert_eq!(row[2], "new");
        assert_eq!(row[3], "");
        assert_eq!(row[7], supersim_bulk::emulator::TEST_ACCOUNT_SID);
        assert!(row[5].ends_with('Z') && row[6].ends_with('Z'), "{row:?}");
    }
    assert!(
        stderr(&output).contains("sims=23 pages=5"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_fleet_filters_by_sid_or_name() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..6).map(good_sim).collect();
    env.write_input(&sims);
    assert_eq!(exit_code(&env.register(&[]).await), 0);
    env.emulator
        .set_status(&iccid(1), "ready", Some("field-devices"));
    env.emulator
        .set_status(&iccid(2), "active", Some("field-devices"));
    env.emulator.set_status(&iccid(3), "active", Some("bench"));
    let fleet_sid = supersim_bulk::emulator::fleet_sid_for("field-devices");

    let listed = |output: &std::process::Output| {
        assert_eq!(exit_code(output), 0, "{}", stderr(output));
        let mut iccids: Vec<String> = rows(&stdout(output))
            .into_iter()
            .map(|r| r[1].clone())
            .collect();
        iccids.sort();
        iccids
    };
    let by_name = env
        .account_command("export", &["--fleet", "field-devices", "--page-size", "1"])
        .await;
    assert_eq!(listed(&by_name), vec![iccid(1), iccid(2)]);
    let by_sid = env
        .account_command("export", &["--fleet", &fleet_sid])
        .await;
    assert_eq!(listed(&by_sid), vec![iccid(1), iccid(2)]);
    let active = env.account_command("export", &["--status", "active"]).await;
    assert_eq!(listed(&active), vec![iccid(2), iccid(3)]);
    let both = env
        .account_command("export", &["--status", "active", "--fleet", "bench"])
        .await;
    assert_eq!(listed(&both), vec![iccid(3)]);
    let none = env
        .account_command("export", &["--status", "inactive"])
        .await;
    assert_eq!(stdout(&none), format!("{HEADER}\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn output_file_is_replaced_atomically_and_never_through_a_link_or_over_another_file() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1), good_sim(2)]);
    assert_eq!(exit_code(&env.register(&[]).await), 0);
    let dir = env.dir.path();

    let output = env.account_command("export", &["-o", "account.csv"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
    let first = std::fs::read_to_string(dir.join("account.csv")).unwrap();
    assert_eq!(rows(&first).len(), 2);

    // An earlier export is replaced.
    env.emulator.preregister(&iccid(3));
    let output = env.account_command("export", &["-o", "account.csv"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        rows(&std::fs::read_to_string(dir.join("account.csv")).unwrap()).len(),
        3
    );

    // A file that is not an export is left alone, and so is what a link points at.
    let output = env.account_command("export", &["-o", "sims.csv"]).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("is not an export"),
        "{}",
        stderr(&output)
    );
    assert!(
        std::fs::read_to_string(env.input_path())
            .unwrap()
            .starts_with("Iccid,")
    );

    let target = dir.join("precious.txt");
    std::fs::write(&target, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("link.csv")).unwrap();
    let output = env.account_command("export", &["-o", "link.csv"]).await;
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    assert!(
        std::fs::symlink_metadata(dir.join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // No temporary file is left beside the output.
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("export-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_exit_2_with_nothing_on_stdout_and_no_secret() {
    let env = TestEnv::new().await;
    let output = binary_command()
        .args(["export", "--base-url", &env.emulator.base_url()])
        .env("TWILIO_ACCOUNT_SID", "ACcanary")
        .env("TWILIO_AUTH_TOKEN", "token-canary-secret")
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 2);
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let err = stderr(&output);
    assert!(
        err.contains("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("token-canary-secret"), "{err}");

    let output = binary_command().args(["export"]).output().await.unwrap();
    assert_eq!(exit_code(&output), 2);
    assert!(
        stderr(&output).contains("no Twilio credentials"),
        "{}",
        stderr(&output)
    );
}

/// Twilio's page URLs name its public host; the next page must be asked of the host this
/// run talks to, with the page URL's path and query (its PageToken included).
#[tokio::test(flavor = "multi_thread")]
async fn next_page_urls_are_followed_on_the_configured_host() {
    use axum::extract::RawQuery;
    use std::sync::{Arc, Mutex};

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/v1/Sims",
        axum::routing::get(move |RawQuery(query): RawQuery| {
            let record = Arc::clone(&record);
            async move {
                let query = query.unwrap_or_default();
                record.lock().unwrap().push(query.clone());
                let sim = |n: u32| {
                    serde_json::json!({
                        "sid": format!("HS{:032x}", n), "unique_name": null,
                        "account_sid": "AC00000000000000000000000000000000",
                        "iccid": iccid(n), "status": "new", "fleet_sid": null,
                        "date_created": "2026-01-01T00:00:00Z", "date_updated": "2026-01-01T00:00:00Z",
                        "url": format!("https://supersim.twilio.com/v1/Sims/HS{:032x}", n), "links": {}
                    })
                };
                let (sims, next) = if query.contains("PageToken=PT2") {
                    (vec![sim(3)], serde_json::Value::Null)
                } else {
                    (
                        vec![sim(1), sim(2)],
                        "https://supersim.twilio.com/v1/Sims?PageSize=2&Page=1&PageToken=PT2".into(),
                    )
                };
                axum::Json(serde_json::json!({
                    "sims": sims,
                    "meta": {"key": "sims", "next_page_url": next, "page": 0, "page_size": 2,
                             "first_page_url": "https://supersim.twilio.com/v1/Sims?PageSize=2&Page=0",
                             "previous_page_url": null,
                             "url": "https://supersim.twilio.com/v1/Sims?PageSize=2&Page=0"}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let output = binary_command()
        .args([
            "export",
            "--page-size",
            "2",
            "--base-url",
            &format!("http://{addr}"),
        ])
        .envs(TestEnv::test_credentials())
        .output()
        .await
        .unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(rows(&stdout(&output)).len(), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "PageSize=2".to_string(),
            "PageSize=2&Page=1&PageToken=PT2".to_string()
        ]
    );
}

/// `export | head -1`: more than a pipe buffer of CSV, its reader gone after one line.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_closes_the_pipe_early_ends_the_export_quietly() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let env = TestEnv::new().await;
    for n in 0..800 {
        env.emulator.preregister(&iccid(n));
    }
    let mut child = binary_command()
        .args(["export", "--page-size", "50", "--rate", "1000"])
        .args(["--base-url", &env.emulator.base_url()])
        .envs(TestEnv::test_credentials())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), HEADER);
    drop(lines);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert!(!stderr(&output).contains("error"), "{}", stderr(&output));
}

/// `--format json` writes JSON Lines: one object per SIM with the export columns as keys,
/// an absent value as null; an empty listing is an empty output.
#[tokio::test(flavor = "multi_thread")]
async fn json_format_is_one_object_per_sim_with_the_export_columns() {
    let env = TestEnv::new().await;
    let sims: Vec<_> = (0..5).map(good_sim).collect();
    env.write_input(&sims);
    assert_eq!(exit_code(&env.register(&[]).await), 0);
    env.emulator.set_status(&iccid(3), "active", Some("bench"));
    let output = env
        .account_command("export", &["--format", "json", "--page-size", "2"])
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let text = stdout(&output);
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(objects.len(), 5, "{text}");
    for object in &objects {
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = HEADER.split(',').collect();
        expected.sort();
        let mut keys = keys.clone();
        keys.sort();
        assert_eq!(keys, expected, "{text}");
        assert_eq!(object["unique_name"], serde_json::Value::Null, "{text}");
    }
    let moved = objects
        .iter()
        .find(|o| o["iccid"] == iccid(3).as_str())
        .unwrap();
    assert_eq!(moved["status"], "active");
    assert_eq!(
        moved["fleet_sid"],
        supersim_bulk::emulator::fleet_sid_for("bench").as_str()
    );
    for (_, code) in &sims {
        assert!(
            !text.contains(code.as_str()),
            "a registration code in {text}"
        );
    }

    // To a file, replacing an earlier JSON export; an empty listing is an empty file.
    let path = env.dir.path().join("account.jsonl");
    for _ in 0..2 {
        let output = env
            .account_command("export", &["--format", "json", "-o", "account.jsonl"])
            .await;
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 5);
    }
    let output = env
        .account_command(
            "export",
            &[
                "--format",
                "json",
                "--status",
                "inactive",
                "-o",
                "account.jsonl",
            ],
        )
        .await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    // A CSV export is not replaced by a JSON one, nor the other way round.
    let output = env
        .account_command("export", &["-o", "account.jsonl"])
        .await;
    assert_eq!(exit_code(&output), 0, "an empty file may become any export");
    let output = env
        .account_command("export", &["--format", "json", "-o", "account.jsonl"])
        .await;
    assert_eq!(exit_code(&output), 2, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is not a JSON export"),
        "{}",
        stderr(&output)
    );
}

/// A page is read no further than a page of the SIMs asked for can be (8 KiB a SIM, and
/// 64 KiB for the rest): a body that goes on past that is not a page of SIMs, and the
/// export stops rather than hold it.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_longer_than_the_sims_asked_for_can_be_is_refused() {
    use supersim_bulk::emulator::{EmulatorConfig, PagingFault};
    // Far more than the kernel's socket buffers between the two ends hold, so that what
    // was sent shows whether the client read on: the whole body fits in them at 4 MiB.
    const PADDING: u64 = 64 << 20;
    let env = TestEnv::with_config(EmulatorConfig {
        paging_fault: Some(PagingFault::PaddedBody(PADDING)),
        ..EmulatorConfig::default()
    })
    .await;
    env.emulator.preregister(&iccid(1));
    let output = env
        .account_command("export", &["--page-size", "1", "--max-attempts", "1"])
        .await;
    let err = stderr(&output);
    assert_eq!(exit_code(&output), 2, "{err}");
    assert!(err.contains("not a page of SIMs"), "{err}");
    assert!(
        err.contains("over 72 KiB, more than a page of 1 SIM can be"),
        "{err}"
    );
    assert_eq!(stdout(&output), "");
    let sent = env.emulator.stats().padding_sent;
    assert!(sent < PADDING / 2, "{sent} bytes of padding were sent");
}

/// A SIM's name or status that a spreadsheet would run as a formula is exported as text,
/// as the results file writes it (a `'` in front); JSON Lines, read by programs, keep the
/// server's words as they came.
#[tokio::test(flavor = "multi_thread")]
async fn a_formula_in_a_sims_text_is_exported_as_text_in_csv_only() {
    let app = axum::Router::new().route(
        "/v1/Sims",
        axum::routing::get(|| async {
            axum::Json(serde_json::json!({
                "sims": [{
                    "sid": format!("HS{:032x}", 1), "unique_name": "=HYPERLINK(\"x\")",
                    "account_sid": "AC00000000000000000000000000000000",
                    "iccid": iccid(1), "status": "@SUM(1)", "fleet_sid": null,
                    "date_created": "2026-01-01T00:00:00Z", "date_updated": "2026-01-01T00:00:00Z",
                    "url": format!("https://supersim.twilio.com/v1/Sims/HS{:032x}", 1), "links": {}
                }],
                "meta": {"key": "sims", "next_page_url": null, "page": 0, "page_size": 50,
                         "first_page_url": "https://supersim.twilio.com/v1/Sims?PageSize=50&Page=0",
                         "previous_page_url": null,
                         "url": "https://supersim.twilio.com/v1/Sims?PageSize=50&Page=0"}
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let export = |format: &'static str| {
        binary_command()
            .args([
                "export",
                "--format",
                format,
                "--base-url",
                &format!("http://{addr}"),
            ])
            .envs(TestEnv::test_credentials())
            .output()
    };

    let csv = export("csv").await.unwrap();
    assert_eq!(exit_code(&csv), 0, "{}", stderr(&csv));
    let exported = rows(&stdout(&csv));
    assert_eq!(exported.len(), 1, "{}", stdout(&csv));
    assert_eq!(exported[0][2], "'@SUM(1)", "status");
    assert_eq!(exported[0][4], "'=HYPERLINK(\"x\")", "unique_name");

    let json = export("json").await.unwrap();
    assert_eq!(exit_code(&json), 0, "{}", stderr(&json));
    let object: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(object["status"], "@SUM(1)");
    assert_eq!(object["unique_name"], "=HYPERLINK(\"x\")");
}
