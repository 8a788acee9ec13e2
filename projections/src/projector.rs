use std::future::Future;
use std::pin::Pin;

use chrono::Utc;

use crate::db::Conn;
use crate::log::EventRecord;
use crate::with_conn;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("event {0} has a payload this projector cannot read: {1}")]
    BadPayload(String, serde_json::Error),
    #[error("event {0} came before its predecessor")]
    Gap(String),
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Already applied (a redelivery or a re-publication).
    Skipped,
    /// An earlier event of the same aggregate has not been applied yet; retry later.
    Gap,
}

pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProjectionError>> + Send + 'a>>;

/// Turns events into read-model rows. `apply` runs inside the transaction that also records
/// the version, so it must only write through `db`.
pub trait Projector: Send + Sync {
    /// Names the durable consumer and the checkpoint.
    fn name(&self) -> &'static str;
    /// Tables this projector owns, emptied by a replay.
    fn tables(&self) -> &'static [&'static str];
    fn apply<'a>(&'a self, db: Conn<'a>, event: &'a EventRecord) -> ApplyFuture<'a>;
}

/// Applies `event` exactly once and in per-aggregate order, within the caller's transaction.
/// `stream_sequence` is the bus's sequence number, recorded for lag reporting.
pub async fn project(
    mut db: Conn<'_>,
    projector: &dyn Projector,
    event: &EventRecord,
    stream_sequence: Option<u64>,
) -> Result<Outcome, ProjectionError> {
    // SQLite transactions here hold the database's single write lock from their start.
    let lock = db.dialect().pick(" for update", "");
    let sql = format!(
        "select version from projection_versions
         where projector = $1 and aggregate_type = $2 and aggregate_id = $3{lock}"
    );
    let applied: Option<i64> = with_conn!(db.reborrow(), c => {
        sqlx::query_scalar(&sql)
            .bind(projector.name())
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .fetch_optional(&mut *c)
            .await?
    });
    let has_row = applied.is_some();
    let applied = applied.unwrap_or(0);
    if event.sequence <= applied {
        return Ok(Outcome::Skipped);
    }
    if event.sequence > applied + 1 {
        return Ok(Outcome::Gap);
    }
    if has_row {
        // The row is locked (`for update` above; SQLite's writer lock): a concurrent
        // delivery waits, then sees this version and skips.
        with_conn!(db.reborrow(), c => {
            sqlx::query(
                "update projection_versions set version = $4
                 where projector = $1 and aggregate_type = $2 and aggregate_id = $3",
            )
            .bind(projector.name())
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .execute(&mut *c)
            .await?;
        });
    } else {
        // A first event has no row to lock: the insert of a concurrent delivery of it
        // conflicts on the primary key and waits for ours. Whichever commits first applied
        // it; the other finds the row there and skips, so two deliveries never both apply
        // it (`on conflict do update` would let the second apply it again).
        let inserted = with_conn!(db.reborrow(), c => {
            sqlx::query(
                "insert into projection_versions (projector, aggregate_type, aggregate_id, version)
                 values ($1, $2, $3, $4)
                 on conflict (projector, aggregate_type, aggregate_id) do nothing",
            )
            .bind(projector.name())
            .bind(&event.aggregate_type)
            .bind(&event.aggregate_id)
            .bind(event.sequence)
            .execute(&mut *c)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            return Ok(Outcome::Skipped);
        }
    }
    projector.apply(db.reborrow(), event).await?;
    let max = db.dialect().pick("greatest", "max");
    let sql = format!(
        "insert into projector_checkpoints (projector, stream_sequence, events_applied, updated_at)
         values ($1, $2, 1, $3)
         on conflict (projector) do update set
             stream_sequence = {max}(projector_checkpoints.stream_sequence, excluded.stream_sequence),
             events_applied = projector_checkpoints.events_applied + 1,
             updated_at = excluded.updated_at"
    );
    with_conn!(db, c => {
        sqlx::query(&sql)
            .bind(projector.name())
            .bind(stream_sequence.map_or(0, |s| s as i64))
            .bind(Utc::now())
            .execute(&mut *c)
            .await?;
    });
    Ok(Outcome::Applied)
}

/// Empties every read model and the per-aggregate versions, for a replay. The checkpoints
/// keep their bus positions, which remain true; their applied counters start again from 0,
/// since the replay applies every event again.
pub async fn reset_read_models(
    mut db: Conn<'_>,
    projectors: &[Box<dyn Projector>],
) -> Result<(), sqlx::Error> {
    let mut tables: Vec<&str> = projectors
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    tables.push("projection_versions");
    for table in tables {
        with_conn!(db.reborrow(), c => {
            sqlx::query(&format!("delete from {table}")).execute(&mut *c).await?;
        });
    }
    with_conn!(db, c => {
        sqlx::query("update projector_checkpoints set events_applied = 0").execute(&mut *c).await?;
    });
    Ok(())
}
