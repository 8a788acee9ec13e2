//! The read side against a real PostgreSQL and a real NATS JetStream: every committed event
//! reaches every projector exactly once and in per-aggregate order, through late commits,
//! redeliveries, a NATS outage, a SIGKILLed server and a publisher failover; a replay gives
//! the same tables as live projection; and the list, feed, analytics and validation queries
//! answer from those read models.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use flowlytix_aggregates::{Email, Plan, Status, SubscriptionEvent, SubscriptionId};
use flowlytix_projections::analytics::AnalyticsProjector;
use flowlytix_projections::subscriptions::SubscriptionsProjector;
use flowlytix_projections::{project, EventRecord, Outcome, Projector};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::skip_unless_postgres;
use crate::helpers::{
    fresh_database, nats_url, server_env, spawn_app_on_nats, spawn_app_on_nats_at,
    spawn_nats_instance, ApiClient, NatsNames, NatsServer, ServerProcess,
};

const PROJECTORS: [&str; 2] = ["subscriptions", "analytics"];
const CONVERGE: Duration = Duration::from_secs(30);
/// After an instance dies, the messages its projectors had been handed but not yet
/// acknowledged come back only when their ack wait (10 s) runs out.
const CONVERGE_AFTER_CRASH: Duration = Duration::from_secs(30);

/// Transactions held open stall every publisher of the PostgreSQL cluster (the xmin horizon
/// is cluster-wide): the tests that hold one, and the test that measures propagation time,
/// take turns.
static HORIZON: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// What every scenario ends with: the read models agree with the log and the aggregates.

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Each projector applied each event exactly once: the per-aggregate versions add up to
/// the number of events, and so does the projector's applied counter. Returns that number.
async fn assert_each_event_projected_once(pool: &PgPool) -> i64 {
    let events = scalar(pool, "select count(*) from events").await;
    for projector in PROJECTORS {
        let versions: i64 =
            sqlx::query_scalar("select coalesce(sum(version), 0)::bigint from projection_versions where projector = $1")
                .bind(projector)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            versions, events,
            "{projector}: the sum of per-aggregate versions is the number of events"
        );
        let applied: Option<i64> = sqlx::query_scalar(
            "select events_applied from projector_checkpoints where projector = $1",
        )
        .bind(projector)
        .fetch_optional(pool)
        .await
        .unwrap();
        assert_eq!(
            applied.unwrap_or(0),
            events,
            "{projector}: events_applied is the number of events"
        );
        // And no aggregate is ahead of or behind its own log.
        let mismatched: i64 = sqlx::query_scalar(
            "select count(*) from (select aggregate_type, aggregate_id, max(sequence) as last from events
                                   group by 1, 2) e
             full join (select * from projection_versions where projector = $1) v
               using (aggregate_type, aggregate_id)
             where v.version is distinct from e.last",
        )
        .bind(projector)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(
            mismatched, 0,
            "{projector}: every aggregate's applied version is its last sequence"
        );
    }
    events
}

/// The daily counters add up to the events they count.
async fn assert_analytics_match_events(pool: &PgPool) {
    for (metric, event_type) in [
        ("activations", "DeviceActivated"),
        ("deactivations", "DeviceDeactivated"),
        ("subscriptions_created", "SubscriptionCreated"),
        ("subscriptions_canceled", "SubscriptionCanceled"),
    ] {
        let counted: i64 = sqlx::query_scalar(
            "select coalesce(sum(value), 0)::bigint from rm_daily_counts where metric = $1",
        )
        .bind(metric)
        .fetch_one(pool)
        .await
        .unwrap();
        let events: i64 = sqlx::query_scalar("select count(*) from events where event_type = $1")
            .bind(event_type)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(
            counted, events,
            "analytics {metric} = number of {event_type} events"
        );
    }
}

