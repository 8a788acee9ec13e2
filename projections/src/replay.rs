//! Rebuilding every read model from the event store alone, while servers keep serving.
//!
//! The log is read in commit order, one streamed query, and folded in memory as the rows
//! arrive, with the same fold the live projectors use; nothing is written meanwhile, so
//! readers and projectors go on with the old rows. Then one transaction swaps the rebuilt
//! rows in: it holds back projector writes (readers keep reading the old rows until it
//! commits), replaces the tables' contents (PostgreSQL: `COPY … FROM STDIN`; SQLite:
//! multi-row inserts), and catches up from where the fold ended through the live projection
//! path, so events committed during the rebuild are in too. Events published after that are
//! applied by the projectors as usual, or skipped by version if the catch-up had them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use flowlytix_aggregates::{Subscription, SubscriptionEvent};
use flowlytix_eventstore::log::{
    events_after, for_each_event_to_fold_after, stored_event_at, EventRecord, FoldRow, LogCursor,
};
use flowlytix_eventstore::{with_conn, Conn, Db, Dialect};
use sqlx::PgConnection;

use crate::all_projectors;
use crate::analytics::DailyCounts;
use crate::catalogue::{CatalogueEvent, CatalogueModel};
use crate::copy::CopyIn;
use crate::projector::{
    project_batch, record_dead_letter, reset_read_models, set_events_applied, write_versions,
    ProjectionError, Projector,
};
use crate::subscriptions::SubscriptionsModel;

/// Events folded between progress reports.
const PROGRESS_EVERY: u64 = 10_000;
/// Events per projection batch while catching up.
const CATCH_UP_BATCH: i64 = 1_000;

