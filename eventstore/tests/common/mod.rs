//! What the event store's integration tests share: a small aggregate, and migrated stores.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, Query};
use flowlytix_eventstore::log::{EventRecord, LogCursor};
use flowlytix_eventstore::Db;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// A running total: enough of an aggregate to show a command refused, one event, and
/// several events from one command.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub total: u64,
    pub adds: u64,
}

pub enum TallyCommand {
    Add(u64),
    /// Two events from one command.
    AddTwice(u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TallyEvent {
    Added { amount: u64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        match self {
            TallyEvent::Added { .. } => "Added".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("nothing to add")]
pub struct NothingToAdd;

impl Aggregate for Tally {
    const TYPE: &'static str = "Tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = NothingToAdd;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), NothingToAdd> {
        let (amount, times) = match command {
            TallyCommand::Add(amount) => (amount, 1),
            TallyCommand::AddTwice(amount) => (amount, 2),
        };
        if amount == 0 {
            return Err(NothingToAdd);
        }
        for _ in 0..times {
            sink.write(TallyEvent::Added { amount }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        match event {
            TallyEvent::Added { amount } => {
                self.total += amount;
                self.adds += 1;
            }
        }
    }
}

/// The metadata every test command carries.
pub fn metadata() -> HashMap<String, String> {
    HashMap::from([
        ("actor".to_owned(), "test".to_owned()),
        ("request_id".to_owned(), "r-1".to_owned()),
    ])
}

/// A query that keeps what the framework dispatched to it: `(aggregate id, sequence)`.
#[derive(Clone, Default)]
pub struct Dispatched(pub Arc<Mutex<Vec<(String, usize)>>>);

#[async_trait]
impl Query<Tally> for Dispatched {
    async fn dispatch(&self, aggregate_id: &str, events: &[EventEnvelope<Tally>]) {
        let mut seen = self.0.lock().unwrap();
        seen.extend(events.iter().map(|e| (aggregate_id.to_owned(), e.sequence)));
    }
}

/// A migrated store on a new SQLite file of its own.
pub async fn sqlite_store() -> Db {
    let path = std::env::temp_dir().join(format!(
        "flowlytix-eventstore-test-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = flowlytix_eventstore::connect(&format!("sqlite://{}", path.display()), false)
        .await
        .unwrap();
    let Db::Sqlite(pool) = &db else {
        unreachable!("a sqlite:// URL opens SQLite")
    };
    SQLITE_MIGRATIONS.run(pool).await.unwrap();
    db
}

/// A migrated store in a new PostgreSQL database on the server at `TEST_DATABASE_URL`
/// (named `flowlytix_test_…`, as CI drops them), or `None` when that is unset and
/// `FLOWLYTIX_REQUIRE_SERVICES` is not `1`.
pub async fn postgres_store(test: &str) -> Option<Db> {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            std::env::var("FLOWLYTIX_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "FLOWLYTIX_REQUIRE_SERVICES=1 but TEST_DATABASE_URL is unset"
        );
        eprintln!("note: {test} skipped: set TEST_DATABASE_URL to run it on PostgreSQL");
        return None;
    };
    let name = format!("flowlytix_test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = PgConnection::connect(&server)
        .await
        .expect("PostgreSQL at TEST_DATABASE_URL");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut connection)
        .await
        .expect("create test database");
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    let db = flowlytix_eventstore::connect(&format!("{base}/{name}"), false)
        .await
        .unwrap();
    let Db::Postgres(pool) = &db else {
        unreachable!("a postgres:// URL opens PostgreSQL")
    };
    POSTGRES_MIGRATIONS.run(pool).await.unwrap();
    Some(db)
}

/// The first `count` events of the log in commit order, as the publisher reads them. On
/// PostgreSQL the log is read only below the oldest transaction still running anywhere on
/// the server (other databases' too), so events show up once those end: ask again for a
/// while, as the publisher's poll does.
pub async fn committed_log(db: &Db, count: usize) -> Vec<(LogCursor, EventRecord)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut connection = db.acquire().await.unwrap();
        let log = flowlytix_eventstore::log::events_after(
            connection.conn(),
            LogCursor::default(),
            i64::try_from(count).unwrap() + 1,
        )
        .await
        .unwrap();
        if log.len() >= count || std::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
