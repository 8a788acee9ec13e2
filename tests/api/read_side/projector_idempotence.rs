//! A projector applies an event once, however often it is delivered: a redelivery under
//! another message id, and two deliveries of a first event at the same moment.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flowlytix_projections::analytics::AnalyticsProjector;
use flowlytix_projections::catalogue::CatalogueProjector;
use flowlytix_projections::subscriptions::SubscriptionsProjector;
use flowlytix_projections::{project, EventRecord, Outcome, Projector};
use serde_json::json;
use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{fresh_database, skip_unless_postgres, spawn_app_on_nats, NatsNames};

use super::{
    assert_analytics_match_events, assert_each_event_projected_once, read_side_dump, scalar,
    subscription_created, PROJECTORS,
};

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

    let history = flowlytix_eventstore::log::aggregate_history(
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
    let created = subscription_created(id, "twice@example.com", "Twice", 1, now);
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
    let projectors: [Arc<dyn Projector>; 3] = [
        Arc::new(SubscriptionsProjector),
        Arc::new(AnalyticsProjector),
        Arc::new(CatalogueProjector),
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
