//! The `events` rows are the ones postgres-es writes, held against postgres-es 0.5 itself on
//! a fresh PostgreSQL database migrated with this project's migrations: what postgres-es
//! appends loads through this store (the cqrs-es repository, the executor's loads and the
//! log the publisher reads), and what this store appends loads through postgres-es. Run
//! when `TEST_DATABASE_URL` is set (skipped with a note otherwise, or failed when
//! `FLOWLYTIX_REQUIRE_SERVICES=1`).
//!
//! What is the same: the seven columns postgres-es names (`aggregate_type, aggregate_id,
//! sequence, event_type, event_version, payload, metadata`), their types (`json` payload and
//! metadata, both bound as `serde_json::Value`, so the stored text is the same byte for
//! byte), the primary key `(aggregate_type, aggregate_id, sequence)` that turns a taken
//! sequence into cqrs-es's optimistic-lock error, and the table name `events`.
//! `global_position`, `tx_id` and `recorded_at` are ours and filled by their defaults, so an
//! event postgres-es appends takes its place in the log like any other.
//!
//! What differs, on purpose:
//! - **Snapshots.** Ours (`snapshots`: `last_sequence, last_position, format, payload,
//!   taken_at`, one row per aggregate) are not postgres-es's (`last_sequence,
//!   current_snapshot, payload`, keyed with `last_sequence`). postgres-es's snapshot store
//!   fails on this schema at its first load, and any snapshot write fails with its events
//!   (`current_snapshot` does not exist); this store never writes cqrs-es 0.5's snapshots (that state has a
//!   commit's first events applied twice; see `EventRepository`). Use postgres-es with
//!   `new_event_store`, or with snapshot tables of its own (`with_tables`).
//! - **Order of `stream_all_events`.** postgres-es orders an aggregate type's events by
//!   `sequence` alone, interleaving aggregates; ours by `global_position`, the log's order.
//!   Each aggregate's own events come in sequence order either way.
//! - **Integer width.** postgres-es binds sequences as 32-bit integers into the `bigint`
//!   column: the same rows, below 2^31 events per aggregate.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use flowlytix_eventstore::snapshot::SNAPSHOT_FORMAT;
use flowlytix_eventstore::{Append, Db, EventRepository, NewEvent, NewSnapshot};
use postgres_es::PostgresEventRepository;
use serde_json::json;
use sqlx::PgPool;

use common::{metadata, Tally, TallyCommand, TallyEvent};

/// The same commands, run on one aggregate.
async fn run_commands<R: PersistedEventRepository>(repository: R, id: &str) {
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_event_store(repository),
        vec![],
        (),
    );
    for command in [
        TallyCommand::Add(2),
        TallyCommand::AddTwice(3),
        TallyCommand::Add(7),
    ] {
        cqrs.execute_with_metadata(id, command, metadata())
            .await
            .unwrap();
    }
}

