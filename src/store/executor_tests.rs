//! The executor against a real (SQLite) store, with a small aggregate of its own: the cache
//! across "instances" (two executors on one database), snapshots, and positions.

use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::SqlitePool;

use super::{Db, EventMetadata, ExecuteError, Executor, SNAPSHOT_INTERVAL};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Counter {
    total: u64,
    adds: u64,
}

#[derive(Debug, Clone)]
enum Count {
    Add(u64),
    /// Adds only once the total has reached `min`: its refusal depends on the state.
    AddOnceAtLeast {
        min: u64,
        n: u64,
    },
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Added(u64);

impl DomainEvent for Added {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the total {0} is too low")]
struct TooLow(u64);

impl super::CommandName for Count {
    fn command_name(&self) -> Option<&'static str> {
        Some("Count")
    }
}

impl Aggregate for Counter {
    const TYPE: &'static str = "TestCounter";
    type Command = Count;
    type Event = Added;
    type Error = TooLow;
    type Services = ();

    async fn handle(
        &mut self,
        command: Count,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), TooLow> {
        match command {
            Count::Add(n) => sink.write(Added(n), self).await,
            Count::AddOnceAtLeast { min, .. } if self.total < min => {
                return Err(TooLow(self.total))
            }
            Count::AddOnceAtLeast { n, .. } => sink.write(Added(n), self).await,
            Count::Nothing => {}
        }
        Ok(())
    }

