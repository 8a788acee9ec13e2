//! `/health` shows the webhook queue's projector and the queue.

use std::time::Duration;

use serde_json::Value;

use super::receiver::Receiver;
use super::{some_activity, webhook_for, LOCAL};
use crate::helpers::{health_at, spawn_app_with, TestApp};

async fn health(app: &TestApp) -> Value {
    health_at(&app.client, &app.address).await
}

#[tokio::test]
async fn health_shows_the_webhook_projector_the_queue_and_failing_endpoints() {
    let app = spawn_app_with(LOCAL).await;
    let before = health(&app).await;
    assert_eq!(before["webhooks"]["notifications"], true, "{before}");
    assert_eq!(before["webhooks"]["pending"], 0, "{before}");
    assert_eq!(before["webhooks"]["failing_endpoints"], 0, "{before}");
    assert!(
        before["projectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "webhooks"),
        "{before}"
    );

    let receiver = Receiver::start().await;
    receiver.fail_always(true);
    webhook_for(&app.api(), &receiver).await;
    some_activity(&app.api(), 1).await;
    let mut now = Value::Null;
    for _ in 0..200 {
        now = health(&app).await;
        if now["webhooks"]["pending"].as_i64() >= Some(2)
            && now["webhooks"]["failing_endpoints"] == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(now["webhooks"]["pending"].as_i64() >= Some(2), "{now}");
    assert_eq!(now["webhooks"]["failing_endpoints"], 1, "{now}");
    assert_eq!(now["webhooks"]["auto_disabled_endpoints"], 0, "{now}");
    let webhooks = now["projectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "webhooks")
        .cloned()
        .unwrap();
    assert!(webhooks["events_applied"].as_i64() > Some(0), "{now}");
}

#[tokio::test]
async fn health_says_when_notifications_are_off() {
    let mut settings = LOCAL.to_vec();
    settings.push(("ENABLE_NOTIFICATIONS", "false"));
    let app = spawn_app_with(&settings).await;
    let health = health(&app).await;
    assert_eq!(health["webhooks"]["notifications"], false, "{health}");
}
