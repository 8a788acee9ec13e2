//! Reading the event log: one aggregate's history, the global feed in commit order, and the
//! record shape that the publisher puts on the bus and projectors consume.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use utoipa::ToSchema;

/// An event as the log holds it. This is also the body of every message published to
/// JetStream, so its field names are a contract for other consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventRecord {
    /// Position in the global event log (assigned at insert; see `feed` for commit order).
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's number within its aggregate, from 1.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event's fields.
    pub payload: Value,
    /// `actor, request_id, ip, user_agent, occurred_at`.
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl EventRecord {
    /// The payload in the serde form of the aggregate's event enum, `{"<EventType>": {..}}`,
    /// to deserialize a typed event from.
    pub fn tagged_payload(&self) -> Value {
        serde_json::json!({ self.event_type.clone(): self.payload })
    }

    /// The JetStream de-duplication id: a re-published event is recognised as the same.
    pub fn message_id(&self) -> String {
        format!("{}:{}:{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }
}

#[derive(FromRow)]
struct EventRow {
    global_position: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
}

impl From<EventRow> for EventRecord {
    fn from(row: EventRow) -> Self {
        // postgres-es stores the serde form of the event enum, `{"<EventType>": {fields}}`;
        // readers want the fields.
        let mut payload = match row.payload {
            Value::Object(mut wrapper) if wrapper.len() == 1 && wrapper.contains_key(&row.event_type) => {
                wrapper.remove(&row.event_type).unwrap_or(Value::Null)
            }
            other => other,
        };
        // An admin's argon2 hash is for login alone: auditors, the bus and exports get a
        // placeholder.
        if let Some(hash) = payload.get_mut("password_hash") {
            *hash = Value::String(REDACTED.into());
        }
        Self {
            position: row.global_position,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload,
            metadata: row.metadata,
            recorded_at: row.recorded_at,
        }
    }
}

pub const REDACTED: &str = "[redacted]";

const COLUMNS: &str = "global_position, aggregate_type, aggregate_id, sequence, event_type, \
                       event_version, payload, metadata, recorded_at";

/// One aggregate's history, in order.
pub async fn aggregate_history(
    db: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "select {COLUMNS} from events where aggregate_type = $1 and aggregate_id = $2 order by sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(EventRecord::from).collect())
}

/// A point in commit order: the writing transaction's id and the event's position. Events
/// are read in `(tx_id, global_position)` order and only below the oldest transaction still
/// running, so a transaction that commits late is never skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogCursor {
    pub tx_id: u64,
    pub position: i64,
}

/// Up to `limit` committed events after `cursor`, in commit order, with the cursor of each.
pub async fn events_after(
    db: impl PgExecutor<'_>,
    cursor: LogCursor,
    limit: i64,
) -> Result<Vec<(LogCursor, EventRecord)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        tx_id: String,
        #[sqlx(flatten)]
        event: EventRow,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select tx_id::text as tx_id, {COLUMNS} from events
         where (tx_id, global_position) > ($1::text::xid8, $2)
           and tx_id < pg_snapshot_xmin(pg_current_snapshot())
         order by tx_id, global_position
         limit $3"
    ))
    .bind(cursor.tx_id.to_string())
    .bind(cursor.position)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let cursor = LogCursor { tx_id: row.tx_id.parse().unwrap_or(0), position: row.event.global_position };
            (cursor, EventRecord::from(row.event))
        })
        .collect())
}

/// The commit-order cursor of the event at `position`, if there is one.
pub async fn cursor_at(db: impl PgExecutor<'_>, position: i64) -> Result<Option<LogCursor>, sqlx::Error> {
    let row: Option<(String, i64)> =
        sqlx::query_as("select tx_id::text, global_position from events where global_position = $1")
            .bind(position)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(tx_id, position)| LogCursor { tx_id: tx_id.parse().unwrap_or(0), position }))
}
