//! Existing event logs keep working unchanged (issue 22). The fixture
//! `aggregates/fixtures/event-log-2026-12-07.json` is the `events` table of an embedded server
//! of the build before licensing policies. Its rows go, as they were stored, into the store of
//! a test server stopped for it, `flowlytix replay` rebuilds the read models, and a server
//! started cold on that store gives today's answers: the state the events describe, read as subscriptions of
//! their own, and commands that work on top of the old history.
//!
//! What the fixture holds (read off its rows; every expected value below comes from them):
//! - admin `d0aea495…` (`fixture@example.com`), the actor of the admin requests;
//! - subscription `d654e2a0…` (sequences 1-18): created trialing (`pro`, 3 devices, export
//!   and sync, `{"crm": "42"}`, until 2030, trial to 2027), key `FLX-Y8X6B`; device
//!   `69961bdb…` ("Desk", linux) activated, device `4a7ac4b3…` (nothing but a fingerprint)
//!   activated, tokens, "Desk" renamed "Desk 2" with notes "shelf", `4a7ac4b3…` deactivated
//!   by its client and `69961bdb…` by the admin; renamed "Ann B", plan `team`, 5 devices,
//!   until 2031; suspended, resumed (active), key regenerated (`FLX-HQNAC`), canceled;
//! - subscription `4ba7a39b…` (sequences 1-3): created, key issued, deleted;
//! - webhook endpoint `ba134060…` (sequences 1-4): created, updated, disabled, deleted.
//!
//! Neither subscription can follow a policy today: a canceled subscription is final (its plan,
//! device limit and period are refused, 409 `SUBSCRIPTION_CANCELED`, and so is a policy), a
//! deleted one takes no command (410). The upgrade test checks those refusals, gives the
//! canceled one an entitlement of the new catalogue (allowed, like its details and its key),
//! and puts a follower of the new policy beside the old history.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, assert_refused, backend, spawn_app, start_app, Backend, TestApp,
};

const FIXTURE: &str = include_str!("../../aggregates/fixtures/event-log-2026-12-07.json");

/// The canceled subscription of the fixture.
const CANCELED: &str = "d654e2a0-0cf2-4d19-b071-2aa4248e5f13";
/// The deleted subscription of the fixture.
const DELETED: &str = "4ba7a39b-f26e-4761-a4d2-6729f9edd145";
/// The deleted webhook endpoint of the fixture.
const WEBHOOK: &str = "ba134060-0c50-4331-8d18-5f4a3be8e7f3";
/// The fixture's devices, both of the canceled subscription.
const DESK: &str = "69961bdb-44d6-4b1e-8dc6-78c3bffffe70";
const BARE: &str = "4a7ac4b3-671f-4944-87c7-a0d9f0cc1b34";

/// How long a server or the replay may take to do what the test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// The fixture's rows as stored (each field as the events table had it).
fn fixture_rows() -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(FIXTURE).expect("the fixture log is JSON")
}

fn text<'a>(row: &'a Value, field: &str) -> &'a str {
    row[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {row}"))
}

