//! The Super SIM API emulator over real loopback HTTP: response shapes against Twilio's
//! OpenAPI description, error codes, auth, the concurrency limit, every injectable fault, and
//! that no answer ever leaks a registration code or a credential.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use supersim_bulk::emulator::{
    DEFAULT_FLEETS, Emulator, EmulatorConfig, Fault, Stats, TEST_ACCOUNT_SID, TEST_AUTH_TOKEN,
    fleet_sid_for, registration_code_for,
};

const ICCID: &str = "89883070000123456789";
const OTHER_ICCID: &str = "8910392000000000017";

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One complete exchange; `Err` when the connection failed before a whole response arrived.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("body is JSON")
    }

    /// Everything a client could log: status line, headers and body.
    fn transcript(&self) -> String {
        let headers: String = self
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        format!("{}\n{headers}\n{}", self.status, self.body)
    }
}

/// A client that never goes through a proxy, whatever the environment says: every request
/// here is to the emulator on loopback.
fn client() -> Client {
    Client::builder().no_proxy().build().expect("a client")
}

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("emulator starts")
}

async fn exchange(request: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn create(
    client: &Client,
    emulator: &Emulator,
    iccid: &str,
    code: &str,
) -> reqwest::Result<Answer> {
    exchange(
        client
            .post(format!("{}/v1/Sims", emulator.base_url()))
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
            .form(&[("Iccid", iccid), ("RegistrationCode", code)]),
    )
    .await
}

async fn get(client: &Client, url: &str) -> Answer {
    exchange(
        client
            .get(url)
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN)),
    )
    .await
    .expect("GET answers")
}

fn assert_twilio_error(answer: &Answer, status: u16, code: u64) {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["code"], code, "{}", answer.body);
    assert_eq!(body["status"], status);
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(body["message"].is_string());
}

fn is_sid(value: &Value, prefix: &str) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// `components.schemas["supersim.v1.sim"]` of twilio_supersim_v1.json.
fn assert_sim_resource(sim: &Value, iccid: &str, base_url: &str) {
    let keys: Vec<&str> = sim
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "account_sid",
            "date_created",
            "date_updated",
            "fleet_sid",
            "iccid",
            "links",
            "sid",
            "status",
            "unique_name",
            "url"
        ]
    );
    assert!(is_sid(&sim["sid"], "HS"), "{sim}");
    assert!(is_sid(&sim["account_sid"], "AC"), "{sim}");
    assert_eq!(sim["iccid"], iccid);
    assert_eq!(sim["status"], "new");
    assert!(sim["fleet_sid"].is_null());
    assert!(sim["unique_name"].is_null());
    for date in ["date_created", "date_updated"] {
        let text = sim[date].as_str().unwrap();
        assert!(text.ends_with('Z') && text.len() == 20, "{text}");
        humantime::parse_rfc3339(text).expect("RFC 3339 date");
    }
    let url = format!("{base_url}/v1/Sims/{}", sim["sid"].as_str().unwrap());
    assert_eq!(sim["url"], url);
    assert_eq!(
        sim["links"]["billing_periods"],
        format!("{url}/BillingPeriods")
    );
    assert_eq!(
        sim["links"]["sim_ip_addresses"],
        format!("{url}/IpAddresses")
    );
}

#[tokio::test]
async fn create_answers_201_with_a_sim_resource() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();

    let answer = create(&client, &emulator, ICCID, &registration_code_for(ICCID)).await?;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let sim = answer.json();
    assert_sim_resource(&sim, ICCID, &emulator.base_url());
    assert_eq!(sim["account_sid"], TEST_ACCOUNT_SID);
    assert_eq!(emulator.commits(ICCID), 1);
    let record = emulator.sim(ICCID).expect("registered");
    assert_eq!(sim["sid"], record.sid);
    assert_eq!(record.status, "new");
    assert_eq!(answer.headers["twilio-concurrent-requests"], "1");
    Ok(())
}

