//! The publisher hands the projectors every committed event exactly once and in order, and
//! never passes a transaction that has not committed: 500 concurrent commands, and a
//! transaction that commits after later ones.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{skip_unless_postgres, spawn_app_on_nats, ApiClient};

use super::{
    assert_analytics_match_events, assert_each_event_projected_once,
    assert_read_models_match_aggregates, assert_stream_holds_each_event_once, publisher_checkpoint,
    scalar, subscription_created, HORIZON,
};

const CONVERGE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Many concurrent commands.

#[derive(Clone, Debug)]
enum Op {
    Activate(String),
    Deactivate(String),
    Plan(&'static str),
    Suspend,
    Resume,
}

async fn run_op(api: &ApiClient, id: &str, key: &str, op: &Op) {
    match op {
        Op::Activate(fingerprint) => {
            api.activate(key, fingerprint, "linux").await;
        }
        Op::Deactivate(fingerprint) => api.deactivate(key, fingerprint).await,
        Op::Plan(plan) => {
            api.put(id, json!({"plan": plan})).await;
        }
        Op::Suspend => {
            api.put(id, json!({"status": "suspended", "reason": "load test"}))
                .await;
        }
        Op::Resume => {
            api.put(id, json!({"status": "active"})).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_concurrent_commands_reach_every_projector_exactly_once_and_in_order() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    let subscriptions: Vec<(String, String)> = futures::stream::iter(0..50)
        .map(|n| {
            let api = api.clone();
            async move { api.create_simple(n, "pro", 5).await }
        })
        .buffered(16)
        .collect()
        .await;

    // Per subscription: eight lifecycle commands in an order that is valid, run by the
    // task that owns it, and two plan changes run concurrently by a neighbouring task.
    const PLANS: [&str; 3] = ["team", "enterprise", "starter"];
    let mut queues: Vec<Vec<Vec<(usize, Op)>>> = vec![Vec::new(); 16];
    for s in 0..50 {
        let fp = |n: usize| format!("fp-{s}-{n}");
        let own = vec![
            Op::Activate(fp(0)),
            Op::Activate(fp(1)),
            Op::Activate(fp(2)),
            Op::Suspend,
            Op::Resume,
            Op::Deactivate(fp(0)),
            Op::Activate(fp(3)),
            Op::Deactivate(fp(2)),
        ];
        queues[s % 16].push(own.into_iter().map(|op| (s, op)).collect());
        let plans = vec![Op::Plan(PLANS[s % 3]), Op::Plan(PLANS[(s + 1) % 3])];
        queues[(s + 1) % 16].push(plans.into_iter().map(|op| (s, op)).collect());
    }
    let subscriptions = Arc::new(subscriptions);
    let started = Instant::now();
    let tasks: Vec<_> = queues
        .into_iter()
        .map(|task_queues| {
            let api = api.clone();
            let subscriptions = subscriptions.clone();
            tokio::spawn(async move {
                // Round-robin over this task's subscriptions.
                let mut queues: Vec<std::collections::VecDeque<(usize, Op)>> =
                    task_queues.into_iter().map(Into::into).collect();
                let mut done = 0;
                while queues.iter().any(|q| !q.is_empty()) {
                    for queue in &mut queues {
                        if let Some((s, op)) = queue.pop_front() {
                            let (id, key) = &subscriptions[s];
                            run_op(&api, id, key, &op).await;
                            done += 1;
                        }
                    }
                }
                done
            })
        })
        .collect();
    let mut commands = 0;
    for task in futures::future::join_all(tasks).await {
        commands += task.expect("a command task failed");
    }
    assert_eq!(commands, 500);
    eprintln!("500 commands from 16 tasks took {:?}", started.elapsed());

    let converging = Instant::now();
    app.api().wait_for_read_models(CONVERGE).await;
    eprintln!(
        "read models converged {:?} after the last command",
        converging.elapsed()
    );
    let subscription_events = scalar(
        app.pg(),
        "select count(*) from events where aggregate_type = 'Subscription'",
    )
    .await;
    // Created + key, 4 × (activated + token), 2 deactivations, 2 plan changes, suspend, resume.
    assert_eq!(subscription_events, 50 * 16);
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_eq!(
        assert_read_models_match_aggregates(&api, app.pg()).await,
        50
    );
    assert_stream_holds_each_event_once(&app.nats, app.pg()).await;
    app.teardown().await;
}

// ---------------------------------------------------------------------------------------
// A transaction that commits late.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_is_published_in_commit_order_and_never_skipped() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    app.wait_for_read_models().await;
    let _turn = HORIZON.lock().await;

    // A writer that inserted its event first but has not committed yet.
    let mut held_connection = PgConnection::connect(&app.database_url.clone())
        .await
        .unwrap();
    let mut held = held_connection.begin().await.unwrap();
    let held_id = Uuid::new_v4();
    let now = Utc::now();
    let created = subscription_created(held_id, "late@example.com", "Late Committer", 2, now);
    let payload = serde_json::to_value(&created).unwrap();
    assert!(
        payload.get("SubscriptionCreated").is_some(),
        "the stored form is the serde enum form: {payload}"
    );
    let (held_tx, held_position): (String, i64) = sqlx::query_as(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         values ('Subscription', $1, 1, 'SubscriptionCreated', '1', $2::text::json, '{}'::json)
         returning tx_id::text, global_position",
    )
    .bind(held_id.to_string())
    .bind(payload.to_string())
    .fetch_one(&mut *held)
    .await
    .unwrap();
    let held_tx: u64 = held_tx.parse().unwrap();

    // Three writers that start later and commit first.
    let mut later = Vec::new();
    for n in 0..3 {
        let (id, _) = api.create_simple(100 + n, "team", 1).await;
        later.push(id);
    }
    let later_positions: Vec<i64> = sqlx::query_scalar(
        "select global_position from events where aggregate_id = any($1) order by global_position",
    )
    .bind(&later)
    .fetch_all(app.pg())
    .await
    .unwrap();
    assert_eq!(later_positions.len(), 6);
    assert!(later_positions.iter().all(|p| *p > held_position));

    // The publisher must not pass the open transaction: neither its checkpoint nor the read
    // model moves beyond it, though later events are committed.
    let watch = Instant::now();
    let mut saw_backlog = false;
    while watch.elapsed() < Duration::from_millis(1500) {
        let (checkpoint_tx, _) = publisher_checkpoint(app.pg()).await;
        assert!(
            checkpoint_tx < held_tx,
            "the publisher passed a transaction that had not committed"
        );
        let visible: i64 =
            sqlx::query_scalar("select count(*) from rm_subscriptions where id::text = any($1)")
                .bind(&later)
                .fetch_one(app.pg())
                .await
                .unwrap();
        assert_eq!(
            visible, 0,
            "events committed after an open transaction were projected ahead of it"
        );
        let health = app.health().await;
        saw_backlog |= health["publisher"]["backlog"].as_i64().unwrap_or(0) >= 6;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        saw_backlog,
        "/health shows the committed events waiting behind the open transaction"
    );

    held.commit().await.unwrap();
    held_connection.close().await.unwrap();
    app.wait_for_read_models().await;
    let mut all = later.clone();
    all.push(held_id.to_string());
    let projected: i64 =
        sqlx::query_scalar("select count(*) from rm_subscriptions where id::text = any($1)")
            .bind(&all)
            .fetch_one(app.pg())
            .await
            .unwrap();
    assert_eq!(
        projected, 4,
        "the late event and the three after it are all projected"
    );
    let late = api.get(&format!("/api/v1/subscriptions/{held_id}")).await;
    assert_eq!(late["customer_email"], "late@example.com");
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_read_models_match_aggregates(&api, app.pg()).await;
    let (checkpoint_tx, _) = publisher_checkpoint(app.pg()).await;
    assert!(checkpoint_tx >= held_tx);
    assert_stream_holds_each_event_once(&app.nats, app.pg()).await;
    app.teardown().await;
}
