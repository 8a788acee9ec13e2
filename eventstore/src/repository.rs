//! The store as a cqrs-es [`PersistedEventRepository`], so that a plain
//! `PersistedEventStore` / `CqrsFramework` runs on it, on either backend.
//!
//! Events go through the same append as the server's executor (one multi-row insert; on
//! SQLite, group commit), so the rows are the ones the executor writes and the ones
//! postgres-es writes (the round-trip test in `tests/postgres_es.rs` holds the two against
//! each other).
//!
//! Snapshots differ on purpose. cqrs-es 0.5 builds a snapshot by applying the first events
//! of a commit to an aggregate its `handle` already applied them to (the `EventSink` applies
//! every event it is given), so the state it hands `persist` has those events twice; and it
//! does not say which sequence the state stands for. This repository therefore never writes
//! a cqrs-es snapshot: `persist` appends the events and drops `snapshot_update`. It does read
//! the snapshots the server's executor takes (exact, with their sequence), so
//! `PersistedEventStore::new_snapshot_store` loads from them and the events after them.
//! `new_aggregate_store` is not supported: it keeps state in snapshots alone.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::Row;

use crate::append::append;
use crate::db::Db;
use crate::error::{AppendError, StoreError};
use crate::snapshot::restore;
use crate::stream::{as_i64, as_u64, StoredSnapshot};
use crate::with_db;
use crate::write::{Append, NewEvent};

/// Events buffered between the reading task and a consumer of a replay stream (as
/// postgres-es's default).
const STREAM_CHANNEL_SIZE: usize = 200;

/// The event store behind cqrs-es's repository trait.
#[derive(Clone, Debug)]
pub struct EventRepository {
    db: Db,
}

impl EventRepository {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    async fn select_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        with_db!(&self.db, pool => {
            let rows = sqlx::query(STREAM_AFTER)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .bind(as_i64(after as u64))
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?;
            rows.iter().map(serialized_event).collect()
        })
    }
}

/// One aggregate's events after a sequence. Payload and metadata are read as text on both
/// backends (PostgreSQL keeps `json` text as written) and parsed into the `Value`s cqrs-es
/// takes; nothing is redacted, as this is the write side's own read.
const STREAM_AFTER: &str =
    "select aggregate_type, aggregate_id, sequence, event_type, event_version,
        cast(payload as text), cast(metadata as text)
   from events where aggregate_type = $1 and aggregate_id = $2 and sequence > $3
  order by sequence";

/// Every event of one aggregate type, in the order of the log.
const ALL_OF_TYPE: &str =
    "select aggregate_type, aggregate_id, sequence, event_type, event_version,
        cast(payload as text), cast(metadata as text)
   from events where aggregate_type = $1
  order by global_position";