#[tokio::test]
async fn sids_follow_the_seed() -> TestResult {
    let client = client();
    let mut sids = Vec::new();
    for seed in [7, 7, 8] {
        let emulator = start(EmulatorConfig {
            seed,
            ..EmulatorConfig::default()
        })
        .await;
        create(&client, &emulator, ICCID, &registration_code_for(ICCID)).await?;
        sids.push(emulator.sim(ICCID).unwrap().sid);
    }
    assert_eq!(sids[0], sids[1]);
    assert_ne!(sids[0], sids[2]);
    Ok(())
}

#[tokio::test]
async fn registering_again_answers_83003_with_the_sid_without_committing() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let code = registration_code_for(ICCID);
    create(&client, &emulator, ICCID, &code).await?;
    let sid = emulator.sim(ICCID).unwrap().sid;

    let again = create(&client, &emulator, ICCID, &code).await?;

    assert_twilio_error(&again, 409, 83003);
    assert!(again.json()["message"].as_str().unwrap().contains(&sid));
    assert_eq!(emulator.commits(ICCID), 1);
    assert_eq!(emulator.stats().commits, 1);
    Ok(())
}

#[tokio::test]
async fn a_preregistered_sim_answers_83003_and_is_not_a_commit() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let sid = emulator.preregister(ICCID);

    let answer = create(&client, &emulator, ICCID, &registration_code_for(ICCID)).await?;

    assert_twilio_error(&answer, 409, 83003);
    assert!(answer.body.contains(&sid));
    assert_eq!(emulator.commits(ICCID), 0);
    Ok(())
}

#[tokio::test]
async fn unregistrable_sims_answer_83002() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let not_a_super_sim = "12345678901234567890";
    let mut cases = vec![
        (ICCID, "WRONGCODE1".to_string()),
        (not_a_super_sim, registration_code_for(not_a_super_sim)),
        ("8988307000012345678", registration_code_for(ICCID)),
    ];
    let lowercase = registration_code_for(ICCID).to_lowercase();
    if lowercase != registration_code_for(ICCID) {
        cases.push((ICCID, lowercase));
    }
    for (iccid, code) in cases {
        let answer = create(&client, &emulator, iccid, &code).await?;
        assert_twilio_error(&answer, 400, 83002);
    }
    assert_eq!(emulator.stats().commits, 0);
    assert!(emulator.sim(ICCID).is_none());
    Ok(())
}

#[tokio::test]
async fn missing_parameters_answer_83001() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let url = format!("{}/v1/Sims", emulator.base_url());
    let bodies: [&[(&str, &str)]; 3] = [
        &[("Iccid", ICCID)],
        &[("RegistrationCode", "H3LL0W0RLD")],
        &[],
    ];
    for body in bodies {
        let answer = exchange(
            client
                .post(&url)
                .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
                .form(body),
        )
        .await?;
        assert_twilio_error(&answer, 400, 83001);
    }
    Ok(())
}

#[tokio::test]
async fn bad_credentials_answer_401_20003() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let url = format!("{}/v1/Sims?Iccid={ICCID}", emulator.base_url());
    let requests = [
        client.get(&url),
        client.get(&url).basic_auth(TEST_ACCOUNT_SID, Some("wrong")),
        client
            .get(&url)
            .basic_auth(format!(" {TEST_ACCOUNT_SID}"), Some(TEST_AUTH_TOKEN)),
        client.post(format!("{}/v1/Sims", emulator.base_url())),
    ];
    let count = requests.len() as u64;
    for request in requests {
        let answer = exchange(request).await?;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.json(),
            serde_json::json!({
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401
            })
        );
    }
    let stats = emulator.stats();
    assert_eq!(stats.unauthorized, count);
    assert_eq!(stats.create_requests + stats.lookup_requests, 0);
    Ok(())
}

#[tokio::test]
async fn other_credential_pairs_are_accepted_when_configured() -> TestResult {
    let emulator = start(EmulatorConfig {
        credentials: vec![
            ("SK0123".into(), "secret".into()),
            ("AC0123".into(), "token".into()),
        ],
        ..EmulatorConfig::default()
    })
    .await;
    let client = client();
    let url = format!("{}/v1/Sims", emulator.base_url());
    for (user, password, status) in [
        ("SK0123", "secret", 200),
        ("AC0123", "token", 200),
        ("SK0123", "token", 401),
        (TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, 401),
    ] {
        let answer = exchange(client.get(&url).basic_auth(user, Some(password))).await?;
        assert_eq!(answer.status.as_u16(), status, "{user}");
    }
    Ok(())
}

