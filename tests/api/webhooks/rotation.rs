//! Secret rotation: for `WEBHOOK_ROTATION_GRACE` after a rotation deliveries carry a second
//! signature made with the replaced secret, so that a receiver still holding only the old
//! secret keeps verifying them (with the `standardwebhooks` crate) until the grace is over.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::receiver::{eventually, Receiver};
use super::{create_webhook, LOCAL, PATIENCE};
use crate::helpers::spawn_app_with;

const GRACE: Duration = Duration::from_secs(3);

#[tokio::test]
async fn a_receiver_with_the_old_secret_verifies_during_the_grace_and_not_after() {
    let mut settings = LOCAL.to_vec();
    settings.push(("WEBHOOK_ROTATION_GRACE", "3s"));
    let app = spawn_app_with(&settings).await;
    let receiver = Receiver::start().await;
    // Subscription events only, so that each delivery here is one this test made.
    let created = create_webhook(
        &app.api(),
        serde_json::json!({"url": receiver.url, "event_types": ["SubscriptionCreated"]}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let old_secret = created["secret"].as_str().unwrap().to_owned();
    app.api().create_simple(0, "pro", 3).await;
    assert!(eventually(PATIENCE, || receiver.received().len() == 1).await);
    let before = receiver.received()[0].clone();
    assert!(before.verifies_with(&old_secret));
    assert_eq!(
        before.header("webhook-signature").split(' ').count(),
        1,
        "one signature before any rotation"
    );

    let rotated = app
        .admin(Method::POST, &format!("/api/v1/webhooks/{id}/secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated_at = Instant::now();
    let new_secret = rotated.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    app.api().create_simple(1, "pro", 3).await;
    assert!(eventually(PATIENCE, || receiver.received().len() == 2).await);
    let during = receiver.received()[1].clone();
    assert!(
        rotated_at.elapsed() < GRACE,
        "the machine was too slow to test within the grace"
    );
    assert!(during.verifies_with(&new_secret));
    assert!(
        during.verifies_with(&old_secret),
        "during the grace the old secret still verifies"
    );
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);

    tokio::time::sleep(GRACE.saturating_sub(rotated_at.elapsed()) + Duration::from_millis(500))
        .await;
    app.api().create_simple(2, "pro", 3).await;
    assert!(eventually(PATIENCE, || receiver.received().len() == 3).await);
    let after = receiver.received()[2].clone();
    assert!(after.verifies_with(&new_secret));
    assert!(
        !after.verifies_with(&old_secret),
        "after the grace only the new secret verifies"
    );
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
}
