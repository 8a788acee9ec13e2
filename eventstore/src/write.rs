//! The SQL of one append: its events in one multi-row insert, and the snapshot it carries.

use serde_json::Value;

use crate::db::Conn;
use crate::error::{classify, AppendError, StoreError};
use crate::stream::as_i64;
use crate::with_conn;

/// An event about to be appended.
pub struct NewEvent {
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

/// A snapshot to write with an append, of the state its last event leads to.
pub struct NewSnapshot {
    pub format: i32,
    pub payload: Value,
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
