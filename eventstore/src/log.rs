//! Reading the event log: one aggregate's history, the log in commit order, and the record
//! shape that the publisher puts on the bus and projectors consume.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use utoipa::ToSchema;

use crate::db::{Conn, Dialect};
use crate::with_conn;

/// An event as the log holds it. This is also the body of every message published to
/// JetStream, so its field names are a contract for other consumers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventRecord {
    /// Position in the global event log (assigned at insert; see `events_after` for commit
    /// order).
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
    /// The event as the aggregate's event enum (serde's externally tagged form,
    /// `{"<EventType>": {..}}`), read from the type name and payload without a copy of them.
    pub fn decode_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        crate::tagged::from_tagged(&self.event_type, &self.payload)
    }

    /// The JetStream de-duplication id: a re-published event is recognised as the same.
    pub fn message_id(&self) -> String {
        format!(
            "{}:{}:{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }
}

pub const REDACTED: &str = "[redacted]";

/// An event row as stored: its payload is the serde form of the aggregate's event enum, as
/// text. Replay decodes typed events straight from it, with no `Value` in between.
#[derive(FromRow)]
pub struct StoredEvent {
    /// The writing transaction's id as text (sqlx has no xid8 type). Named apart from the
    /// column so that `order by tx_id` sorts by the xid8, not by this text.
    pub tx_text: String,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// As text: a row whose JSON serde cannot read (a number out of its range, say) must
    /// not stop whoever reads the log; it becomes an unreadable payload instead.
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
}

/// The JSON of a stored column, or a marker saying why it cannot be read.
fn parse_stored(text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|error| serde_json::json!({ UNREADABLE: error.to_string() }))
}

/// The key of the object that stands in for a payload or metadata that cannot be read.
pub const UNREADABLE: &str = "$unreadable";

impl StoredEvent {
    pub fn cursor(&self) -> LogCursor {
        LogCursor::from_text(&self.tx_text, self.global_position)
    }
}

impl From<StoredEvent> for EventRecord {
    fn from(row: StoredEvent) -> Self {
        // The stores keep the serde form of the event enum, `{"<EventType>": {fields}}`;
        // readers want the fields.
        let mut payload = match parse_stored(&row.payload) {
            Value::Object(mut wrapper)
                if wrapper.len() == 1 && wrapper.contains_key(&row.event_type) =>
            {
                wrapper.remove(&row.event_type).unwrap_or(Value::Null)
            }
            other => other,
        };
        // An admin's argon2 hash is for login alone: auditors, the bus and exports get a
        // placeholder.
        // A webhook endpoint's sealed signing secret likewise stays in the events table.
        for credential in ["password_hash", "sealed_secret"] {
            if let Some(value) = payload.get_mut(credential) {
                *value = Value::String(REDACTED.into());
            }
        }
        Self {
            position: row.global_position,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload,
            metadata: parse_stored(&row.metadata),
            recorded_at: row.recorded_at,
        }
    }
}

/// The columns of an event row, as [`StoredEvent`] reads them; SQLite has no transaction ids
/// (its single writer makes positions commit-ordered), so it reports 0.
pub fn columns(dialect: Dialect) -> &'static str {
    dialect.pick(
        "tx_id::text as tx_text, global_position, aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload::text as payload, metadata::text as metadata, recorded_at",
        "'0' as tx_text, global_position, aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata, recorded_at",
    )
}

/// One aggregate's history, in order.
pub async fn aggregate_history(
    conn: Conn<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let sql = format!(
        "select {} from events where aggregate_type = $1 and aggregate_id = $2 order by sequence",
        columns(conn.dialect())
    );
    let rows: Vec<StoredEvent> = with_conn!(conn, c => {
        sqlx::query_as(&sql).bind(aggregate_type).bind(aggregate_id).fetch_all(&mut *c).await?
    });
    Ok(rows.into_iter().map(EventRecord::from).collect())
}

/// A point in commit order. On PostgreSQL, events are read in `(tx_id, global_position)`
/// order and only below the oldest transaction still running, so a transaction that commits
/// late is never skipped. On SQLite, `tx_id` is 0 and the position alone is commit order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogCursor {
    pub tx_id: u64,
    pub position: i64,
}