/// The seven columns postgres-es names, as stored (payload and metadata as their text).
async fn stored_rows(
    pool: &PgPool,
    id: &str,
) -> Vec<(String, i64, String, String, String, String)> {
    sqlx::query_as(
        "select aggregate_type, sequence, event_type, event_version, payload::text, metadata::text
           from events where aggregate_id = $1 order by sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn without_ids(events: Vec<SerializedEvent>) -> Vec<SerializedEvent> {
    events
        .into_iter()
        .map(|e| SerializedEvent {
            aggregate_id: String::new(),
            ..e
        })
        .collect()
}

async fn fresh() -> Option<(Db, PgPool)> {
    let db = common::postgres_store("the postgres-es round trip").await?;
    let Db::Postgres(pool) = &db else {
        unreachable!()
    };
    let pool = pool.clone();
    Some((db, pool))
}

#[tokio::test]
async fn events_appended_by_postgres_es_load_through_this_store() {
    let Some((db, pool)) = fresh().await else {
        return;
    };
    run_commands(PostgresEventRepository::new(pool.clone()), "theirs").await;
    // The cqrs-es repository reads what postgres-es reads.
    let theirs = PostgresEventRepository::new(pool.clone());
    let ours = EventRepository::new(db.clone());
    let expected = theirs.get_events::<Tally>("theirs").await.unwrap();
    assert_eq!(expected.len(), 4);
    assert_eq!(ours.get_events::<Tally>("theirs").await.unwrap(), expected);
    assert_eq!(
        ours.get_last_events::<Tally>("theirs", 2).await.unwrap(),
        theirs.get_last_events::<Tally>("theirs", 2).await.unwrap()
    );
    let loaded = PersistedEventStore::<_, Tally>::new_event_store(ours)
        .load_aggregate("theirs")
        .await
        .unwrap();
    assert_eq!(loaded.aggregate, Tally { total: 15, adds: 4 });
    assert_eq!(loaded.current_sequence, 4);

    // The executor's loads decode them.
    let tail =
        flowlytix_eventstore::stream::snapshot_and_tail::<TallyEvent>(&db, "Tally", "theirs")
            .await
            .unwrap();
    assert!(tail.snapshot.is_none());
    assert_eq!(
        tail.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(tail.events[3].payload, TallyEvent::Added { amount: 7 });

    // They are in the log in commit order, with positions, as the publisher reads it.
    let log = common::committed_log(&db, 4).await;
    assert_eq!(log.len(), 4);
    assert!(log.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(log[0].1.payload, json!({"amount": 2}));
    assert_eq!(log[0].1.metadata, json!(metadata()));

    // A command run through this store carries on from postgres-es's events.
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_event_store(EventRepository::new(db.clone())),
        vec![],
        (),
    );
    cqrs.execute_with_metadata("theirs", TallyCommand::Add(1), metadata())
        .await
        .unwrap();
    assert_eq!(theirs.get_events::<Tally>("theirs").await.unwrap().len(), 5);
}

#[tokio::test]
async fn events_appended_by_this_store_load_through_postgres_es() {
    let Some((db, pool)) = fresh().await else {
        return;
    };
    run_commands(EventRepository::new(db.clone()), "ours").await;
    let theirs = PostgresEventRepository::new(pool.clone());
    let ours = EventRepository::new(db.clone());
    let expected = ours.get_events::<Tally>("ours").await.unwrap();
    assert_eq!(expected.len(), 4);
    assert_eq!(theirs.get_events::<Tally>("ours").await.unwrap(), expected);
    let loaded = PersistedEventStore::<_, Tally>::new_event_store(theirs)
        .load_aggregate("ours")
        .await
        .unwrap();
    assert_eq!(loaded.aggregate, Tally { total: 15, adds: 4 });
    assert_eq!(loaded.current_sequence, 4);

    // The executor's own append path (what the server writes) loads through postgres-es
    // too, and postgres-es's next command conflicts with a sequence it took.
    flowlytix_eventstore::append(
        &db,
        Append {
            aggregate_type: "Tally",
            aggregate_id: "ours".into(),
            events: vec![NewEvent {
                sequence: 5,
                event_type: "Added".into(),
                event_version: "1.0".into(),
                payload: json!({"Added": {"amount": 100}}),
            }],
            metadata: json!(metadata()),
            snapshot: None,
        },
    )
    .await
    .unwrap();
    let theirs = PostgresEventRepository::new(pool.clone());
    let last = theirs.get_last_events::<Tally>("ours", 4).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].payload, json!({"Added": {"amount": 100}}));
    let taken = theirs.persist::<Tally>(&last, None).await;
    assert!(matches!(
        taken,
        Err(cqrs_es::persist::PersistenceError::OptimisticLockError)
    ));
}

#[tokio::test]
async fn both_write_the_same_rows() {
    let Some((db, pool)) = fresh().await else {
        return;
    };
    run_commands(PostgresEventRepository::new(pool.clone()), "by-postgres-es").await;
    run_commands(EventRepository::new(db.clone()), "by-flowlytix").await;
    let theirs = stored_rows(&pool, "by-postgres-es").await;
    let ours = stored_rows(&pool, "by-flowlytix").await;
    assert_eq!(theirs.len(), 4);
    assert_eq!(ours, theirs);
    let repository = PostgresEventRepository::new(pool.clone());
    assert_eq!(
        without_ids(
            repository
                .get_events::<Tally>("by-flowlytix")
                .await
                .unwrap()
        ),
        without_ids(
            repository
                .get_events::<Tally>("by-postgres-es")
                .await
                .unwrap()
        )
    );
}

#[tokio::test]
async fn snapshots_are_not_shared_with_postgres_es() {
    let Some((db, pool)) = fresh().await else {
        return;
    };
    // postgres-es's snapshot store fails at its first load: it reads `current_snapshot`,
    // which our table does not have. Nothing is written.
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_snapshot_store(
            PostgresEventRepository::new(pool.clone()),
            2,
        ),
        vec![],
        (),
    );
    let failed = cqrs
        .execute_with_metadata("snap", TallyCommand::Add(1), metadata())
        .await;
    let Err(AggregateError::UnexpectedError(error)) = failed else {
        panic!("postgres-es read a snapshot from our table: {failed:?}")
    };
    assert!(
        error.to_string().contains("current_snapshot"),
        "unexpected failure: {error}"
    );
    let theirs = PostgresEventRepository::new(pool.clone());
    assert!(theirs.get_events::<Tally>("snap").await.unwrap().is_empty());
    // Writing one fails the same way (the insert names `current_snapshot`), and the events
    // of that commit go with it (one transaction).
    let events = vec![SerializedEvent::new(
        "snap".into(),
        1,
        "Tally".into(),
        "Added".into(),
        "1.0".into(),
        json!({"Added": {"amount": 1}}),
        json!(metadata()),
    )];
    let written = theirs
        .persist::<Tally>(
            &events,
            Some(("snap".into(), json!({"total": 1, "adds": 1}), 1)),
        )
        .await;
    assert!(written
        .unwrap_err()
        .to_string()
        .contains("current_snapshot"));
    assert!(theirs.get_events::<Tally>("snap").await.unwrap().is_empty());

    // Nor can it read ours.
    flowlytix_eventstore::append(
        &db,
        Append {
            aggregate_type: "Tally",
            aggregate_id: "ours".into(),
            events: vec![NewEvent {
                sequence: 1,
                event_type: "Added".into(),
                event_version: "1.0".into(),
                payload: json!({"Added": {"amount": 4}}),
            }],
            metadata: json!(metadata()),
            snapshot: Some(NewSnapshot {
                format: SNAPSHOT_FORMAT,
                payload: json!({"total": 4, "adds": 1}),
            }),
        },
    )
    .await
    .unwrap();
    assert!(theirs.get_snapshot::<Tally>("ours").await.is_err());
    // This store reads it, and gives cqrs-es the state it holds.
    let snapshot = EventRepository::new(db.clone())
        .get_snapshot::<Tally>("ours")
        .await
        .unwrap()
        .expect("the executor's snapshot");
    assert_eq!(snapshot.current_sequence, 1);
    assert_eq!(snapshot.aggregate, json!({"total": 4, "adds": 1}));
}