/// How far a replay has got, for a progress bar or a log line.
#[derive(Debug, Clone, Copy)]
pub enum ReplayProgress {
    /// `done` of about `total` events folded.
    Folding { done: u64, total: u64 },
    /// The fold is over; the rows are being written.
    Writing {
        subscriptions: usize,
        devices: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events folded from the log.
    pub events: u64,
    /// Events committed during the fold, applied while swapping.
    pub caught_up: u64,
    /// Events that could not be read, recorded in `dead_letters`.
    pub parked: u64,
    /// Reading and folding the log.
    pub folding: Duration,
    /// Emptying the tables and writing the rebuilt rows.
    pub writing: Duration,
    /// Applying what was committed meanwhile, and committing the swap.
    pub catching_up: Duration,
}

type AggregateKey = (String, String);

/// The rebuilt read models, in memory.
#[derive(Default)]
struct Rebuilt {
    subscriptions: SubscriptionsModel,
    analytics: DailyCounts,
    catalogue: CatalogueModel,
    versions: HashMap<AggregateKey, i64>,
    /// Events that could not be folded: their positions, and why.
    parked: Vec<(i64, String)>,
    events: u64,
}

impl Rebuilt {
    fn fold(&mut self, row: FoldRow) -> Result<(), ProjectionError> {
        let FoldRow {
            global_position,
            aggregate_type,
            aggregate_id,
            sequence,
            payload,
            ..
        } = row;
        let subscription = (aggregate_type == Subscription::TYPE)
            .then(|| uuid::Uuid::parse_str(&aggregate_id).ok());
        let row_kind = (subscription.is_none()).then(|| {
            (
                aggregate_type.clone(),
                uuid::Uuid::parse_str(&aggregate_id).ok(),
            )
        });
        // The row's names become the key (no copy per event).
        let version = self.versions.entry((aggregate_type, aggregate_id));
        let expected = match &version {
            Entry::Occupied(known) => *known.get() + 1,
            Entry::Vacant(_) => 1,
        };
        // In commit order every aggregate's events come in sequence: anything else would be
        // a corrupt log.
        if sequence != expected {
            let (aggregate_type, aggregate_id) = version.key();
            return Err(ProjectionError::Gap(format!(
                "{aggregate_type}:{aggregate_id}:{sequence}"
            )));
        }
        *version.or_insert(0) = sequence;
        self.events += 1;
        let Some(id) = subscription else {
            return self.fold_catalogue(row_kind, global_position, sequence, &payload);
        };
        // Straight from the stored text to the typed event: the hot path of a replay.
        match serde_json::from_str::<SubscriptionEvent>(&payload) {
            Ok(event) => {
                if let Some(id) = id {
                    self.subscriptions.apply(id, sequence, &event);
                }
                self.analytics.apply(&event);
            }
            Err(error) => self.parked.push((global_position, error.to_string())),
        }
        Ok(())
    }
}

impl Rebuilt {
    /// Folds a catalogue aggregate's event (others but subscriptions' have no read model).
    fn fold_catalogue(
        &mut self,
        kind: Option<(String, Option<uuid::Uuid>)>,
        global_position: i64,
        sequence: i64,
        payload: &str,
    ) -> Result<(), ProjectionError> {
        let Some((aggregate_type, Some(id))) = kind else {
            return Ok(());
        };
        match CatalogueEvent::parse(&aggregate_type, payload) {
            Some(Ok(event)) => self.catalogue.apply(id, sequence, event),
            Some(Err(error)) => self.parked.push((global_position, error.to_string())),
            None => {}
        }
        Ok(())
    }
}

/// Rebuilds every read model; see the module's comment for how it stays online.
pub async fn replay(
    db: &Db,
    progress: &(dyn Fn(ReplayProgress) + Sync),
) -> Result<ReplayReport, ProjectionError> {
    let started = Instant::now();
    let mut rebuilt = Rebuilt::default();
    let mut cursor = LogCursor::default();
    {
        let mut connection = db.acquire().await?;
        let total: i64 = with_conn!(connection.conn(), c => {
            sqlx::query_scalar("select count(*) from events").fetch_one(&mut *c).await?
        });
        let total = total.max(0) as u64;
        for_each_event_to_fold_after(connection.conn(), cursor, |stored| {
            cursor = stored.cursor();
            rebuilt.fold(stored)?;
            if rebuilt.events % PROGRESS_EVERY == 0 {
                progress(ReplayProgress::Folding {
                    done: rebuilt.events,
                    total: total.max(rebuilt.events),
                });
            }
            Ok::<_, ProjectionError>(())
        })
        .await?;
        progress(ReplayProgress::Folding {
            done: rebuilt.events,
            total: total.max(rebuilt.events),
        });
    }
    let folding = started.elapsed();
    progress(ReplayProgress::Writing {
        subscriptions: rebuilt.subscriptions.subscription_count(),
        devices: rebuilt.subscriptions.device_count(),
    });
    let projectors = all_projectors();
    let mut tx = db.begin().await?;
    hold_back_projector_writes(tx.conn()).await?;
    let cache_before = swap_sqlite_cache_size(tx.conn(), -SQLITE_REBUILD_CACHE_KIB).await?;
    reset_read_models(tx.conn(), &projectors).await?;
    let Rebuilt {
        subscriptions,
        analytics,
        catalogue,
        versions,
        parked,
        events,
    } = rebuilt;
    match tx.conn() {
        // Fresh tables: streamed in with COPY.
        Conn::Postgres(c) => {
            subscriptions.copy_into(c).await?;
            copy_versions(c, &projectors, &versions).await?;
        }
        Conn::Sqlite(c) => {
            let mut conn = Conn::Sqlite(c);
            subscriptions.save(conn.reborrow()).await?;
            let versions: Vec<(&AggregateKey, i64)> =
                versions.iter().map(|(k, v)| (k, *v)).collect();
            for projector in &projectors {
                for chunk in versions.chunks(1000) {
                    write_versions(conn.reborrow(), projector.name(), chunk).await?;
                }
            }
        }
    }
    analytics.save(tx.conn()).await?;
    catalogue.save(tx.conn()).await?;
    let mut unfolded = Vec::with_capacity(parked.len());
    for (position, error) in &parked {
        if let Some(stored) = stored_event_at(tx.conn(), *position).await? {
            unfolded.push((EventRecord::from(stored), error));
        }
    }
    for projector in &projectors {
        for (record, error) in &unfolded {
            record_dead_letter(tx.conn(), projector.name(), record, error).await?;
        }
        set_events_applied(tx.conn(), projector.name(), events as i64).await?;
    }
    let writing = started.elapsed() - folding;
    let mut caught_up = 0;
    loop {
        let batch = events_after(tx.conn(), cursor, CATCH_UP_BATCH).await?;
        let Some((last, _)) = batch.last() else { break };
        cursor = *last;
        let records: Vec<EventRecord> = batch.into_iter().map(|(_, r)| r).collect();
        for projector in &projectors {
            project_batch(tx.conn(), projector.as_ref(), &records, None).await?;
        }
        caught_up += records.len() as u64;
    }
    if let Some(size) = cache_before {
        swap_sqlite_cache_size(tx.conn(), size).await?;
    }
    tx.commit().await?;
    Ok(ReplayReport {
        events,
        caught_up,
        parked: parked.len() as u64,
        folding,
        writing,
        catching_up: started.elapsed() - folding - writing,
    })
}

/// The page cache of the connection that writes a rebuild on SQLite. SQLite keeps at most its
/// cache's worth (2 MB by default) of a transaction's changed pages in memory and writes the
/// rest to the WAL as it goes, the same index pages over and over; a rebuild changes hundreds
/// of MB in one transaction. It is memory only: the commit is as durable as any other
/// (`synchronous=FULL`). At 100 000 subscriptions (800 001 events) writing took 7.4-8.4 s
/// instead of 12.5-14.4 s.
const SQLITE_REBUILD_CACHE_KIB: i64 = 64 * 1024;

/// Sets a SQLite connection's page cache (SQLite's unit: negative is KiB) and returns what it
/// was; nothing on PostgreSQL.
async fn swap_sqlite_cache_size(db: Conn<'_>, size: i64) -> Result<Option<i64>, sqlx::Error> {
    let Conn::Sqlite(c) = db else {
        return Ok(None);
    };
    let before: i64 = sqlx::query_scalar("pragma cache_size")
        .fetch_one(&mut *c)
        .await?;
    sqlx::query(&format!("pragma cache_size = {size}"))
        .execute(&mut *c)
        .await?;
    Ok(Some(before))
}

/// Every projector's per-aggregate versions, into `projection_versions` (emptied of theirs).
async fn copy_versions(
    conn: &mut PgConnection,
    projectors: &[Box<dyn Projector>],
    versions: &HashMap<AggregateKey, i64>,
) -> Result<(), sqlx::Error> {
    let mut copy = CopyIn::start(
        conn,
        "projection_versions",
        "projector, aggregate_type, aggregate_id, version",
    )
    .await?;
    for projector in projectors {
        for ((aggregate_type, aggregate_id), version) in versions {
            copy.field(projector.name())
                .field(aggregate_type)
                .field(aggregate_id)
                .field(*version);
            copy.end_row().await?;
        }
    }
    copy.finish().await?;
    Ok(())
}

/// Makes projectors of every instance wait until the swap commits, without blocking
/// readers. `projection_versions` comes first: it is the first table a projector's
/// transaction writes, so one that got there earlier finishes before the swap and a later
/// one waits at its start (any other order can deadlock with a projector midway). (SQLite:
/// the transaction already holds the single write lock; its readers go on in WAL mode.)
async fn hold_back_projector_writes(db: Conn<'_>) -> Result<(), sqlx::Error> {
    if db.dialect() == Dialect::Postgres {
        with_conn!(db, c => {
            sqlx::query(
                "lock table projection_versions, rm_subscriptions, rm_devices, rm_policy_seats, rm_daily_counts,
                     rm_products, rm_entitlements, rm_policies, dead_letters, projector_checkpoints in share row exclusive mode",
            )
            .execute(&mut *c)
            .await?;
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn current(conn: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("pragma cache_size")
            .fetch_one(conn)
            .await
    }

    #[tokio::test]
    async fn the_rebuild_cache_is_set_and_what_it_was_comes_back() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let default = current(&mut conn).await.unwrap();
        let before = swap_sqlite_cache_size(Conn::Sqlite(&mut conn), -SQLITE_REBUILD_CACHE_KIB)
            .await
            .unwrap();
        assert_eq!(before, Some(default));
        assert_eq!(current(&mut conn).await.unwrap(), -SQLITE_REBUILD_CACHE_KIB);
        swap_sqlite_cache_size(Conn::Sqlite(&mut conn), default)
            .await
            .unwrap();
        assert_eq!(current(&mut conn).await.unwrap(), default);
    }
}
