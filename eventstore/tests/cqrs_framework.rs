//! A plain cqrs-es `CqrsFramework` with `PersistedEventStore` runs on this store: on a
//! temporary SQLite file always, and on PostgreSQL when `TEST_DATABASE_URL` is set.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, PersistenceError};
use cqrs_es::{AggregateError, CqrsFramework, EventStore};
use flowlytix_eventstore::snapshot::SNAPSHOT_FORMAT;
use flowlytix_eventstore::{with_db, Append, Db, EventRepository, NewEvent, NewSnapshot};
use serde_json::json;

use common::{metadata, Dispatched, Tally, TallyCommand, TallyEvent};

#[tokio::test]
async fn a_cqrs_framework_runs_on_the_store_on_sqlite() {
    commands_run_and_load(common::sqlite_store().await).await;
}

#[tokio::test]
async fn a_cqrs_framework_runs_on_the_store_on_postgres() {
    if let Some(db) = common::postgres_store("a_cqrs_framework_runs_on_the_store_on_postgres").await
    {
        commands_run_and_load(db).await;
    }
}

#[tokio::test]
async fn a_snapshot_store_loads_from_the_executors_snapshot_and_never_writes_one_on_sqlite() {
    snapshots_are_read_not_written(common::sqlite_store().await).await;
}

#[tokio::test]
async fn a_snapshot_store_loads_from_the_executors_snapshot_and_never_writes_one_on_postgres() {
    if let Some(db) = common::postgres_store("snapshots_are_read_not_written on postgres").await {
        snapshots_are_read_not_written(db).await;
    }
}

async fn commands_run_and_load(db: Db) {
    let dispatched = Dispatched::default();
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_event_store(EventRepository::new(db.clone())),
        vec![Box::new(dispatched.clone())],
        (),
    );
    cqrs.execute_with_metadata("t-1", TallyCommand::Add(2), metadata())
        .await
        .unwrap();
    cqrs.execute_with_metadata("t-1", TallyCommand::AddTwice(3), metadata())
        .await
        .unwrap();
    cqrs.execute_with_metadata("t-2", TallyCommand::Add(5), metadata())
        .await
        .unwrap();
    let refused = cqrs
        .execute_with_metadata("t-1", TallyCommand::Add(0), metadata())
        .await;
    assert!(matches!(refused, Err(AggregateError::UserError(_))));

    // Loaded back through the framework's store.
    let store = PersistedEventStore::<_, Tally>::new_event_store(EventRepository::new(db.clone()));
    let loaded = store.load_aggregate("t-1").await.unwrap();
    assert_eq!(loaded.aggregate, Tally { total: 8, adds: 3 });
    assert_eq!(loaded.current_sequence, 3);
    assert_eq!(
        *dispatched.0.lock().unwrap(),
        vec![
            ("t-1".to_owned(), 1),
            ("t-1".to_owned(), 2),
            ("t-1".to_owned(), 3),
            ("t-2".to_owned(), 1)
        ]
    );

    // The rows are the log's: the executor's loads and the publisher's read see them.
    let stream = flowlytix_eventstore::stream::events_after::<TallyEvent>(&db, "Tally", "t-1", 1)
        .await
        .unwrap();
    assert_eq!(
        stream.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(stream
        .iter()
        .all(|e| e.payload == TallyEvent::Added { amount: 3 }));
    let log = common::committed_log(&db, 4).await;
    assert_eq!(log.len(), 4);
    let (_, first) = &log[0];
    assert_eq!(
        (
            first.aggregate_type.as_str(),
            first.aggregate_id.as_str(),
            first.sequence,
            first.event_type.as_str(),
            first.event_version.as_str()
        ),
        ("Tally", "t-1", 1, "Added", "1.0")
    );
    assert_eq!(first.payload, json!({"amount": 2}));
    assert_eq!(
        first.metadata,
        json!({"actor": "test", "request_id": "r-1"})
    );

    // The repository's other reads.
    let repository = EventRepository::new(db.clone());
    let last = repository.get_last_events::<Tally>("t-1", 2).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].sequence, 3);
    assert_eq!(last[0].payload, json!({"Added": {"amount": 3}}));
    let mut replay = repository.stream_events::<Tally>("t-1").await.unwrap();
    let mut sequences = Vec::new();
    while let Some(event) = replay.next::<Tally>(&[]).await {
        sequences.push(event.unwrap().sequence);
    }
    assert_eq!(sequences, vec![1, 2, 3]);
    let mut all = repository.stream_all_events::<Tally>().await.unwrap();
    let mut ids = Vec::new();
    while let Some(event) = all.next::<Tally>(&[]).await {
        let event = event.unwrap();
        ids.push((event.aggregate_id, event.sequence));
    }
    assert_eq!(
        ids,
        vec![
            ("t-1".to_owned(), 1),
            ("t-1".to_owned(), 2),
            ("t-1".to_owned(), 3),
            ("t-2".to_owned(), 1)
        ]
    );

    // A sequence another writer took is cqrs-es's optimistic-lock error.
    let taken = repository.get_events::<Tally>("t-2").await.unwrap();
    let again = repository.persist::<Tally>(&taken, None).await;
    assert!(matches!(again, Err(PersistenceError::OptimisticLockError)));
}

