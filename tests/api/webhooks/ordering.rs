//! Instances share the webhook projector's consumer and apply their batches at once, so an
//! endpoint's creation can be applied after events that come after it in the stream. The
//! endpoint must still get them (this once lost two deliveries in CI's two-instance test).
//! Here the late creation is applied by hand, after the events it precedes. On both
//! backends.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use flowlytix_projections::webhooks::WebhooksProjector;
use flowlytix_projections::{project_batch, Db, EventRecord};
use serde_json::{json, Value};
use uuid::Uuid;

use super::{settled_feed, LOCAL};
use crate::helpers::{spawn_app_with, TestApp};

/// The webhook projector's applied version of an aggregate.
async fn applied_version(app: &TestApp, aggregate_id: &str) -> i64 {
    app.scalar(&format!(
        "select coalesce(max(version), 0) from projection_versions
         where projector = 'webhooks' and aggregate_id = '{aggregate_id}'"
    ))
    .await
}

/// A `WebhookEndpointCreated` for every event type, placed in the stream at `position`.
fn endpoint_created_at(position: i64) -> EventRecord {
    EventRecord {
        position,
        aggregate_type: "WebhookEndpoint".into(),
        aggregate_id: Uuid::new_v4().to_string(),
        sequence: 1,
        event_type: "WebhookEndpointCreated".into(),
        event_version: "1.0".into(),
        payload: json!({"url": "http://127.0.0.1:9/hook", "event_types": null,
            "description": null, "enabled": true, "at": Utc::now(), "sealed_secret": "[redacted]"}),
        metadata: json!({"actor": "system"}),
        recorded_at: Utc::now(),
    }
}

async fn project_alone(db: &Db, record: &EventRecord) {
    let mut tx = db.begin().await.unwrap();
    project_batch(
        tx.conn(),
        &WebhooksProjector,
        std::slice::from_ref(record),
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn an_endpoint_applied_after_later_events_still_gets_them() {
    let app = spawn_app_with(LOCAL).await;
    let created = app
        .create_subscription(json!({"customer_email": "late@example.com",
            "customer_name": "Late", "plan": "pro", "max_devices": 2}))
        .await;
    let subscription = created["id"].as_str().unwrap().to_owned();
    let events: Vec<Value> = settled_feed(&app)
        .await
        .into_iter()
        .filter(|item| item["aggregate_id"] == subscription.as_str())
        .collect();
    for _ in 0..200 {
        if applied_version(&app, &subscription).await >= events.len() as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        applied_version(&app, &subscription).await,
        events.len() as i64
    );

    let first = events[0]["position"].as_i64().unwrap();
    let creation = endpoint_created_at(first - 1);
    project_alone(&app.db, &creation).await;

    let queued = app
        .scalar(&format!(
            "select count(*) from webhook_deliveries where aggregate_id = '{subscription}'"
        ))
        .await;
    let sequences: BTreeSet<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(
        queued as usize,
        sequences.len(),
        "each of the subscription's {} events, applied before the endpoint, is queued for it",
        sequences.len()
    );
    // (This app has no other endpoint.) Its own creation is queued too, and applying it again (a redelivery) adds nothing.
    let all = "select count(*) from webhook_deliveries";
    let total = app.scalar(all).await;
    assert_eq!(total, queued + 1);
    project_alone(&app.db, &creation).await;
    assert_eq!(app.scalar(all).await, total);
}
