//! Read-your-writes: every command response carries the event-log position it reached, and
//! list endpoints take `min_position` and wait, within a bound, until the read models have
//! applied the event at that position.

use std::time::Duration;

use flowlytix_projections::{with_db, Db};
use tokio::time::Instant;

const MAX_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// True once `projector` has applied the event at `min_position` (immediately when none is
/// asked for, or for an unknown position); false if the bound ran out first.
pub async fn wait_for_position(
    db: &Db,
    projector: &str,
    min_position: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let Some(position) = min_position else {
        return Ok(true);
    };
    let event: Option<(String, String, i64)> = with_db!(db, pool => {
        sqlx::query_as("select aggregate_type, aggregate_id, sequence from events where global_position = $1")
            .bind(position)
            .fetch_optional(pool)
            .await?
    });
    let Some((aggregate_type, aggregate_id, sequence)) = event else {
        return Ok(true);
    };
    let deadline = Instant::now() + MAX_WAIT;
    loop {
        let applied: Option<i64> = with_db!(db, pool => {
            sqlx::query_scalar(
                "select version from projection_versions
                 where projector = $1 and aggregate_type = $2 and aggregate_id = $3",
            )
            .bind(projector)
            .bind(&aggregate_type)
            .bind(&aggregate_id)
            .fetch_optional(pool)
            .await?
        });
        if applied.is_some_and(|v| v >= sequence) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}
