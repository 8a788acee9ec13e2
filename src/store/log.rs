//! One aggregate's stream in the event log, in SQL: its events after a version, its latest
//! snapshot with the events after it, and appending to it.
//!
//! This replaces postgres-es / sqlite-es's repository because the executor needs what they
//! do not give: each appended event's global position back from the insert itself
//! (`returning`), the tail of a stream after a snapshot, and snapshots of its own (cqrs-es
//! 0.5's apply events twice). The rows are the ones those crates write: the same seven
//! columns, `payload` and `metadata` bound as the same `serde_json::Value`s (the event, and
//! the metadata map), so the publisher, lookups, feed and projections read them as before;
//! `global_position`, `tx_id` and `recorded_at` are left to their defaults.

use flowlytix_projections::{with_conn, with_db, Conn, Db};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::Row;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the event store failed")]
    Database(#[from] sqlx::Error),
    #[error("cannot encode an event")]
    Encode(#[from] serde_json::Error),
    #[error("the events of {aggregate_id} jump from version {version} to {found}")]
    Gap {
        aggregate_id: String,
        version: u64,
        found: u64,
    },
    #[error("{inserted} rows came back from appending {sent} events")]
    Unconfirmed { sent: usize, inserted: usize },
    /// A group commit's append whose outcome its writer could not tell (nothing of the
    /// group was committed, or the writer stopped).
    #[error("the append was not confirmed: {0}")]
    Unanswered(&'static str),
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// One of the sequences is taken: another writer appended first.
    #[error("another writer appended to the aggregate first")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<E> {
    pub sequence: u64,
    pub position: i64,
    pub payload: E,
}

/// An event about to be appended.
pub struct NewEvent {
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

/// A snapshot row; `payload` is still the stored text, which may not even be JSON any more
/// (SQLite keeps whatever text it is given), let alone this version's state.
pub struct StoredSnapshot {
    pub last_sequence: u64,
    pub last_position: i64,
    pub format: i32,
    pub payload: String,
}

/// A snapshot to write with an append, of the state its last event leads to.
pub struct NewSnapshot {
    pub format: i32,
    pub payload: Value,
}

/// The aggregate's events with a sequence above `after`, in order. Payloads decode straight
/// into the event type (no intermediate `Value`).
pub async fn events_after<E: DeserializeOwned>(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
    after: u64,
) -> Result<Vec<StoredEvent<E>>, StoreError> {
    let events = with_db!(db, pool => {
        let rows = sqlx::query(
            "select sequence, global_position, payload from events
             where aggregate_type = $1 and aggregate_id = $2 and sequence > $3
             order by sequence",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(as_i64(after))
        .fetch_all(pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredEvent {
                    sequence: as_u64(row.try_get::<i64, _>(0)?),
                    position: row.try_get(1)?,
                    payload: row.try_get::<Json<E>, _>(2)?.0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?
    });
    Ok(events)
}

/// What a load without a cached state reads: the aggregate's snapshot, if it has one, and
/// its events after that snapshot (all of them without one).
pub struct SnapshotAndTail<E> {
    pub snapshot: Option<StoredSnapshot>,
    pub events: Vec<StoredEvent<E>>,
}

/// The snapshot and the events after it in one statement: a cold load is the first read of
/// every validation of a license not yet cached, and a second round trip cost as much again.
pub async fn snapshot_and_tail<E: DeserializeOwned>(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<SnapshotAndTail<E>, StoreError> {
    let mut tail = SnapshotAndTail {
        snapshot: None,
        events: Vec::new(),
    };
    with_db!(db, pool => {
        // The snapshot row (kind 0) sorts first; `format` means nothing on event rows.
        let rows = sqlx::query(
            "select 0 as kind, last_sequence, last_position, format, cast(payload as text)
               from snapshots where aggregate_type = $1 and aggregate_id = $2
             union all
             select 1, sequence, global_position, 0, cast(payload as text)
               from events
              where aggregate_type = $1 and aggregate_id = $2
                and sequence > coalesce((select last_sequence from snapshots
                                          where aggregate_type = $1 and aggregate_id = $2), 0)
             order by 1, 2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            let sequence = as_u64(row.try_get::<i64, _>(1)?);
            let position = row.try_get(2)?;
            // Borrowed from the row: an event decodes from it without a copy of its text.
            let payload: &str = row.try_get(4)?;
            if row.try_get::<i32, _>(0)? == 0 {
                tail.snapshot = Some(StoredSnapshot {
                    last_sequence: sequence,
                    last_position: position,
                    format: row.try_get(3)?,
                    payload: payload.to_owned(),
                });
            } else {
                tail.events.push(StoredEvent {
                    sequence,
                    position,
                    payload: serde_json::from_str(payload)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                });
            }
        }
    });
    Ok(tail)
}

/// One aggregate's new events (consecutive sequences), with the snapshot of the state they
/// lead to when one is due.
pub struct Append {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub events: Vec<NewEvent>,
    pub metadata: Value,
    pub snapshot: Option<NewSnapshot>,
}

/// Appends the events and returns their global positions in order. On PostgreSQL this is
/// one `insert … returning` statement, atomic on its own, or with a snapshot a transaction
/// of the insert and the snapshot, so a snapshot never runs ahead of the events it folds.
/// On SQLite, appends waiting at the same time are committed together (`group_commit`).
pub async fn append(db: &Db, append: Append) -> Result<Vec<i64>, AppendError> {
    let positions = match db {
        Db::Sqlite(_) => super::group_commit::append(db, append).await?,
        Db::Postgres(_) if append.snapshot.is_none() => {
            let mut connection = db.acquire().await.map_err(classify)?;
            append.write(connection.conn()).await?
        }
        Db::Postgres(_) => {
            let mut tx = db.begin().await.map_err(classify)?;
            let positions = append.write(tx.conn()).await?;
            tx.commit().await.map_err(classify)?;
            positions
        }
    };
    APPENDED.notify_waiters();
    Ok(positions)
}

/// Woken after every append in this process: the publishers here wait on it instead of a
/// database notification. A NOTIFY would make PostgreSQL serialize every appending
/// transaction's commit (it holds a database-wide lock from before the commit record is
/// written until it is flushed), which capped activations at a few hundred a second; other
/// instances' appends are found by the publisher's poll.
pub static APPENDED: tokio::sync::Notify = tokio::sync::Notify::const_new();

impl Append {
    /// Writes the events, and the snapshot if any, on `connection` (the caller's
    /// transaction when there is a snapshot).
    pub async fn write(&self, mut connection: Conn<'_>) -> Result<Vec<i64>, AppendError> {
        let positions = insert_events(
            connection.reborrow(),
            self.aggregate_type,
            &self.aggregate_id,
            &self.events,
            &self.metadata,
        )
        .await?;
        let (Some(snapshot), Some(last), Some(&last_position)) =
            (&self.snapshot, self.events.last(), positions.last())
        else {
            return Ok(positions);
        };
        with_conn!(connection, conn => {
            sqlx::query(
                "insert into snapshots
                     (aggregate_type, aggregate_id, last_sequence, last_position, format, payload)
                 values ($1, $2, $3, $4, $5, $6)
                 on conflict (aggregate_type, aggregate_id) do update
                 set last_sequence = excluded.last_sequence,
                     last_position = excluded.last_position,
                     format = excluded.format,
                     payload = excluded.payload,
                     taken_at = excluded.taken_at
                 where snapshots.last_sequence < excluded.last_sequence",
            )
            .bind(self.aggregate_type)
            .bind(&self.aggregate_id)
            .bind(as_i64(last.sequence))
            .bind(last_position)
            .bind(snapshot.format)
            .bind(&snapshot.payload)
            .execute(&mut *conn)
            .await
            .map(|_| ())
        })
        .map_err(classify)?;
        Ok(positions)
    }
}

async fn insert_events(
    connection: Conn<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    events: &[NewEvent],
    metadata: &Value,
) -> Result<Vec<i64>, AppendError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut returned: Vec<(i64, i64)> = with_conn!(connection, conn => {
        let mut insert = sqlx::QueryBuilder::new(
            "insert into events
                 (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
        );
        insert.push_values(events, |mut row, event| {
            row.push_bind(aggregate_type)
                .push_bind(aggregate_id)
                .push_bind(as_i64(event.sequence))
                .push_bind(event.event_type.as_str())
                .push_bind(event.event_version.as_str())
                .push_bind(&event.payload)
                .push_bind(metadata);
        });
        // The sequence comes back too: neither backend promises `returning` rows in the
        // order of the `values`.
        insert.push(" returning sequence, global_position");
        insert.build_query_as().fetch_all(&mut *conn).await
    })
    .map_err(classify)?;
    if returned.len() != events.len() {
        return Err(StoreError::Unconfirmed {
            sent: events.len(),
            inserted: returned.len(),
        }
        .into());
    }
    returned.sort_unstable();
    Ok(returned.into_iter().map(|(_, position)| position).collect())
}

/// A taken sequence (the unique key on aggregate type, id and sequence) is a conflict.
pub(super) fn classify(error: sqlx::Error) -> AppendError {
    match &error {
        sqlx::Error::Database(e) if e.is_unique_violation() => AppendError::Conflict,
        _ => AppendError::Store(error.into()),
    }
}

/// Sequences are stored as signed 64-bit integers; no stream gets near 2^63 events.
fn as_i64(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

fn as_u64(sequence: i64) -> u64 {
    u64::try_from(sequence).unwrap_or(0)
}
