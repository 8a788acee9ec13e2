use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use flowlytix_projections::{with_db, Db};
use postgres_es::PostgresEventRepository;
use sqlite_es::SqliteEventRepository;
use tokio::sync::Mutex;

/// Conflicting appends are retried this many times (with jitter) before answering 409.
const MAX_ATTEMPTS: u32 = 5;
/// Commands on one aggregate are serialized in-process through one of these locks, so
/// same-instance contention never reaches the optimistic lock (and never becomes a 409).
const LOCK_STRIPES: usize = 256;

/// Events that say when they happened (the instant of the command that caused them).
pub trait Dated {
    fn at(&self) -> DateTime<Utc>;
}

impl Dated for flowlytix_aggregates::SubscriptionEvent {
    fn at(&self) -> DateTime<Utc> {
        flowlytix_aggregates::SubscriptionEvent::at(self)
    }
}

/// Who did it, from where and when: stored with every event.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    /// An admin id, `license:<subscription id>` or `system`.
    pub actor: String,
    pub request_id: String,
    pub ip: String,
    pub user_agent: String,
    pub occurred_at: DateTime<Utc>,
}

impl EventMetadata {
    pub fn system(occurred_at: DateTime<Utc>) -> Self {
        Self {
            actor: "system".into(),
            request_id: String::new(),
            ip: String::new(),
            user_agent: String::new(),
            occurred_at,
        }
    }

