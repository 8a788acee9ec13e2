//! The global event feed, in commit order, for auditors and other services.

use flowlytix_eventstore::log::{cursor_at, events_after, LogCursor};
use flowlytix_eventstore::Db;
use flowlytix_eventstore::EventRecord;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// The `next_after` of the previous page (a position); omit to start at the beginning.
    pub after: Option<i64>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
    /// 1 to 500; default 100.
    pub limit: Option<i64>,
    /// Only events whose metadata names this actor (the admin panel's filter; not a
    /// parameter of the JSON feed).
    #[serde(skip)]
    #[param(ignore)]
    pub actor: Option<String>,
}

pub enum FeedError {
    UnknownCursor,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for FeedError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// A page of the feed and the cursor for the next one. Filtering happens after reading in
/// commit order, so a page may hold fewer than `limit` items while more follow.
pub async fn page(
    db: &Db,
    query: &FeedQuery,
) -> Result<(Vec<EventRecord>, Option<i64>), FeedError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let mut connection = db.acquire().await?;
    let mut cursor = match query.after {
        None | Some(0) => LogCursor::default(),
        Some(position) => cursor_at(connection.conn(), position)
            .await?
            .ok_or(FeedError::UnknownCursor)?,
    };
    let mut items = Vec::new();
    // Read a bounded number of raw batches so a rare filter cannot make one request scan
    // the whole log.
    for _ in 0..10 {
        let batch = events_after(connection.conn(), cursor, limit).await?;
        let exhausted = (batch.len() as i64) < limit;
        for (event_cursor, event) in batch {
            cursor = event_cursor;
            let wanted = query
                .aggregate_type
                .as_ref()
                .is_none_or(|t| *t == event.aggregate_type)
                && query
                    .aggregate_id
                    .as_ref()
                    .is_none_or(|id| *id == event.aggregate_id)
                && query
                    .event_type
                    .as_ref()
                    .is_none_or(|t| *t == event.event_type)
                && query
                    .actor
                    .as_ref()
                    .is_none_or(|a| event.metadata["actor"].as_str() == Some(a.as_str()));
            if wanted {
                items.push(event);
                if items.len() as i64 == limit {
                    return Ok((items, Some(cursor.position)));
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let next = (cursor != LogCursor::default()).then_some(cursor.position);
    Ok((items, next.or(query.after)))
}