/// The list (read model) says what each aggregate says, for every live subscription in the
/// log, and `rm_devices` holds exactly each aggregate's active devices. Returns how many
/// live subscriptions there are.
async fn assert_read_models_match_aggregates(api: &ApiClient, pool: &PgPool) -> usize {
    let live: Vec<String> = sqlx::query_scalar(
        "select distinct aggregate_id from events e where aggregate_type = 'Subscription'
           and not exists (select 1 from events d where d.aggregate_type = 'Subscription'
                           and d.aggregate_id = e.aggregate_id and d.event_type = 'SubscriptionDeleted')
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let listed: BTreeMap<String, Value> = api
        .list_all("/api/v1/subscriptions")
        .await
        .into_iter()
        .map(|item| (item["id"].as_str().unwrap().to_owned(), item))
        .collect();
    assert_eq!(
        listed.keys().cloned().collect::<Vec<_>>(),
        live,
        "the list holds every live subscription, once"
    );
    for (id, item) in &listed {
        let aggregate = api.get(&format!("/api/v1/subscriptions/{id}")).await;
        for field in [
            "status",
            "plan",
            "max_devices",
            "active_devices",
            "version",
            "customer_email",
            "license_key_prefix",
        ] {
            assert_eq!(
                item[field], aggregate[field],
                "subscription {id}: list {field} vs aggregate"
            );
        }
        let mut expected: Vec<String> = aggregate["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "active")
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        expected.sort();
        let projected: Vec<String> = sqlx::query_scalar(
            "select id::text from rm_devices where subscription_id = $1::uuid and status = 'active' order by 1",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            projected, expected,
            "subscription {id}: rm_devices active rows = the aggregate's active devices"
        );
    }
    listed.len()
}

/// The stream holds each event once: re-publications were de-duplicated.
async fn assert_stream_holds_each_event_once(nats: &NatsNames, pool: &PgPool) {
    let state = nats.stream_state().await;
    let events = scalar(pool, "select count(*) from events").await;
    assert_eq!(
        state.messages as i64, events,
        "one stream message per event"
    );
}

async fn publisher_checkpoint(pool: &PgPool) -> (u64, i64) {
    let (tx_id, position): (String, i64) =
        sqlx::query_as("select tx_id::text, global_position from publisher_checkpoint")
            .fetch_one(pool)
            .await
            .unwrap();
    (tx_id.parse().unwrap(), position)
}

async fn read_side_dump(pool: &PgPool) -> Vec<(&'static str, Vec<String>)> {
    let mut dump = Vec::new();
    for (table, sql) in [
        ("rm_subscriptions", "select t::text from rm_subscriptions t order by id"),
        ("rm_devices", "select t::text from rm_devices t order by id"),
        ("rm_daily_counts", "select t::text from rm_daily_counts t order by day, metric"),
        (
            "projection_versions",
            "select t::text from projection_versions t order by projector, aggregate_type, aggregate_id",
        ),
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(pool).await.unwrap();
        dump.push((table, rows));
    }
    dump
}

// ---------------------------------------------------------------------------------------
// 1. Many concurrent commands.

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
// 2. A transaction that commits late.

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
    let created = SubscriptionEvent::SubscriptionCreated {
        subscription_id: SubscriptionId(held_id),
        customer_email: Email::parse("late@example.com").unwrap(),
        customer_name: "Late Committer".into(),
        organization: None,
        plan: Plan::parse("pro").unwrap(),
        status: Status::Active,
        starts_at: now,
        expires_at: None,
        trial_ends_at: None,
        max_devices: 2,
        features: vec![],
        metadata: serde_json::Map::new(),
        at: now,
    };
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

// ---------------------------------------------------------------------------------------
// 3. Redelivery.

/// Waits until both projectors' consumers have been handed and have acknowledged every
/// message up to `stream_sequence`.
async fn wait_for_consumers(nats: &NatsNames, stream_sequence: u64) {
    let stream = nats
        .jetstream()
        .await
        .get_stream(&nats.stream)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    for projector in PROJECTORS {
        loop {
            let info = stream
                .consumer_info(format!("projector-{projector}"))
                .await
                .unwrap();
            if info.delivered.stream_sequence >= stream_sequence
                && info.num_ack_pending == 0
                && info.num_pending == 0
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{projector} did not consume up to {stream_sequence}: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn applied_counters(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("select projector, events_applied from projector_checkpoints order by projector")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_again_under_another_message_id_changes_the_read_model_once() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    let (id, key) = api.create_simple(1, "pro", 3).await;
    api.activate(&key, "redelivered-one", "linux").await;
    api.activate(&key, "redelivered-two", "windows").await;
    app.wait_for_read_models().await;
    let before = read_side_dump(app.pg()).await;
    let counters = applied_counters(app.pg()).await;
    let stream_before = app.nats.stream_state().await;

    let history = flowlytix_projections::log::aggregate_history(
        flowlytix_projections::Conn::Postgres(&mut app.pg().acquire().await.unwrap()),
        "Subscription",
        &id,
    )
    .await
    .unwrap();
    let jetstream = app.nats.jetstream().await;
    let mut last_sequence = 0;
    for event_type in ["SubscriptionCreated", "DeviceActivated"] {
        let record = history.iter().find(|e| e.event_type == event_type).unwrap();
        let subject = format!(
            "{}.{}.{}",
            app.nats.subject_prefix, record.aggregate_type, record.event_type
        );
        let body = bytes::Bytes::from(serde_json::to_vec(record).unwrap());
        // Under its own id it is recognised as a re-publication and dropped by JetStream...
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            record.message_id().as_str(),
        );
        let ack = jetstream
            .publish_with_headers(subject.clone(), headers, body.clone())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            ack.duplicate,
            "a re-publication under the same Nats-Msg-Id is de-duplicated"
        );
        // ...under another id it is stored and delivered again.
        let mut headers = async_nats::HeaderMap::new();
        let other_id = format!("{}:again:{}", record.message_id(), Uuid::new_v4());
        headers.insert(async_nats::header::NATS_MESSAGE_ID, other_id.as_str());
        let ack = jetstream
            .publish_with_headers(subject, headers, body)
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!ack.duplicate);
        last_sequence = ack.sequence;
    }
    assert_eq!(last_sequence, stream_before.last_sequence + 2);
    wait_for_consumers(&app.nats, last_sequence).await;
    app.wait_for_read_models().await;

    assert_eq!(
        read_side_dump(app.pg()).await,
        before,
        "a redelivered event changes nothing"
    );
    assert_eq!(
        applied_counters(app.pg()).await,
        counters,
        "a redelivered event is not counted as applied"
    );
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    app.teardown().await;
}

/// Two deliveries of an aggregate's first event projected at the same moment (two
/// instances sharing a consumer, or a redelivery while the first delivery is still being
/// projected): exactly one applies it, the other skips it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_simultaneous_deliveries_of_a_first_event_apply_it_once() {
    if skip_unless_postgres() {
        return;
    }
    let database_url = fresh_database().await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    flowlytix_server::store::migrate(&flowlytix_server::store::Db::Postgres(pool.clone()))
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let now = Utc::now();
    let created = SubscriptionEvent::SubscriptionCreated {
        subscription_id: SubscriptionId(id),
        customer_email: Email::parse("twice@example.com").unwrap(),
        customer_name: "Twice".into(),
        organization: None,
        plan: Plan::parse("pro").unwrap(),
        status: Status::Active,
        starts_at: now,
        expires_at: None,
        trial_ends_at: None,
        max_devices: 1,
        features: vec![],
        metadata: serde_json::Map::new(),
        at: now,
    };
    let record = EventRecord {
        position: 1,
        aggregate_type: "Subscription".into(),
        aggregate_id: id.to_string(),
        sequence: 1,
        event_type: "SubscriptionCreated".into(),
        event_version: "1".into(),
        payload: serde_json::to_value(&created).unwrap()["SubscriptionCreated"].clone(),
        metadata: json!({}),
        recorded_at: now,
    };
    let projectors: [Arc<dyn Projector>; 2] = [
        Arc::new(SubscriptionsProjector),
        Arc::new(AnalyticsProjector),
    ];
    for projector in projectors {
        let mut first = pool.begin().await.unwrap();
        assert_eq!(
            project(
                flowlytix_projections::Conn::Postgres(&mut first),
                projector.as_ref(),
                &record,
                Some(1)
            )
            .await
            .unwrap(),
            Outcome::Applied
        );
        let second = {
            let (pool, projector, record) = (pool.clone(), projector.clone(), record.clone());
            tokio::spawn(async move {
                let mut tx = pool.begin().await?;
                let outcome = project(
                    flowlytix_projections::Conn::Postgres(&mut tx),
                    projector.as_ref(),
                    &record,
                    Some(2),
                )
                .await?;
                if outcome == Outcome::Applied {
                    tx.commit().await?;
                }
                Ok::<_, flowlytix_projections::ProjectionError>(outcome)
            })
        };
        // The second delivery is now waiting on the first one's uncommitted row.
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.commit().await.unwrap();
        let outcome = second.await.unwrap();
        assert!(
            matches!(outcome, Ok(Outcome::Skipped)),
            "{}: the second delivery of an applied first event must be skipped, got {outcome:?}",
            projector.name()
        );
    }
    assert_eq!(
        scalar(&pool, "select count(*) from rm_subscriptions").await,
        1
    );
    assert_eq!(
        scalar(
            &pool,
            "select value from rm_daily_counts where metric = 'subscriptions_created'"
        )
        .await,
        1,
        "the new subscription is counted once"
    );
    for projector in PROJECTORS {
        let applied: i64 = sqlx::query_scalar(
            "select events_applied from projector_checkpoints where projector = $1",
        )
        .bind(projector)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(applied, 1, "{projector}");
    }
}

// ---------------------------------------------------------------------------------------
// 4. NATS stopped while commands keep arriving.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_succeed_while_nats_is_down_and_the_read_models_catch_up_after() {
    if skip_unless_postgres() {
        return;
    }
    let mut nats = NatsServer::start().await;
    let app = spawn_app_on_nats_at(&nats.url()).await;
    let api = app.api();
    let mut subscriptions = Vec::new();
    for n in 0..3 {
        let (id, key) = api.create_simple(n, "pro", 10).await;
        api.activate(&key, &format!("before-{n}"), "linux").await;
        subscriptions.push((id, key));
    }
    app.wait_for_read_models().await;
    assert_eq!(app.health().await["status"], "ok");

    nats.stop().await;
    let stopped = Instant::now();
    // Commands keep working without NATS.
    for n in 3..8 {
        let (id, key) = api.create_simple(n, "team", 10).await;
        subscriptions.push((id, key));
    }
    for (n, (id, key)) in subscriptions.iter().enumerate() {
        api.activate(key, &format!("during-{n}"), "macos").await;
        api.put(id, json!({"plan": "enterprise"})).await;
    }
    api.deactivate(&subscriptions[0].1, "before-0").await;
    api.put(&subscriptions[1].0, json!({"status": "suspended"}))
        .await;
    eprintln!(
        "{} commands without NATS took {:?}",
        5 + 2 * subscriptions.len() + 2,
        stopped.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let health = app.health().await;
        if health["status"] == "degraded" && health["bus"]["status"] == "unavailable" {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "/health does not report the outage: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["database"], "ok");
    // Once its publish attempt times out, the publisher reports why and what waits.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = app.health().await;
        if health["publisher"]["backlog"].as_i64().unwrap() > 0
            && health["publisher"]["last_error"].is_string()
        {
            eprintln!(
                "the publisher reported the outage {:?} after NATS stopped: {health}",
                stopped.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher does not report the outage: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still nothing of the outage in the read model.
    assert_eq!(
        scalar(app.pg(), "select count(*) from rm_subscriptions").await,
        3
    );

    nats.run().await;
    let restarted = Instant::now();
    app.api()
        .wait_for_read_models(Duration::from_secs(45))
        .await;
    eprintln!(
        "read models converged {:?} after NATS came back",
        restarted.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.health().await["status"] != "ok" {
        assert!(
            Instant::now() < deadline,
            "/health stays degraded: {}",
            app.health().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_eq!(assert_read_models_match_aggregates(&api, app.pg()).await, 8);
    assert_stream_holds_each_event_once(&app.nats, app.pg()).await;
    app.server.stop_background_tasks();
}

// ---------------------------------------------------------------------------------------
// 5. The server SIGKILLed while writes are being acknowledged.

#[derive(Default)]
struct Acknowledged {
    /// (subscription id, version the response reported)
    subscriptions: Vec<(String, u64)>,
    /// (subscription id, device id)
    devices: Vec<(String, String)>,
}

/// Writes until the server stops answering: creates, activations and plan changes, each
/// recorded once its response arrived. An answer other than success fails the test.
async fn write_until_refused(
    api: ApiClient,
    writer: usize,
    acked: Arc<Mutex<Acknowledged>>,
    count: Arc<AtomicUsize>,
) -> Result<(), String> {
    for n in 0.. {
        let response = api
            .admin(Method::POST, "/api/v1/subscriptions")
            .json(&json!({"customer_email": format!("w{writer}-{n}@example.com"), "customer_name": "Writer",
                          "plan": "pro", "max_devices": 3}))
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(());
        };
        if response.status() != StatusCode::CREATED {
            return Err(format!("create answered {}", response.status()));
        }
        let Ok(body) = response.json::<Value>().await else {
            return Ok(());
        };
        let id = body["id"].as_str().unwrap().to_owned();
        let key = body["license_key"].as_str().unwrap().to_owned();
        acked
            .lock()
            .unwrap()
            .subscriptions
            .push((id.clone(), body["version"].as_u64().unwrap()));
        count.fetch_add(1, Ordering::SeqCst);

        let response = api
            .anon(Method::POST, "/api/v1/licensing/activate")
            .json(&json!({"license_key": key, "device": {"fingerprint": format!("w{writer}-{n}"), "platform": "linux"}}))
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(());
        };
        if response.status() != StatusCode::CREATED {
            return Err(format!("activate answered {}", response.status()));
        }
        let Ok(body) = response.json::<Value>().await else {
            return Ok(());
        };
        acked
            .lock()
            .unwrap()
            .devices
            .push((id.clone(), body["device_id"].as_str().unwrap().to_owned()));
        count.fetch_add(1, Ordering::SeqCst);

        let response = api
            .admin(Method::PUT, &format!("/api/v1/subscriptions/{id}"))
            .json(&json!({"plan": "team"}))
            .send()
            .await;
        let Ok(response) = response else {
            return Ok(());
        };
        if response.status() != StatusCode::OK {
            return Err(format!("PUT answered {}", response.status()));
        }
        let Ok(body) = response.json::<Value>().await else {
            return Ok(());
        };
        acked
            .lock()
            .unwrap()
            .subscriptions
            .push((id, body["version"].as_u64().unwrap()));
        count.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

async fn assert_acknowledged_writes_projected(pool: &PgPool, acked: &Acknowledged) {
    for (id, version) in &acked.subscriptions {
        let projected: Option<i64> =
            sqlx::query_scalar("select version from rm_subscriptions where id = $1::uuid")
                .bind(id)
                .fetch_optional(pool)
                .await
                .unwrap();
        assert!(
            projected.is_some_and(|v| v >= *version as i64),
            "acknowledged write {id}@{version} is missing: {projected:?}"
        );
    }
    for (id, device) in &acked.devices {
        let projected: Option<(String, String)> = sqlx::query_as(
            "select subscription_id::text, status from rm_devices where id = $1::uuid",
        )
        .bind(device)
        .fetch_optional(pool)
        .await
        .unwrap();
        assert_eq!(
            projected,
            Some((id.clone(), "active".into())),
            "acknowledged activation {device} is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_stream_resumes_publishing_without_gap_or_duplicate() {
    if skip_unless_postgres() {
        return;
    }
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let nats = NatsNames::unique(&nats_url()).await;
    let env = server_env(&database_url, &key_dir, Some(&nats));
    let mut server = ServerProcess::start(&env).await;
    let api = ApiClient::login(&server.address).await;

    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            tokio::spawn(write_until_refused(
                api.clone(),
                w,
                acked.clone(),
                count.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < 80 {
        assert!(Instant::now() < deadline, "the writers are too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().await;
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let pool = PgPool::connect(&database_url).await.unwrap();
    let (_, checkpoint_at_kill) = publisher_checkpoint(&pool).await;
    let events_at_kill = scalar(&pool, "select count(*) from events").await;
    eprintln!(
        "killed after {} acknowledged writes; {events_at_kill} events, publisher checkpoint at position {checkpoint_at_kill}",
        count.load(Ordering::SeqCst)
    );

    let server = ServerProcess::start(&env).await;
    let api = api.at(&server.address);
    // The publisher carries on from its checkpoint: it never goes back.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(500) {
        assert!(publisher_checkpoint(&pool).await.1 >= checkpoint_at_kill);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..5 {
        let (_, key) = api.create_simple(1000 + n, "starter", 2).await;
        api.activate(&key, &format!("after-restart-{n}"), "windows")
            .await;
    }
    let converging = Instant::now();
    api.wait_for_read_models(CONVERGE_AFTER_CRASH).await;
    eprintln!(
        "read models converged {:?} after the restart's last write",
        converging.elapsed()
    );

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert_acknowledged_writes_projected(&pool, &acked).await;
    assert_each_event_projected_once(&pool).await;
    assert_analytics_match_events(&pool).await;
    let activations = scalar(
        &pool,
        "select coalesce(sum(value), 0)::bigint from rm_daily_counts where metric = 'activations'",
    )
    .await;
    assert_eq!(
        activations,
        scalar(
            &pool,
            "select count(*) from events where event_type = 'DeviceActivated'"
        )
        .await
    );
    assert!(assert_read_models_match_aggregates(&api, &pool).await >= acked.devices.len() + 5);
    assert_stream_holds_each_event_once(&nats, &pool).await;
    drop(server);
    nats.delete_stream().await;
}

// ---------------------------------------------------------------------------------------
// 6. Publisher failover between two instances.

async fn leaders(api: &ApiClient, servers: &[&str]) -> Vec<bool> {
    let mut result = Vec::new();
    for base in servers {
        result.push(api.at(base).health().await["publisher"]["leader"] == true);
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_publishing_instance_dies_another_takes_over_and_nothing_is_lost_or_doubled() {
    if skip_unless_postgres() {
        return;
    }
    let database_url = fresh_database().await;
    let key_dir = std::env::temp_dir().join(format!("flowlytix-test-keys-{}", Uuid::new_v4()));
    let nats = NatsNames::unique(&nats_url()).await;
    let env = server_env(&database_url, &key_dir, Some(&nats));
    let first = ServerProcess::start(&env).await;
    let second = ServerProcess::start(&env).await;
    let api = ApiClient::login(&first.address).await;
    let mut servers = [Some(first), Some(second)];
    let addresses: Vec<String> = servers
        .iter()
        .flatten()
        .map(|s| s.address.clone())
        .collect();

    // Commands side by side on both instances.
    let results: Vec<(String, String)> = futures::stream::iter(0..20)
        .map(|n| {
            let api = api.at(&addresses[n % 2]);
            async move {
                let (id, key) = api.create_simple(n, "pro", 3).await;
                api.activate(&key, &format!("side-{n}"), "linux").await;
                (id, key)
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    assert_eq!(results.len(), 20);

    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let flags = leaders(&api, &[&addresses[0], &addresses[1]]).await;
        if flags.iter().filter(|l| **l).count() == 1 {
            break flags.iter().position(|l| *l).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no single publisher leader: {flags:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor = 1 - leader;
    servers[leader].as_mut().unwrap().kill().await;
    let killed = Instant::now();
    loop {
        if api.at(&addresses[survivor]).health().await["publisher"]["leader"] == true {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the surviving instance did not take over the publisher"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the surviving instance took over the publisher {:?} after the kill",
        killed.elapsed()
    );

    let api = api.at(&addresses[survivor]);
    for (n, (id, key)) in results.iter().enumerate().take(10) {
        api.activate(key, &format!("after-failover-{n}"), "macos")
            .await;
        api.put(id, json!({"plan": "team"})).await;
    }
    for n in 20..25 {
        api.create_simple(n, "starter", 1).await;
    }
    api.wait_for_read_models(CONVERGE_AFTER_CRASH).await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    assert_each_event_projected_once(&pool).await;
    assert_analytics_match_events(&pool).await;
    assert_eq!(assert_read_models_match_aggregates(&api, &pool).await, 25);
    assert_stream_holds_each_event_once(&nats, &pool).await;
    drop(servers);
    nats.delete_stream().await;
}

// ---------------------------------------------------------------------------------------
// 7. Replay equals live; the export.

/// Creates, activations, deactivations (client and admin), device notes, plan, limit and
/// period changes, suspension and resumption, cancellation, deletion, a new license key and
/// a token refresh.
async fn mixed_workload(api: &ApiClient) {
    let mut subscriptions = Vec::new();
    for (n, plan) in ["pro", "team", "enterprise", "starter", "pro", "team"]
        .into_iter()
        .enumerate()
    {
        subscriptions.push(api.create_simple(n, plan, 4).await);
    }
    let platforms = ["linux", "windows", "macos"];
    let mut devices = Vec::new();
    for (n, (_, key)) in subscriptions.iter().enumerate() {
        for d in 0..3 {
            let body = api
                .activate(key, &format!("mixed-{n}-{d}"), platforms[(n + d) % 3])
                .await;
            devices.push((n, d, body));
        }
    }
    let (id0, key0) = &subscriptions[0];
    api.deactivate(key0, "mixed-0-0").await;
    let device = devices[4].2["device_id"].as_str().unwrap();
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/devices/{device}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let device = devices[5].2["device_id"].as_str().unwrap();
    let response = api
        .admin(Method::PUT, &format!("/api/v1/devices/{device}"))
        .json(&json!({"name": "renamed", "notes": "front desk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token = devices[6].2["token"].as_str().unwrap();
    let response = api
        .anon(Method::POST, "/api/v1/licensing/refresh")
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.activate(key0, "mixed-0-0", "linux").await; // a returning device
    api.put(id0, json!({"plan": "enterprise", "max_devices": 6}))
        .await;
    let (id1, _) = &subscriptions[1];
    let expires =
        (Utc::now() + chrono::Duration::days(90)).to_rfc3339_opts(SecondsFormat::Micros, true);
    api.put(
        id1,
        json!({"expires_at": expires, "customer_name": "Renamed Customer", "organization": null}),
    )
    .await;
    let (id2, _) = &subscriptions[2];
    api.put(id2, json!({"status": "suspended", "reason": "audit"}))
        .await;
    api.put(id2, json!({"status": "active"})).await;
    let (id3, _) = &subscriptions[3];
    api.put(id3, json!({"status": "canceled", "reason": "churn"}))
        .await;
    let (id4, _) = &subscriptions[4];
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{id4}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (id5, _) = &subscriptions[5];
    let response = api
        .admin(
            Method::POST,
            &format!("/api/v1/subscriptions/{id5}/license-key"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    api.put(
        id5,
        json!({"max_devices": 1, "deactivate_device_ids": [
        devices[15].2["device_id"], devices[16].2["device_id"]]}),
    )
    .await;
}

fn flowlytix(args: &[&str], database_url: &str) -> std::process::Command {
    let work_dir = std::env::temp_dir().join(format!("flowlytix-test-cli-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&work_dir).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flowlytix"));
    command
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .current_dir(work_dir);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_same_read_models_as_live_projection_and_export_lists_every_event() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    mixed_workload(&api).await;
    app.wait_for_read_models().await;
    assert_each_event_projected_once(app.pg()).await;
    assert_analytics_match_events(app.pg()).await;
    assert_read_models_match_aggregates(&api, app.pg()).await;
    let live = read_side_dump(app.pg()).await;
    assert!(live.iter().all(|(_, rows)| !rows.is_empty()));

    app.server.stop_background_tasks();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let database_url = app.database_url.clone();
    let replay = {
        let _turn = HORIZON.lock().await;
        let mut command = flowlytix(&["replay"], &database_url);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap()
    };
    assert!(
        replay.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let replayed = read_side_dump(app.pg()).await;
    for ((table, live_rows), (_, replayed_rows)) in live.iter().zip(&replayed) {
        assert_eq!(
            replayed_rows, live_rows,
            "{table}: replay differs from live projection"
        );
    }
    assert_each_event_projected_once(app.pg()).await;

    // The export: one JSON line per event, in commit order; verbose logging must not mix
    // into it.
    let mut command = flowlytix(&["events", "export"], &database_url);
    command.env("RUST_LOG", "debug");
    let export = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        export.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let stdout = String::from_utf8(export.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect();
    let events = scalar(app.pg(), "select count(*) from events").await;
    assert_eq!(lines.len() as i64, events, "one line per event");
    let commit_order: Vec<i64> =
        sqlx::query_scalar("select global_position from events order by tx_id, global_position")
            .fetch_all(app.pg())
            .await
            .unwrap();
    let exported: Vec<i64> = lines
        .iter()
        .map(|l| l["position"].as_i64().unwrap())
        .collect();
    assert_eq!(exported, commit_order, "the export is in commit order");
    let mut last: HashMap<(String, String), i64> = HashMap::new();
    for line in &lines {
        for field in [
            "aggregate_type",
            "aggregate_id",
            "event_type",
            "event_version",
            "payload",
            "metadata",
            "recorded_at",
        ] {
            assert!(!line[field].is_null(), "{field} missing: {line}");
        }
        let aggregate = (
            line["aggregate_type"].as_str().unwrap().to_owned(),
            line["aggregate_id"].as_str().unwrap().to_owned(),
        );
        let sequence = line["sequence"].as_i64().unwrap();
        let previous = last.insert(aggregate.clone(), sequence).unwrap_or(0);
        assert_eq!(
            sequence,
            previous + 1,
            "{aggregate:?}: sequences ascend without gaps"
        );
    }
    app.nats.delete_stream().await;
}

// ---------------------------------------------------------------------------------------
// 8. The queries over the read models.

fn ids(items: &Value) -> BTreeSet<String> {
    items["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(values: &[&String]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_feed_history_analytics_and_validation_answer_from_the_read_models() {
    if skip_unless_postgres() {
        return;
    }
    let app = spawn_app_on_nats().await;
    let api = app.api();
    let now = Utc::now();
    let at = |days: i64| {
        (now + chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Micros, true)
    };

    // min_position: a list right after a create includes it.
    let created = api
        .create(json!({"customer_email": "zed@zulu.example", "customer_name": "Zed", "plan": "pro", "max_devices": 2}))
        .await;
    let zed = created["id"].as_str().unwrap().to_owned();
    let response = api
        .admin(Method::GET, "/api/v1/subscriptions")
        .query(&[
            ("q", "zulu".to_owned()),
            ("min_position", created["position"].to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-read-model-consistent"], "true");
    let body: Value = response.json().await.unwrap();
    assert_eq!(ids(&body), set(&[&zed]), "{body}");
    let activated = api
        .activate(
            created["license_key"].as_str().unwrap(),
            "zed-laptop",
            "linux",
        )
        .await;
    let body = api
        .get_query(
            "/api/v1/devices",
            &[
                ("subscription_id", zed.clone()),
                ("min_position", activated["position"].to_string()),
            ],
        )
        .await;
    assert_eq!(body["items"][0]["id"], activated["device_id"], "{body}");

    let subscription = |email: &str, name: &str, organization: Option<&str>, plan: &str| json!({"customer_email": email, "customer_name": name, "organization": organization, "plan": plan, "max_devices": 3});
    let mut alice = subscription(
        "alice@alpha.example",
        "Alice",
        Some("Alpha Corp"),
        "starter",
    );
    alice["expires_at"] = json!(at(10));
    let alice = api.create(alice).await;
    let mut bob = subscription("bob@beta.example", "Bob", Some("Beta LLC"), "team");
    bob["expires_at"] = json!(at(40));
    let bob = api.create(bob).await;
    let carol = api
        .create(subscription(
            "carol@gamma.example",
            "Carol",
            Some("Gamma Alpha"),
            "team",
        ))
        .await;
    let mut dave = subscription("dave@delta.example", "Dave", None, "enterprise");
    dave["expires_at"] = json!(at(5));
    let dave = api.create(dave).await;
    let mut erin = subscription("erin@epsilon.example", "Erin", None, "pro");
    erin["starts_at"] = json!(at(-10));
    erin["expires_at"] = json!(at(-1));
    let erin = api.create(erin).await;
    let mut frank = subscription("frank@phi.example", "Frank", None, "pro");
    frank["trial_ends_at"] = json!(at(7));
    let frank = api.create(frank).await;
    let gone = api
        .create(subscription("gone@deleted.example", "Gone", None, "pro"))
        .await;
    let id = |s: &Value| s["id"].as_str().unwrap().to_owned();
    let key = |s: &Value| s["license_key"].as_str().unwrap().to_owned();
    let (alice_id, bob_id, carol_id, dave_id, erin_id, frank_id, gone_id) = (
        id(&alice),
        id(&bob),
        id(&carol),
        id(&dave),
        id(&erin),
        id(&frank),
        id(&gone),
    );

    // Devices: two on Alice (one later deactivated), one on Bob, one on the deleted one.
    let alice_linux = api.activate(&key(&alice), "alice-linux", "linux").await;
    let alice_windows = api.activate(&key(&alice), "alice-windows", "windows").await;
    let bob_mac = api.activate(&key(&bob), "bob-mac", "macos").await;
    api.activate(&key(&gone), "gone-device", "linux").await;
    api.deactivate(&key(&alice), "alice-windows").await;

    // As of an instant between two changes: Alice's plan before it changed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    api.put(&alice_id, json!({"plan": "pro"})).await;
    api.put(
        &carol_id,
        json!({"status": "suspended", "reason": "unpaid"}),
    )
    .await;
    api.put(&dave_id, json!({"status": "canceled"})).await;
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/subscriptions/{gone_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let then = api
        .get_query(
            &format!("/api/v1/subscriptions/{alice_id}"),
            &[(
                "as_of",
                between.to_rfc3339_opts(SecondsFormat::Micros, true),
            )],
        )
        .await;
    assert_eq!(then["plan"], "starter");
    assert_eq!(then["active_devices"], 1);
    let history = api
        .get(&format!("/api/v1/subscriptions/{alice_id}/events"))
        .await;
    let alice_events = history["items"].as_array().unwrap().len();
    assert_eq!(
        history["items"][alice_events - 1]["event_type"],
        "SubscriptionPlanChanged"
    );
    assert_eq!(
        then["version"],
        alice_events - 1,
        "as_of stops before the plan change"
    );
    assert_eq!(
        api.get(&format!("/api/v1/subscriptions/{alice_id}")).await["plan"],
        "pro"
    );

    app.wait_for_read_models().await;

    // Subscription list filters, sorting and paging.
    let list = |query: Vec<(&'static str, String)>| {
        let api = api.clone();
        async move { api.get_query("/api/v1/subscriptions", &query).await }
    };
    let all = list(vec![]).await;
    assert_eq!(all["total"], 7, "{all}");
    assert_eq!(
        (all["page"].as_u64(), all["per_page"].as_u64()),
        (Some(1), Some(20))
    );
    assert!(
        !ids(&all).contains(&gone_id),
        "a deleted subscription leaves the list"
    );
    for (status, expected) in [
        ("active", set(&[&alice_id, &bob_id, &zed])),
        ("suspended", set(&[&carol_id])),
        ("canceled", set(&[&dave_id])),
        ("expired", set(&[&erin_id])),
        ("trialing", set(&[&frank_id])),
    ] {
        let page = list(vec![("status", status.into())]).await;
        assert_eq!(ids(&page), expected, "status={status}");
        assert_eq!(page["total"], expected.len(), "status={status}");
        assert!(page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == status));
    }
    assert_eq!(
        ids(&list(vec![("plan", "team".into())]).await),
        set(&[&bob_id, &carol_id])
    );
    assert_eq!(
        ids(&list(vec![("plan", "pro".into())]).await),
        set(&[&alice_id, &erin_id, &frank_id, &zed])
    );
    assert_eq!(
        ids(&list(vec![("q", "ALPHA".into())]).await),
        set(&[&alice_id, &carol_id]),
        "q matches email, name or organization, any case"
    );
    assert_eq!(ids(&list(vec![("q", "bob".into())]).await), set(&[&bob_id]));
    assert_eq!(
        ids(&list(vec![("expiring_before", at(20))]).await),
        set(&[&alice_id, &dave_id, &erin_id])
    );
    assert_eq!(
        ids(&list(vec![
            ("expiring_before", at(20)),
            ("status", "active".into())
        ])
        .await),
        set(&[&alice_id]),
        "filters combine"
    );
    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["customer_email"].as_str().unwrap().to_owned())
            .collect()
    };
    let ascending = emails(&list(vec![("sort", "customer_email".into())]).await);
    let mut sorted = ascending.clone();
    sorted.sort();
    assert_eq!(ascending, sorted);
    assert_eq!(ascending.len(), 7);
    let mut descending = emails(&list(vec![("sort", "-customer_email".into())]).await);
    descending.reverse();
    assert_eq!(descending, ascending);
    let page = list(vec![
        ("sort", "customer_email".into()),
        ("per_page", "2".into()),
        ("page", "2".into()),
    ])
    .await;
    assert_eq!(emails(&page), ascending[2..4].to_vec());
    assert_eq!(
        (
            page["total"].as_u64(),
            page["page"].as_u64(),
            page["per_page"].as_u64()
        ),
        (Some(7), Some(2), Some(2))
    );
    let past_the_end = list(vec![("per_page", "5".into()), ("page", "3".into())]).await;
    assert_eq!(past_the_end["items"], json!([]));
    assert_eq!(past_the_end["total"], 7);
    let newest_first = list(vec![]).await;
    assert_eq!(
        newest_first["items"][0]["id"],
        json!(frank_id),
        "default sort is newest first"
    );
    let response = api
        .admin(Method::GET, "/api/v1/subscriptions?sort=license_key_hash")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Device list filters.
    let devices = |query: Vec<(&'static str, String)>| {
        let api = api.clone();
        async move { api.get_query("/api/v1/devices", &query).await }
    };
    let device_id = |d: &Value| d["device_id"].as_str().unwrap().to_owned();
    let (alice_linux, alice_windows, bob_mac) = (
        device_id(&alice_linux),
        device_id(&alice_windows),
        device_id(&bob_mac),
    );
    assert_eq!(
        ids(&devices(vec![("subscription_id", alice_id.clone())]).await),
        set(&[&alice_linux, &alice_windows])
    );
    assert_eq!(
        ids(&devices(vec![
            ("subscription_id", alice_id.clone()),
            ("status", "active".into())
        ])
        .await),
        set(&[&alice_linux])
    );
    let inactive = devices(vec![("status", "inactive".into())]).await;
    assert_eq!(ids(&inactive), set(&[&alice_windows]));
    assert_eq!(inactive["items"][0]["deactivation_reason"], "client");
    assert_eq!(
        ids(&devices(vec![("platform", "macos".into())]).await),
        set(&[&bob_mac])
    );
    let every_device = devices(vec![]).await;
    assert_eq!(
        every_device["total"], 4,
        "the deleted subscription's device is not listed: {every_device}"
    );
    let paged = devices(vec![("per_page", "3".into()), ("page", "2".into())]).await;
    assert_eq!(
        (
            paged["items"].as_array().unwrap().len(),
            paged["total"].as_u64()
        ),
        (1, Some(4))
    );

    // The global feed: paged in commit order, filtered.
    let mut feed = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut query = vec![("limit", "7".to_owned())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let page = api.get_query("/api/v1/events", &query).await;
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 7);
        assert_eq!(page["next_after"], items.last().unwrap()["position"]);
        after = page["next_after"].as_i64();
        feed.extend(items);
    }
    let commit_order: Vec<i64> =
        sqlx::query_scalar("select global_position from events order by tx_id, global_position")
            .fetch_all(app.pg())
            .await
            .unwrap();
    let positions: Vec<i64> = feed
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(
        positions, commit_order,
        "the feed pages through every event in commit order"
    );
    let alice_feed = api
        .get_query("/api/v1/events", &[("aggregate_id", alice_id.clone())])
        .await;
    let sequences: Vec<i64> = alice_feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=alice_events as i64).collect::<Vec<_>>());
    let activations_feed = api
        .get_query(
            "/api/v1/events",
            &[("event_type", "DeviceActivated".into())],
        )
        .await;
    let activation_items = activations_feed["items"].as_array().unwrap();
    assert_eq!(activation_items.len(), 5);
    assert!(activation_items
        .iter()
        .all(|e| e["event_type"] == "DeviceActivated" && e["aggregate_type"] == "Subscription"));

    // Analytics.
    let dashboard = api.get("/api/v1/analytics/dashboard").await;
    assert_eq!(dashboard["subscriptions_total"], 7, "{dashboard}");
    assert_eq!(
        dashboard["subscriptions_by_status"],
        json!({"active": 3, "suspended": 1, "canceled": 1, "expired": 1, "trialing": 1})
    );
    assert_eq!(
        dashboard["subscriptions_by_plan"],
        json!({"pro": 4, "team": 2, "enterprise": 1})
    );
    assert_eq!(dashboard["active_devices_total"], 3);
    assert_eq!(
        dashboard["active_devices_by_platform"],
        json!({"linux": 2, "macos": 1})
    );
    let totals = |daily: &Value| -> BTreeMap<String, i64> {
        let mut totals = BTreeMap::new();
        for day in daily.as_array().unwrap() {
            for (metric, value) in day["counts"].as_object().unwrap() {
                *totals.entry(metric.clone()).or_default() += value.as_i64().unwrap();
            }
        }
        totals
    };
    let daily = totals(&dashboard["daily"]);
    assert_eq!(daily["activations"], 5);
    assert_eq!(daily["deactivations"], 1);
    assert_eq!(
        daily["subscriptions_created"], 8,
        "created, including the one deleted since"
    );
    assert_eq!(daily["subscriptions_canceled"], 1);
    assert_eq!(daily["subscriptions_expired"], 1);
    let by_subscription = api.get("/api/v1/analytics/subscriptions").await;
    assert_eq!(
        by_subscription["by_status"],
        dashboard["subscriptions_by_status"]
    );
    assert_eq!(
        by_subscription["by_plan"],
        dashboard["subscriptions_by_plan"]
    );
    assert_eq!(
        totals(&by_subscription["daily"])["subscriptions_created"],
        8
    );
    let by_device = api.get("/api/v1/analytics/devices").await;
    assert_eq!(by_device["by_status"], json!({"active": 3, "inactive": 1}));
    assert_eq!(by_device["by_platform"], json!({"linux": 2, "macos": 1}));
    assert_eq!(by_device["by_app_version"], json!({"2.1.0": 3}));
    assert_eq!(totals(&by_device["daily"])["activations"], 5);

    // Validation on another instance sees a suspension made through this one within a second.
    let other = spawn_nats_instance(&app.database_url.clone(), &app.key_dir, &app.nats).await;
    let other_api = other.api();
    let valid = other_api.validate(&key(&bob), "bob-mac").await;
    assert_eq!(valid["code"], "VALID", "{valid}");
    let _turn = HORIZON.lock().await;
    api.put(&bob_id, json!({"status": "suspended", "reason": "fraud"}))
        .await;
    let suspended = Instant::now();
    loop {
        let verdict = other_api.validate(&key(&bob), "bob-mac").await;
        if verdict["code"] == "SUSPENDED" {
            assert_eq!(verdict["valid"], false);
            break;
        }
        assert_eq!(verdict["code"], "VALID");
        assert!(
            suspended.elapsed() < Duration::from_millis(1500),
            "the other instance still validates after 1.5 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eprintln!(
        "the other instance saw the suspension after {:?}",
        suspended.elapsed()
    );
    other.server.stop_background_tasks();
    app.teardown().await;
}
