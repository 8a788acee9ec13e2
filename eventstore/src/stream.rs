//! One aggregate's stream in the event log: its events after a version, and its latest
//! snapshot with the events after it.

use serde::de::DeserializeOwned;
use sqlx::types::Json;
use sqlx::Row;

use crate::db::Db;
use crate::error::StoreError;
use crate::with_db;

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<E> {
    pub sequence: u64,
    pub position: i64,
    pub payload: E,
}

/// A snapshot row; `payload` is still the stored text, which may not even be JSON any more
/// (SQLite keeps whatever text it is given), let alone this version's state.
pub struct StoredSnapshot {
    pub last_sequence: u64,
    pub last_position: i64,
    pub format: i32,
    pub payload: String,
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

/// Sequences are stored as signed 64-bit integers; no stream gets near 2^63 events.
pub(crate) fn as_i64(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

pub(crate) fn as_u64(sequence: i64) -> u64 {
    u64::try_from(sequence).unwrap_or(0)
}
