//! Load → decide → append, for any aggregate: the write path every command takes.
//!
//! Aggregates stay in a bounded in-memory cache between commands, and the store keeps a
//! snapshot every [`SNAPSHOT_INTERVAL`](flowlytix_eventstore::snapshot::SNAPSHOT_INTERVAL) events, so
//! neither a command nor a cold load replays a long history. Correctness never rests on the
//! cache: it rests on the store refusing an append whose sequence is taken (the unique
//! (aggregate_type, aggregate_id, sequence)), so any number of instances may share one
//! database.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope};
use flowlytix_eventstore::snapshot::{self, SNAPSHOT_FORMAT};
use flowlytix_eventstore::{stream, Append, AppendError, Db, NewEvent, NewSnapshot, StoreError};
use tokio::sync::Mutex;

use super::cache::{AggregateCache, Loaded};
use crate::monitoring::record;

/// Conflicting appends on a state fresh from the store are retried this many times (with
/// jitter) before answering 409. A conflict caused by a stale cached state is not counted:
/// it is followed at once by a load from the store, and happens at most once per command.
const MAX_ATTEMPTS: u32 = 5;
/// Commands on one aggregate are serialized in-process through one of these locks, so
/// same-instance contention never reaches the optimistic lock (and never becomes a 409),
/// and a cached entry only goes stale through another instance.
const LOCK_STRIPES: usize = 256;
/// Aggregates kept in memory per executor (one per aggregate type). A subscription with a
/// few devices takes a kilobyte or two, so this bounds the cache to some tens of megabytes.
pub const CACHE_CAPACITY: u64 = 10_000;

/// A command's name, for metrics. A guard that only checks a condition (`VerifyLicenseKey`)
/// has none: a command list is named after its first command that has one.
pub trait CommandName {
    fn command_name(&self) -> Option<&'static str>;
}

/// Events that say when they happened (the instant of the command that caused them).
pub trait Dated {
    fn at(&self) -> DateTime<Utc>;
}

impl Dated for flowlytix_aggregates::SubscriptionEvent {
    fn at(&self) -> DateTime<Utc> {
        flowlytix_aggregates::SubscriptionEvent::at(self)
    }
}

impl Dated for flowlytix_aggregates::PolicyEvent {
    fn at(&self) -> DateTime<Utc> {
        flowlytix_aggregates::PolicyEvent::at(self)
    }
}

impl Dated for flowlytix_aggregates::ProductEvent {
    fn at(&self) -> DateTime<Utc> {
        flowlytix_aggregates::ProductEvent::at(self)
    }
}

impl Dated for flowlytix_aggregates::EntitlementEvent {
    fn at(&self) -> DateTime<Utc> {
        flowlytix_aggregates::EntitlementEvent::at(self)
    }
}

/// Who did it, from where and when: stored with every event.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    /// An admin id, `license:<subscription id>` or `system`.
    pub actor: String,
    pub request_id: String,
    pub ip: String,
    pub user_agent: String,
    pub occurred_at: DateTime<Utc>,
}

impl EventMetadata {
    pub fn system(occurred_at: DateTime<Utc>) -> Self {
        Self {
            actor: "system".into(),
            request_id: String::new(),
            ip: String::new(),
            user_agent: String::new(),
            occurred_at,
        }
    }

    /// The stored form; with `traceparent` (the W3C trace context of the command that
    /// appends the events) when the command runs in a trace, so that publishing and
    /// projecting continue it.
    fn into_map(self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("actor".into(), self.actor),
            ("request_id".into(), self.request_id),
            ("ip".into(), self.ip),
            ("user_agent".into(), self.user_agent),
            (
                "occurred_at".into(),
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ]);
        if let Some(traceparent) = crate::telemetry::traces::current_traceparent() {
            map.insert(crate::telemetry::traces::TRACEPARENT.into(), traceparent);
        }
        map
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    #[error("expected version {expected}, found {actual}")]
    VersionMismatch { expected: u64, actual: u64 },
    #[error("the aggregate kept changing concurrently")]
    Conflict,
    #[error("the event store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl<E: std::error::Error> From<StoreError> for ExecuteError<E> {
    fn from(error: StoreError) -> Self {
        Self::Store(Box::new(error))
    }
}

