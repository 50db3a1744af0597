//! Tests of `client`.

use super::*;

fn url(text: &str) -> reqwest::Url {
    reqwest::Url::parse(text).unwrap()
}

#[test]
fn loopback_hosts() {
    for yes in [
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://localhost:1",
        "http://LOCALHOST./",
        "http://[::1]:9",
        "https://[::ffff:127.0.0.1]",
    ] {
        assert!(is_loopback(&url(yes)), "{yes}");
    }
    for no in [
        "https://supersim.twilio.com",
        "http://10.0.0.1",
        "http://localhost.example.com",
        "http://[::2]",
        "http://0.0.0.0",
    ] {
        assert!(!is_loopback(&url(no)), "{no}");
    }
}

#[test]
fn a_proxy_is_named_without_its_credentials() {
    let matcher = Matcher::builder()
        .https("http://alice:hunter2-canary@proxy.example:3128")
        .build();
    let proxy = proxy_for(&matcher, &url("https://supersim.twilio.com")).unwrap();
    assert_eq!(proxy, "http://proxy.example:3128");

    let matcher = Matcher::builder().all("http://proxy.example").build();
    let proxy = proxy_for(&matcher, &url("https://supersim.twilio.com")).unwrap();
    assert_eq!(proxy, "http://proxy.example:80");

    let matcher = Matcher::builder()
        .https("http://proxy.example:3128")
        .no("twilio.com")
        .build();
    assert_eq!(
        proxy_for(&matcher, &url("https://supersim.twilio.com")),
        None
    );
    assert_eq!(
        proxy_for(
            &Matcher::builder().build(),
            &url("https://supersim.twilio.com")
        ),
        None
    );
}