/// `GET /api/v1/subscriptions/d654e2a0…` as the events describe it: created with `pro`, 3
/// devices, export and sync, `{"crm": "42"}` (sequence 1); renamed "Ann B", plan `team`, 5
/// devices, until 2031, trial to 2027 (11-14); key regenerated to `FLX-HQNAC` (17); canceled
/// (18, the last event's `at` is `updated_at`). Following no policy: its own terms, nothing
/// overridden, no grace. Its devices in activation order (sequences 3 and 5), with the
/// rename and notes of 8, the last token of each (4, 6, 7) and their deactivations (9, 10).
fn canceled_as_the_events_describe_it() -> Value {
    let mut subscription = json!({
        "id": CANCELED,
        "customer_email": "a@example.com",
        "customer_name": "Ann B",
        "organization": "Org",
        "plan": "team",
        "status": "canceled",
        "max_devices": 5,
        "active_devices": 0,
        "features": ["export", "sync"],
        "metadata": {"crm": "42"},
        "starts_at": "2026-12-07T05:17:20.275175517Z",
        "expires_at": "2031-01-01T00:00:00Z",
        "trial_ends_at": "2027-01-01T00:00:00Z",
        "license_key_prefix": "FLX-HQNAC",
        "created_at": "2026-12-07T05:17:20.275175517Z",
        "updated_at": "2026-12-07T05:17:23.958868879Z",
        "policy_id": null,
        "product_code": null,
        "policy_code": null,
        "entitlements": ["export", "sync"],
        "overrides": [],
        "in_grace": false,
        "grace_until": null,
        "version": 18,
        "devices": [
            {
                "id": DESK,
                "subscription_id": CANCELED,
                "fingerprint_hash": "858c06cf9c505c9f135e64d506f2e40dcb5bc6992bfd8d97f31e6b7caa8b0d38",
                "name": "Desk 2",
                "platform": "linux",
                "os_version": "6.1",
                "app_version": "2.0.1",
                "hostname": "desk.local",
                "notes": "shelf",
                "status": "inactive",
                "activated_at": "2026-12-07T05:17:21.644926404Z",
                "deactivated_at": "2026-12-07T05:17:23.452420083Z",
                "deactivation_reason": "admin",
                "last_seen_at": "2026-12-07T05:17:23.267392349Z",
            },
            {
                "id": BARE,
                "subscription_id": CANCELED,
                "fingerprint_hash": "96f9a3475adc2d63aca3ec5cf3d6cb5369ac12b94be5b29d2c911df357d1abc0",
                "name": null,
                "platform": null,
                "os_version": null,
                "app_version": null,
                "hostname": null,
                "notes": null,
                "status": "inactive",
                "activated_at": "2026-12-07T05:17:23.232336772Z",
                "deactivated_at": "2026-12-07T05:17:23.391125709Z",
                "deactivation_reason": "client",
                "last_seen_at": "2026-12-07T05:17:23.232336772Z",
            },
        ],
    });
    // Under no lease, and deactivated otherwise than by one: no lease fields, no state.
    for device in subscription["devices"].as_array_mut().unwrap() {
        for field in [
            "last_heartbeat_at",
            "lease_expires_at",
            "borrowed_until",
            "state",
        ] {
            device[field] = Value::Null;
        }
    }
    subscription
}

