//! Injected faults: what one `POST /v1/Sims` can be made to meet (a 5xx, an HTML 502, a
//! slow, lost or cut-short response, a redirect, a success that shows something else than
//! what was asked, a message that echoes the request's secrets or says anything at all), and
//! what one `POST /v1/Sims/{Sid}` can meet besides (a success that applied nothing, a
//! scheduled change that falls back, a Fleet that shows only once the change is done),
//! chosen per ICCID or rolled from the seed; and the ways the SIM list can misbehave for a
//! client that pages through it ([`PagingFault`]: pages that never end, SIMs shown twice, a
//! next page outside the list, another account's SIMs, a body that goes on and on).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngExt;
use rand::rngs::StdRng;

use super::responses::*;

/// A failure the emulator can impose on one `POST /v1/Sims`.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 500, code 20500.
    ServerError,
    /// 503, code 20503, with `Retry-After: <seconds>` when set.
    Unavailable { retry_after: Option<u64> },
    /// 429, code 20429, with `Retry-After: <seconds>` when set.
    TooManyRequests { retry_after: Option<u64> },
    /// 502 with an HTML body, as a gateway in front of the API would answer.
    BadGatewayHtml,
    /// 500, code 83000 ("registration failed, internal error").
    InternalRegistrationError,
    /// The connection is closed without a response; nothing is registered.
    DropBeforeCommit,
    /// The request is processed (the SIM is registered), then the connection is closed
    /// without a response: the lost response a client must recover from.
    DropAfterCommit,
    /// The request is processed, then the answer is held back this long (client timeouts).
    SlowAfterCommit(Duration),
    /// The request is held this long without being processed, then answered 503; lets a
    /// test stop a client while its request is in flight.
    StallBeforeCommit(Duration),
    /// A Twilio error body with this HTTP status and code (e.g. 409 / 83009), unprocessed.
    TwilioError { status: u16, code: u32 },
    /// 404 with an HTML page and no Twilio error, as a web server or proxy that is not the
    /// API answers; unprocessed.
    NotFoundPage,
    /// A redirect with this status (301, 302, 307, 308) to `location`, as a web server or
    /// proxy in front of the API might answer; unprocessed.
    Redirect { status: u16, location: String },
    /// The request is processed, then answered with each of the resource's fields in
    /// `fields` set to its value (another `iccid`, another `account_sid`, a `sid` that is
    /// not one): an answer that does not describe what was asked for. A failed request is
    /// answered as it is.
    AlteredAnswer { fields: Vec<(String, String)> },
    /// The request is processed, then the answer's status and headers go out announcing a
    /// longer body than is sent, and the connection is closed: an answer cut short, as a
    /// server or proxy that dies mid-answer leaves it.
    CutShortAfterCommit,
    /// A Twilio error body with this HTTP status, code and message, the message exactly as
    /// given (control characters, a leading `=`, an 83003 naming a SID that is not the
    /// SIM's): a server's own words, which Twilio leaves open; unprocessed.
    TwilioMessage {
        status: u16,
        code: u32,
        message: String,
    },
    /// 400 / 83002 whose message echoes the request's secrets in the forms a careless
    /// server might: the `Authorization` header, its Basic credential without padding, the
    /// secret it carries as sent and in capitals, and the registration code lowercased,
    /// spaced out and dashed; unprocessed.
    EchoSecrets,
    /// For `POST /v1/Sims/{Sid}`: the update is not applied, yet answered 200 with the SIM
    /// as it is, as a server that acknowledges a change it dropped (or shows the SIM as it
    /// was before the change) would. On `POST /v1/Sims` it is no fault.
    SuccessUnapplied,
    /// For `POST /v1/Sims/{Sid}`: the update is applied and answered as usual, but the
    /// status change it schedules ends with the SIM back at the status it had, as an
    /// asynchronous change that failed would leave it. On `POST /v1/Sims` it is no fault.
    ScheduledThenReverts,
    /// For `POST /v1/Sims/{Sid}`: the update is applied, but a Fleet it assigns along with
    /// a status change shows only once the change is done (the 202 and every read while
    /// `scheduled` show the Fleet the SIM had), as a server that applies the whole update
    /// asynchronously would. On `POST /v1/Sims` it is no fault.
    FleetWithScheduledChange,
}

impl Fault {
    /// The kinds `fail_rate` draws from, with the parameters a rehearsal gets.
    pub(super) fn random(rng: &mut StdRng) -> Fault {
        match rng.random_range(0..8) {
            0 => Fault::ServerError,
            1 => Fault::Unavailable {
                retry_after: Some(1),
            },
            2 => Fault::TooManyRequests { retry_after: None },
            3 => Fault::BadGatewayHtml,
            4 => Fault::InternalRegistrationError,
            5 => Fault::DropBeforeCommit,
            6 => Fault::DropAfterCommit,
            _ => Fault::SlowAfterCommit(Duration::from_secs(2)),
        }
    }

