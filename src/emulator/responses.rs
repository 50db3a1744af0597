//! The responses the emulator builds in several places: Twilio's error bodies, a 429, a
//! lost response (the connection closed instead of an answer), and resource URLs.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Marks a response that must be lost: the connection is closed instead of answering.
#[derive(Clone, Copy)]
pub(super) struct LoseResponse;

#[derive(Debug)]
pub(super) struct ResponseLost;

impl std::fmt::Display for ResponseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("emulated lost response")
    }
}

impl std::error::Error for ResponseLost {}

pub(super) fn lost_response() -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(LoseResponse);
    response
}

pub(super) fn not_found_error(path: &str) -> Response {
    twilio_error(
        StatusCode::NOT_FOUND,
        20404,
        &format!("The requested resource {path} was not found"),
    )
}

pub(super) fn invalid_parameter(name: &str) -> Response {
    twilio_error(
        StatusCode::BAD_REQUEST,
        20001,
        &format!("Invalid {name}: must be a non-negative integer"),
    )
}

pub(super) fn too_many_requests() -> Response {
    twilio_error(
        StatusCode::TOO_MANY_REQUESTS,
        20429,
        "Too many concurrent requests",
    )
}

/// Twilio's error body. Callers never pass a registration code or a credential into
/// `message`, but for [`super::faults::echo_secrets`], whose purpose that is.
pub(super) fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

pub(super) fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