impl LogCursor {
    /// From a row that carries its transaction id as text (sqlx has no xid8 type; SQLite's
    /// rows say `0`).
    pub fn from_text(tx_id: &str, position: i64) -> Self {
        Self {
            tx_id: tx_id.parse().unwrap_or(0),
            position,
        }
    }
}

/// Up to `limit` committed events after `cursor`, in commit order, with the cursor of each.
pub async fn events_after(
    conn: Conn<'_>,
    cursor: LogCursor,
    limit: i64,
) -> Result<Vec<(LogCursor, EventRecord)>, sqlx::Error> {
    Ok(stored_events_after(conn, cursor, limit)
        .await?
        .into_iter()
        .map(|row| (row.cursor(), EventRecord::from(row)))
        .collect())
}

/// The `where … order by` of events after a cursor (`$1` its tx id as text, `$2` its
/// position), in commit order.
fn after_in_commit_order(dialect: Dialect) -> &'static str {
    dialect.pick(
        "where (events.tx_id, global_position) > ($1::text::xid8, $2)
           and events.tx_id < pg_snapshot_xmin(pg_current_snapshot())
         order by events.tx_id, global_position",
        "where global_position > $2 order by global_position",
    )
}

/// [`events_after`], as stored.
pub async fn stored_events_after(
    conn: Conn<'_>,
    cursor: LogCursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let dialect = conn.dialect();
    let filter = after_in_commit_order(dialect);
    let sql = format!("select {} from events {filter} limit $3", columns(dialect));
    let rows: Vec<StoredEvent> = with_conn!(conn, c => {
        sqlx::query_as(&sql)
            .bind(cursor.tx_id.to_string())
            .bind(cursor.position)
            .bind(limit)
            .fetch_all(&mut *c)
            .await?
    });
    Ok(rows)
}

/// The parts of an event row a replay folds. Not its metadata, type names or time: only
/// an event that cannot be folded needs them, and it is read again whole
/// ([`stored_event_at`]); leaving them out spares a replay a fifth of its reading.
#[derive(FromRow)]
pub struct FoldRow {
    pub tx_text: String,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: String,
}

impl FoldRow {
    pub fn cursor(&self) -> LogCursor {
        LogCursor::from_text(&self.tx_text, self.global_position)
    }
}

/// Every committed event after `cursor`, in commit order, handed to `each` as it arrives:
/// one query, streamed, so that the database sends the next rows while `each` works.
pub async fn for_each_event_to_fold_after<E: From<sqlx::Error>>(
    conn: Conn<'_>,
    cursor: LogCursor,
    mut each: impl FnMut(FoldRow) -> Result<(), E>,
) -> Result<(), E> {
    let dialect = conn.dialect();
    let filter = after_in_commit_order(dialect);
    let columns = dialect.pick(
        "tx_id::text as tx_text, global_position, aggregate_type, aggregate_id, sequence, \
         payload::text as payload",
        "'0' as tx_text, global_position, aggregate_type, aggregate_id, sequence, payload",
    );
    let sql = format!("select {columns} from events {filter}");
    with_conn!(conn, c => {
        let mut rows = sqlx::query_as::<_, FoldRow>(&sql)
            .bind(cursor.tx_id.to_string())
            .bind(cursor.position)
            .fetch(&mut *c);
        while let Some(row) = rows.try_next().await? {
            each(row)?;
        }
    });
    Ok(())
}

/// The event at `position`, whole.
pub async fn stored_event_at(
    conn: Conn<'_>,
    position: i64,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "select {} from events where global_position = $1",
        columns(conn.dialect())
    );
    Ok(with_conn!(conn, c => {
        sqlx::query_as(&sql).bind(position).fetch_optional(&mut *c).await?
    }))
}

/// The commit-order cursor of the event at `position`, if there is one.
pub async fn cursor_at(conn: Conn<'_>, position: i64) -> Result<Option<LogCursor>, sqlx::Error> {
    let sql = conn.dialect().pick(
        "select tx_id::text, global_position from events where global_position = $1",
        "select '0', global_position from events where global_position = $1",
    );
    let row: Option<(String, i64)> = with_conn!(conn, c => {
        sqlx::query_as(sql).bind(position).fetch_optional(&mut *c).await?
    });
    Ok(row.map(|(tx_id, position)| LogCursor::from_text(&tx_id, position)))
}
