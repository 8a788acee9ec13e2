//! SIGTERM while a slow receiver holds a delivery: the server waits for the attempt and
//! records it before it closes its database, so the next server does not send it again.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::receiver::{eventually, Receiver};
use super::{delivery_log, process_env, webhook_for, PATIENCE};
use crate::helpers::{ApiClient, ServerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_records_the_attempt_in_flight_and_the_next_server_does_not_resend_it() {
    let mut env = process_env().await;
    env.push(("WEBHOOK_TIMEOUT".into(), "10s".into()));
    env.push(("SHUTDOWN_TIMEOUT_SECS".into(), "15".into()));

    let receiver = Receiver::start().await;
    // The first delivery (the endpoint's own creation) is answered only 3 s after it
    // arrives: longer than the server takes to stop when nothing holds it.
    receiver.delay_next(Duration::from_secs(3));
    let mut first = ServerProcess::start(&env).await;
    let api = ApiClient::login(&first.address).await;
    let webhook = webhook_for(&api, &receiver).await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(PATIENCE, || receiver.received().len() == 1).await,
        "the first delivery reached the receiver"
    );
    let status = first.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; its log:\n{}", first.log_text());

    let second = ServerProcess::start(&env).await;
    let api = api.at(&second.address);
    let log = delivery_log(&api, &webhook_id).await;
    assert_eq!(log.len(), 1, "the attempt in flight was recorded: {log:?}");
    assert_eq!(log[0]["status_code"], 204, "{log:?}");
    assert_eq!(log[0]["event_type"], "WebhookEndpointCreated");

    // The endpoint's next event is delivered only once every earlier event of the same
    // endpoint is settled: had the first delivery been left pending, it would go again
    // first (once its lease ran out).
    let response = api
        .admin(Method::PUT, &format!("/api/v1/webhooks/{webhook_id}"))
        .json(&json!({"description": "after the restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let of_type = |event_type: &str| {
        receiver
            .received()
            .iter()
            .filter(|r| r.body["type"] == event_type)
            .count()
    };
    assert!(
        eventually(PATIENCE, || of_type("WebhookEndpointUpdated") >= 1).await,
        "the update was delivered; the second server's log:\n{}",
        second.log_text()
    );
    assert_eq!(
        of_type("WebhookEndpointCreated"),
        1,
        "the creation was sent once, not again after the restart"
    );
}