#[tokio::test]
async fn lookup_by_iccid_finds_zero_or_one_sim() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let base = emulator.base_url();
    let sid = emulator.preregister(ICCID);

    let found = get(&client, &format!("{base}/v1/Sims?Iccid={ICCID}")).await;
    assert_eq!(found.status, StatusCode::OK);
    let found = found.json();
    assert_eq!(found["sims"].as_array().unwrap().len(), 1);
    assert_sim_resource(&found["sims"][0], ICCID, &base);
    assert_eq!(found["sims"][0]["sid"], sid);
    let page_url = format!("{base}/v1/Sims?Iccid={ICCID}&PageSize=50&Page=0");
    assert_eq!(
        found["meta"],
        serde_json::json!({
            "first_page_url": page_url,
            "key": "sims",
            "next_page_url": null,
            "page": 0,
            "page_size": 50,
            "previous_page_url": null,
            "url": page_url,
        })
    );

    let missing = get(&client, &format!("{base}/v1/Sims?Iccid={OTHER_ICCID}")).await;
    assert_eq!(missing.status, StatusCode::OK);
    assert_eq!(missing.json()["sims"], serde_json::json!([]));
    assert!(missing.json()["meta"]["next_page_url"].is_null());
    assert_eq!(emulator.stats().lookup_requests, 2);
    Ok(())
}

#[tokio::test]
async fn listing_pages_until_next_page_url_is_null() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let iccids: Vec<String> = (0..5)
        .map(|i| format!("898830700001234567{i:02}"))
        .collect();
    for iccid in &iccids {
        emulator.preregister(iccid);
    }

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut next = Some(format!("{}/v1/Sims?PageSize=2", emulator.base_url()));
    while let Some(url) = next {
        let page = get(&client, &url).await.json();
        assert_eq!(page["meta"]["page"], pages);
        assert_eq!(page["meta"]["page_size"], 2);
        assert_eq!(page["meta"]["previous_page_url"].is_null(), pages == 0);
        for sim in page["sims"].as_array().unwrap() {
            seen.push(sim["iccid"].as_str().unwrap().to_string());
        }
        next = page["meta"]["next_page_url"].as_str().map(String::from);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, iccids);
    Ok(())
}

#[tokio::test]
async fn fetch_by_sid_and_unknown_resources() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let base = emulator.base_url();
    let sid = emulator.preregister(ICCID);

    let found = get(&client, &format!("{base}/v1/Sims/{sid}")).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_sim_resource(&found.json(), ICCID, &base);

    let unknown_sid = format!("HS{}", "0".repeat(32));
    assert_twilio_error(
        &get(&client, &format!("{base}/v1/Sims/{unknown_sid}")).await,
        404,
        20404,
    );
    assert_twilio_error(
        &get(&client, &format!("{base}/v1/Networks")).await,
        404,
        20404,
    );
    assert_twilio_error(&get(&client, &format!("{base}/")).await, 404, 20404);
    Ok(())
}

#[tokio::test]
async fn requests_beyond_max_concurrent_answer_429_20429() -> TestResult {
    const REQUESTS: usize = 8;
    // The latency keeps the admitted requests in flight while the others arrive.
    let emulator = start(EmulatorConfig {
        max_concurrent: Some(2),
        latency: Duration::from_secs(1),
        ..EmulatorConfig::default()
    })
    .await;
    let client = client();
    let url = format!("{}/v1/Sims", emulator.base_url());
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let request = client
            .get(&url)
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN));
        requests.spawn(exchange(request));
    }
    let answers: Vec<Answer> = requests
        .join_all()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

    let throttled: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!throttled.is_empty());
    for answer in &throttled {
        assert_twilio_error(answer, 429, 20429);
        assert!(answer.headers.get("retry-after").is_none());
        let in_flight: usize = answer.headers["twilio-concurrent-requests"]
            .to_str()?
            .parse()?;
        assert!(in_flight > 2);
    }
    let stats = emulator.stats();
    assert_eq!(stats.throttled, throttled.len() as u64);
    assert_eq!(stats.max_in_flight, 2, "a refused request holds no slot");
    assert_eq!(stats.requests, REQUESTS as u64);
    assert_eq!(
        stats.lookup_requests + stats.list_requests,
        (REQUESTS - throttled.len()) as u64
    );
    Ok(())
}

