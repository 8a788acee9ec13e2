use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;

use chrono::Utc;
use cqrs_es::Aggregate;
use flowlytix_aggregates::{Subscription, SubscriptionEvent};
use sqlx::QueryBuilder;

use flowlytix_eventstore::with_conn;
use flowlytix_eventstore::{Conn, EventRecord};

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
    /// The event cannot be read or applied: it is recorded in `dead_letters` and its
    /// aggregate moves on past it, so that nothing else waits behind it.
    Parked,
}

impl Outcome {
    /// Whether the bus may forget the event (acknowledge it).
    pub fn is_done(self) -> bool {
        !matches!(self, Outcome::Gap)
    }
}

/// An event due for a projector (the next of its aggregate), typed when it is a
/// subscription event.
pub struct Due<'a> {
    pub record: &'a EventRecord,
    pub event: Option<SubscriptionEvent>,
}

pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ProjectionError>> + Send + 'a>>;

/// Turns events into read-model rows. `apply_batch` runs inside the transaction that also
/// records the versions, so it must only write through `db`. It gets only the events that
/// are due, each aggregate's in order, and should write each row once per batch.
pub trait Projector: Send + Sync {
    /// Names the durable consumer and the checkpoint.
    fn name(&self) -> &'static str;
    /// Tables this projector owns, emptied by a replay.
    fn tables(&self) -> &'static [&'static str];
    fn apply_batch<'a>(&'a self, db: Conn<'a>, events: &'a [Due<'a>]) -> ApplyFuture<'a>;
}

/// The typed form of a record, if it is a subscription event (other aggregates' events are
/// counted but no projector reads them).
pub fn decode(record: &EventRecord) -> Result<Option<SubscriptionEvent>, ProjectionError> {
    if record.aggregate_type != Subscription::TYPE {
        return Ok(None);
    }
    record
        .decode_as()
        .map(Some)
        .map_err(|e| ProjectionError::BadPayload(record.message_id(), e))
}

type AggregateKey = (String, String);

fn key(record: &EventRecord) -> AggregateKey {
    (record.aggregate_type.clone(), record.aggregate_id.clone())
}

/// Applies `records` exactly once and in per-aggregate order, within the caller's
/// transaction: the aggregates' versions are read (and on PostgreSQL locked) once, the due
/// events are applied in one call, and versions and the checkpoint are written once.
/// Returns the outcome of each record, in order. `stream_sequence` is the bus's sequence of
/// the last record, recorded for lag reporting.
pub async fn project_batch(
    mut db: Conn<'_>,
    projector: &dyn Projector,
    records: &[EventRecord],
    stream_sequence: Option<u64>,
) -> Result<Vec<Outcome>, ProjectionError> {
    if records.is_empty() {
        return Ok(vec![]);
    }
    let keys: BTreeSet<AggregateKey> = records.iter().map(key).collect();
    let mut versions = lock_versions(db.reborrow(), projector.name(), &keys).await?;
    let before = versions.clone();
    let mut outcomes = Vec::with_capacity(records.len());
    let mut due = Vec::new();
    let mut parked = Vec::new();
    let mut held_back: BTreeSet<AggregateKey> = BTreeSet::new();
    for record in records {
        let key = key(record);
        let applied = versions.get(&key).copied().unwrap_or(0);
        let outcome = if held_back.contains(&key) || record.sequence > applied + 1 {
            // Everything after a missing event of the same aggregate waits for it.
            held_back.insert(key);
            Outcome::Gap
        } else if record.sequence <= applied {
            Outcome::Skipped
        } else {
            versions.insert(key, record.sequence);
            match decode(record) {
                Ok(event) => {
                    due.push(Due { record, event });
                    Outcome::Applied
                }
                Err(error) => {
                    parked.push((record, error.to_string()));
                    Outcome::Parked
                }
            }
        };
        outcomes.push(outcome);
    }
    if due.is_empty() && parked.is_empty() {
        return Ok(outcomes);
    }
    projector.apply_batch(db.reborrow(), &due).await?;
    for (record, error) in &parked {
        record_dead_letter(db.reborrow(), projector.name(), record, error).await?;
    }
    let changed: Vec<(&AggregateKey, i64)> = versions
        .iter()
        .filter(|(key, version)| before.get(*key) != Some(*version))
        .map(|(key, version)| (key, *version))
        .collect();
    write_versions(db.reborrow(), projector.name(), &changed).await?;
    let handled = (due.len() + parked.len()) as i64;
    advance_checkpoint(db, projector.name(), handled, stream_sequence).await?;
    Ok(outcomes)
}