    fn into_map(self) -> HashMap<String, String> {
        HashMap::from([
            ("actor".into(), self.actor),
            ("request_id".into(), self.request_id),
            ("ip".into(), self.ip),
            ("user_agent".into(), self.user_agent),
            (
                "occurred_at".into(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    #[error("expected version {expected}, found {actual}")]
    VersionMismatch { expected: u64, actual: u64 },
    #[error("the aggregate kept changing concurrently")]
    Conflict,
    #[error("the event store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The outcome of a command: the aggregate as it is now, its version (the sequence of its
/// last event) and the event-log position that version reached.
#[derive(Debug)]
pub struct Committed<A: Aggregate> {
    pub aggregate: A,
    pub version: u64,
    pub position: i64,
    pub events: Vec<EventEnvelope<A>>,
}

/// Loads an aggregate, lets it decide, and appends its events. cqrs-es's `CqrsFramework` is
/// not used because it returns neither the new state nor the sequence reached, and it does
/// not retry conflicts.
pub struct Executor<A: Aggregate> {
    store: Store<A>,
    db: Db,
    locks: Arc<Vec<Mutex<()>>>,
}

/// cqrs-es's persisted store on either backend; both give the same contexts and envelopes.
enum Store<A: Aggregate> {
    Postgres(PersistedEventStore<PostgresEventRepository, A>),
    Sqlite(PersistedEventStore<SqliteEventRepository, A>),
}

macro_rules! with_store {
    ($store:expr, $s:ident => $body:expr) => {
        match $store {
            Store::Postgres($s) => $body,
            Store::Sqlite($s) => $body,
        }
    };
}

impl<A> Executor<A>
where
    A: Aggregate<Services = ()> + Clone + 'static,
    A::Command: Clone,
{
    pub fn new(db: Db) -> Self {
        let store = match &db {
            Db::Postgres(pool) => Store::Postgres(PersistedEventStore::new_event_store(
                PostgresEventRepository::new(pool.clone()),
            )),
            Db::Sqlite(pool) => Store::Sqlite(PersistedEventStore::new_event_store(
                SqliteEventRepository::new(pool.clone()),
            )),
        };
        Self {
            store,
            db,
            locks: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(())).collect()),
        }
    }

    /// The aggregate's current state and version (0 if it has no events).
    pub async fn load(&self, id: &str) -> Result<(A, u64), ExecuteError<A::Error>> {
        let context =
            with_store!(&self.store, s => s.load_aggregate(id).await).map_err(store_error)?;
        Ok((context.aggregate, context.current_sequence as u64))
    }

    /// The aggregate as it was at `instant` (its events up to then, replayed) and the
    /// version it had then; version 0 when it did not exist yet.
    pub async fn load_as_of(
        &self,
        id: &str,
        instant: DateTime<Utc>,
    ) -> Result<(A, u64), ExecuteError<A::Error>>
    where
        A::Event: Dated,
    {
        let events = with_store!(&self.store, s => s.load_events(id).await).map_err(store_error)?;
        let mut aggregate = A::default();
        let mut version = 0;
        for envelope in events {
            if envelope.payload.at() > instant {
                break;
            }
            aggregate.apply(envelope.payload);
            version = envelope.sequence as u64;
        }
        Ok((aggregate, version))
    }

    /// Runs `commands` in order against one aggregate and appends all their events in one
    /// transaction, or none. With `expected_version`, a stale caller gets `VersionMismatch`.
    pub async fn execute(
        &self,
        id: &str,
        commands: Vec<A::Command>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        let _guard = self.lock_for(id).lock().await;
        let metadata = metadata.into_map();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut context =
                with_store!(&self.store, s => s.load_aggregate(id).await).map_err(store_error)?;
            let version = context.current_sequence as u64;
            if let Some(expected) = expected_version.filter(|e| *e != version) {
                return Err(ExecuteError::VersionMismatch {
                    expected,
                    actual: version,
                });
            }
            let sink = EventSink::default();
            for command in commands.iter().cloned() {
                context
                    .aggregate
                    .handle(command, &(), &sink)
                    .await
                    .map_err(ExecuteError::Domain)?;
            }
            let new_events = sink.collect().await;
            let aggregate = context.aggregate.clone();
            if new_events.is_empty() {
                let position = self.position_of(id).await?;
                return Ok(Committed {
                    aggregate,
                    version,
                    position,
                    events: vec![],
                });
            }
            let committed = with_store!(&self.store, s => s.commit(new_events, context, metadata.clone()).await);
            match committed.map_err(sqlite_conflict) {
                Ok(events) => {
                    let version = events.last().map_or(version, |e| e.sequence as u64);
                    let position = self.position_of(id).await?;
                    return Ok(Committed {
                        aggregate,
                        version,
                        position,
                        events,
                    });
                }
                Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => {
                    // Another instance appended first: back off a random little while.
                    let jitter = u64::from(crate::crypto::random_bytes::<1>()[0]) % 20;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt) + jitter))
                        .await;
                }
                Err(AggregateError::AggregateConflict) => return Err(ExecuteError::Conflict),
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// The global position of the aggregate's latest event (0 when it has none).
    async fn position_of(&self, id: &str) -> Result<i64, ExecuteError<A::Error>> {
        let position: Option<i64> = with_db!(&self.db, pool => {
            sqlx::query_scalar(
                "select global_position from events
                 where aggregate_type = $1 and aggregate_id = $2
                 order by sequence desc limit 1",
            )
            .bind(A::TYPE)
            .bind(id)
            .fetch_optional(pool)
            .await
        })
        .map_err(|e| ExecuteError::Store(Box::new(e)))?;
        Ok(position.unwrap_or(0))
    }

    fn lock_for(&self, id: &str) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        &self.locks[(hasher.finish() as usize) % LOCK_STRIPES]
    }
}

/// sqlite-es reports only primary-key violations as conflicts; the events table's key is its
/// position, so a concurrent append shows as a unique-constraint violation instead.
fn sqlite_conflict<E: std::error::Error>(error: AggregateError<E>) -> AggregateError<E> {
    match error {
        AggregateError::UnexpectedError(e)
            if e.to_string().contains("UNIQUE constraint failed: events.") =>
        {
            AggregateError::AggregateConflict
        }
        other => other,
    }
}

fn store_error<E: std::error::Error>(error: AggregateError<E>) -> ExecuteError<E> {
    match error {
        AggregateError::UserError(e) => ExecuteError::Domain(e),
        AggregateError::AggregateConflict => ExecuteError::Conflict,
        other => ExecuteError::Store(other.to_string().into()),
    }
}