/// Two requests, the second sent once the emulator has counted the first.
struct Overlapping {
    first: Answer,
    second: Answer,
    /// From the first request's send until the emulator counted it.
    first_counted_after: Duration,
    /// From the second request's send until its answer.
    second_took: Duration,
}

/// An authenticated `GET /v1/Sims`, then another once the emulator has counted it: with a
/// latency of a second or more, both are in flight at the account together.
async fn one_then_another(emulator: &Emulator) -> Result<Overlapping, Box<dyn std::error::Error>> {
    let client = client();
    let url = format!("{}/v1/Sims", emulator.base_url());
    let request = || {
        client
            .get(&url)
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
    };
    let started = std::time::Instant::now();
    let first = tokio::spawn(exchange(request()));
    while emulator.stats().requests == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first_counted_after = started.elapsed();
    let second_sent = std::time::Instant::now();
    let second = exchange(request()).await?;
    let second_took = second_sent.elapsed();
    Ok(Overlapping {
        first: first.await??,
        second,
        first_counted_after,
        second_took,
    })
}

#[tokio::test]
async fn a_network_delay_frees_the_slot_before_the_answer_is_back() -> TestResult {
    // A round trip of 4 s around a 1 s hold, with a limit of 1: A is counted 2 s after it
    // is sent, holds its slot until 3 s, and its answer is back at 5 s. B, sent once A is
    // counted, arrives at 4 s or later: the slot is free though A's answer is still on the
    // wire. (Held until the answer is back, the slot would refuse B.) Each answer comes a
    // whole round trip and a hold after its request at the earliest.
    let (round_trip, hold) = (Duration::from_secs(4), Duration::from_secs(1));
    let emulator = start(EmulatorConfig {
        max_concurrent: Some(1),
        latency: hold,
        network_delay: round_trip,
        ..EmulatorConfig::default()
    })
    .await;
    let pair = one_then_another(&emulator).await?;
    assert!(
        pair.first_counted_after >= round_trip / 2,
        "counted on the way"
    );
    assert_eq!(
        pair.second.status,
        StatusCode::OK,
        "the slot was still held"
    );
    assert!(pair.second_took >= round_trip + hold);
    assert_eq!(pair.first.status, StatusCode::OK);
    let stats = emulator.stats();
    assert_eq!((stats.requests, stats.throttled), (2, 0));
    Ok(())
}

#[tokio::test]
async fn a_limit_latency_slows_the_429_and_holds_no_slot() -> TestResult {
    // A limit of 1: A holds the slot 3 s; B, sent once A is counted, is refused, counted
    // as it arrived (A and B), and answered a second later.
    let limit_latency = Duration::from_secs(1);
    let emulator = start(EmulatorConfig {
        max_concurrent: Some(1),
        latency: Duration::from_secs(3),
        limit_latency,
        ..EmulatorConfig::default()
    })
    .await;
    let Overlapping {
        first,
        second,
        second_took,
        ..
    } = one_then_another(&emulator).await?;
    assert_eq!(first.status, StatusCode::OK);
    assert_twilio_error(&second, 429, 20429);
    assert_eq!(second.headers["twilio-concurrent-requests"], "2");
    assert!(second_took >= limit_latency, "{second_took:?}");
    let stats = emulator.stats();
    assert_eq!((stats.requests, stats.throttled), (2, 1));
    assert_eq!(stats.max_in_flight, 1, "a refused request holds no slot");
    Ok(())
}

