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