    fn apply(&mut self, event: Added) {
        self.total += event.0;
        self.adds += 1;
    }
}

async fn store() -> Db {
    let path = std::env::temp_dir().join(format!(
        "flowlytix-executor-test-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = super::connect(&format!("sqlite://{}", path.display()), false)
        .await
        .unwrap();
    super::migrate(&db).await.unwrap();
    db
}

fn pool(db: &Db) -> &SqlitePool {
    match db {
        Db::Sqlite(pool) => pool,
        Db::Postgres(_) => unreachable!("these tests use SQLite"),
    }
}

async fn run(
    executor: &Executor<Counter>,
    command: Count,
    expected_version: Option<u64>,
) -> Result<super::Committed<Counter>, ExecuteError<TooLow>> {
    executor
        .execute(
            "c",
            vec![command],
            EventMetadata::system(Utc::now()),
            expected_version,
        )
        .await
}

async fn add(executor: &Executor<Counter>, n: u64) -> super::Committed<Counter> {
    run(executor, Count::Add(n), None).await.unwrap()
}

#[tokio::test]
async fn a_command_returns_the_position_its_last_event_got() {
    let db = store().await;
    let executor = Executor::<Counter>::new(db.clone());
    add(&executor, 1).await;
    let committed = executor
        .execute(
            "c",
            vec![Count::Add(2), Count::Add(3)],
            EventMetadata::system(Utc::now()),
            None,
        )
        .await
        .unwrap();
    let stored: Vec<(i64, i64)> = sqlx::query_as(
        "select sequence, global_position from events where aggregate_id = 'c' order by sequence",
    )
    .fetch_all(pool(&db))
    .await
    .unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(committed.version, 3);
    assert_eq!(committed.position, stored[2].1);
    let sequences: Vec<usize> = committed.events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [2, 3]);

    // Nothing to record: the same version and position, and no row.
    let unchanged = run(&executor, Count::Nothing, None).await.unwrap();
    assert_eq!((unchanged.version, unchanged.position), (3, stored[2].1));
}

#[tokio::test]
async fn rows_are_written_as_postgres_es_and_sqlite_es_write_them() {
    let db = store().await;
    let executor = Executor::<Counter>::new(db.clone());
    add(&executor, 7).await;
    let (event_type, event_version, payload, metadata): (String, String, String, String) =
        sqlx::query_as(
            "select event_type, event_version, payload, metadata from events where aggregate_id = 'c'",
        )
        .fetch_one(pool(&db))
        .await
        .unwrap();
    assert_eq!(
        (event_type.as_str(), event_version.as_str()),
        ("Added", "1")
    );
    assert_eq!(payload, "7");
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["actor"], "system");
}

#[tokio::test]
async fn an_append_decided_on_a_stale_entry_is_redone_on_the_stored_state() {
    let db = store().await;
    let (one, two) = (
        Executor::<Counter>::new(db.clone()),
        Executor::<Counter>::new(db),
    );
    add(&one, 1).await; // `one` holds version 1
    add(&two, 10).await; // `two` appends version 2 behind its back
    let committed = add(&one, 100).await;
    assert_eq!(
        (committed.version, committed.aggregate.total),
        (3, 111),
        "no update lost"
    );
    // Reads catch up with the other instance's appends.
    assert_eq!(two.load("c").await.unwrap(), (committed.aggregate, 3));
}

#[tokio::test]
async fn a_refusal_decided_on_a_stale_entry_is_checked_against_the_store() {
    let db = store().await;
    let (one, two) = (
        Executor::<Counter>::new(db.clone()),
        Executor::<Counter>::new(db),
    );
    add(&one, 1).await;
    add(&two, 10).await;
    // `one` still holds total 1, which would refuse; the store's total is 11.
    let committed = run(&one, Count::AddOnceAtLeast { min: 5, n: 1 }, None)
        .await
        .unwrap();
    assert_eq!((committed.version, committed.aggregate.total), (3, 12));
    // A refusal the store agrees with stands.
    let refused = run(&one, Count::AddOnceAtLeast { min: 50, n: 1 }, None).await;
    assert!(
        matches!(refused, Err(ExecuteError::Domain(TooLow(12)))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_expected_version_set_by_another_instance_is_not_a_mismatch() {
    let db = store().await;
    let (one, two) = (
        Executor::<Counter>::new(db.clone()),
        Executor::<Counter>::new(db),
    );
    add(&one, 1).await;
    let seen = add(&two, 1).await.version;
    let committed = run(&one, Count::Add(1), Some(seen)).await.unwrap();
    assert_eq!(committed.version, 3);
    let stale = run(&two, Count::Add(1), Some(seen)).await;
    assert!(
        matches!(
            stale,
            Err(ExecuteError::VersionMismatch {
                expected: 2,
                actual: 3
            })
        ),
        "{stale:?}"
    );
    // A command with nothing to record answers with the store's version, not a stale one.
    add(&one, 1).await;
    assert_eq!(run(&two, Count::Nothing, None).await.unwrap().version, 4);
}

async fn snapshot_row(db: &Db) -> Option<(i64, String)> {
    sqlx::query_as("select last_sequence, payload from snapshots where aggregate_id = 'c'")
        .fetch_optional(pool(db))
        .await
        .unwrap()
}

#[tokio::test]
async fn an_executor_without_snapshots_never_writes_one() {
    let db = store().await;
    let writer = Executor::<Counter>::without_snapshots(db.clone());
    let n = SNAPSHOT_INTERVAL + 5;
    for _ in 0..n {
        add(&writer, 1).await;
    }
    assert_eq!(snapshot_row(&db).await, None);
    let cold = Executor::<Counter>::without_snapshots(db.clone())
        .load("c")
        .await
        .unwrap();
    assert_eq!(cold, (Counter { total: n, adds: n }, n));
}

#[tokio::test]
async fn snapshots_are_taken_every_interval_and_cold_loads_start_from_them() {
    let db = store().await;
    let writer = Executor::<Counter>::new(db.clone());
    let n = 2 * SNAPSHOT_INTERVAL + 10;
    for _ in 0..n {
        add(&writer, 1).await;
    }
    let (last_sequence, payload) = snapshot_row(&db).await.unwrap();
    assert_eq!(last_sequence as u64, 2 * SNAPSHOT_INTERVAL);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
        json!({"total": 2 * SNAPSHOT_INTERVAL, "adds": 2 * SNAPSHOT_INTERVAL})
    );

    // A new instance gets the state a full replay gives.
    let cold = Executor::<Counter>::new(db.clone())
        .load("c")
        .await
        .unwrap();
    assert_eq!(cold, (Counter { total: n, adds: n }, n));

    // And it really started from the snapshot: a (decodable) doctored one shows through.
    sqlx::query("update snapshots set payload = $1")
        .bind(json!({"total": 1_000_000, "adds": 2 * SNAPSHOT_INTERVAL}).to_string())
        .execute(pool(&db))
        .await
        .unwrap();
    let doctored = Executor::<Counter>::new(db).load("c").await.unwrap();
    assert_eq!(doctored.0.total, 1_000_000 + 10);
}

#[tokio::test]
async fn a_snapshot_that_does_not_decode_is_ignored_and_replaced() {
    let db = store().await;
    let writer = Executor::<Counter>::new(db.clone());
    let n = SNAPSHOT_INTERVAL + 5;
    for _ in 0..n {
        add(&writer, 2).await;
    }
    let expected = (
        Counter {
            total: 2 * n,
            adds: n,
        },
        n,
    );
    for garbled in [
        json!({"count": "a shape from another version"}).to_string(),
        "not even JSON".to_owned(),
    ] {
        sqlx::query("update snapshots set payload = $1")
            .bind(garbled)
            .execute(pool(&db))
            .await
            .unwrap();
        let cold = Executor::<Counter>::new(db.clone());
        assert_eq!(cold.load("c").await.unwrap(), expected);
    }
    let cold = Executor::<Counter>::new(db.clone());
    // The next append replaces it, since no usable snapshot is known.
    add(&cold, 2).await;
    let (last_sequence, payload) = snapshot_row(&db).await.unwrap();
    assert_eq!(last_sequence as u64, n + 1);
    assert_eq!(
        serde_json::from_str::<Counter>(&payload).unwrap(),
        Counter {
            total: 2 * (n + 1),
            adds: n + 1
        }
    );
}