#[tokio::test]
async fn an_admitted_answer_is_counted_as_it_leaves_or_as_it_was_admitted() -> TestResult {
    // A holds its slot 2 s; B is sent once A is counted, so it is admitted while A is in
    // flight and still in flight when A's answer leaves. As they leave, A's count is 2 (B
    // in flight) and B's 1 (A gone); as they were admitted, A's is 1 and B's 2.
    for (at_admission, expected) in [(false, ["2", "1"]), (true, ["1", "2"])] {
        let emulator = start(EmulatorConfig {
            latency: Duration::from_secs(2),
            header_counted_at_admission: at_admission,
            ..EmulatorConfig::default()
        })
        .await;
        let Overlapping { first, second, .. } = one_then_another(&emulator).await?;
        let counts = [&first, &second].map(|answer| {
            answer.headers["twilio-concurrent-requests"]
                .to_str()
                .unwrap()
                .to_string()
        });
        assert_eq!(counts, expected, "counted at admission: {at_admission}");
    }
    Ok(())
}

#[tokio::test]
async fn stats_count_the_answers_given_with_the_account_at_its_limit() -> TestResult {
    // One request at a time: with a limit of 1 each answer finds the account full (its own
    // request fills it); with a limit of 2 none does.
    for (limit, at_limit) in [(1, 3), (2, 0)] {
        let emulator = start(EmulatorConfig {
            max_concurrent: Some(limit),
            ..EmulatorConfig::default()
        })
        .await;
        let client = client();
        let url = format!("{}/v1/Sims", emulator.base_url());
        for _ in 0..3 {
            let request = client
                .get(&url)
                .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN));
            assert_eq!(exchange(request).await?.status, StatusCode::OK);
        }
        assert_eq!(emulator.stats().answers_at_limit, at_limit, "limit {limit}");
    }
    Ok(())
}

#[tokio::test]
async fn a_response_dropped_after_commit_is_a_connection_error_but_registers() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let code = registration_code_for(ICCID);
    emulator.inject(ICCID, vec![Fault::DropAfterCommit]);

    let lost = create(&client, &emulator, ICCID, &code).await;

    // What a real lost response gives: `send()` fails with an incomplete message.
    assert!(
        lost.is_err_and(|e| e.is_request()),
        "expected a connection error"
    );
    assert_eq!(emulator.commits(ICCID), 1);
    assert!(emulator.sim(ICCID).is_some());
    let replay = create(&client, &emulator, ICCID, &code).await?;
    assert_twilio_error(&replay, 409, 83003);
    assert_eq!(emulator.commits(ICCID), 1);
    Ok(())
}

#[tokio::test]
async fn a_response_dropped_before_commit_is_a_connection_error_and_registers_nothing() -> TestResult
{
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let code = registration_code_for(ICCID);
    emulator.inject(ICCID, vec![Fault::DropBeforeCommit]);

    let lost = create(&client, &emulator, ICCID, &code).await;

    // What a real lost response gives: `send()` fails with an incomplete message.
    assert!(
        lost.is_err_and(|e| e.is_request()),
        "expected a connection error"
    );
    assert_eq!(emulator.commits(ICCID), 0);
    assert!(emulator.sim(ICCID).is_none());
    let retry = create(&client, &emulator, ICCID, &code).await?;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(emulator.commits(ICCID), 1);
    Ok(())
}

#[tokio::test]
async fn a_slow_answer_after_commit_times_the_client_out_but_registers() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    // The answer cannot arrive before the delay, so the client's timeout always fires first.
    let client = Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(100))
        .build()?;
    emulator.inject(ICCID, vec![Fault::SlowAfterCommit(Duration::from_secs(30))]);

    let timed_out = create(&client, &emulator, ICCID, &registration_code_for(ICCID)).await;

    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    assert_eq!(emulator.commits(ICCID), 1);
    Ok(())
}