    /// The answer for faults that stop the request before it is processed; `None` for faults
    /// that act after processing.
    pub(super) fn response_before_commit(&self) -> Option<Response> {
        let with_retry_after = |mut response: Response, retry_after: &Option<u64>| {
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            response
        };
        Some(match self {
            Fault::ServerError => twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "An internal server error has occurred",
            ),
            Fault::Unavailable { retry_after } => with_retry_after(
                twilio_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    20503,
                    "Service is unavailable. Please try again",
                ),
                retry_after,
            ),
            Fault::TooManyRequests { retry_after } => {
                with_retry_after(too_many_requests(), retry_after)
            }
            Fault::BadGatewayHtml => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                 <center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
            )
                .into_response(),
            Fault::InternalRegistrationError => twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                83000,
                "Registration of the Super SIM failed due to an internal error. Please retry",
            ),
            Fault::DropBeforeCommit => lost_response(),
            Fault::NotFoundPage => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><head><title>404 Not Found</title></head>\r\n\
                 <body><h1>Not Found</h1></body></html>\r\n",
            )
                .into_response(),
            Fault::Redirect { status, location } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::TEMPORARY_REDIRECT),
                [(header::LOCATION, location.as_str())],
            )
                .into_response(),
            Fault::TwilioError { status, code } => twilio_error(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                *code,
                &format!("Injected Twilio error {code}"),
            ),
            Fault::TwilioMessage {
                status,
                code,
                message,
            } => twilio_error(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                *code,
                message,
            ),
            // Answered by `echo_secrets`, which sees the request.
            Fault::EchoSecrets
            | Fault::DropAfterCommit
            | Fault::SlowAfterCommit(_)
            | Fault::StallBeforeCommit(_)
            | Fault::AlteredAnswer { .. }
            | Fault::CutShortAfterCommit
            | Fault::SuccessUnapplied
            | Fault::ScheduledThenReverts
            | Fault::FleetWithScheduledChange => {
                return None;
            }
        })
    }
}

/// `response` (a committed request's answer) with its JSON resource's `fields` set to
/// their values; an answer that is not a 2xx JSON object is left as it is.
pub(super) async fn alter_answer(response: Response, fields: &[(String, String)]) -> Response {
    if !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return lost_response();
    };
    let mut resource: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(object)) => serde_json::Value::Object(object),
        _ => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    for (field, value) in fields {
        resource[field.as_str()] = serde_json::Value::String(value.clone());
    }
    let mut response = Response::from_parts(parts, axum::body::Body::from(resource.to_string()));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// A way the SIM list (`GET /v1/Sims` without `Iccid`) misbehaves, for clients that page
/// through it and must not believe everything it says. Set for the whole emulator
/// ([`super::EmulatorConfig::paging_fault`]).
#[derive(Clone, Debug, PartialEq)]
pub enum PagingFault {
    /// Every page shows the first page's SIMs again and names a next page one number on,
    /// with a page token never given before: a list that never ends and never moves on,
    /// though no page address repeats.
    EndlessRepeat,
    /// Each page after the first shows the page before's SIMs again, ahead of its own; the
    /// list ends as usual, with every SIM but the last page's shown twice.
    RepeatPageBefore,
    /// Every page names this as its next page: a path on the emulator's own host (starting
    /// with `/`, such as `/v1/Sims/../Fleets?Page=1`), or a whole URL.
    NextPageUrl(String),
    /// The SIMs are listed with this `account_sid`, as a server answering for another
    /// account would list them.
    ListedAccount(String),
    /// Each list answer's JSON is followed by this many bytes of spaces (still valid JSON),
    /// sent as the client reads them; [`super::Stats::padding_sent`] counts those sent.
    PaddedBody(u64),
}

/// How much padding a [`PagingFault::PaddedBody`] answer sends at a time.
const PADDING_CHUNK: usize = 64 * 1024;
static SPACES: [u8; PADDING_CHUNK] = [b' '; PADDING_CHUNK];

/// `json` followed by `padding` bytes of spaces, streamed: the emulator never holds the
/// padding, and `sent` is told of each chunk as it goes, so a test can see how much of it a
/// client read before it hung up.
pub(super) fn padded_body(
    json: Vec<u8>,
    padding: u64,
    sent: impl Fn(u64) + Send + Sync + 'static,
) -> Response {
    let head = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from(json))]);
    let tail = futures_util::stream::unfold(padding, move |left| {
        let chunk = left.min(PADDING_CHUNK as u64);
        if chunk > 0 {
            sent(chunk);
        }
        async move {
            (chunk > 0).then(|| {
                (
                    Ok(Bytes::from_static(&SPACES[..chunk as usize])),
                    left - chunk,
                )
            })
        }
    });
    use futures_util::StreamExt as _;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(head.chain(tail)),
    )
        .into_response()
}

/// [`Fault::EchoSecrets`]: a refusal whose message repeats what the request carried.
pub(super) fn echo_secrets(authorization: Option<&str>, code: Option<&str>) -> Response {
    use base64::Engine as _;
    let authorization = authorization.unwrap_or_default();
    let credential = authorization.strip_prefix("Basic ").unwrap_or_default();
    let secret = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .ok()
        .and_then(|pair| String::from_utf8(pair).ok())
        .and_then(|pair| Some(pair.split_once(':')?.1.to_string()))
        .unwrap_or_default();
    let code = code.unwrap_or_default();
    let spaced: Vec<String> = code.chars().map(String::from).collect();
    let dashed: Vec<String> = code
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect();
    let message = format!(
        "request refused: Authorization {authorization}; credential {}; secret {secret}, \
         {}; code {}, '{}', {}",
        credential.trim_end_matches('='),
        secret.to_uppercase(),
        code.to_lowercase(),
        spaced.join(" "),
        dashed.join("-"),
    );
    twilio_error(StatusCode::BAD_REQUEST, 83002, &message)
}

/// [`Fault::CutShortAfterCommit`]: `response` with a `Content-Length` longer than its body,
/// whose body ends in an error, so the connection is closed once what there is went out.
pub(super) async fn cut_short(response: Response) -> Response {
    use futures_util::StreamExt as _;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return lost_response();
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len() + 100));
    let sent = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    // The pause lets what was sent reach the client before the connection is closed.
    let cut = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::other("emulated answer cut short"))
    });
    Response::from_parts(parts, axum::body::Body::from_stream(sent.chain(cut)))
}