/// One event through [`project_batch`].
pub async fn project(
    db: Conn<'_>,
    projector: &dyn Projector,
    event: &EventRecord,
    stream_sequence: Option<u64>,
) -> Result<Outcome, ProjectionError> {
    let outcomes =
        project_batch(db, projector, std::slice::from_ref(event), stream_sequence).await?;
    Ok(outcomes.first().copied().unwrap_or(Outcome::Skipped))
}

/// Records an event that cannot be applied and moves its aggregate past it, in the caller's
/// transaction (for an event that failed alone, after its retries).
pub async fn park(
    mut db: Conn<'_>,
    projector: &dyn Projector,
    record: &EventRecord,
    error: &str,
) -> Result<Outcome, ProjectionError> {
    let key = key(record);
    let keys = BTreeSet::from([key.clone()]);
    let versions = lock_versions(db.reborrow(), projector.name(), &keys).await?;
    let applied = versions.get(&key).copied().unwrap_or(0);
    if record.sequence <= applied {
        return Ok(Outcome::Skipped);
    }
    if record.sequence > applied + 1 {
        return Ok(Outcome::Gap);
    }
    record_dead_letter(db.reborrow(), projector.name(), record, error).await?;
    write_versions(db.reborrow(), projector.name(), &[(&key, record.sequence)]).await?;
    advance_checkpoint(db, projector.name(), 1, None).await?;
    Ok(Outcome::Parked)
}

/// The applied version of each aggregate. On PostgreSQL the rows are created if missing
/// (version 0) and locked, in key order: a concurrent batch touching the same aggregates
/// waits for this one's commit and then sees its versions, so no event is applied twice.
/// (A first event has no row to lock; inserting one makes a concurrent insert of the same
/// key wait on ours.) SQLite transactions here hold the single write lock already.
async fn lock_versions(
    db: Conn<'_>,
    projector: &str,
    keys: &BTreeSet<AggregateKey>,
) -> Result<HashMap<AggregateKey, i64>, sqlx::Error> {
    let mut versions = HashMap::with_capacity(keys.len());
    let postgres = db.dialect() == crate::Dialect::Postgres;
    with_conn!(db, c => {
        if postgres {
            let mut insert = QueryBuilder::new(
                "insert into projection_versions (projector, aggregate_type, aggregate_id, version) ",
            );
            insert.push_values(keys, |mut row, (aggregate_type, aggregate_id)| {
                row.push_bind(projector)
                    .push_bind(aggregate_type)
                    .push_bind(aggregate_id)
                    .push_bind(0_i64);
            });
            insert.push(" on conflict do nothing");
            insert.build().execute(&mut *c).await?;
        }
        // A join against the keys, not `(type, id) in (…)`: SQLite uses the primary key
        // for a join but scans every row of the projector for a row-value `in` list.
        let mut select = QueryBuilder::new("with keys (aggregate_type, aggregate_id) as (");
        select.push_values(keys, |mut row, (aggregate_type, aggregate_id)| {
            row.push_bind(aggregate_type).push_bind(aggregate_id);
        });
        select
            .push(
                ") select v.aggregate_type, v.aggregate_id, v.version from keys
                 join projection_versions v on v.aggregate_type = keys.aggregate_type
                     and v.aggregate_id = keys.aggregate_id and v.projector = ",
            )
            .push_bind(projector);
        if postgres {
            select.push(" order by v.aggregate_type, v.aggregate_id for update of v");
        }
        let rows: Vec<(String, String, i64)> = select.build_query_as().fetch_all(&mut *c).await?;
        for (aggregate_type, aggregate_id, version) in rows {
            versions.insert((aggregate_type, aggregate_id), version);
        }
    });
    Ok(versions)
}