#[tokio::test]
async fn injected_http_faults_come_in_order_then_the_request_succeeds() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let code = registration_code_for(ICCID);
    emulator.inject(
        ICCID,
        vec![
            Fault::ServerError,
            Fault::Unavailable {
                retry_after: Some(7),
            },
            Fault::TooManyRequests {
                retry_after: Some(3),
            },
            Fault::BadGatewayHtml,
            Fault::InternalRegistrationError,
            Fault::Unavailable { retry_after: None },
        ],
    );

    let server_error = create(&client, &emulator, ICCID, &code).await?;
    assert_twilio_error(&server_error, 500, 20500);

    let unavailable = create(&client, &emulator, ICCID, &code).await?;
    assert_twilio_error(&unavailable, 503, 20503);
    assert_eq!(unavailable.headers["retry-after"], "7");

    let throttled = create(&client, &emulator, ICCID, &code).await?;
    assert_twilio_error(&throttled, 429, 20429);
    assert_eq!(throttled.headers["retry-after"], "3");

    let gateway = create(&client, &emulator, ICCID, &code).await?;
    assert_eq!(gateway.status, StatusCode::BAD_GATEWAY);
    assert!(
        gateway.headers["content-type"]
            .to_str()?
            .starts_with("text/html")
    );
    assert!(serde_json::from_str::<Value>(&gateway.body).is_err());

    let internal = create(&client, &emulator, ICCID, &code).await?;
    assert_twilio_error(&internal, 500, 83000);

    let unavailable = create(&client, &emulator, ICCID, &code).await?;
    assert_twilio_error(&unavailable, 503, 20503);
    assert!(unavailable.headers.get("retry-after").is_none());

    assert_eq!(emulator.commits(ICCID), 0);
    let created = create(&client, &emulator, ICCID, &code).await?;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(emulator.commits(ICCID), 1);
    assert_eq!(emulator.stats().throttled, 1);
    Ok(())
}

#[tokio::test]
async fn injected_faults_apply_only_to_their_iccid() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    emulator.inject(ICCID, vec![Fault::ServerError]);

    let other = create(
        &client,
        &emulator,
        OTHER_ICCID,
        &registration_code_for(OTHER_ICCID),
    )
    .await?;

    assert_eq!(other.status, StatusCode::CREATED);
    let faulted = create(&client, &emulator, ICCID, &registration_code_for(ICCID)).await?;
    assert_twilio_error(&faulted, 500, 20500);
    Ok(())
}

