//! Why the API could not be reached at all, as one sentence for a person: a DNS failure, a
//! refused connection, a TLS failure or a timeout, with the URL; or, when it was reached,
//! that the connection closed before its answer was complete (nothing came back, or less
//! of the body than announced). The preflight and the gate (which stops a run whose API
//! never answered whole) both say it this way. When a proxy from
//! the environment is in between, a proxy that cannot be reached itself is named as the
//! failure, with the variable that set it, rather than the API.

/// A proxy the requests go through, as set in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyInUse {
    /// `scheme://host:port`, without any user name or password.
    pub(crate) url: String,
    /// The variable it was read from (`HTTPS_PROXY`, `ALL_PROXY`, ...).
    pub(crate) variable: &'static str,
}

/// [`unreachable_sentence`] for a request sent through `proxy`: the proxy's own failure
/// (refused, or its name not resolved) names the proxy; anything else names the API and
/// the proxy it was tried through.
pub(crate) fn unreachable_through_proxy(
    error: &reqwest::Error,
    url: &str,
    proxy: &ProxyInUse,
) -> String {
    let chain = error_chain(error);
    // The SOCKS connector keeps the cause of a failed connection to the proxy out of the
    // error chain; its debug form still names it.
    let debug = format!("{error:?}");
    let ProxyInUse {
        url: proxy_url,
        variable,
    } = proxy;
    match proxy_failure(&chain, &debug) {
        Some(why) => format!(
            "cannot reach the proxy {proxy_url} (set in {variable}): {why}; check that the \
             proxy runs and {variable} names it rightly, or unset {variable} to connect \
             directly, then run again"
        ),
        None if closed_mid_answer(&chain) => closed_sentence(url, NOTHING_CAME),
        None => {
            let why = transport_reason(error.is_timeout(), &chain);
            format!(
                "cannot reach the API at {url} through the proxy {proxy_url} (set in \
                 {variable}): {why}; check the network and the proxy, then run again"
            )
        }
    }
}

/// Why the proxy itself could not be reached, if that is what the error chain says.
fn proxy_failure(
    chain: &[(String, Option<std::io::ErrorKind>)],
    debug: &str,
) -> Option<&'static str> {
    let any_text = |needles: &[&str]| {
        chain.iter().any(|(text, _)| {
            let text = text.to_ascii_lowercase();
            needles.iter().any(|n| text.contains(n))
        })
    };
    const REFUSED: &str = "the connection was refused (nothing listens there)";
    const DNS: &str = "its host name could not be resolved (DNS)";
    if any_text(&["error resolving for socks proxy"]) {
        // `socks5://` resolves the API's name here: that name is what failed.
        return None;
    }
    if any_text(&["failed to create underlying connection"]) {
        let debug = debug.to_ascii_lowercase();
        return Some(
            if debug.contains("connectionrefused") || debug.contains("connection refused") {
                REFUSED
            } else if [
                "dns error",
                "failed to lookup address",
                "name or service not known",
            ]
            .iter()
            .any(|needle| debug.contains(needle))
            {
                DNS
            } else if debug.contains("timed out") || debug.contains("timeout") {
                "the connection to it timed out"
            } else {
                "the connection to it failed"
            },
        );
    }
    if any_text(&["socks error"]) {
        // The proxy answered: it is the API it could not reach.
        return None;
    }
    // An HTTP proxy: the only connection made from here is to the proxy (the API's name is
    // resolved by the proxy), so a refusal or a DNS failure is the proxy's.
    if chain
        .iter()
        .any(|(_, kind)| *kind == Some(std::io::ErrorKind::ConnectionRefused))
        || any_text(&["connection refused"])
    {
        Some(REFUSED)
    } else if any_text(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]) {
        Some(DNS)
    } else {
        None
    }
}

/// One sentence saying why `url` could not be reached: DNS, refused, TLS or a timeout; or
/// that it was, and closed the connection before answering.
pub(crate) fn unreachable_sentence(error: &reqwest::Error, url: &str) -> String {
    let chain = error_chain(error);
    if closed_mid_answer(&chain) {
        return closed_sentence(url, NOTHING_CAME);
    }
    let why = transport_reason(error.is_timeout(), &chain);
    format!("cannot reach the API at {url}: {why}; check the network, then run again")
}

/// One sentence saying that `url` answered `status` but its body did not come whole:
/// the connection closed first, or the time ran out.
pub(crate) fn cut_short_sentence(
    error: &reqwest::Error,
    url: &str,
    status: reqwest::StatusCode,
) -> String {
    if error.is_timeout() {
        format!(
            "the API at {url} answered {status}, but the rest of its answer did not come in \
             time; check the network, then run again"
        )
    } else {
        closed_sentence(
            url,
            &format!("{status} came, then less of its body than announced"),
        )
    }
}

/// What came before a connection closed that sent no answer at all.
const NOTHING_CAME: &str = "no answer came, so the request may or may not have been acted on";

