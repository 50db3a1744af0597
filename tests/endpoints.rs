//! End-to-end runs that check where requests go: a redirect is never followed (the ICCID
//! and the registration code are never re-sent elsewhere), a SOCKS proxy from the
//! environment carries the requests, and a proxy that cannot be reached is named as the
//! failure rather than the API.

mod common;

use std::sync::{Arc, Mutex};

use common::{TestEnv, binary_command, exit_code, good_sim, stderr};
use supersim_bulk::emulator::Fault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A listener standing for another host: it only accepts, so whether anything was sent to
/// it is read from its queue once the run is over.
fn other_host() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

/// Connections that reached `listener` (queued by the kernel whether accepted or not).
fn connections(listener: &std::net::TcpListener) -> usize {
    std::iter::from_fn(|| listener.accept().ok()).count()
}

/// Issue 18 item 1: a `307` to another host is a wrong endpoint: the run stops (exit 2)
/// naming the URL that answered and where it pointed, and nothing is sent there.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_never_followed() {
    let env = TestEnv::new().await;
    let elsewhere = other_host();
    let location = format!("http://{}/v1/Sims", elsewhere.local_addr().unwrap());
    let sims: Vec<_> = (1..=3).map(good_sim).collect();
    for (iccid, _) in &sims {
        env.emulator.inject(
            iccid,
            vec![
                Fault::Redirect {
                    status: 307,
                    location: location.clone(),
                };
                5
            ],
        );
    }
    env.write_input(&sims);

    let output = env.register(&["--concurrency", "1"]).await;
    let err = stderr(&output);
    assert_eq!(
        connections(&elsewhere),
        0,
        "the redirect was followed: {err}"
    );
    assert_eq!(exit_code(&output), 2, "{err}");
    assert!(
        err.contains(&format!("{}/v1/Sims", env.emulator.base_url())),
        "{err}"
    );
    assert!(err.contains(&location), "{err}");
    assert!(
        env.last_rows()
            .values()
            .all(|row| row["outcome"] != "rejected"),
        "{:?}",
        env.last_rows()
    );
    for (_, code) in &sims {
        assert!(!err.contains(code.as_str()), "{err}");
    }
}

/// What a SOCKS5 server saw: the destination asked for, and the first byte sent through.
#[derive(Default, Debug, Clone)]
struct SocksSeen {
    connections: usize,
    destination: Option<String>,
    first_byte: Option<u8>,
}

/// A SOCKS5 server (no authentication, CONNECT only) on a free loopback port that records
/// what it is asked for and then closes the tunnel after its first bytes: the API behind
/// it is never reached, so the run stops as unreachable through the proxy.
async fn socks5_server() -> (String, Arc<Mutex<SocksSeen>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("socks5h://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(SocksSeen::default()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            record.lock().unwrap().connections += 1;
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                // Greeting: version, methods; answer "no authentication".
                let mut head = [0u8; 2];
                stream.read_exact(&mut head).await?;
                let mut methods = vec![0u8; usize::from(head[1])];
                stream.read_exact(&mut methods).await?;
                stream.write_all(&[5, 0]).await?;
                // CONNECT: version, command, reserved, address type, address, port.
                let mut request = [0u8; 4];
                stream.read_exact(&mut request).await?;
                let host = match request[3] {
                    3 => {
                        let mut len = [0u8; 1];
                        stream.read_exact(&mut len).await?;
                        let mut name = vec![0u8; usize::from(len[0])];
                        stream.read_exact(&mut name).await?;
                        String::from_utf8_lossy(&name).into_owned()
                    }
                    1 => {
                        let mut ip = [0u8; 4];
                        stream.read_exact(&mut ip).await?;
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    _ => return Ok::<_, std::io::Error>(()),
                };
                let mut port = [0u8; 2];
                stream.read_exact(&mut port).await?;
                record.lock().unwrap().destination =
                    Some(format!("{host}:{}", u16::from_be_bytes(port)));
                stream.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                let mut first = [0u8; 1];
                stream.read_exact(&mut first).await?;
                record.lock().unwrap().first_byte = Some(first[0]);
                Ok(())
            });
        }
    });
    (url, seen)
}