#[tokio::test]
async fn no_answer_contains_a_registration_code_or_a_secret() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let base = emulator.base_url();
    let code = registration_code_for(ICCID);
    let wrong_code = "ZZZZZZZZZZ";
    emulator.inject(
        OTHER_ICCID,
        vec![
            Fault::ServerError,
            Fault::Unavailable {
                retry_after: Some(1),
            },
            Fault::TooManyRequests { retry_after: None },
            Fault::BadGatewayHtml,
            Fault::InternalRegistrationError,
        ],
    );

    let mut answers = vec![
        create(&client, &emulator, ICCID, &code).await?,
        create(&client, &emulator, ICCID, &code).await?,
        create(&client, &emulator, OTHER_ICCID, wrong_code).await?,
        get(&client, &format!("{base}/v1/Sims?Iccid={ICCID}")).await,
        get(&client, &format!("{base}/v1/Sims")).await,
        exchange(
            client
                .get(format!("{base}/v1/Sims"))
                .basic_auth(TEST_ACCOUNT_SID, Some(code.as_str())),
        )
        .await?,
        exchange(
            client
                .post(format!("{base}/v1/Sims"))
                .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
                .form(&[("RegistrationCode", code.as_str())]),
        )
        .await?,
    ];
    for _ in 0..5 {
        answers.push(create(&client, &emulator, OTHER_ICCID, wrong_code).await?);
    }

    for answer in &answers {
        let transcript = answer.transcript();
        for secret in [code.as_str(), wrong_code, TEST_AUTH_TOKEN] {
            assert!(
                !transcript.contains(secret),
                "{secret} leaked: {transcript}"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn stats_are_served_without_auth_and_without_being_counted() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    create(&client, &emulator, ICCID, &registration_code_for(ICCID)).await?;
    exchange(client.get(format!("{}/v1/Sims", emulator.base_url()))).await?;

    let url = format!("{}/_emulator/stats", emulator.base_url());
    let first: Stats = client
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let second: Stats = client.get(&url).send().await?.json().await?;

    let expected = Stats {
        requests: 2,
        create_requests: 1,
        lookup_requests: 0,
        list_requests: 0,
        max_in_flight: 1,
        throttled: 0,
        unauthorized: 1,
        commits: 1,
        update_requests: 0,
        other_requests: 0,
        other_throttled: 0,
        answers_at_limit: 0,
        padding_sent: 0,
    };
    assert_eq!(first, expected);
    assert_eq!(second, expected);
    assert_eq!(emulator.stats(), expected);
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_serving() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let url = format!("{}/_emulator/stats", emulator.base_url());
    // A fresh client per request, so no pooled connection outlives the server.
    client().get(&url).send().await?.error_for_status()?;

    emulator.shutdown().await;

    assert!(client().get(&url).send().await.is_err());
    Ok(())
}

async fn update(client: &Client, emulator: &Emulator, sid: &str, form: &[(&str, &str)]) -> Answer {
    exchange(
        client
            .post(format!("{}/v1/Sims/{sid}", emulator.base_url()))
            .basic_auth(TEST_ACCOUNT_SID, Some(TEST_AUTH_TOKEN))
            .form(form),
    )
    .await
    .expect("POST answers")
}

/// `components.schemas["supersim.v1.fleet"]` of twilio_supersim_v1.json.
fn assert_fleet_resource(fleet: &Value, unique_name: &str, base_url: &str) {
    let mut keys: Vec<&str> = fleet
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "account_sid",
            "data_enabled",
            "data_limit",
            "data_metering",
            "date_created",
            "date_updated",
            "ip_commands_method",
            "ip_commands_url",
            "network_access_profile_sid",
            "sid",
            "sms_commands_enabled",
            "sms_commands_method",
            "sms_commands_url",
            "unique_name",
            "url"
        ]
    );
    assert!(is_sid(&fleet["sid"], "HF"), "{fleet}");
    assert!(is_sid(&fleet["account_sid"], "AC"), "{fleet}");
    assert!(
        is_sid(&fleet["network_access_profile_sid"], "HA"),
        "{fleet}"
    );
    assert_eq!(fleet["unique_name"], unique_name);
    assert_eq!(fleet["data_metering"], "payg");
    assert!(fleet["data_limit"].is_i64());
    assert_eq!(
        fleet["url"],
        format!("{base_url}/v1/Fleets/{}", fleet["sid"].as_str().unwrap())
    );
}

#[tokio::test]
async fn fleets_are_listed_and_fetched_by_sid_or_name() -> TestResult {
    let emulator = start(EmulatorConfig {
        fleets: vec!["pumps".into(), "bench".into(), "pumps".into()],
        ..EmulatorConfig::default()
    })
    .await;
    let client = client();
    let base = emulator.base_url();
    let list = get(&client, &format!("{base}/v1/Fleets")).await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    let fleets = list["fleets"].as_array().unwrap();
    assert_eq!(fleets.len(), 2, "a repeated name is one Fleet");
    assert_fleet_resource(&fleets[0], "pumps", &base);
    assert_eq!(fleets[0]["sid"], fleet_sid_for("pumps"));
    assert_eq!(list["meta"]["key"], "fleets");
    assert!(list["meta"]["next_page_url"].is_null());

    let by_name = get(&client, &format!("{base}/v1/Fleets/bench")).await;
    assert_fleet_resource(&by_name.json(), "bench", &base);
    let by_sid = get(
        &client,
        &format!("{base}/v1/Fleets/{}", fleet_sid_for("bench")),
    )
    .await;
    assert_eq!(by_sid.json(), by_name.json());
    assert_twilio_error(
        &get(&client, &format!("{base}/v1/Fleets/nope")).await,
        404,
        20404,
    );
    assert_eq!(
        EmulatorConfig::default().fleets,
        DEFAULT_FLEETS.map(String::from).to_vec()
    );
    Ok(())
}

