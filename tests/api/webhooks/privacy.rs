//! What a third-party receiver learns of the people behind an event: the event metadata's
//! client IP address and user agent only when the operator says so
//! (`WEBHOOK_INCLUDE_REQUEST_METADATA`); the actor and request id always.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::receiver::{eventually, Receiver};
use super::{feed_from, webhook_for, LOCAL, PATIENCE};
use crate::helpers::{spawn_app_with, TestApp};

const USER_AGENT: &str = "privacy-test/1.0 (a person's browser)";
const REQUEST_ID: &str = "req-privacy-1";

/// Creates a subscription with a known user agent and request id, and returns the
/// `SubscriptionCreated` delivery's `data` and the same event as the feed shows it.
async fn delivered_and_feed(app: &TestApp, receiver: &Receiver) -> (Value, Value) {
    let webhook = webhook_for(&app.api(), receiver).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    let response = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .header("user-agent", USER_AGENT)
        .header("x-request-id", REQUEST_ID)
        .json(&json!({"customer_email": "p@example.com", "customer_name": "P", "plan": "pro", "max_devices": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = |r: &super::receiver::Received| r.body["type"] == "SubscriptionCreated";
    assert!(
        eventually(PATIENCE, || receiver.received().iter().any(created)).await,
        "the SubscriptionCreated delivery did not arrive"
    );
    let delivery = receiver.received().into_iter().find(created).unwrap();
    assert!(delivery.verifies_with(&secret), "signed as sent");
    let data = delivery.body["data"].clone();
    let position = data["position"].as_i64().unwrap();
    let item = feed_from(&app.api(), position)
        .await
        .into_iter()
        .find(|item| item["position"].as_i64() == Some(position))
        .unwrap();
    (data, item)
}

#[tokio::test]
async fn deliveries_leave_out_the_client_ip_and_user_agent_by_default() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    let (data, feed_item) = delivered_and_feed(&app, &receiver).await;
    // The feed, for admins and auditors, keeps them.
    assert_eq!(feed_item["metadata"]["user_agent"], USER_AGENT);
    assert_eq!(feed_item["metadata"]["ip"], "127.0.0.1");

    let metadata = data["metadata"].as_object().unwrap();
    assert!(!metadata.contains_key("ip"), "{metadata:?}");
    assert!(!metadata.contains_key("user_agent"), "{metadata:?}");
    assert_eq!(metadata["actor"], feed_item["metadata"]["actor"]);
    assert_eq!(metadata["request_id"], REQUEST_ID);
    assert_eq!(
        metadata["occurred_at"],
        feed_item["metadata"]["occurred_at"]
    );
    assert_eq!(data["payload"], feed_item["payload"]);
}

#[tokio::test]
async fn deliveries_carry_them_when_the_operator_includes_them() {
    let mut settings = LOCAL.to_vec();
    settings.push(("WEBHOOK_INCLUDE_REQUEST_METADATA", "true"));
    let app = spawn_app_with(&settings).await;
    let receiver = Receiver::start().await;
    let (data, feed_item) = delivered_and_feed(&app, &receiver).await;
    assert_eq!(data["metadata"]["user_agent"], USER_AGENT);
    assert_eq!(data["metadata"]["ip"], "127.0.0.1");
    assert_eq!(data, feed_item);
}