/// The instants of a representation as PostgreSQL keeps them (microseconds): the events carry
/// nanoseconds, which a read model on PostgreSQL rounds off. Other fields as they are.
fn to_micros(mut value: Value) -> Value {
    if let Value::Object(fields) = &mut value {
        for (_, field) in fields.iter_mut() {
            let instant = field
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
            if let Some(instant) = instant {
                let instant = instant.with_timezone(&Utc);
                let micros = DateTime::from_timestamp_micros(instant.timestamp_micros())
                    .expect("an instant in range");
                *field = Value::String(micros.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            } else if field.is_object() || field.is_array() {
                *field = to_micros(field.take());
            }
        }
    } else if let Value::Array(items) = &mut value {
        for item in items.iter_mut() {
            *item = to_micros(item.take());
        }
    }
    value
}

/// A connection pool on the store of `database_url`, for what a test does to it while no
/// server runs on it.
enum Store {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Store {
    async fn open(database_url: &str) -> Self {
        match backend() {
            Backend::Postgres => Self::Postgres(sqlx::PgPool::connect(database_url).await.unwrap()),
            Backend::Sqlite => Self::Sqlite(sqlx::SqlitePool::connect(database_url).await.unwrap()),
        }
    }

    async fn execute(&self, sql: &str) {
        match self {
            Self::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Self::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn scalar(&self, sql: &str) -> i64 {
        match self {
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Inserts the fixture's rows into the events table as they were stored: the same
    /// payload and metadata text, sequences and `recorded_at`, in one transaction; positions
    /// (and on PostgreSQL the transaction id) are the store's own, after its bootstrap admin's
    /// events.
    async fn insert_fixture(&self) {
        // PostgreSQL keeps payload and metadata as `json` (the text as sent) and
        // `recorded_at` as `timestamptz`; SQLite all as text.
        const INSERT: &str = "insert into events (aggregate_type, aggregate_id, sequence,
            event_type, event_version, payload, metadata, recorded_at)";
        macro_rules! insert_all {
            ($pool:expr, $values:literal) => {{
                let mut tx = $pool.begin().await.unwrap();
                for row in fixture_rows() {
                    sqlx::query(&format!("{INSERT} values {}", $values))
                        .bind(text(&row, "aggregate_type"))
                        .bind(text(&row, "aggregate_id"))
                        .bind(row["sequence"].as_i64().unwrap())
                        .bind(text(&row, "event_type"))
                        .bind(text(&row, "event_version"))
                        .bind(text(&row, "payload"))
                        .bind(text(&row, "metadata"))
                        .bind(text(&row, "recorded_at"))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
            }};
        }
        match self {
            Self::Postgres(pool) => insert_all!(
                pool,
                "($1, $2, $3, $4, $5, $6::json, $7::json, $8::timestamptz)"
            ),
            Self::Sqlite(pool) => insert_all!(pool, "($1, $2, $3, $4, $5, $6, $7, $8)"),
        }
    }

    async fn close(self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

/// `flowlytix replay` on the store, as an operator runs it.
async fn replay(database_url: &str) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"))
        .arg("replay")
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE, output)
        .await
        .expect("the replay finishes")
        .expect("run the flowlytix binary");
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A server started again on `app`'s store (cold caches); waits until its read models have
/// caught up.
async fn restarted(app: &TestApp) -> TestApp {
    let restarted = start_app(&app.database_url, &app.key_dir, app.nats_names.clone(), &[]).await;
    restarted.api().wait_for_read_models(PATIENCE).await;
    restarted
}

/// A server on a store holding the fixture's events after its bootstrap admin's, its read
/// models rebuilt by `flowlytix replay`.
async fn fixture_store() -> TestApp {
    let app = spawn_app().await;
    app.api().wait_for_read_models(PATIENCE).await;
    app.server.shut_down(Duration::from_secs(10)).await;
    let store = Store::open(&app.database_url).await;
    store.insert_fixture().await;
    // The bootstrap admin's `AdminCreated`, then the fixture's rows.
    assert_eq!(store.scalar("select count(*) from events").await, 1 + 26);
    replay(&app.database_url).await;
    // The replay itself wrote the fixture's rows (the restarted server's projectors find
    // them applied): one listed subscription (the other is deleted) and its two devices.
    assert_eq!(
        store
            .scalar("select count(*) from rm_subscriptions where deleted_at is null")
            .await,
        1
    );
    assert_eq!(store.scalar("select count(*) from rm_devices").await, 2);
    store.close().await;
    restarted(&app).await
}

/// The history as the API gives it (`{"<Type>": {fields}}` unwrapped to the fields), for the
/// fixture's rows of one aggregate: nothing changed but the positions.
fn assert_history_is_the_fixture_s(items: &[Value], aggregate_id: &str) {
    let rows: Vec<Value> = fixture_rows()
        .into_iter()
        .filter(|row| row["aggregate_id"] == aggregate_id)
        .collect();
    assert!(items.len() >= rows.len(), "{items:#?}");
    for (item, row) in items.iter().zip(&rows) {
        let event_type = text(row, "event_type");
        let payload: Value = serde_json::from_str(text(row, "payload")).unwrap();
        let metadata: Value = serde_json::from_str(text(row, "metadata")).unwrap();
        assert_eq!(item["aggregate_type"], row["aggregate_type"]);
        assert_eq!(item["aggregate_id"], row["aggregate_id"]);
        assert_eq!(item["sequence"], row["sequence"]);
        assert_eq!(item["event_type"], event_type);
        assert_eq!(item["event_version"], row["event_version"]);
        assert_eq!(item["payload"], payload[event_type], "{event_type}");
        assert_eq!(item["metadata"], metadata, "{event_type}");
        assert_eq!(
            instant(&item["recorded_at"]),
            instant(&row["recorded_at"]),
            "{event_type}"
        );
    }
    let positions: Vec<i64> = items
        .iter()
        .map(|i| i["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("an instant: {value}"))
        .with_timezone(&Utc)
}

/// The subscription without what only a single subscription's answer has.
fn as_listed(mut subscription: Value) -> Value {
    subscription.as_object_mut().unwrap().remove("devices");
    subscription
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_policies_gives_today_s_answers_after_a_replay() {
    let app = fixture_store().await;
    let api = app.api();
    let expected = canceled_as_the_events_describe_it();

    // The subscription, straight from its events.
    let canceled = api.get(&format!("/api/v1/subscriptions/{CANCELED}")).await;
    assert_eq!(canceled, expected);
    assert_eq!(canceled["entitlements"], canceled["features"]);

    // The lists, from the replayed read models: the deleted subscription is in none.
    let listed = api.list_all("/api/v1/subscriptions").await;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(
        to_micros(listed[0].clone()),
        to_micros(as_listed(expected.clone()))
    );
    let mut devices = api
        .list_all(&format!("/api/v1/devices?subscription_id={CANCELED}"))
        .await;
    devices.sort_by_key(|d| instant(&d["activated_at"]));
    assert_eq!(
        to_micros(json!(devices)),
        to_micros(expected["devices"].clone())
    );
    let device = api.get(&format!("/api/v1/devices/{DESK}")).await;
    assert_eq!(to_micros(device), to_micros(expected["devices"][0].clone()));

    // The histories: the fixture's events with their payloads unchanged.
    let history = api
        .get(&format!("/api/v1/subscriptions/{CANCELED}/events"))
        .await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 18);
    assert_history_is_the_fixture_s(items, CANCELED);
    let history = api
        .get(&format!("/api/v1/subscriptions/{DELETED}/events"))
        .await;
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_history_is_the_fixture_s(items, DELETED);

    // The deleted subscription and webhook endpoint stay deleted.
    let response = api
        .admin(Method::GET, &format!("/api/v1/subscriptions/{DELETED}"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "SUBSCRIPTION_NOT_FOUND").await;
    assert_refused(
        &app,
        api.admin(Method::PUT, &format!("/api/v1/subscriptions/{DELETED}"))
            .json(&json!({"customer_name": "Bo B"})),
        StatusCode::GONE,
        "SUBSCRIPTION_DELETED",
    )
    .await;
    assert!(api.list_all("/api/v1/webhooks").await.is_empty());
    let response = api
        .admin(Method::GET, &format!("/api/v1/webhooks/{WEBHOOK}"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "WEBHOOK_NOT_FOUND").await;

    // Commands on top of the old history. Canceled is final for its terms…
    assert_refused(
        &app,
        api.admin(Method::PUT, &format!("/api/v1/subscriptions/{CANCELED}"))
            .json(&json!({"max_devices": 6})),
        StatusCode::CONFLICT,
        "SUBSCRIPTION_CANCELED",
    )
    .await;
    // …not for its details, its devices' notes or its key.
    let updated = api
        .put(
            CANCELED,
            json!({"customer_name": "Ann C", "metadata": {"crm": "43"}}),
        )
        .await;
    assert_eq!(updated["customer_name"], "Ann C");
    assert_eq!(updated["metadata"], json!({"crm": "43"}));
    assert_eq!(updated["version"], 19);
    assert_eq!(updated["policy_id"], Value::Null);
    let response = api
        .admin(Method::PUT, &format!("/api/v1/devices/{DESK}"))
        .json(&json!({"notes": "drawer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let device: Value = response.json().await.unwrap();
    assert_eq!(device["notes"], "drawer");
    assert_eq!(device["name"], "Desk 2");
    let response = api
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{CANCELED}/license-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let regenerated: Value = response.json().await.unwrap();
    let key = regenerated["license_key"].as_str().unwrap().to_owned();
    assert_eq!(regenerated["version"], 21);
    assert_ne!(regenerated["license_key_prefix"], "FLX-HQNAC");
    assert!(key.starts_with(regenerated["license_key_prefix"].as_str().unwrap()));

    // The new key finds the license, which answers as canceled, with its own terms.
    api.licensing()
        .activate(&key, "desk-fingerprint")
        .await
        .problem(StatusCode::FORBIDDEN, "LICENSE_CANCELED");
    let verdict = api.validate(&key, "desk-fingerprint").await;
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert_eq!(verdict["code"], "CANCELED", "{verdict}");
    let license = &verdict["license"];
    assert_eq!(license["subscription_id"], CANCELED);
    assert_eq!(license["status"], "canceled");
    assert_eq!(license["plan"], "team");
    assert_eq!(license["max_devices"], 5);
    assert_eq!(license["features"], json!(["export", "sync"]));
    assert_eq!(license["entitlements"], json!(["export", "sync"]));
    assert_eq!(license["product_code"], Value::Null);
    assert_eq!(license["policy_code"], Value::Null);
    assert_eq!(license["grace_until"], Value::Null);

    // The old history is still the first part of the new one.
    let history = api
        .get(&format!("/api/v1/subscriptions/{CANCELED}/events"))
        .await;
    let items = history["items"].as_array().unwrap();
    let types: Vec<&str> = items[18..]
        .iter()
        .map(|i| i["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "SubscriptionDetailsUpdated",
            "DeviceUpdated",
            "LicenseKeyRegenerated"
        ]
    );
    assert_history_is_the_fixture_s(items, CANCELED);
    let position = regenerated["position"].as_i64().unwrap();
    let listed = api
        .get(&format!("/api/v1/subscriptions?min_position={position}"))
        .await;
    assert_eq!(listed["items"][0]["customer_name"], "Ann C");
    assert_eq!(listed["items"][0]["version"], 21);
}

/// What the lists answer: subscriptions, devices and the catalogue.
async fn lists(app: &TestApp) -> Vec<Vec<Value>> {
    let api = app.api();
    let mut answers = Vec::new();
    for path in [
        "/api/v1/subscriptions",
        "/api/v1/devices",
        "/api/v1/products",
        "/api/v1/entitlements",
        "/api/v1/policies",
    ] {
        answers.push(api.list_all(path).await);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_policies_takes_a_catalogue_and_replays_to_the_same_answers() {
    let app = fixture_store().await;
    let api = app.api();

    // The catalogue, made through the API on the old store.
    for code in ["export", "sync", "reports"] {
        app.api()
            .create_at("/api/v1/entitlements", json!({"code": code, "name": code}))
            .await;
    }
    let product = app
        .api()
        .create_at("/api/v1/products", json!({"name": "Desk", "code": "desk"}))
        .await;
    let policy = app
        .api()
        .create_at(
            "/api/v1/policies",
            json!({"product_id": product["id"], "name": "Team", "code": "team", "max_devices": 4,
               "duration": "P1Y", "entitlements": ["export", "reports", "sync"]}),
        )
        .await;

    // The fixture's subscriptions cannot follow it: canceled is final, deleted is gone.
    assert_refused(
        &app,
        api.admin(Method::PUT, &format!("/api/v1/subscriptions/{CANCELED}"))
            .json(&json!({"policy": "desk/team"})),
        StatusCode::CONFLICT,
        "SUBSCRIPTION_CANCELED",
    )
    .await;
    assert_refused(
        &app,
        api.admin(Method::PUT, &format!("/api/v1/subscriptions/{DELETED}"))
            .json(&json!({"policy": "desk/team"})),
        StatusCode::GONE,
        "SUBSCRIPTION_DELETED",
    )
    .await;
    // The canceled one takes an entitlement of the catalogue as its own.
    let response = api
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{CANCELED}/entitlements"),
        )
        .json(&json!({"codes": ["reports"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let attached: Value = response.json().await.unwrap();
    assert_eq!(
        attached["entitlements"],
        json!(["export", "reports", "sync"])
    );
    assert_eq!(attached["features"], attached["entitlements"]);
    assert_eq!(attached["policy_id"], Value::Null);
    assert_eq!(attached["version"], 19);

    // A new subscription follows the policy beside the old history, and licenses a device.
    let follower = api
        .create(
            json!({"customer_email": "new@example.com", "customer_name": "New",
                       "policy": "desk/team"}),
        )
        .await;
    assert_eq!(follower["policy_id"], policy["id"]);
    assert_eq!(follower["product_code"], "desk");
    assert_eq!(follower["policy_code"], "team");
    assert_eq!(follower["plan"], "team");
    assert_eq!(follower["max_devices"], 4);
    assert_eq!(
        follower["entitlements"],
        json!(["export", "reports", "sync"])
    );
    let key = follower["license_key"].as_str().unwrap();
    api.activate(key, "new-desk", "linux").await;
    let verdict = api.validate(key, "new-desk").await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["license"]["policy_code"], "team");
    assert_eq!(verdict["license"]["product_code"], "desk");

    app.api().wait_for_read_models(PATIENCE).await;
    let before = lists(&app).await;
    let subscriptions = &before[0];
    assert_eq!(subscriptions.len(), 2, "{subscriptions:#?}");
    let old = subscriptions
        .iter()
        .find(|s| s["id"] == CANCELED)
        .expect("the fixture's subscription is listed");
    let mut expected = as_listed(canceled_as_the_events_describe_it());
    expected["features"] = json!(["export", "reports", "sync"]);
    expected["entitlements"] = json!(["export", "reports", "sync"]);
    expected["version"] = json!(19);
    expected["updated_at"] = old["updated_at"].clone();
    assert_eq!(to_micros(old.clone()), to_micros(expected));
    let new = subscriptions
        .iter()
        .find(|s| s["id"] == follower["id"])
        .expect("the follower is listed");
    assert_eq!(new["policy_id"], policy["id"]);
    assert_eq!(new["policy_code"], "team");
    assert_eq!(new["active_devices"], 1);
    assert_eq!(before[2].len(), 1);
    assert_eq!(before[3].len(), 3);
    assert_eq!(before[4].len(), 1);

    // A second replay rebuilds the catalogue and the `policy_id` column from the events:
    // damaged first, so that a replay that did nothing could not pass.
    app.server.shut_down(Duration::from_secs(10)).await;
    let store = Store::open(&app.database_url).await;
    for damage in [
        "delete from rm_policies",
        "delete from rm_products",
        "delete from rm_entitlements",
        "update rm_subscriptions set policy_id = null, features = '[]'",
    ] {
        store.execute(damage).await;
    }
    store.close().await;
    replay(&app.database_url).await;
    let app = restarted(&app).await;
    assert_eq!(lists(&app).await, before);
}