#[test]
fn a_2xx_that_is_not_the_resource_is_an_answer_in_doubt() {
    let sid = "HS0123456789abcdef0123456789abcdef";
    let sim: Sim = decode_success(201, format!(r#"{{"sid":"{sid}"}}"#).as_bytes()).unwrap();
    assert_eq!(sim.sid.as_deref(), Some(sid));

    for body in [
        &b"<html>oops</html>"[..],
        b"",
        b"{}",
        br#"{"sid":null}"#,
        br#"{"sid":""}"#,
        b"[]",
    ] {
        let error = decode_success::<Sim>(200, body).unwrap_err();
        assert!(error.maybe_processed, "{error}");
        assert_eq!(
            error.classify(),
            ErrorClass::Retry { throttled: false },
            "{error}"
        );
        assert_eq!(error.http_status, Some(200));
    }
    assert!(decode_success::<Fleet>(200, b"{}").is_err());
    assert!(decode_success::<SimList>(200, br#"{"sims":[]}"#).is_ok());
    assert!(decode_success::<SimList>(200, br#"{"sims":[{"iccid":"8988"}]}"#).is_err());
    assert!(decode_success::<SimList>(200, b"{}").is_err());
}

#[test]
fn debug_output_hides_secrets() {
    let credentials = Credentials {
        username: "SKuser".into(),
        password: "hunter2-canary".into(),
    };
    assert!(!format!("{credentials:?}").contains("hunter2-canary"));
    let code = RegistrationCode::new("CANARY1234".into());
    assert!(!format!("{code:?}").contains("CANARY1234"));
}

#[test]
fn an_answer_counts_only_for_the_sim_asked_for_on_the_runs_account() {
    let iccid = "89883070000000000001";
    let sid = "HS0123456789abcdef0123456789abcdef";
    let account = "AC0123456789abcdef0123456789abcdef";
    let sim = Sim {
        sid: Some(sid.into()),
        iccid: Some(iccid.into()),
        status: Some("new".into()),
        fleet_sid: None,
        unique_name: None,
        account_sid: Some(account.into()),
    };
    assert_eq!(check_sim_answer(&sim, iccid, None, Some(account)), None);
    assert_eq!(
        check_sim_answer(
            &sim,
            iccid,
            Some(&format!("HS{}", sid[2..].to_uppercase())),
            None
        ),
        None
    );
    // An account that is not known cannot be checked; everything else still is.
    assert_eq!(check_sim_answer(&sim, iccid, Some(sid), None), None);
    let wrong = [
        (
            Sim {
                iccid: Some("89883070000000000002".into()),
                ..sim.clone()
            },
            None,
        ),
        (
            Sim {
                iccid: None,
                ..sim.clone()
            },
            None,
        ),
        (
            Sim {
                sid: Some("HS0123,\nforged".into()),
                ..sim.clone()
            },
            None,
        ),
        (
            Sim {
                sid: Some(format!("{sid}0")),
                ..sim.clone()
            },
            None,
        ),
        (sim.clone(), Some("HSffffffffffffffffffffffffffffffff")),
        (
            Sim {
                account_sid: Some("AC11111111111111111111111111111111".into()),
                ..sim.clone()
            },
            None,
        ),
        (
            Sim {
                account_sid: None,
                ..sim.clone()
            },
            None,
        ),
    ];
    for (answer, asked) in wrong {
        assert!(
            check_sim_answer(&answer, iccid, asked, Some(account)).is_some(),
            "{answer:?} {asked:?}"
        );
    }
}

#[test]
fn a_proxy_is_named_by_the_variable_that_set_it() {
    let env = |set: &'static [&'static str]| {
        move |name: &str| set.contains(&name).then(|| "x".to_string())
    };
    assert_eq!(proxy_variable(&env(&["ALL_PROXY"])), "ALL_PROXY");
    assert_eq!(
        proxy_variable(&env(&["all_proxy", "HTTPS_PROXY"])),
        "HTTPS_PROXY"
    );
    assert_eq!(
        proxy_variable(&env(&["https_proxy", "ALL_PROXY"])),
        "https_proxy"
    );
}

/// A client of an emulator whose answers all carry `Twilio-Concurrent-Requests`.
async fn counted_emulator() -> (crate::emulator::Emulator, Client) {
    use crate::emulator::{Emulator, EmulatorConfig, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};
    let emulator = Emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let credentials = Credentials {
        username: TEST_ACCOUNT_SID.into(),
        password: TEST_AUTH_TOKEN.into(),
    };
    let client = Client::new(&emulator.base_url(), credentials, Duration::from_secs(10)).unwrap();
    (emulator, client)
}

#[tokio::test]
async fn every_answer_comes_back_with_the_count_it_carried() {
    let (emulator, client) = counted_emulator().await;
    let iccid = "89883070000123456789";
    let code = RegistrationCode::new(crate::emulator::registration_code_for(iccid));
    // A success: this request alone was in flight.
    let created = client.create_sim(iccid, &code).await;
    assert_eq!(created.concurrent_requests, Some(1));
    let sid = created.result.unwrap().sid.unwrap();
    // A Twilio error (83003, already on the account) carries its count too.
    let again = client.create_sim(iccid, &code).await;
    assert_eq!(again.concurrent_requests, Some(1));
    assert_eq!(again.result.unwrap_err().code, Some(83003));
    // A success turned into an answer in doubt by the client's own check keeps the count.
    let mismatched = client.fetch_sim(&sid, "89883070000000000000").await;
    assert_eq!(mismatched.concurrent_requests, Some(1));
    assert!(mismatched.result.unwrap_err().maybe_processed);
    // Reads and listings alike.
    assert_eq!(client.find_sim(iccid).await.concurrent_requests, Some(1));
    assert_eq!(client.list_fleets(5).await.concurrent_requests, Some(1));
    let filter = SimFilter::default();
    let page = client.list_sims_page(&filter.first_page(), &filter).await;
    assert_eq!(page.concurrent_requests, Some(1));
    assert_eq!(page.result.unwrap().sims.len(), 1);
    emulator.shutdown().await;
    // No answer at all (nothing listens on the port): no count.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = Client::new(
        &nowhere,
        client.credentials.clone(),
        Duration::from_secs(10),
    )
    .unwrap();
    let unanswered = client.find_sim(iccid).await;
    assert_eq!(unanswered.concurrent_requests, None);
    assert_eq!(unanswered.result.unwrap_err().http_status, None);
}