/// The `register` command for a non-loopback API (reached only through a proxy), with
/// `proxy_env` set and test credentials.
async fn register_through(env: &TestEnv, proxy_env: &[(&str, &str)]) -> std::process::Output {
    let mut command = binary_command();
    command
        .arg("register")
        .arg(env.input_path())
        .args(["--base-url", "https://supersim.twilio.com"])
        .args(["--max-attempts", "2", "--timeout", "5s"])
        .envs(TestEnv::test_credentials())
        .envs(proxy_env.iter().copied());
    command.output().await.expect("the binary runs")
}

/// Issue 18 item 2: with `ALL_PROXY=socks5h://...`, requests go through the SOCKS proxy:
/// it is asked for the API's host and port 443, and TLS starts inside the tunnel (a TLS
/// record begins with 0x16). Nothing leaves this machine: the proxy goes no further.
#[tokio::test(flavor = "multi_thread")]
async fn requests_go_through_a_socks_proxy() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let (proxy, seen) = socks5_server().await;

    let output = register_through(&env, &[("ALL_PROXY", &proxy)]).await;
    let err = stderr(&output);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.connections > 0, "the proxy was not used: {err}");
    assert_eq!(
        seen.destination.as_deref(),
        Some("supersim.twilio.com:443"),
        "{err}"
    );
    assert_eq!(seen.first_byte, Some(0x16), "{err}");
    // The API was never reached (the proxy closed the tunnel): said so, through the proxy.
    assert_eq!(exit_code(&output), 75, "{err}");
    assert!(err.contains("through the proxy"), "{err}");
    assert!(err.contains(&proxy), "{err}");
}

/// Issue 18 item 2: a proxy that refuses connections is reported as the proxy's failure,
/// naming the proxy and the variable that set it, not as "cannot reach the API".
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_refuses_connections_is_named() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    // A port nothing listens on: bound, then closed. (`socks5h`, so the API's name is
    // never looked up here.)
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (variable, proxy) in [
        ("ALL_PROXY", format!("socks5h://{closed}")),
        ("all_proxy", format!("socks5h://{closed}")),
        ("https_proxy", format!("http://{closed}")),
    ] {
        let output = register_through(&env, &[(variable, &proxy)]).await;
        let err = stderr(&output);
        assert_eq!(exit_code(&output), 75, "{variable}: {err}");
        assert!(
            err.contains(&format!(
                "cannot reach the proxy {proxy} (set in {variable})"
            )),
            "{variable}: {err}"
        );
        assert!(err.contains("refused"), "{variable}: {err}");
        assert!(!err.contains("cannot reach the API"), "{variable}: {err}");
    }
}

/// Issue 18 item 1: a server that redirects every request (the preflight's reads too) is
/// refused before any SIM is sent: exit 2, naming where it pointed, nothing sent there.
#[tokio::test(flavor = "multi_thread")]
async fn a_base_url_that_redirects_everything_is_refused_up_front() {
    let env = TestEnv::new().await;
    env.write_input(&[good_sim(1)]);
    let elsewhere = other_host();
    let location = format!("http://{}/v1/Sims", elsewhere.local_addr().unwrap());
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", redirector.local_addr().unwrap());
    let answer = format!(
        "HTTP/1.1 308 Permanent Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirector.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });

    let mut command = binary_command();
    command
        .arg("register")
        .arg(env.input_path())
        .args(["--base-url", &base_url])
        .envs(TestEnv::test_credentials());
    let output = command.output().await.expect("the binary runs");
    let err = stderr(&output);
    assert_eq!(
        connections(&elsewhere),
        0,
        "the redirect was followed: {err}"
    );
    assert_eq!(exit_code(&output), 2, "{err}");
    assert!(err.contains(&format!("{base_url}/v1/")), "{err}");
    assert!(err.contains(&format!("pointing to {location}")), "{err}");
}