pub(crate) async fn write_versions(
    db: Conn<'_>,
    projector: &str,
    versions: &[(&AggregateKey, i64)],
) -> Result<(), sqlx::Error> {
    if versions.is_empty() {
        return Ok(());
    }
    with_conn!(db, c => {
        let mut upsert = QueryBuilder::new(
            "insert into projection_versions (projector, aggregate_type, aggregate_id, version) ",
        );
        upsert.push_values(versions, |mut row, ((aggregate_type, aggregate_id), version)| {
            row.push_bind(projector)
                .push_bind(aggregate_type)
                .push_bind(aggregate_id)
                .push_bind(*version);
        });
        upsert.push(
            " on conflict (projector, aggregate_type, aggregate_id) do update set version = excluded.version",
        );
        upsert.build().execute(&mut *c).await?;
    });
    Ok(())
}

async fn advance_checkpoint(
    db: Conn<'_>,
    projector: &str,
    handled: i64,
    stream_sequence: Option<u64>,
) -> Result<(), sqlx::Error> {
    let max = db.dialect().pick("greatest", "max");
    let sql = format!(
        "insert into projector_checkpoints (projector, stream_sequence, events_applied, updated_at)
         values ($1, $2, $3, $4)
         on conflict (projector) do update set
             stream_sequence = {max}(projector_checkpoints.stream_sequence, excluded.stream_sequence),
             events_applied = projector_checkpoints.events_applied + excluded.events_applied,
             updated_at = excluded.updated_at"
    );
    with_conn!(db, c => {
        sqlx::query(&sql)
            .bind(projector)
            .bind(stream_sequence.map_or(0, |s| s as i64))
            .bind(handled)
            .bind(Utc::now())
            .execute(&mut *c)
            .await?;
    });
    Ok(())
}

pub(crate) async fn record_dead_letter(
    db: Conn<'_>,
    projector: &str,
    record: &EventRecord,
    error: &str,
) -> Result<(), sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query(
            "insert into dead_letters (projector, aggregate_type, aggregate_id, sequence, position,
                 event_type, error, parked_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8)
             on conflict (projector, aggregate_type, aggregate_id, sequence) do nothing",
        )
        .bind(projector)
        .bind(&record.aggregate_type)
        .bind(&record.aggregate_id)
        .bind(record.sequence)
        .bind(record.position)
        .bind(&record.event_type)
        .bind(error)
        .bind(Utc::now())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Sets a projector's count of handled events (after a replay), keeping its bus position.
pub(crate) async fn set_events_applied(
    db: Conn<'_>,
    projector: &str,
    events: i64,
) -> Result<(), sqlx::Error> {
    with_conn!(db, c => {
        sqlx::query(
            "insert into projector_checkpoints (projector, stream_sequence, events_applied, updated_at)
             values ($1, 0, $2, $3)
             on conflict (projector) do update set
                 events_applied = excluded.events_applied, updated_at = excluded.updated_at",
        )
        .bind(projector)
        .bind(events)
        .bind(Utc::now())
        .execute(&mut *c)
        .await?;
    });
    Ok(())
}

/// Empties the read models of `projectors`, and their per-aggregate versions and dead
/// letters, for a replay. The checkpoints keep their bus positions, which remain true; their applied
/// counters are set by the replay.
pub async fn reset_read_models(
    mut db: Conn<'_>,
    projectors: &[Box<dyn Projector>],
) -> Result<(), sqlx::Error> {
    let tables = projectors.iter().flat_map(|p| p.tables().iter().copied());
    for table in tables {
        with_conn!(db.reborrow(), c => {
            sqlx::query(&format!("delete from {table}")).execute(&mut *c).await?;
        });
    }
    // Only these projectors' bookkeeping: others (the webhook queue) are not replayed, and
    // must keep their place in the stream.
    for projector in projectors {
        for table in ["projection_versions", "dead_letters"] {
            with_conn!(db.reborrow(), c => {
                sqlx::query(&format!("delete from {table} where projector = $1"))
                    .bind(projector.name())
                    .execute(&mut *c)
                    .await?;
            });
        }
    }
    Ok(())
}
