//! Refusals: a problem+json answer with the expected status and code, and a refused
//! request that wrote no event.

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::TestApp;

/// Asserts a problem+json response with the given status and code; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "expected {status} {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    body
}

/// Sends a request that must be refused with the given problem, and asserts that it wrote
/// no event. Returns the problem body.
pub async fn assert_refused(
    app: &TestApp,
    request: RequestBuilder,
    status: StatusCode,
    code: &str,
) -> Value {
    let before = app.event_count().await;
    let response = request.send().await.expect("request");
    let body = assert_problem(response, status, code).await;
    assert_eq!(
        app.event_count().await,
        before,
        "a refused request ({status} {code}) wrote events"
    );
    body
}