async fn snapshots_are_read_not_written(db: Db) {
    // Three events and a snapshot at the third, as the executor writes them. The snapshot
    // says a total no fold of these events gives, so a load that reports it read the
    // snapshot.
    flowlytix_eventstore::append(
        &db,
        Append {
            aggregate_type: "Tally",
            aggregate_id: "s-1".into(),
            events: (1..=3)
                .map(|sequence| NewEvent {
                    sequence,
                    event_type: "Added".into(),
                    event_version: "1.0".into(),
                    payload: json!({"Added": {"amount": 1}}),
                })
                .collect(),
            metadata: json!(metadata()),
            snapshot: Some(NewSnapshot {
                format: SNAPSHOT_FORMAT,
                payload: json!({"total": 1000, "adds": 3}),
            }),
        },
    )
    .await
    .unwrap();
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_snapshot_store(EventRepository::new(db.clone()), 2),
        vec![],
        (),
    );
    // Past cqrs-es's next snapshot point (sequence 4): it hands `persist` a snapshot.
    cqrs.execute_with_metadata("s-1", TallyCommand::AddTwice(10), metadata())
        .await
        .unwrap();
    let store =
        PersistedEventStore::<_, Tally>::new_snapshot_store(EventRepository::new(db.clone()), 2);
    let loaded = store.load_aggregate("s-1").await.unwrap();
    assert_eq!(
        loaded.aggregate,
        Tally {
            total: 1020,
            adds: 5
        }
    );
    assert_eq!(loaded.current_sequence, 5);
    // The executor's snapshot is as it was: cqrs-es's was not written.
    let (last_sequence, payload): (i64, String) = with_db!(&db, pool => {
        sqlx::query_as(
            "select last_sequence, cast(payload as text) from snapshots where aggregate_id = 's-1'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(last_sequence, 3);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
        json!({"total": 1000, "adds": 3})
    );
    // A snapshot of another format, or of another shape, is not handed to cqrs-es.
    with_db!(&db, pool => {
        sqlx::query("update snapshots set format = $1 where aggregate_id = 's-1'")
            .bind(SNAPSHOT_FORMAT + 1)
            .execute(pool)
            .await
            .map(|_| ())
            .unwrap()
    });
    let repository = EventRepository::new(db.clone());
    assert!(repository
        .get_snapshot::<Tally>("s-1")
        .await
        .unwrap()
        .is_none());
    let loaded = store.load_aggregate("s-1").await.unwrap();
    assert_eq!(loaded.aggregate, Tally { total: 23, adds: 5 });
}
