//! A deployment that ran before webhooks existed keeps projecting and delivering once
//! migration 0011 is applied to it.

use std::time::Duration;

use serde_json::json;

use super::receiver::{eventually, Receiver};
use super::{webhook_for, LOCAL, PATIENCE};
use crate::helpers::{spawn_app_with, start_app};

#[tokio::test]
async fn an_existing_deployment_upgraded_to_webhooks_keeps_projecting_and_delivers() {
    let before = spawn_app_with(LOCAL).await;
    let (id, key) = before.api().create_simple(1, "pro", 3).await;
    before.api().put(&id, json!({"plan": "team"})).await;
    before.api().wait_for_read_models(PATIENCE).await;
    before.server.stop_background_tasks();
    // Back to the schema of before the webhooks migration, with this history in it.
    for statement in [
        "drop table webhook_attempts",
        "drop table webhook_deliveries",
        "drop table webhook_endpoint_health",
        "drop table rm_webhook_endpoints",
        "delete from projection_versions where projector = 'webhooks'",
        "delete from projector_checkpoints where projector = 'webhooks'",
        // And what came after it (0012 altered webhook_deliveries, dropped above), up to
        // the catalogue (0016 on), whose tables stay.
        "delete from _sqlx_migrations where version >= 11 and version < 16",
    ] {
        flowlytix_projections::with_db!(&before.db, pool => {
            sqlx::query(statement).execute(pool).await.unwrap();
        });
    }

    let after = start_app(
        &before.database_url,
        &before.key_dir,
        before.nats_names.clone(),
        LOCAL,
    )
    .await;
    let receiver = Receiver::start().await;
    let webhook = webhook_for(&after.api(), &receiver).await;
    // The old subscription's next events (sequence 3 on) are projected and delivered.
    after.api().activate(&key, "fp-upgraded", "linux").await;
    after.api().wait_for_read_models(PATIENCE).await;
    let listed = after
        .api()
        .get(&format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(listed["active_devices"], 1);
    assert!(
        eventually(PATIENCE, || receiver
            .unique()
            .iter()
            .any(|r| r.body["type"] == "DeviceActivated"))
        .await,
        "the upgraded deployment delivers its old subscription's new events"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver
        .unique()
        .iter()
        .all(|r| r.body["data"]["position"].as_i64() >= webhook["position"].as_i64()));
}
