//! Rebuilding every read model from the event store alone, while servers keep serving.
//!
//! The log is read in commit order and folded in memory, with the same fold the live
//! projectors use; nothing is written meanwhile, so readers and projectors go on with the
//! old rows. Then one transaction swaps the rebuilt rows in: it holds back projector writes
//! (readers keep reading the old rows until it commits), replaces the tables' contents with
//! multi-row inserts, and catches up from where the fold ended through the live projection
//! path, so events committed during the rebuild are in too. Events published after that are
//! applied by the projectors as usual, or skipped by version if the catch-up had them.

use std::collections::HashMap;

use cqrs_es::Aggregate;
use flowlytix_aggregates::{Subscription, SubscriptionEvent};

use crate::all_projectors;
use crate::analytics::DailyCounts;
use crate::db::{Conn, Db, Dialect};
use crate::log::{events_after, stored_events_after, EventRecord, LogCursor, StoredEvent};
use crate::projector::{
    project_batch, record_dead_letter, reset_read_models, set_events_applied, write_versions,
    ProjectionError,
};
use crate::subscriptions::SubscriptionsModel;
use crate::with_conn;

/// Events read per query while folding.
const READ_BATCH: i64 = 10_000;
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
}

type AggregateKey = (String, String);

/// The rebuilt read models, in memory.
#[derive(Default)]
struct Rebuilt {
    subscriptions: SubscriptionsModel,
    analytics: DailyCounts,
    versions: HashMap<AggregateKey, i64>,
    parked: Vec<(EventRecord, String)>,
    events: u64,
}

impl Rebuilt {
    fn fold(&mut self, stored: StoredEvent) -> Result<(), ProjectionError> {
        let version = self
            .versions
            .entry((stored.aggregate_type.clone(), stored.aggregate_id.clone()))
            .or_insert(0);
        // In commit order every aggregate's events come in sequence: anything else would be
        // a corrupt log.
        if stored.sequence != *version + 1 {
            return Err(ProjectionError::Gap(EventRecord::from(stored).message_id()));
        }
        *version = stored.sequence;
        self.events += 1;
        if stored.aggregate_type != Subscription::TYPE {
            return Ok(());
        }
        // Straight from the stored text to the typed event: the hot path of a replay.
        match serde_json::from_str::<SubscriptionEvent>(&stored.payload) {
            Ok(event) => {
                if let Ok(id) = uuid::Uuid::parse_str(&stored.aggregate_id) {
                    self.subscriptions.apply(id, stored.sequence, &event);
                }
                self.analytics.apply(&event);
            }
            Err(error) => self
                .parked
                .push((EventRecord::from(stored), error.to_string())),
        }
        Ok(())
    }
}

/// Rebuilds every read model; see the module's comment for how it stays online.
pub async fn replay(
    db: &Db,
    progress: &(dyn Fn(ReplayProgress) + Sync),
) -> Result<ReplayReport, ProjectionError> {
    let mut rebuilt = Rebuilt::default();
    let mut cursor = LogCursor::default();
    {
        let mut connection = db.acquire().await?;
        let total: i64 = with_conn!(connection.conn(), c => {
            sqlx::query_scalar("select count(*) from events").fetch_one(&mut *c).await?
        });
        let total = total.max(0) as u64;
        loop {
            let batch = stored_events_after(connection.conn(), cursor, READ_BATCH).await?;
            let Some(last) = batch.last() else { break };
            cursor = last.cursor();
            for stored in batch {
                rebuilt.fold(stored)?;
            }
            progress(ReplayProgress::Folding {
                done: rebuilt.events,
                total: total.max(rebuilt.events),
            });
        }
    }
    progress(ReplayProgress::Writing {
        subscriptions: rebuilt.subscriptions.subscription_count(),
        devices: rebuilt.subscriptions.device_count(),
    });
    let projectors = all_projectors();
    let mut tx = db.begin().await?;
    hold_back_projector_writes(tx.conn()).await?;
    reset_read_models(tx.conn(), &projectors).await?;
    let Rebuilt {
        subscriptions,
        analytics,
        versions,
        parked,
        events,
    } = rebuilt;
    subscriptions.save(tx.conn()).await?;
    analytics.save(tx.conn()).await?;
    let versions: Vec<(&AggregateKey, i64)> = versions.iter().map(|(k, v)| (k, *v)).collect();
    for projector in &projectors {
        for chunk in versions.chunks(1000) {
            write_versions(tx.conn(), projector.name(), chunk).await?;
        }
        for (record, error) in &parked {
            record_dead_letter(tx.conn(), projector.name(), record, error).await?;
        }
        set_events_applied(tx.conn(), projector.name(), events as i64).await?;
    }
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
    tx.commit().await?;
    Ok(ReplayReport {
        events,
        caught_up,
        parked: parked.len() as u64,
    })
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
                "lock table projection_versions, rm_subscriptions, rm_devices, rm_daily_counts,
                     dead_letters, projector_checkpoints in share row exclusive mode",
            )
            .execute(&mut *c)
            .await?;
        });
    }
    Ok(())
}
