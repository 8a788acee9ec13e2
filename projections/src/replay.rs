//! Rebuilding every read model from the event store alone, in commit order, through the same
//! projectors that run live. One transaction: readers see the old tables until it commits.

use crate::all_projectors;
use crate::db::Db;
use crate::log::{events_after, LogCursor};
use crate::projector::{project, reset_read_models, Outcome, ProjectionError};

const BATCH: i64 = 1000;

/// Returns how many events were replayed.
pub async fn replay(db: &Db) -> Result<u64, ProjectionError> {
    let projectors = all_projectors();
    let mut tx = db.begin().await?;
    reset_read_models(tx.conn(), &projectors).await?;
    let mut cursor = LogCursor::default();
    let mut replayed = 0;
    loop {
        let batch = events_after(tx.conn(), cursor, BATCH).await?;
        let Some((last, _)) = batch.last() else { break };
        cursor = *last;
        for (_, event) in &batch {
            for projector in &projectors {
                // In commit order every aggregate's events come in sequence, so a gap here
                // would mean a corrupt log.
                if project(tx.conn(), projector.as_ref(), event, None).await? == Outcome::Gap {
                    return Err(ProjectionError::Gap(event.message_id()));
                }
            }
            replayed += 1;
        }
    }
    tx.commit().await?;
    Ok(replayed)
}
