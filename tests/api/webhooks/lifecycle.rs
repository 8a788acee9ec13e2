//! What happens to a delivery around the attempts: its endpoint deleted while it is queued,
//! a redeliver while it is in flight.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::receiver::{eventually, Receiver};
use super::{delivery_log, some_activity, webhook_for, LOCAL, PATIENCE};
use crate::helpers::{spawn_app_with, TestApp};

async fn count(app: &TestApp, status: &str) -> i64 {
    app.scalar(&format!(
        "select count(*) from webhook_deliveries where status = '{status}'"
    ))
    .await
}

#[tokio::test]
async fn deleting_an_endpoint_cancels_its_queued_deliveries() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    receiver.fail_always(true);
    let webhook = webhook_for(&app.api(), &receiver).await;
    let id = webhook["id"].as_str().unwrap();
    some_activity(&app.api(), 2).await;
    let mut pending = 0;
    for _ in 0..200 {
        pending = count(&app, "pending").await;
        if pending >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pending >= 5, "{pending} deliveries queued");

    let deleted = app
        .admin(Method::DELETE, &format!("/api/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let mut left = pending;
    for _ in 0..200 {
        left = count(&app, "pending").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "nothing stays pending for a deleted endpoint");
    assert!(count(&app, "canceled").await > 0);
    // And nothing more is attempted: an attempt in flight at the deletion may still land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(receiver.received().len(), sent);
    assert_eq!(count(&app, "pending").await, 0);
}

#[tokio::test]
async fn a_redeliver_while_the_delivery_is_in_flight_is_not_lost() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    // The endpoint's own creation is its first delivery; its first attempt is slow.
    receiver.delay_next(Duration::from_millis(1500));
    let webhook = webhook_for(&app.api(), &receiver).await;
    let id = webhook["id"].as_str().unwrap();
    assert!(eventually(PATIENCE, || !receiver.received().is_empty()).await);
    let delivery = receiver.received()[0].webhook_id();
    assert!(
        delivery_log(&app.api(), id).await.is_empty(),
        "still in flight"
    );

    let response = app
        .admin(
            Method::POST,
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        eventually(PATIENCE, || receiver.received().len() == 2).await,
        "the redeliver asked for during the first attempt was sent after it"
    );
    assert_eq!(receiver.received()[1].webhook_id(), delivery);
    let mut log = Vec::new();
    for _ in 0..200 {
        log = delivery_log(&app.api(), id).await;
        if log.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|a| a["status_code"] == 204), "{log:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 2, "and only once");
    assert_eq!(count(&app, "delivered").await, 1);
}
