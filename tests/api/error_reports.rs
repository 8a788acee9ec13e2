//! `SENTRY_DSN` (issue 21, item 9): a 5xx answer reaches Sentry as an envelope with no secret
//! of the request in it. A local receiver stands in for Sentry; the server fails because its
//! database is closed under it.

use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::mpsc;

use crate::helpers::spawn_app_with;

/// A Sentry stand-in: every envelope posted to it comes out of the channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    let (sender, envelopes) = mpsc::unbounded_channel();
    let router = axum::Router::new().route(
        "/api/{project}/envelope/",
        post(move |body: Bytes| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(String::from_utf8_lossy(&body).into_owned());
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://public7731@{address}/42"), envelopes)
}

#[tokio::test]
async fn a_5xx_answer_is_reported_with_no_body_authorization_or_cookie() {
    let (dsn, mut envelopes) = receiver().await;
    let app = spawn_app_with(&[("SENTRY_DSN", &dsn)]).await;

    // The database goes away under the server: the next request fails on our side.
    app.db.close().await;
    let response = app
        .admin(reqwest::Method::POST, "/api/v1/subscriptions")
        .header("cookie", "flowlytix_session=cookie-secret-7731")
        .header("x-request-id", "sentry-test-7731")
        .json(&json!({
            "customer_email": "body-secret-7731@example.com",
            "customer_name": "Body Secret 7731",
            "plan": "pro",
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_server_error(), "{}", response.status());
    assert_ne!(response.status(), StatusCode::OK);

    // Other tests' servers report to whatever DSN is bound too: wait for this request's.
    let envelope = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let envelope = envelopes.recv().await.expect("the receiver runs");
            if envelope.contains("sentry-test-7731") {
                return envelope;
            }
        }
    })
    .await
    .expect("an envelope for the failed request within 20 s");

    assert!(
        envelope.contains("answered to POST /api/v1/subscriptions"),
        "{envelope}"
    );
    for secret in [
        app.admin_token.as_str(),
        "cookie-secret-7731",
        "body-secret-7731",
        "Body Secret 7731",
    ] {
        assert!(
            !envelope.contains(secret),
            "{secret} reached Sentry: {envelope}"
        );
    }
}
