use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;

/// An event as the log holds it, for auditors and (later) the feed and projectors.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredEvent {
    /// Position in the global event log.
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

impl From<EventRow> for StoredEvent {
    fn from(row: EventRow) -> Self {
        // postgres-es stores the serde form of the event enum, `{"<EventType>": {fields}}`;
        // readers want the fields.
        let payload = match row.payload {
            Value::Object(mut wrapper)
                if wrapper.len() == 1 && wrapper.contains_key(&row.event_type) =>
            {
                wrapper.remove(&row.event_type).unwrap_or(Value::Null)
            }
            other => other,
        };
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

/// Which events to read.
pub struct EventFilter<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
}

/// One aggregate's history, in order.
pub async fn aggregate_history(
    pool: &PgPool,
    filter: EventFilter<'_>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows: Vec<EventRow> = sqlx::query_as(
        "select global_position, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata, recorded_at
         from events
         where aggregate_type = $1 and aggregate_id = $2
         order by sequence",
    )
    .bind(filter.aggregate_type)
    .bind(filter.aggregate_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(StoredEvent::from).collect())
}
