//! Paging that goes round in a circle: `export` and `reconcile` follow `next_page_url`, and
//! must stop at a page they have read before (by URL, by page token, or by a page number
//! that does not move forward), or at pages that keep coming without a SIM not listed
//! before, instead of listing the same SIMs for ever; a SIM shown twice is listed once.
//! Against the emulator's paging faults and small scripted servers, over real loopback
//! HTTP.

mod common;

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestEnv, binary_command, exit_code, iccid, stderr, stdout, wait_until};
use supersim_bulk::emulator::{EmulatorConfig, PagingFault};

/// Runs `command` until it exits, or until `requests` shows it kept asking for pages long
/// after a listing of a few pages should have ended (then it is killed, and the test fails
/// on its exit code). The bound is a count of requests, an event, not a time.
async fn run_unless_endless(
    mut command: tokio::process::Command,
    requests: impl Fn() -> usize,
) -> Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut exited = false;
    wait_until("the listing ends or keeps going round", || {
        exited = matches!(child.try_wait(), Ok(Some(_)));
        exited || requests() > 20
    })
    .await;
    if !exited {
        child.start_kill().unwrap();
    }
    child.wait_with_output().await.unwrap()
}

fn looped(output: &Output) -> String {
    format!(
        "exit {:?} (None: killed, still listing)\nstderr: {}\nstdout lines: {}",
        output.status.code(),
        stderr(output),
        stdout(output).lines().count()
    )
}

/// Ten SIMs at five a page: page 0, page 1, and page 1 names page 0 as its next.
async fn cycling_emulator() -> TestEnv {
    let env = TestEnv::with_config(EmulatorConfig {
        paging_cycle: true,
        ..EmulatorConfig::default()
    })
    .await;
    for n in 0..10 {
        env.emulator.preregister(&iccid(n));
    }
    env
}

/// `sims` SIMs on an emulator whose SIM list misbehaves as `fault` says.
async fn faulty_emulator(fault: PagingFault, sims: u32) -> TestEnv {
    let env = TestEnv::with_config(EmulatorConfig {
        paging_fault: Some(fault),
        ..EmulatorConfig::default()
    })
    .await;
    for n in 0..sims {
        env.emulator.preregister(&iccid(n));
    }
    env
}

/// The ICCID column of a CSV export, sorted.
fn exported_iccids(text: &str) -> Vec<String> {
    let mut iccids: Vec<String> = text
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(1).unwrap().to_string())
        .collect();
    iccids.sort();
    iccids
}

