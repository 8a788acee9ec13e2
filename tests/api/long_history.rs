//! Commands whose cost does not grow with history: the executor's aggregate cache and its
//! snapshots, seen through the API. A long history, several instances on one database
//! (each with its own cache, possibly stale), snapshots that no longer decode, and cold
//! starts that load from a snapshot.

use chrono::{Duration, SecondsFormat, Utc};
use flowlytix_aggregates::{SubscriptionAction, SubscriptionId};
use flowlytix_server::store::{EventMetadata, SNAPSHOT_INTERVAL};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, ApiClient, TestApp};

/// Appends `events` `LicenseTokenIssued` events for the device with `fingerprint`, ten per
/// command, straight through the application (far quicker than as many HTTP refreshes,
/// and the same command path).
async fn grow_history(app: &TestApp, id: &str, fingerprint: &str, events: u64) {
    let id = SubscriptionId(Uuid::parse_str(id).unwrap());
    let fingerprint_hash = flowlytix_server::licensing::fingerprint_hash(fingerprint).unwrap();
    let mut left = events;
    while left > 0 {
        let batch = left.min(10);
        let now = Utc::now();
        let actions = (0..batch)
            .map(|_| SubscriptionAction::IssueLicenseToken {
                fingerprint_hash: fingerprint_hash.clone(),
                token_id: Uuid::new_v4(),
                expires_at: now + Duration::hours(1),
            })
            .collect();
        app.server
            .subscriptions
            .commands()
            .run(id, actions, EventMetadata::system(now), None)
            .await
            .expect("a token command");
        left -= batch;
    }
}

async fn latest_snapshot_sequence(app: &TestApp, id: &str) -> i64 {
    app.scalar(&format!(
        "select coalesce(max(last_sequence), 0) from snapshots where aggregate_id = '{id}'"
    ))
    .await
}

async fn snapshot_payload(app: &TestApp, id: &str) -> Value {
    let text: String = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar("select cast(payload as text) from snapshots where aggregate_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    serde_json::from_str(&text).unwrap()
}

async fn set_snapshot_payload(app: &TestApp, id: &str, payload: &str) {
    let sql = match app.db.dialect() {
        flowlytix_projections::Dialect::Postgres => {
            "update snapshots set payload = cast($1 as json) where aggregate_id = $2"
        }
        flowlytix_projections::Dialect::Sqlite => {
            "update snapshots set payload = $1 where aggregate_id = $2"
        }
    };
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query(sql).bind(payload).bind(id).execute(pool).await.unwrap();
    });
}

/// `GET /api/v1/subscriptions/{id}` as the state a full replay of the events gives.
async fn replayed(api: &ApiClient, id: &str) -> Value {
    let now = (Utc::now() + Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Micros, true);
    api.get_query(&format!("/api/v1/subscriptions/{id}"), &[("as_of", now)])
        .await
}