fn serialized_event<R: Row>(row: &R) -> Result<SerializedEvent, PersistenceError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get = |error: sqlx::Error| PersistenceError::DeserializationError(Box::new(error));
    Ok(SerializedEvent {
        aggregate_type: row.try_get(0).map_err(get)?,
        aggregate_id: row.try_get(1).map_err(get)?,
        sequence: as_u64(row.try_get(2).map_err(get)?) as usize,
        event_type: row.try_get(3).map_err(get)?,
        event_version: row.try_get(4).map_err(get)?,
        payload: serde_json::from_str(&row.try_get::<String, _>(5).map_err(get)?)?,
        metadata: serde_json::from_str(&row.try_get::<String, _>(6).map_err(get)?)?,
    })
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events(A::TYPE, aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.select_events(A::TYPE, aggregate_id, last_sequence)
            .await
    }

    /// The executor's snapshot, when it holds this version's state (see
    /// [`restore`]); none otherwise, and cqrs-es then replays the events.
    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let stored = with_db!(&self.db, pool => {
            sqlx::query(
                "select last_sequence, last_position, format, cast(payload as text)
                   from snapshots where aggregate_type = $1 and aggregate_id = $2",
            )
            .bind(A::TYPE)
            .bind(aggregate_id)
            .fetch_optional(pool)
            .await
            .map_err(from_sqlx)?
            .map(|row| {
                Ok::<_, sqlx::Error>(StoredSnapshot {
                    last_sequence: as_u64(row.try_get(0)?),
                    last_position: row.try_get(1)?,
                    format: row.try_get(2)?,
                    payload: row.try_get(3)?,
                })
            })
            .transpose()
            .map_err(from_sqlx)?
        });
        let Some(stored) = stored else {
            return Ok(None);
        };
        let Some(aggregate) = restore::<A>(&stored) else {
            return Ok(None);
        };
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: serde_json::to_value(aggregate)?,
            current_sequence: stored.last_sequence as usize,
            // Only the latest snapshot of an aggregate is kept, so there is no count of
            // them; cqrs-es only hands this back to `persist`, which ignores snapshots.
            current_snapshot: 1,
        }))
    }

    /// Appends the events of one commit. `snapshot_update` is dropped (see the module
    /// documentation).
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        // One append stores one aggregate's events with one metadata document, which is
        // what `PersistedEventStore::commit` hands over.
        if let Some(odd) = events
            .iter()
            .find(|e| e.aggregate_id != first.aggregate_id || e.metadata != first.metadata)
        {
            return Err(PersistenceError::UnknownError(
                format!(
                    "one commit must hold one aggregate's events with the same metadata; \
                     event {} of {} differs from the first",
                    odd.sequence, odd.aggregate_id
                )
                .into(),
            ));
        }
        let rows = events
            .iter()
            .map(|event| NewEvent {
                sequence: event.sequence as u64,
                event_type: event.event_type.clone(),
                event_version: event.event_version.clone(),
                payload: event.payload.clone(),
            })
            .collect();
        append(
            &self.db,
            Append {
                aggregate_type: A::TYPE,
                aggregate_id: first.aggregate_id.clone(),
                events: rows,
                metadata: first.metadata.clone(),
                snapshot: None,
            },
        )
        .await
        .map_err(|error| match error {
            AppendError::Conflict => PersistenceError::OptimisticLockError,
            AppendError::Store(StoreError::Database(error)) => from_sqlx(error),
            AppendError::Store(error) => PersistenceError::UnknownError(Box::new(error)),
        })?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(self.stream(STREAM_AFTER, A::TYPE, Some(aggregate_id.to_owned())))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Ok(self.stream(ALL_OF_TYPE, A::TYPE, None))
    }
}

impl EventRepository {
    /// Runs `sql` (bound to the aggregate type, and id and sequence 0 when given) in a task
    /// of its own that feeds the rows to the returned stream as they arrive; an error ends
    /// the stream after it is passed on.
    fn stream(
        &self,
        sql: &'static str,
        aggregate_type: &'static str,
        aggregate_id: Option<String>,
    ) -> ReplayStream {
        let (mut feed, stream) = ReplayStream::new(STREAM_CHANNEL_SIZE);
        let db = self.db.clone();
        tokio::spawn(async move {
            with_db!(&db, pool => {
                let mut query = sqlx::query(sql).bind(aggregate_type);
                if let Some(id) = &aggregate_id {
                    query = query.bind(id.as_str()).bind(0_i64);
                }
                let mut rows = query.fetch(pool);
                loop {
                    let next = match rows.try_next().await {
                        Ok(Some(row)) => serialized_event(&row),
                        Ok(None) => break,
                        Err(error) => Err(from_sqlx(error)),
                    };
                    let failed = next.is_err();
                    // A consumer that went away stops the reading.
                    if feed.push(next).await.is_err() || failed {
                        break;
                    }
                }
            })
        });
        stream
    }
}

/// As postgres-es classifies them: a taken key is a conflict, a lost connection is one.
fn from_sqlx(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}
