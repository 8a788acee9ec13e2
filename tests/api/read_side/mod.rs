//! The read side against a real PostgreSQL and a real NATS JetStream: every committed event
//! reaches every projector exactly once and in per-aggregate order, through late commits,
//! redeliveries, a NATS outage, a SIGKILLed server and a publisher failover; a replay gives
//! the same tables as live projection; and the list, feed, analytics and validation queries
//! answer from those read models.
//!
//! One file per topic; this one holds what they share: the checks every scenario ends with
//! (each event projected once, analytics and read models agreeing with the log, the stream
//! holding each event once) and the publisher checkpoint and read-side dumps.

mod cross_instance;
mod failover;
mod nats_outage;
mod projector_idempotence;
mod publisher_order;
mod read_queries;
mod replay;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use flowlytix_aggregates::{Email, Plan, Status, SubscriptionEvent, SubscriptionId};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{ApiClient, NatsNames};

const PROJECTORS: [&str; 3] = ["subscriptions", "analytics", "catalogue"];

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

/// Every event's global position, in commit order.
async fn commit_order(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("select global_position from events order by tx_id, global_position")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A new active subscription on the pro plan, as its first event, for tests that write or
/// project events without a command.
fn subscription_created(
    id: Uuid,
    email: &str,
    name: &str,
    max_devices: u32,
    now: DateTime<Utc>,
) -> SubscriptionEvent {
    SubscriptionEvent::SubscriptionCreated {
        subscription_id: SubscriptionId(id),
        customer_email: Email::parse(email).unwrap(),
        customer_name: name.into(),
        organization: None,
        plan: Plan::parse("pro").unwrap(),
        status: Status::Active,
        starts_at: now,
        expires_at: None,
        trial_ends_at: None,
        max_devices,
        features: vec![],
        metadata: serde_json::Map::new(),
        at: now,
        policy_id: None,
        policy_version: None,
        overrides: vec![],
    }
}
