//! What the publisher reads and writes besides the log itself ([`crate::log::events_after`]):
//! its checkpoint, the commit-order cursor of the last event it handed to the bus, and a
//! count of what is still unpublished.

use chrono::Utc;

use crate::db::Conn;
use crate::log::LogCursor;
use crate::with_conn;

/// The cursor the publisher stopped at.
pub async fn checkpoint(db: Conn<'_>) -> Result<LogCursor, sqlx::Error> {
    let sql = db.dialect().pick(
        "select tx_id::text, global_position from publisher_checkpoint where id = 1",
        "select tx_id, global_position from publisher_checkpoint where id = 1",
    );
    let (tx_id, position): (String, i64) =
        with_conn!(db, c => sqlx::query_as(sql).fetch_one(&mut *c).await)?;
    Ok(LogCursor::from_text(&tx_id, position))
}

/// Records that everything up to `cursor` was published.
pub async fn set_checkpoint(db: Conn<'_>, cursor: LogCursor) -> Result<(), sqlx::Error> {
    let sql = db.dialect().pick(
        "update publisher_checkpoint set tx_id = $1::text::xid8, global_position = $2, updated_at = $3 where id = 1",
        "update publisher_checkpoint set tx_id = $1, global_position = $2, updated_at = $3 where id = 1",
    );
    with_conn!(db, c => {
        sqlx::query(sql)
            .bind(cursor.tx_id.to_string())
            .bind(cursor.position)
            .bind(Utc::now())
            .execute(&mut *c)
            .await
            .map(|_| ())
    })
}

/// How many events after `cursor` are committed, counted up to 100 000: the count is a
/// health figure, and counting a long backlog whole would cost more than it tells.
pub async fn backlog(db: Conn<'_>, cursor: LogCursor) -> Result<i64, sqlx::Error> {
    let sql = db.dialect().pick(
        "select count(*) from (select 1 from events where (tx_id, global_position) > ($1::text::xid8, $2)
         limit 100000) as pending",
        "select count(*) from (select 1 from events where global_position > $2 limit 100000) as pending",
    );
    Ok(with_conn!(db, c => {
        sqlx::query_scalar(sql).bind(cursor.tx_id.to_string()).bind(cursor.position).fetch_one(&mut *c).await?
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::sqlite_store;
    use crate::{append, Append, NewEvent};

    #[tokio::test]
    async fn the_checkpoint_moves_and_the_backlog_counts_what_is_after_it() {
        let db = sqlite_store("publisher").await;
        let mut connection = db.acquire().await.unwrap();
        assert_eq!(
            checkpoint(connection.conn()).await.unwrap(),
            LogCursor::default()
        );
        let positions = append(
            &db,
            Append {
                aggregate_type: "TestCounter",
                aggregate_id: "c-1".into(),
                events: (1..=3)
                    .map(|sequence| NewEvent {
                        sequence,
                        event_type: "Added".into(),
                        event_version: "1".into(),
                        payload: json!({ "Added": 1 }),
                    })
                    .collect(),
                metadata: json!({}),
                snapshot: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            backlog(connection.conn(), LogCursor::default())
                .await
                .unwrap(),
            3
        );
        let published = LogCursor {
            tx_id: 0,
            position: positions[1],
        };
        set_checkpoint(connection.conn(), published).await.unwrap();
        assert_eq!(checkpoint(connection.conn()).await.unwrap(), published);
        assert_eq!(backlog(connection.conn(), published).await.unwrap(), 1);
    }
}