/// The outcome of a command: the aggregate as it is now, its version (the sequence of its
/// last event) and the event-log position that version reached.
#[derive(Debug)]
pub struct Committed<A: Aggregate> {
    pub aggregate: A,
    pub version: u64,
    pub position: i64,
    pub events: Vec<EventEnvelope<A>>,
}

/// Loads an aggregate, lets it decide, and appends its events. cqrs-es's `CqrsFramework` is
/// not used because it returns neither the new state nor the sequence reached, and it does
/// not retry conflicts; its persisted store is not used because it cannot return positions
/// or load from snapshots of our own (see `flowlytix_eventstore`).
pub struct Executor<A: Aggregate> {
    db: Db,
    cache: AggregateCache<A>,
    locks: Arc<Vec<Mutex<()>>>,
    /// Whether this aggregate's state may be written to `snapshots`.
    snapshots: bool,
}

impl<A> Executor<A>
where
    A: Aggregate<Services = ()> + Clone + 'static,
    A::Command: Clone + CommandName,
{
    pub fn new(db: Db) -> Self {
        Self {
            db,
            cache: AggregateCache::new(CACHE_CAPACITY),
            locks: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(())).collect()),
            snapshots: true,
        }
    }

    /// For aggregates whose state holds a credential (an admin's password hash): it stays in
    /// `events` alone, the table that only the login path reads, never in `snapshots`. Their
    /// histories are short, so replaying them costs nothing.
    pub fn without_snapshots(db: Db) -> Self {
        Self {
            snapshots: false,
            ..Self::new(db)
        }
    }

    /// The aggregate's current state and version (0 if it has no events), as the store has
    /// it now, including what other instances appended: a cached state is served only after
    /// asking the store for the events after its version (one indexed range read that
    /// normally finds none), and any it finds are folded in and cached.
    pub async fn load(&self, id: &str) -> Result<(A, u64), ExecuteError<A::Error>> {
        let current = self.current(id).await?;
        Ok((current.aggregate.clone(), current.version))
    }

    /// The aggregate as it was at `instant` (its events up to then, replayed) and the
    /// version it had then; version 0 when it did not exist yet. Auditors' reads: replayed
    /// from the log every time, neither cached nor from a snapshot.
    pub async fn load_as_of(
        &self,
        id: &str,
        instant: DateTime<Utc>,
    ) -> Result<(A, u64), ExecuteError<A::Error>>
    where
        A::Event: Dated,
    {
        let events = stream::events_after::<A::Event>(&self.db, A::TYPE, id, 0).await?;
        let mut aggregate = A::default();
        let mut version = 0;
        for event in events {
            if event.payload.at() > instant {
                break;
            }
            aggregate.apply(event.payload);
            version = event.sequence;
        }
        Ok((aggregate, version))
    }

    /// Runs `commands` in order against one aggregate and appends all their events in one
    /// statement (or transaction), or none. With `expected_version`, a stale caller gets
    /// `VersionMismatch`.
    #[tracing::instrument(name = "command", level = "info", skip_all, fields(aggregate_type = A::TYPE, aggregate_id = %id))]
    pub async fn execute(
        &self,
        id: &str,
        commands: Vec<A::Command>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        let started = std::time::Instant::now();
        let name = commands
            .iter()
            .find_map(CommandName::command_name)
            .unwrap_or("none");
        let result = self
            .execute_timed(id, commands, metadata, expected_version)
            .await;
        record::command(A::TYPE, name, outcome(&result), started.elapsed());
        result
    }

    async fn execute_timed(
        &self,
        id: &str,
        commands: Vec<A::Command>,
        metadata: EventMetadata,
        expected_version: Option<u64>,
    ) -> Result<Committed<A>, ExecuteError<A::Error>> {
        let _guard = self.lock_for(id).lock().await;
        let metadata = metadata.into_map();
        let metadata_json = serde_json::to_value(&metadata).map_err(StoreError::from)?;
        // A cached state may be behind the store (another instance appended); one just
        // read from the store is current as of that read.
        let (mut current, mut fresh) = match self.cached(id) {
            Some(cached) => (cached, false),
            None => (self.load_cold(id).await?, true),
        };
        let mut contended = 0;
        loop {
            let decided = decide(&current, &commands, expected_version).await;
            let (aggregate, events) = match decided {
                Ok((aggregate, events)) if !events.is_empty() => (aggregate, events),
                // A refusal, a version mismatch or a command with nothing to record is
                // answered from the state it was decided on, and nothing in the store
                // would object to a stale one: bring it up to date first, and decide again
                // if other instances had moved the aggregate on.
                settled => {
                    if !fresh {
                        let caught_up = self.catch_up(id, current.clone()).await?;
                        fresh = true;
                        if caught_up.version != current.version {
                            current = caught_up;
                            continue;
                        }
                    }
                    return unchanged(settled, &current);
                }
            };
            match self
                .append(id, &current, aggregate, events, &metadata, &metadata_json)
                .await
            {
                Ok(committed) => return Ok(committed),
                Err(AppendError::Conflict) => {
                    self.cache.forget(id);
                    record::append_conflict(A::TYPE);
                    if fresh {
                        // A real race with another writer: back off a random little while.
                        contended += 1;
                        if contended >= MAX_ATTEMPTS {
                            return Err(ExecuteError::Conflict);
                        }
                        let jitter = u64::from(crate::crypto::random_bytes::<1>()[0]) % 20;
                        tokio::time::sleep(Duration::from_millis(5 * contended as u64 + jitter))
                            .await;
                    }
                    // Drop what this instance thought and take the store's word (latest
                    // snapshot and the events after it).
                    record::command_retry(A::TYPE);
                    current = self.load_cold(id).await?;
                    fresh = true;
                }
                Err(AppendError::Store(error)) => {
                    // Whether the append landed is unknown: keep no belief about it.
                    self.cache.forget(id);
                    return Err(error.into());
                }
            }
        }
    }

    /// Appends the decided events after `base`, with a snapshot when one is due, and
    /// caches the new state.
    async fn append(
        &self,
        id: &str,
        base: &Loaded<A>,
        aggregate: A,
        events: Vec<A::Event>,
        metadata: &HashMap<String, String>,
        metadata_json: &serde_json::Value,
    ) -> Result<Committed<A>, AppendError> {
        let first = base.version + 1;
        let rows = events
            .iter()
            .zip(first..)
            .map(|(event, sequence)| {
                Ok(NewEvent {
                    sequence,
                    event_type: event.event_type(),
                    event_version: event.event_version(),
                    payload: serde_json::to_value(event)?,
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(StoreError::from)?;
        let version = base.version + rows.len() as u64;
        let snapshot = if self.snapshots && snapshot::due(base.snapshot_version, version) {
            snapshot_of(id, &aggregate)
        } else {
            None
        };
        let snapshot_taken = snapshot.is_some();
        let positions = flowlytix_eventstore::append(
            &self.db,
            Append {
                aggregate_type: A::TYPE,
                aggregate_id: id.to_owned(),
                events: rows,
                metadata: metadata_json.clone(),
                snapshot,
            },
        )
        .await?;
        let position = positions.last().copied().unwrap_or(base.position);
        self.cache.remember(
            id,
            Arc::new(Loaded {
                aggregate: aggregate.clone(),
                version,
                position,
                snapshot_version: if snapshot_taken {
                    version
                } else {
                    base.snapshot_version
                },
            }),
        );
        let events = events
            .into_iter()
            .zip(first..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: id.to_owned(),
                sequence: sequence as usize,
                payload,
                metadata: metadata.clone(),
            })
            .collect();
        Ok(Committed {
            aggregate,
            version,
            position,
            events,
        })
    }

    /// The aggregate as the store has it now.
    async fn current(&self, id: &str) -> Result<Arc<Loaded<A>>, StoreError> {
        match self.cached(id) {
            Some(cached) => self.catch_up(id, cached).await,
            None => self.load_cold(id).await,
        }
    }

    /// `cached` with the events appended after it folded in (and cached).
    async fn catch_up(
        &self,
        id: &str,
        cached: Arc<Loaded<A>>,
    ) -> Result<Arc<Loaded<A>>, StoreError> {
        let newer = stream::events_after::<A::Event>(&self.db, A::TYPE, id, cached.version).await?;
        if newer.is_empty() {
            return Ok(cached);
        }
        let mut loaded = Loaded::clone(&cached);
        loaded.fold(id, newer)?;
        let loaded = Arc::new(loaded);
        self.cache.remember(id, loaded.clone());
        Ok(loaded)
    }

    /// The latest usable snapshot and the events after it (all of them without one), cached.
    async fn load_cold(&self, id: &str) -> Result<Arc<Loaded<A>>, StoreError> {
        let tail = stream::snapshot_and_tail::<A::Event>(&self.db, A::TYPE, id).await?;
        let mut loaded = Loaded::empty();
        let mut events = tail.events;
        if let Some(stored) = tail.snapshot {
            match snapshot::restore::<A>(&stored) {
                Some(aggregate) => {
                    loaded = Loaded {
                        aggregate,
                        version: stored.last_sequence,
                        position: stored.last_position,
                        snapshot_version: stored.last_sequence,
                    }
                }
                // The next append past the interval replaces it (`snapshot_version` is 0).
                None => {
                    tracing::info!(
                        aggregate_type = A::TYPE,
                        aggregate_id = id,
                        version = stored.last_sequence,
                        "ignoring a snapshot that does not decode to this version's state; replaying the events"
                    );
                    events = stream::events_after::<A::Event>(&self.db, A::TYPE, id, 0).await?;
                }
            }
        }
        loaded.fold(id, events)?;
        let loaded = Arc::new(loaded);
        self.cache.remember(id, loaded.clone());
        Ok(loaded)
    }

    /// The cached state, counted as a hit or a miss.
    fn cached(&self, id: &str) -> Option<Arc<Loaded<A>>> {
        let cached = self.cache.get(id);
        record::aggregate_cache(A::TYPE, cached.is_some());
        cached
    }

    fn lock_for(&self, id: &str) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        &self.locks[(hasher.finish() as usize) % LOCK_STRIPES]
    }
}

/// A command list's verdict: the new state and the events that lead to it, or a refusal.
type Decision<A> = Result<(A, Vec<<A as Aggregate>::Event>), ExecuteError<<A as Aggregate>::Error>>;

/// Checks the expected version, then lets a copy of the state handle each command in turn.
async fn decide<A>(
    current: &Loaded<A>,
    commands: &[A::Command],
    expected_version: Option<u64>,
) -> Decision<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone,
{
    if let Some(expected) = expected_version.filter(|e| *e != current.version) {
        return Err(ExecuteError::VersionMismatch {
            expected,
            actual: current.version,
        });
    }
    let mut aggregate = current.aggregate.clone();
    let sink = EventSink::default();
    for command in commands.iter().cloned() {
        aggregate
            .handle(command, &(), &sink)
            .await
            .map_err(ExecuteError::Domain)?;
    }
    Ok((aggregate, sink.collect().await))
}

/// A command's outcome as a metric label.
fn outcome<A: Aggregate>(result: &Result<Committed<A>, ExecuteError<A::Error>>) -> &'static str {
    match result {
        Ok(committed) if committed.events.is_empty() => "unchanged",
        Ok(_) => "committed",
        Err(ExecuteError::Domain(_)) => "refused",
        Err(ExecuteError::VersionMismatch { .. }) => "version_mismatch",
        Err(ExecuteError::Conflict) => "conflict",
        Err(ExecuteError::Store(_)) => "error",
    }
}

/// The answer to a command that recorded nothing: its refusal, or the state unchanged.
fn unchanged<A: Aggregate>(
    decided: Decision<A>,
    current: &Loaded<A>,
) -> Result<Committed<A>, ExecuteError<A::Error>> {
    let (aggregate, _) = decided?;
    Ok(Committed {
        aggregate,
        version: current.version,
        position: current.position,
        events: vec![],
    })
}

/// The state to store as a snapshot. Failing to encode one costs only speed, so it is
/// logged and the command goes on without it.
fn snapshot_of<A: Aggregate>(id: &str, aggregate: &A) -> Option<NewSnapshot> {
    match serde_json::to_value(aggregate) {
        Ok(payload) => Some(NewSnapshot {
            format: SNAPSHOT_FORMAT,
            payload,
        }),
        Err(error) => {
            tracing::warn!(aggregate_type = A::TYPE, aggregate_id = id, %error, "cannot encode a snapshot");
            None
        }
    }
}