#[tokio::test]
async fn a_status_change_answers_202_scheduled_then_takes_effect() -> TestResult {
    let emulator = start(EmulatorConfig {
        update_delay: Duration::from_secs(3600),
        ..EmulatorConfig::default()
    })
    .await;
    let client = client();
    let base = emulator.base_url();
    let sid = emulator.preregister(ICCID);
    let fleet = fleet_sid_for("bench");

    let answer = update(
        &client,
        &emulator,
        &sid,
        &[
            ("Fleet", "bench"),
            ("Status", "active"),
            ("UniqueName", "pump-1"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let sim = answer.json();
    assert_eq!(sim["status"], "scheduled");
    assert_eq!(sim["fleet_sid"], fleet.as_str());
    assert_eq!(sim["unique_name"], "pump-1");

    let refused = update(&client, &emulator, &sid, &[("UniqueName", "pump-2")]).await;
    assert_twilio_error(&refused, 409, 83009);
    let fetched = get(&client, &format!("{base}/v1/Sims/{sid}")).await.json();
    assert_eq!(fetched["status"], "scheduled");

    emulator.finish_scheduled();
    let fetched = get(&client, &format!("{base}/v1/Sims/pump-1")).await.json();
    assert_eq!(fetched["status"], "active", "addressed by its unique name");
    assert_eq!(emulator.sim(ICCID).unwrap().status, "active");

    let same = update(&client, &emulator, &sid, &[("Fleet", fleet.as_str())]).await;
    assert_eq!(same.status, StatusCode::OK, "no status change answers 200");
    assert_eq!(emulator.stats().update_requests, 3);
    Ok(())
}

#[tokio::test]
async fn update_refusals_carry_their_codes() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let sid = emulator.preregister(ICCID);
    let other = emulator.preregister(OTHER_ICCID);

    assert_twilio_error(
        &update(&client, &emulator, &sid, &[("Fleet", "no-such-fleet")]).await,
        400,
        83006,
    );
    assert_twilio_error(
        &update(&client, &emulator, &sid, &[("Status", "active")]).await,
        400,
        83007,
    );
    assert_twilio_error(
        &update(
            &client,
            &emulator,
            &format!("HS{}", "0".repeat(32)),
            &[("Status", "ready")],
        )
        .await,
        404,
        83005,
    );
    assert_twilio_error(
        &update(&client, &emulator, &sid, &[("Status", "sleeping")]).await,
        400,
        20001,
    );
    let named = update(&client, &emulator, &other, &[("UniqueName", "taken")]).await;
    assert_eq!(named.status, StatusCode::OK);
    assert_twilio_error(
        &update(&client, &emulator, &sid, &[("UniqueName", "taken")]).await,
        409,
        83011,
    );
    let sim = emulator.sim(ICCID).unwrap();
    assert_eq!(
        (sim.status.as_str(), sim.fleet_sid),
        ("new", None),
        "refusals change nothing"
    );

    // Fleet and Status in one request; then `ready` is no longer reachable.
    let accepted = update(
        &client,
        &emulator,
        &sid,
        &[("Fleet", "bench"), ("Status", "active")],
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(
        emulator.sim(ICCID).unwrap().status,
        "active",
        "zero delay: due at once"
    );
    assert_twilio_error(
        &update(&client, &emulator, &sid, &[("Status", "ready")]).await,
        400,
        83010,
    );
    Ok(())
}

#[tokio::test]
async fn injected_update_faults_come_in_order() -> TestResult {
    let emulator = start(EmulatorConfig::default()).await;
    let client = client();
    let sid = emulator.preregister(ICCID);
    emulator.inject_update(
        ICCID,
        vec![
            Fault::TwilioError {
                status: 409,
                code: 83009,
            },
            Fault::ServerError,
        ],
    );
    let form = [("Fleet", "bench")];
    assert_twilio_error(&update(&client, &emulator, &sid, &form).await, 409, 83009);
    assert_twilio_error(&update(&client, &emulator, &sid, &form).await, 500, 20500);
    assert_eq!(
        update(&client, &emulator, &sid, &form).await.status,
        StatusCode::OK
    );
    Ok(())
}