fn account_command(env: &TestEnv, subcommand: &str, extra: &[&str]) -> tokio::process::Command {
    let mut command = binary_command();
    command
        .arg(subcommand)
        .args(extra)
        .args(["--base-url", &env.emulator.base_url(), "--rate", "1000"])
        .args(["--page-size", "5"])
        .current_dir(env.dir.path())
        .envs(TestEnv::test_credentials());
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn export_stops_when_the_last_page_names_the_first_again() {
    let env = cycling_emulator().await;
    let before = env.emulator.stats().list_requests as usize;
    let requests = || env.emulator.stats().list_requests as usize - before;
    let output = run_unless_endless(account_command(&env, "export", &[]), requests).await;
    assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
    let err = stderr(&output);
    assert!(err.contains("went round in a circle"), "{err}");
    assert!(err.contains("run again later"), "{err}");
    // Page 0's address is never asked for a second time, so no SIM is written twice.
    assert_eq!(requests(), 2);
    let text = stdout(&output);
    let mut iccids: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|line| line.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(iccids.len(), 10, "{text}");
    iccids.sort();
    iccids.dedup();
    assert_eq!(iccids.len(), 10, "{text}");

    // With -o, no half an export is put in place.
    let output = run_unless_endless(
        account_command(&env, "export", &["-o", "account.csv"]),
        requests,
    )
    .await;
    assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
    assert!(!env.dir.path().join("account.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_stops_when_the_last_page_names_the_first_again() {
    let env = cycling_emulator().await;
    let export = "sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid\n";
    std::fs::write(env.dir.path().join("account.csv"), export).unwrap();
    let before = env.emulator.stats().list_requests as usize;
    let requests = || env.emulator.stats().list_requests as usize - before;
    let output = run_unless_endless(
        account_command(&env, "reconcile", &["account.csv", "--all"]),
        requests,
    )
    .await;
    assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
    assert!(
        stderr(&output).contains("went round in a circle"),
        "{}",
        stderr(&output)
    );
    assert_eq!(requests(), 2);
}

/// A scripted server: `next(query)` is the `next_page_url` query of the page asked for with
/// `query` (None ends the list). Each page holds one SIM. Returns the address and a count
/// of the requests it answered.
async fn scripted(
    next: impl Fn(&str) -> Option<String> + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    use axum::extract::RawQuery;
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let app = axum::Router::new().route(
        "/v1/Sims",
        axum::routing::get(move |RawQuery(query): RawQuery| {
            let next = next.clone();
            let n = counter.fetch_add(1, Ordering::SeqCst) as u32;
            async move {
                let query = query.unwrap_or_default();
                let sim = serde_json::json!({
                    "sid": format!("HS{:032x}", n), "unique_name": null,
                    "account_sid": "AC00000000000000000000000000000000",
                    "iccid": iccid(n), "status": "new", "fleet_sid": null,
                    "date_created": "2026-01-01T00:00:00Z", "date_updated": "2026-01-01T00:00:00Z",
                    "url": format!("https://supersim.twilio.com/v1/Sims/HS{:032x}", n), "links": {}
                });
                let next_url = next(&query)
                    .map(|q| format!("https://supersim.twilio.com/v1/Sims?{q}"));
                axum::Json(serde_json::json!({
                    "sims": [sim],
                    "meta": {"key": "sims", "next_page_url": next_url, "page_size": 1,
                             "first_page_url": "https://supersim.twilio.com/v1/Sims?PageSize=1&Page=0",
                             "previous_page_url": null,
                             "url": format!("https://supersim.twilio.com/v1/Sims?{query}")}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), requests)
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

async fn export_from(base_url: &str, requests: &Arc<AtomicUsize>) -> Output {
    let mut command = binary_command();
    command
        .args(["export", "--page-size", "1", "--rate", "1000"])
        .args(["--base-url", base_url])
        .envs(TestEnv::test_credentials());
    run_unless_endless(command, || requests.load(Ordering::SeqCst)).await
}

/// Every page has a new address (its page number grows), but the token repeats.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_token_seen_before_stops_the_listing() {
    let (base_url, requests) = scripted(|query| {
        let page: u32 = param(query, "Page").map_or(0, |p| p.parse().unwrap());
        Some(format!("PageSize=1&Page={}&PageToken=PTsame", page + 1))
    })
    .await;
    let output = export_from(&base_url, &requests).await;
    assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
    assert!(
        stderr(&output).contains("went round in a circle"),
        "{}",
        stderr(&output)
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

/// Every page has a new token, but the page numbers go 0, 1, 0, 1, ...: a page number
/// that does not move forward is a page read before.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_number_that_does_not_move_forward_stops_the_listing() {
    let (base_url, requests) = scripted(|query| {
        let page: u32 = param(query, "Page").map_or(0, |p| p.parse().unwrap());
        let token: u32 = param(query, "PageToken").map_or(0, |t| t[2..].parse().unwrap());
        Some(format!(
            "PageSize=1&Page={}&PageToken=PT{}",
            1 - page,
            token + 1
        ))
    })
    .await;
    let output = export_from(&base_url, &requests).await;
    assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
    assert!(
        stderr(&output).contains("went round in a circle"),
        "{}",
        stderr(&output)
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

/// The guard does not get in the way of an ordinary listing that uses tokens.
#[tokio::test(flavor = "multi_thread")]
async fn a_listing_with_fresh_tokens_and_growing_pages_is_followed_to_its_end() {
    let (base_url, requests) = scripted(|query| {
        let page: u32 = param(query, "Page").map_or(0, |p| p.parse().unwrap());
        (page < 4).then(|| format!("PageSize=1&Page={}&PageToken=PT{}", page + 1, page + 1))
    })
    .await;
    let output = export_from(&base_url, &requests).await;
    assert_eq!(exit_code(&output), 0, "{}", looped(&output));
    assert_eq!(stdout(&output).lines().count(), 6);
    assert_eq!(requests.load(Ordering::SeqCst), 5);
}

/// Every page names a new next page (a page number one on, a token never given before) and
/// shows the first page's SIMs again: no address repeats, so only the SIMs show that the
/// listing goes nowhere. It stops once three pages in a row bring no SIM not listed before.
#[tokio::test(flavor = "multi_thread")]
async fn export_stops_when_pages_keep_coming_without_a_new_sim() {
    let env = faulty_emulator(PagingFault::EndlessRepeat, 3).await;
    let before = env.emulator.stats().list_requests as usize;
    let requests = || env.emulator.stats().list_requests as usize - before;
    let output = run_unless_endless(account_command(&env, "export", &[]), requests).await;
    assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
    let err = stderr(&output);
    assert!(err.contains("3 pages in a row without a SIM"), "{err}");
    assert!(err.contains("run again later"), "{err}");
    // The first page, then three that add nothing.
    assert_eq!(requests(), 4);
    let expected: Vec<String> = (0..3).map(iccid).collect();
    assert_eq!(exported_iccids(&stdout(&output)), expected);
}

/// Each page shows the page before's SIMs again: the listing ends, and each SIM is written
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_sim_shown_again_on_a_later_page_is_listed_once() {
    let env = faulty_emulator(PagingFault::RepeatPageBefore, 12).await;
    let output = env.account_command("export", &["--page-size", "5"]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let expected: Vec<String> = (0..12).map(iccid).collect();
    assert_eq!(exported_iccids(&stdout(&output)), expected);
    let err = stderr(&output);
    assert!(err.contains("sims=12 pages=3"), "{err}");
    assert!(err.contains("10 SIMs were shown again"), "{err}");

    // reconcile counts each SIM of the account once too.
    let export = stdout(&output);
    std::fs::write(env.dir.path().join("account.csv"), &export).unwrap();
    let output = env
        .account_command("reconcile", &["account.csv", "--all", "--page-size", "5"])
        .await;
    assert_eq!(
        exit_code(&output),
        0,
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("12 on the account"),
        "{}",
        stdout(&output)
    );
}

/// A listing given up is no picture of the account: reconcile reports no SIM and no counts,
/// not even a SIM it could tell at once was not in the file (an ICCID that is not a Super
/// SIM's), and says nothing was compared.
#[tokio::test(flavor = "multi_thread")]
async fn reconcile_draws_no_conclusion_from_a_listing_it_gives_up() {
    let env = faulty_emulator(PagingFault::EndlessRepeat, 2).await;
    env.emulator.preregister("1234567890123456789");
    let export = "sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid\n";
    std::fs::write(env.dir.path().join("account.csv"), export).unwrap();
    let before = env.emulator.stats().list_requests as usize;
    let requests = || env.emulator.stats().list_requests as usize - before;
    for format in ["text", "json"] {
        let output = run_unless_endless(
            account_command(
                &env,
                "reconcile",
                &["account.csv", "--all", "--format", format],
            ),
            requests,
        )
        .await;
        assert_eq!(output.status.code(), Some(75), "{}", looped(&output));
        assert_eq!(stdout(&output), "", "{format}");
        let err = stderr(&output);
        assert!(err.contains("without a SIM not listed before"), "{err}");
        assert!(err.contains("nothing was compared"), "{err}");
    }
}

/// A `next_page_url` outside the SIM list is refused at once, as a redirect is: nothing is
/// sent there, and the error says so (not an interrupt, not an unreachable API: the API
/// answered every request).
#[tokio::test(flavor = "multi_thread")]
async fn a_next_page_outside_the_sim_list_is_refused_at_once() {
    let env = faulty_emulator(
        PagingFault::NextPageUrl("/v1/Sims/../Fleets?Page=1".into()),
        2,
    )
    .await;
    let export = "sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid\n";
    std::fs::write(env.dir.path().join("account.csv"), export).unwrap();
    for (subcommand, extra) in [
        ("export", &[][..]),
        ("reconcile", &["account.csv", "--all"][..]),
    ] {
        let before = env.emulator.stats().requests;
        let output = env.account_command(subcommand, extra).await;
        let err = stderr(&output);
        assert_eq!(exit_code(&output), 2, "{subcommand}: {err}");
        assert!(
            err.contains("named as its next page http://127.0.0.1:"),
            "{subcommand}: {err}"
        );
        assert!(
            err.contains("/v1/Sims/../Fleets?Page=1"),
            "{subcommand}: {err}"
        );
        assert!(
            err.contains("nothing was sent there"),
            "{subcommand}: {err}"
        );
        assert!(!err.contains("interrupted"), "{subcommand}: {err}");
        let sentence = err.lines().find(|line| line.contains("next page")).unwrap();
        assert!(
            !sentence.contains("  "),
            "one sentence, evenly spaced: {sentence}"
        );
        // The first page only: the next one is never asked for, of any host.
        assert_eq!(env.emulator.stats().requests - before, 1, "{subcommand}");
        if subcommand == "reconcile" {
            assert!(err.contains("nothing was compared"), "{err}");
            assert_eq!(stdout(&output), "");
        }
    }
}

/// An API that never answers stops the listing as unreachable (exit 75, saying so), not as
/// an interrupt nobody sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_that_never_answers_is_unreachable_not_interrupted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    // Nothing listens there any more: every connection is refused.
    drop(listener);
    let mut command = binary_command();
    command
        .args(["export", "--rate", "1000", "--base-url", &base_url])
        .envs(TestEnv::test_credentials());
    let output = command.output().await.unwrap();
    let err = stderr(&output);
    assert_eq!(exit_code(&output), 75, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(!err.contains("interrupted"), "{err}");
}

/// SIMs listed as another account's are not this account's: export writes none of them,
/// reconcile compares nothing, and both say whose they were and what to check.
#[tokio::test(flavor = "multi_thread")]
async fn sims_of_another_account_are_refused_not_listed_as_this_ones() {
    const OTHER: &str = "ACffffffffffffffffffffffffffffffff";
    let env = faulty_emulator(PagingFault::ListedAccount(OTHER.into()), 3).await;
    let export = "sid,iccid,status,fleet_sid,unique_name,date_created,date_updated,account_sid\n";
    std::fs::write(env.dir.path().join("account.csv"), export).unwrap();
    for (subcommand, extra) in [
        ("export", &["-o", "out.csv"][..]),
        ("export", &[][..]),
        ("reconcile", &["account.csv", "--all"][..]),
    ] {
        let output = env.account_command(subcommand, extra).await;
        let err = stderr(&output);
        assert_eq!(exit_code(&output), 2, "{subcommand}: {err}");
        assert!(err.contains(&format!("a SIM of account {OTHER}")), "{err}");
        assert!(
            err.contains(supersim_bulk::emulator::TEST_ACCOUNT_SID),
            "{err}"
        );
        assert!(err.contains("TWILIO_ACCOUNT_SID"), "{err}");
        assert!(
            !err.contains(supersim_bulk::emulator::TEST_AUTH_TOKEN),
            "{err}"
        );
        // Not one of them is listed: not even the CSV header goes out.
        assert_eq!(stdout(&output), "", "{subcommand}");
        assert!(!env.dir.path().join("out.csv").exists());
        if subcommand == "reconcile" {
            assert!(err.contains("nothing was compared"), "{err}");
        }
    }
}
