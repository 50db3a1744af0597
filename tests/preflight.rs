//! The preflight against real HTTP on loopback: the emulator, a closed port, and a server
//! that is not the API.

mod common;

use std::time::Duration;

use common::TestEnv;
use supersim_bulk::api::Client;
use supersim_bulk::api::preflight::{PreflightError, preflight};
use supersim_bulk::emulator::{TEST_ACCOUNT_SID, TEST_AUTH_TOKEN};
use supersim_bulk::secret::Credentials;

fn client(base_url: &str, password: &str) -> Client {
    Client::new(
        base_url,
        Credentials {
            username: TEST_ACCOUNT_SID.to_string(),
            password: password.to_string(),
        },
        Duration::from_secs(5),
    )
    .unwrap()
}

#[tokio::test]
async fn the_emulator_passes_and_names_its_account() {
    let env = TestEnv::new().await;
    let proven = preflight(&client(&env.emulator.base_url(), TEST_AUTH_TOKEN))
        .await
        .unwrap();
    assert_eq!(proven.account_sid.as_deref(), Some(TEST_ACCOUNT_SID));
}

#[tokio::test]
async fn a_base_url_ending_in_v1_is_a_setup_error_naming_the_url() {
    let env = TestEnv::new().await;
    let base = format!("{}/v1", env.emulator.base_url());
    let error = preflight(&client(&base, TEST_AUTH_TOKEN))
        .await
        .unwrap_err();
    let PreflightError::Setup(message) = error else {
        panic!("{error:?}")
    };
    assert!(
        message.contains(&format!("{base}/v1/Sims?PageSize=1")),
        "{message}"
    );
    assert!(message.contains("no /v1 on the end"), "{message}");
    // The region and edge are variables; no `--region` or `--edge` flag exists.
    assert!(
        message.contains("TWILIO_REGION or TWILIO_EDGE") && !message.contains("--region"),
        "{message}"
    );
}

#[tokio::test]
async fn refused_credentials_are_told_as_such() {
    let env = TestEnv::new().await;
    let error = preflight(&client(&env.emulator.base_url(), "wrong"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PreflightError::CredentialsRefused(_)),
        "{error:?}"
    );
    // As the emulator answered: 401 with Twilio error 20003.
    assert_eq!(
        error.to_string(),
        "the API refused the credentials (HTTP 401, Twilio error 20003)"
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable_and_says_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = preflight(&client(&base, TEST_AUTH_TOKEN))
        .await
        .unwrap_err();
    let PreflightError::Unreachable(message) = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("refused"), "{message}");
    assert!(message.contains(&base), "{message}");
}

#[tokio::test]
async fn a_web_page_is_not_the_api() {
    let app = axum::Router::new()
        .fallback(|| async { axum::response::Html("<html><body>Welcome</body></html>") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let error = preflight(&client(&base, TEST_AUTH_TOKEN))
        .await
        .unwrap_err();
    let PreflightError::Setup(message) = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("web page"), "{message}");
}

#[tokio::test]
async fn a_new_account_is_proven_in_one_round_trip() {
    // No SIMs yet, so only the Fleets list names the account: it is asked beside the SIM
    // list, not after it. Both are held in flight together for the emulator's latency.
    let env = TestEnv::with_config(supersim_bulk::emulator::EmulatorConfig {
        latency: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let proven = preflight(&client(&env.emulator.base_url(), TEST_AUTH_TOKEN))
        .await
        .unwrap();
    assert_eq!(proven.account_sid.as_deref(), Some(TEST_ACCOUNT_SID));
    let stats = env.emulator.stats();
    assert_eq!((stats.list_requests, stats.max_in_flight), (1, 2));
}

/// A 2xx whose body goes on and on is read no further than 64 KB, as every other answer
/// is: a server sending 1 GiB took a run to 2.1 GB of memory. The body cut there is not a
/// Super SIM list, and the preflight says so.
#[tokio::test]
async fn a_body_past_64_kb_is_not_read_to_its_end() {
    use supersim_bulk::emulator::{EmulatorConfig, PagingFault};
    const PADDING: u64 = 256 << 20;
    let env = TestEnv::with_config(EmulatorConfig {
        paging_fault: Some(PagingFault::PaddedBody(PADDING)),
        ..EmulatorConfig::default()
    })
    .await;
    let error = preflight(&client(&env.emulator.base_url(), TEST_AUTH_TOKEN)).await;
    let sent = env.emulator.stats().padding_sent;
    // What the socket buffers between the two ends hold, not the whole body.
    assert!(sent < 32 << 20, "{sent} bytes of padding were sent");
    let Err(PreflightError::Setup(message)) = error else {
        panic!("{error:?}")
    };
    assert!(message.contains("not with a Super SIM list"), "{message}");
    assert!(message.contains("over 64 KB"), "{message}");
}