/// The API at `url` was reached, and the connection closed before its answer was whole.
fn closed_sentence(url: &str, what_came: &str) -> String {
    format!(
        "the connection to the API at {url} closed before its answer was complete \
         ({what_came}); check the network and anything in between (a proxy, a load \
         balancer), then run again"
    )
}

/// Whether the error chain says the connection closed after the request went out and
/// before an answer came (hyper's incomplete message): the API was reached.
fn closed_mid_answer(chain: &[(String, Option<std::io::ErrorKind>)]) -> bool {
    chain.iter().any(|(text, _)| {
        text.to_ascii_lowercase()
            .contains("connection closed before message completed")
    })
}

/// The texts and I/O error kinds of an error's sources.
fn error_chain(
    error: &(dyn std::error::Error + 'static),
) -> Vec<(String, Option<std::io::ErrorKind>)> {
    let mut chain = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        let kind = current
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        chain.push((current.to_string(), kind));
        next = current.source();
    }
    chain
}

/// Tells the usual transport failures apart from an error chain.
fn transport_reason(
    timed_out: bool,
    chain: &[(String, Option<std::io::ErrorKind>)],
) -> &'static str {
    let any_text = |needles: &[&str]| {
        chain.iter().any(|(text, _)| {
            let text = text.to_ascii_lowercase();
            needles.iter().any(|n| text.contains(n))
        })
    };
    if chain
        .iter()
        .any(|(_, kind)| *kind == Some(std::io::ErrorKind::ConnectionRefused))
        || any_text(&["connection refused"])
    {
        "the connection was refused (nothing listens there)"
    } else if any_text(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]) {
        "the host name could not be resolved (DNS)"
    } else if any_text(&["certificate", "tls", "handshake"]) {
        "the TLS handshake failed (a certificate or a proxy in between)"
    } else if timed_out || any_text(&["timed out", "timeout"]) {
        "the connection timed out"
    } else {
        "the connection failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind, text: &str) -> (String, Option<std::io::ErrorKind>) {
        (text.to_string(), Some(kind))
    }

    fn text(text: &str) -> (String, Option<std::io::ErrorKind>) {
        (text.to_string(), None)
    }

    #[test]
    fn a_proxy_that_cannot_be_reached_is_told_from_an_api_behind_it() {
        use std::io::ErrorKind::*;
        let socks_connect = [
            text("client error (Connect)"),
            text("error connecting to socks proxy"),
            text("SOCKS error: failed to create underlying connection"),
        ];
        assert!(
            proxy_failure(&socks_connect, "Inner(ConnectError(\"tcp connect error\", Os { code: 111, kind: ConnectionRefused }))")
                .unwrap()
                .contains("refused")
        );
        assert!(
            proxy_failure(
                &socks_connect,
                "ConnectError(\"dns error\", Custom { kind: Uncategorized })"
            )
            .unwrap()
            .contains("DNS")
        );
        // The proxy answered that the API refused: not the proxy's failure.
        assert_eq!(
            proxy_failure(&[text("SOCKS error: connection refused")], ""),
            None
        );
        // `socks5://` resolves the API's name locally: a DNS failure there is the API's.
        assert_eq!(
            proxy_failure(
                &[
                    text("error resolving for socks proxy"),
                    text("dns error: failed to lookup address information")
                ],
                ""
            ),
            None
        );
        // An HTTP proxy refusing the connection, or whose name does not resolve.
        assert!(
            proxy_failure(&[io(ConnectionRefused, "os error 111")], "")
                .unwrap()
                .contains("refused")
        );
        assert!(
            proxy_failure(
                &[text("dns error: failed to lookup address information")],
                ""
            )
            .unwrap()
            .contains("DNS")
        );
        assert_eq!(proxy_failure(&[text("unsuccessful tunnel")], ""), None);
    }

    #[test]
    fn transport_failures_are_told_apart() {
        use std::io::ErrorKind::*;
        assert!(
            transport_reason(
                false,
                &[
                    text("error sending request"),
                    io(ConnectionRefused, "os error 111")
                ]
            )
            .contains("refused")
        );
        assert!(
            transport_reason(
                false,
                &[
                    text("client error (Connect)"),
                    text("dns error: failed to lookup address information")
                ]
            )
            .contains("DNS")
        );
        assert!(
            transport_reason(false, &[text("invalid peer certificate: UnknownIssuer")])
                .contains("TLS")
        );
        assert!(transport_reason(true, &[text("operation timed out")]).contains("timed out"));
        assert_eq!(
            transport_reason(false, &[text("something else")]),
            "the connection failed"
        );
        assert!(closed_mid_answer(&[
            text("error sending request"),
            text("connection closed before message completed")
        ]));
        assert!(!closed_mid_answer(&[io(ConnectionRefused, "os error 111")]));
    }
}