async fn refresh(api: &ApiClient, token: &str) -> Value {
    let response = api
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("refresh");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_subscription_with_a_long_history_activates_and_reads_right() {
    let app = spawn_app().await;
    let api = app.api();
    let created = app.subscription_with_devices(3).await;
    let id = created["id"].as_str().unwrap();
    let key = created["license_key"].as_str().unwrap();
    let first = api.activate(key, "long-history-1", "linux").await;

    grow_history(&app, id, "long-history-1", 1_000).await;
    let version = created["version"].as_u64().unwrap() + 2 + 1_000;
    assert!(latest_snapshot_sequence(&app, id).await as u64 > version - SNAPSHOT_INTERVAL);

    // A second device, then a refresh of the first: both on top of the long history.
    let second = api.activate(key, "long-history-2", "windows").await;
    assert_eq!(second["license"]["subscription_id"], id);
    assert_ne!(second["device_id"], first["device_id"]);
    let refreshed = refresh(&api, first["token"].as_str().unwrap()).await;
    assert!(refreshed["position"].as_i64().unwrap() > second["position"].as_i64().unwrap());

    let current = api.get(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(current["version"].as_u64().unwrap(), version + 2 + 1);
    assert_eq!(current["active_devices"], 2);
    let devices = current["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(current, replayed(&api, id).await);
    assert_eq!(api.validate(key, "long-history-2").await["code"], "VALID");

    // The position a command answers is its last event's.
    let last: i64 = app
        .scalar(&format!(
            "select max(global_position) from events where aggregate_id = '{id}'"
        ))
        .await;
    assert_eq!(refreshed["position"].as_i64().unwrap(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_taking_turns_on_one_subscription_lose_nothing_and_never_conflict() {
    let app = spawn_app().await;
    let instances = [app.api(), app.api().at(&app.spawn_second_instance().await)];
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["license_key"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/subscriptions/{id}");
    let mut token = instances[1].activate(&key, "turns-0", "linux").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both instances now hold the subscription in memory.
    for instance in &instances {
        assert_eq!(instance.get(&path).await["active_devices"], 1);
    }
    let mut version = instances[0].get(&path).await["version"].as_u64().unwrap();

    for turn in 1..=12u64 {
        // Each turn runs on the instance that did not run the last one, so what it holds
        // in memory is four events behind. Its first command meets that stale state in
        // one of three ways, in rotation.
        let here = &instances[(turn % 2) as usize];
        let name = format!("Turn {turn}");
        match turn % 3 {
            // The stale state has no such device: a refusal that the store overrules.
            0 => {
                let response = here
                    .anon(Method::POST, "/api/v1/licensing/refresh")
                    .json(&json!({ "token": token }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "turn {turn}");
            }
            // An If-Match version the other instance handed out is current, not a conflict.
            1 => {
                let response = here
                    .admin(Method::PUT, &path)
                    .header("If-Match", version.to_string())
                    .json(&json!({ "customer_name": name }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "turn {turn}");
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["version"].as_u64().unwrap(), version + 1);
            }
            // Decided on the stale state, the append takes a taken sequence and is redone.
            _ => {
                let body = here.put(&id, json!({ "customer_name": name })).await;
                assert_eq!(body["version"].as_u64().unwrap(), version + 1);
            }
        }
        // The only slot, taken on the other instance, is freed and taken again here.
        here.deactivate(&key, &format!("turns-{}", turn - 1)).await;
        let activated = here.activate(&key, &format!("turns-{turn}"), "linux").await;
        token = activated["token"].as_str().unwrap().to_owned();
        version += 4;
    }

    for instance in &instances {
        let current = instance.get(&path).await;
        assert_eq!(current["version"].as_u64().unwrap(), version);
        assert_eq!(current["customer_name"], "Turn 11");
        assert_eq!(current["active_devices"], 1);
        let active: Vec<&Value> = current["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "active")
            .collect();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0]["name"], "device turns-12");
    }
    let stored: i64 = app
        .scalar(&format!(
            "select count(*) from events where aggregate_id = '{id}'"
        ))
        .await;
    assert_eq!(stored as u64, version, "one event per version, none lost");
}

#[tokio::test]
async fn a_snapshot_that_does_not_decode_is_ignored() {
    let app = spawn_app().await;
    let api = app.api();
    let created = app.subscription_with_devices(2).await;
    let id = created["id"].as_str().unwrap();
    let key = created["license_key"].as_str().unwrap();
    api.activate(key, "garbled-1", "linux").await;
    grow_history(&app, id, "garbled-1", SNAPSHOT_INTERVAL + 20).await;
    let taken = latest_snapshot_sequence(&app, id).await;
    assert!(taken > 0, "a snapshot was taken");
    let before = api.get(&format!("/api/v1/subscriptions/{id}")).await;

    // As a snapshot taken by an older build whose state had another shape.
    set_snapshot_payload(&app, id, r#"{"state": {"shape": "from another version"}}"#).await;
    let cold = app.api().at(&app.spawn_second_instance().await);
    assert_eq!(
        cold.get(&format!("/api/v1/subscriptions/{id}")).await,
        before
    );

    // Commands work on the cold instance, and its next append replaces the snapshot.
    let activated = cold.activate(key, "garbled-2", "linux").await;
    assert_eq!(activated["license"]["subscription_id"], id);
    assert!(latest_snapshot_sequence(&app, id).await > taken);
    assert!(snapshot_payload(&app, id).await["state"]["customer_email"].is_string());
}

#[tokio::test]
async fn a_new_instance_loads_from_the_snapshot_the_state_a_replay_gives() {
    let app = spawn_app().await;
    let api = app.api();
    let created = app.subscription_with_devices(3).await;
    let id = created["id"].as_str().unwrap();
    let key = created["license_key"].as_str().unwrap();
    api.activate(key, "cold-1", "linux").await;
    grow_history(&app, id, "cold-1", SNAPSHOT_INTERVAL - 10).await;
    api.activate(key, "cold-2", "macos").await;
    api.put(id, json!({ "plan": "team", "max_devices": 4 }))
        .await;
    grow_history(&app, id, "cold-2", 2 * SNAPSHOT_INTERVAL + 7).await;
    api.deactivate(key, "cold-1").await;
    let path = format!("/api/v1/subscriptions/{id}");
    assert!(latest_snapshot_sequence(&app, id).await > 0);

    let warm = api.get(&path).await;
    assert_eq!(warm, replayed(&api, id).await);
    let cold = app.api().at(&app.spawn_second_instance().await);
    assert_eq!(cold.get(&path).await, warm);

    // The cold load did start from the snapshot: a doctored (but well-formed) one shows
    // through on another new instance.
    let mut doctored = snapshot_payload(&app, id).await;
    doctored["state"]["customer_name"] = json!("Seen only in the snapshot");
    set_snapshot_payload(&app, id, &doctored.to_string()).await;
    let another = app.api().at(&app.spawn_second_instance().await);
    assert_eq!(
        another.get(&path).await["customer_name"],
        "Seen only in the snapshot"
    );
}

/// Makes every write of a snapshot of `id` fail (after the events of its append went in).
async fn refuse_snapshots_of(app: &TestApp, id: &str) {
    let statements = match app.db.dialect() {
        flowlytix_projections::Dialect::Postgres => vec![
            "create function refuse_snapshot() returns trigger language plpgsql as $$
             begin raise exception 'injected snapshot failure'; end $$"
                .to_owned(),
            format!(
                "create trigger refuse_snapshot before insert or update on snapshots
                 for each row when (new.aggregate_id = '{id}')
                 execute function refuse_snapshot()"
            ),
        ],
        flowlytix_projections::Dialect::Sqlite => vec![format!(
            "create trigger refuse_snapshot before insert on snapshots
             when new.aggregate_id = '{id}'
             begin select raise(abort, 'injected snapshot failure'); end"
        )],
    };
    for sql in statements {
        flowlytix_projections::with_db!(&app.db, pool => {
            sqlx::query(&sql).execute(pool).await.unwrap();
        });
    }
}

async fn allow_snapshots_again(app: &TestApp) {
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query("drop trigger refuse_snapshot on snapshots")
            .execute(pool)
            .await
            .or(sqlx::query("drop trigger refuse_snapshot").execute(pool).await)
            .unwrap();
    });
}

/// An append whose snapshot cannot be written, after its events were: the caller is told
/// it failed, so none of it may commit (a client retrying its request would otherwise
/// make the change twice). On SQLite this is the lone append of a group commit; on
/// PostgreSQL the append's own transaction.
#[tokio::test]
async fn a_command_whose_snapshot_cannot_be_written_commits_nothing() {
    let app = spawn_app().await;
    let api = app.api();
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    let key = created["license_key"].as_str().unwrap();
    api.activate(key, "refused-snapshot", "linux").await;
    let activated = created["version"].as_u64().unwrap() + 2;
    // The next command's one event is the one a snapshot is due with.
    grow_history(
        &app,
        id,
        "refused-snapshot",
        SNAPSHOT_INTERVAL - 1 - activated,
    )
    .await;
    let count = format!("select count(*) from events where aggregate_id = '{id}'");
    let stored = || app.scalar(&count);
    assert_eq!(stored().await as u64, SNAPSHOT_INTERVAL - 1);

    refuse_snapshots_of(&app, id).await;
    let path = format!("/api/v1/subscriptions/{id}");
    let failed = api
        .admin(Method::PUT, &path)
        .json(&json!({ "customer_name": "Written once" }))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        stored().await as u64,
        SNAPSHOT_INTERVAL - 1,
        "nothing committed"
    );
    assert_eq!(latest_snapshot_sequence(&app, id).await, 0);

    // The client retries, and the change is made once.
    allow_snapshots_again(&app).await;
    let retried = api
        .put(id, json!({ "customer_name": "Written once" }))
        .await;
    assert_eq!(retried["version"].as_u64().unwrap(), SNAPSHOT_INTERVAL);
    assert_eq!(stored().await as u64, SNAPSHOT_INTERVAL);
    assert_eq!(
        latest_snapshot_sequence(&app, id).await as u64,
        SNAPSHOT_INTERVAL
    );
    assert_eq!(api.get(&path).await, replayed(&api, id).await);
}
