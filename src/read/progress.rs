//! How far the read side has got: the number of events in the log (a running figure, not a
//! count of the whole log per call) and what each projector has applied.

use flowlytix_projections::{enabled_projectors, with_db, Db};
use tokio::sync::Mutex;

/// Events counted so far, up to a cursor in commit order. On PostgreSQL only events below
/// the transaction horizon are settled into the running count (a transaction still in
/// flight may yet commit with a lower position); those above it are counted afresh each
/// time, and they are few: only what is being written right now.
#[derive(Default)]
pub struct EventCount {
    settled: Mutex<Settled>,
}

#[derive(Default)]
struct Settled {
    tx_id: String,
    position: i64,
    count: i64,
}

impl EventCount {
    /// Every event in the log now.
    pub async fn total(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let mut settled = self.settled.lock().await;
        match db {
            Db::Postgres(pool) => {
                let since = if settled.tx_id.is_empty() {
                    "0"
                } else {
                    settled.tx_id.as_str()
                };
                let (unsettled, tx_id, position, newly): (
                    i64,
                    Option<String>,
                    Option<i64>,
                    Option<i64>,
                ) = sqlx::query_as(
                    "with horizon as (select pg_snapshot_xmin(pg_current_snapshot()) as xmin)
                         select (select count(*) from events where tx_id >= horizon.xmin),
                                newly.tx_id, newly.global_position, newly.n
                         from horizon left join lateral (
                             select tx_id::text as tx_id, global_position, count(*) over () as n
                             from events
                             where (tx_id, global_position) > ($1::text::xid8, $2)
                               and tx_id < horizon.xmin
                             -- events.tx_id: the bare name would be the text column above,
                             -- which sorts 99999 after 100000.
                             order by events.tx_id desc, global_position desc
                             limit 1
                         ) newly on true",
                )
                .bind(since)
                .bind(settled.position)
                .fetch_one(pool)
                .await?;
                if let (Some(tx_id), Some(position), Some(newly)) = (tx_id, position, newly) {
                    settled.tx_id = tx_id;
                    settled.position = position;
                    settled.count += newly;
                }
                Ok(settled.count + unsettled)
            }
            // One writer at a time: positions are already in commit order.
            Db::Sqlite(pool) => {
                let (newly, last): (i64, Option<i64>) = sqlx::query_as(
                    "select count(*), max(global_position) from events where global_position > $1",
                )
                .bind(settled.position)
                .fetch_one(pool)
                .await?;
                if let Some(last) = last {
                    settled.position = last;
                    settled.count += newly;
                }
                Ok(settled.count)
            }
        }
    }
}

/// A projector and the number of events it has applied (each projector is given, and
/// counts, every event, including those it ignores).
pub struct ProjectorProgress {
    pub name: &'static str,
    pub events_applied: i64,
    /// Events it could not apply, set aside in `dead_letters` (counted as handled).
    pub parked: i64,
}

/// A projector's name and a number.
type PerProjector = (String, i64);

/// The progress of the projectors this server runs (analytics only when it is enabled).
pub async fn projectors(db: &Db, analytics: bool) -> Result<Vec<ProjectorProgress>, sqlx::Error> {
    let (rows, parked): (Vec<PerProjector>, Vec<PerProjector>) = with_db!(db, pool => {
        let rows = sqlx::query_as("select projector, events_applied from projector_checkpoints")
            .fetch_all(pool)
            .await?;
        let parked = sqlx::query_as("select projector, count(*) from dead_letters group by projector")
            .fetch_all(pool)
            .await?;
        (rows, parked)
    });
    let count = |rows: &[(String, i64)], name: &str| {
        rows.iter()
            .find(|(projector, _)| projector == name)
            .map_or(0, |(_, n)| *n)
    };
    Ok(enabled_projectors(analytics)
        .iter()
        .map(|projector| ProjectorProgress {
            name: projector.name(),
            events_applied: count(&rows, projector.name()),
            parked: count(&parked, projector.name()),
        })
        .collect())
}
