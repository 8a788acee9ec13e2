//! Webhooks against a real receiver (see `receiver`), on both backends.

mod delivery;
mod health;
mod lifecycle;
mod management;
mod ordering;
mod privacy;
pub mod receiver;
mod rotation;
mod shutdown;
mod sigkill;
mod upgrade;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    backend, fresh_database_url, nats_url, server_env, ApiClient, Backend, NatsNames, TestApp,
};
use receiver::Receiver;

/// Local receivers (plain http on 127.0.0.1) are allowed; retries come fast.
pub const LOCAL: &[(&str, &str)] = &[
    ("WEBHOOK_ALLOW_HTTP", "true"),
    ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ("WEBHOOK_POLL_MS", "50"),
    (
        "WEBHOOK_RETRY_SCHEDULE",
        "100ms,100ms,200ms,200ms,300ms,300ms,500ms,500ms,500ms,500ms",
    ),
];

/// The environment of a server child process on a fresh database (and on PostgreSQL a
/// NATS stream of its own) with local receivers allowed: for the tests that stop it.
pub async fn process_env() -> Vec<(String, String)> {
    let database_url = fresh_database_url().await;
    let key_dir =
        std::env::temp_dir().join(format!("flowlytix-hooks-keys-{}", uuid::Uuid::new_v4()));
    let nats = match backend() {
        Backend::Postgres => Some(NatsNames::unique(&nats_url()).await),
        Backend::Sqlite => None,
    };
    let mut env = server_env(&database_url, &key_dir, nats.as_ref());
    env.extend(
        LOCAL
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

/// Long enough for a slow shared machine, short enough to fail a test that waits in vain.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Registers an endpoint; returns the answer (with its `secret`).
pub async fn create_webhook(api: &ApiClient, body: Value) -> Value {
    let response = api
        .admin(Method::POST, "/api/v1/webhooks")
        .json(&body)
        .send()
        .await
        .expect("create webhook");
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.expect("webhook body")
}

/// An endpoint for every event type at `receiver`.
pub async fn webhook_for(api: &ApiClient, receiver: &Receiver) -> Value {
    create_webhook(
        api,
        json!({"url": receiver.url, "description": "test receiver"}),
    )
    .await
}

/// A few subscriptions, each with a device and a change of plan: events of several
/// aggregates, interleaved.
pub async fn some_activity(api: &ApiClient, subscriptions: usize) {
    let mut keys = Vec::new();
    for n in 0..subscriptions {
        let (id, key) = api.create_simple(n, "pro", 3).await;
        keys.push((id, key));
    }
    for (n, (id, key)) in keys.iter().enumerate() {
        api.activate(key, &format!("fp-{n}"), "linux").await;
        api.put(id, json!({"plan": "team"})).await;
    }
}

/// Every feed item at or after `position`, in commit order.
pub async fn feed_from(api: &ApiClient, position: i64) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut query = vec![("limit", "500".to_owned())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let page = api.get_query("/api/v1/events", &query).await;
        let batch = page["items"].as_array().cloned().unwrap_or_default();
        if batch.is_empty() {
            break;
        }
        after = page["next_after"].as_i64();
        items.extend(batch);
    }
    items.retain(|item| item["position"].as_i64().unwrap_or(0) >= position);
    items
}

/// The whole feed once it shows every event appended so far. The feed shows what committed
/// below PostgreSQL's transaction horizon, which other tests' transactions hold back now
/// and then; an event just appended may be missing from it for a moment.
pub async fn settled_feed(app: &TestApp) -> Vec<Value> {
    let last: Option<i64> = flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query_scalar("select max(global_position) from events")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    for _ in 0..200 {
        let items = feed_from(&app.api(), 0).await;
        if items.iter().any(|item| item["position"].as_i64() == last) || last.is_none() {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the feed did not show position {last:?} in 10 s");
}

pub async fn delivery_log(api: &ApiClient, webhook_id: &str) -> Vec<Value> {
    let page = api
        .get(&format!(
            "/api/v1/webhooks/{webhook_id}/deliveries?limit=500"
        ))
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}
