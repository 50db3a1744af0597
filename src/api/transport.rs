//! Why the API could not be reached at all, as one sentence for a person: a DNS failure, a
//! refused connection, a TLS failure or a timeout, with the URL. The preflight and the gate
//! (which stops a run whose API never answered) both say it this way.

/// One sentence saying why `url` could not be reached: DNS, refused, TLS or a timeout.
pub fn unreachable_sentence(error: &reqwest::Error, url: &str) -> String {
    let chain = error_chain(error);
    let why = transport_reason(error.is_timeout(), &chain);
    format!("cannot reach the API at {url}: {why}; check the network, then run again")
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
    }
}
