//! Rebuilding every read model from the event store alone, in commit order, through the same
//! projectors that run live. One transaction: readers see the old tables until it commits.

use sqlx::PgPool;

use crate::log::{events_after, LogCursor};
use crate::projector::{project, reset_read_models, Outcome, ProjectionError};
use crate::all_projectors;

const BATCH: i64 = 1000;

/// Returns how many events were replayed.
pub async fn replay(pool: &PgPool) -> Result<u64, ProjectionError> {
    let projectors = all_projectors();
    let mut tx = pool.begin().await?;
    reset_read_models(&mut tx, &projectors).await?;
    let mut cursor = LogCursor::default();
    let mut replayed = 0;
    loop {
        let batch = events_after(&mut *tx, cursor, BATCH).await?;
        let Some((last, _)) = batch.last() else { break };
        cursor = *last;
        for (_, event) in &batch {
            for projector in &projectors {
                // In commit order every aggregate's events come in sequence, so a gap here
                // would mean a corrupt log.
                if project(&mut tx, projector.as_ref(), event, None).await? == Outcome::Gap {
                    return Err(ProjectionError::Gap(event.message_id()));
                }
            }
            replayed += 1;
        }
    }
    tx.commit().await?;
    Ok(replayed)
}
