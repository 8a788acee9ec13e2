//! NATS JetStream: the stream `FLOWLYTIX_EVENTS` (subjects
//! `flowlytix.events.<aggregate_type>.<event_type>`), publishing with `Nats-Msg-Id`, and the
//! durable consumers that feed the projectors.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::HeaderMap;
use bytes::Bytes;
use flowlytix_eventstore::Db;
use flowlytix_projections::{park, project_batch, EventRecord, Outcome, Projector};
use futures::StreamExt;
use tokio::sync::watch;

use super::{BusError, EventBus, PublishFuture};
use crate::monitoring::record;
use crate::telemetry::traces;

/// How long JetStream remembers message ids to drop re-publications. Longer than any
/// publisher failover, so a new leader's re-publication of an in-flight batch is dropped.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a message handed to a projector may stay unacknowledged before JetStream hands
/// it out again. When an instance dies, the messages its projectors had pulled come back
/// only after this, and later events of the same aggregates wait behind them (gaps): it
/// bounds how stale the read models get after a crash. Projecting one event takes
/// milliseconds, so this leaves a wide margin for a pulled batch waiting its turn; a
/// redelivery while the first delivery is still being projected is skipped by `project`.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// Failed tries (on this instance) after which an event that fails on its own is parked
/// (`dead_letters`). Deliveries are not the measure: an event waiting for its predecessor
/// is delivered again and again without failing.
const PARK_AFTER: u32 = 5;
/// JetStream stops redelivering after this many deliveries: a safety net far above what a
/// gap needs (it waits at most an `ACK_WAIT` for its predecessor, with growing delays).
const MAX_DELIVER: i64 = 1000;
/// The longest a waiting event (gap) is sent back for.
const MAX_GAP_DELAY: Duration = Duration::from_secs(2);
/// How long one pull request stays open at the server; an idle consumer asks again after
/// each. A request that goes missing is replaced by the client this long (plus 5 s) after
/// it was sent: with async-nats's default, 30 s, during which the projector gets nothing.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct JetStreamSettings {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    /// This event store's identity: the stream must carry it, and so does every message.
    pub store_id: String,
}

/// The stream's description names the store it belongs to. (A description, not stream
/// metadata: NATS servers before 2.10 drop metadata.)
const OWNER_PREFIX: &str = "flowlytix event store ";
/// The header naming the store a message came from.
const STORE_HEADER: &str = "Flowlytix-Store";

#[derive(Clone)]
pub struct JetStreamBus {
    client: async_nats::Client,
    context: Context,
    settings: JetStreamSettings,
    /// Set once the stream was found to be this store's: checked before the first publish.
    verified: Arc<tokio::sync::OnceCell<()>>,
}

impl JetStreamBus {
    /// Connects without waiting for NATS to be up: the client keeps reconnecting in the
    /// background, and commands never depend on it.
    pub async fn connect(settings: JetStreamSettings) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .name("flowlytix")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(settings.url.as_str())
            .await
            .map_err(BusError::unavailable)?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(ACK_TIMEOUT);
        Ok(Self {
            client,
            context,
            settings,
            verified: Arc::default(),
        })
    }

    /// Creates the stream if it is missing, and makes sure it is this store's: a stream of
    /// another store (another deployment on the same NATS) is refused, never written to or
    /// read from. A stream made before streams had owners is claimed.
    pub async fn ensure_stream(&self) -> Result<jetstream::stream::Stream, BusError> {
        let owner = format!("{OWNER_PREFIX}{}", self.settings.store_id);
        let stream = self
            .context
            .get_or_create_stream(StreamConfig {
                name: self.settings.stream.clone(),
                subjects: vec![format!("{}.>", self.settings.subject_prefix)],
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                description: Some(owner.clone()),
                ..Default::default()
            })
            .await
            .map_err(BusError::unavailable)?;
        let config = &stream.cached_info().config;
        match config.description.as_deref() {
            Some(description) if description == owner => Ok(stream),
            Some(description) if description.starts_with(OWNER_PREFIX) => {
                Err(BusError::ForeignStream {
                    stream: self.settings.stream.clone(),
                    owner: description[OWNER_PREFIX.len()..].to_owned(),
                    ours: self.settings.store_id.clone(),
                })
            }
            _ => {
                tracing::warn!(stream = %self.settings.stream, "the stream names no event store; claiming it for this one");
                let mut claimed = config.clone();
                claimed.description = Some(owner);
                self.context
                    .update_stream(claimed)
                    .await
                    .map_err(BusError::unavailable)?;
                Ok(stream)
            }
        }
    }

    /// Each projector's durable consumer as JetStream sees it (pending, ack-pending,
    /// redelivered), for the metrics. A consumer not made yet is left out.
    pub async fn consumer_states(&self) -> Result<Vec<ConsumerState>, BusError> {
        let stream = self
            .context
            .get_stream(&self.settings.stream)
            .await
            .map_err(BusError::unavailable)?;
        let mut states = Vec::new();
        for projector in flowlytix_projections::streaming_projectors() {
            if let Ok(info) = stream.consumer_info(consumer_name(projector.name())).await {
                states.push(ConsumerState {
                    consumer: info.name.clone(),
                    pending: info.num_pending,
                    ack_pending: info.num_ack_pending as u64,
                    redelivered: info.num_redelivered as u64,
                });
            }
        }
        Ok(states)
    }

    /// Sends what the client still buffers (acknowledgements above all) before it goes.
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }

    fn subject(&self, event: &EventRecord) -> String {
        format!(
            "{}.{}.{}",
            self.settings.subject_prefix, event.aggregate_type, event.event_type
        )
    }
}

impl EventBus for JetStreamBus {
    fn publish<'a>(&'a self, events: &'a [EventRecord]) -> PublishFuture<'a> {
        Box::pin(async move {
            self.verified
                .get_or_try_init(|| async { self.ensure_stream().await.map(|_| ()) })
                .await?;
            let mut acks = Vec::with_capacity(events.len());
            // Open until the event is acknowledged by JetStream.
            let mut spans = Vec::with_capacity(events.len());
            for event in events {
                let span = publish_span(event);
                let mut headers = HeaderMap::new();
                if let Some(traceparent) = traces::traceparent_of(&span) {
                    headers.insert(traces::TRACEPARENT, traceparent.as_str());
                }
                spans.push(span);
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    event.message_id().as_str(),
                );
                headers.insert(STORE_HEADER, self.settings.store_id.as_str());
                let body = Bytes::from(serde_json::to_vec(event)?);
                let ack = self
                    .context
                    .publish_with_headers(self.subject(event), headers, body)
                    .await
                    .map_err(BusError::unavailable)?;
                acks.push(ack);
            }
            // Publishing is pipelined; the batch counts only once every ack is in.
            for ack in acks {
                ack.await.map_err(BusError::unavailable)?;
            }
            drop(spans);
            Ok(())
        })
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn name(&self) -> &'static str {
        "nats"
    }
}

/// A durable consumer's counts, as JetStream reports them.
pub struct ConsumerState {
    pub consumer: String,
    /// Messages on the stream the consumer has not been handed yet.
    pub pending: u64,
    /// Messages handed out and not acknowledged yet.
    pub ack_pending: u64,
    /// Messages handed out more than once and not acknowledged yet.
    pub redelivered: u64,
}

fn consumer_name(projector: &str) -> String {
    format!("projector-{projector}")
}

/// How a projector takes its events: up to `size` at a time, waiting at most `wait` for a
/// batch to fill once its first event is in.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub size: usize,
    pub wait: Duration,
}

/// Feeds one projector from its durable consumer until `shutdown` flips. Events are
/// projected a batch per transaction and acknowledged only after it commits; an event that
/// is ahead of a missing predecessor is negatively acknowledged, to come back later.
pub async fn run_projector(
    bus: JetStreamBus,
    db: Db,
    projector: Arc<dyn Projector>,
    batches: BatchSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = consumer_name(projector.name());
    while !*shutdown.borrow() {
        let consumed = consume(
            &bus,
            &db,
            projector.as_ref(),
            &name,
            batches,
            shutdown.clone(),
        )
        .await;
        if let Err(error) = consumed {
            tracing::warn!(projector = projector.name(), error = %crate::telemetry::error_chain(&error), "projector lost its consumer; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Failed tries of events that failed on their own, by message id (bounded: an event that
/// succeeds or is parked leaves; the map starts over if it ever grows large).
#[derive(Default)]
struct Failures(std::collections::HashMap<String, u32>);

impl Failures {
    fn record(&mut self, record: &EventRecord) -> u32 {
        if self.0.len() > 10_000 {
            self.0.clear();
        }
        let tries = self.0.entry(record.message_id()).or_default();
        *tries += 1;
        *tries
    }

    fn forget(&mut self, record: &EventRecord) {
        self.0.remove(&record.message_id());
    }
}

/// A message and the span of its projection (open until the message is acknowledged).
struct Delivery {
    message: jetstream::Message,
    _span: tracing::Span,
}

/// The messages taken for one transaction and the events they carry, side by side: the
/// events go to `project_batch` as they are, without a copy of each (its payload and
/// metadata are trees of strings).
#[derive(Default)]
struct Batch {
    deliveries: Vec<Delivery>,
    records: Vec<EventRecord>,
}

impl Batch {
    fn len(&self) -> usize {
        self.deliveries.len()
    }
}

/// The span of publishing one event: a child of the command that appended it.
pub(crate) fn publish_span(event: &EventRecord) -> tracing::Span {
    if !traces::exporting() {
        return tracing::Span::none();
    }
    let span =
        tracing::info_span!("publish", event = %event.message_id(), position = event.position);
    traces::continue_trace(&span, traces::traceparent_in(&event.metadata));
    span
}

async fn consume(
    bus: &JetStreamBus,
    db: &Db,
    projector: &dyn Projector,
    name: &str,
    batches: BatchSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let stream = bus.ensure_stream().await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                // Beyond the tries after which an event is parked: a safety net only.
                max_deliver: MAX_DELIVER,
                filter_subject: format!("{}.>", bus.settings.subject_prefix),
                ..Default::default()
            },
        )
        .await
        .map_err(BusError::unavailable)?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(batches.size.max(1))
        .expires(PULL_EXPIRES)
        .messages()
        .await
        .map_err(BusError::unavailable)?;
    let mut failures = Failures::default();
    // Stopping is looked at between batches only: a batch taken is projected and
    // acknowledged before the projector stops.
    while !*shutdown.borrow() {
        let first = tokio::select! {
            first = messages.next() => first,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut batch = Batch::default();
        let store_id = bus.settings.store_id.as_str();
        take(
            first.map_err(BusError::unavailable)?,
            projector,
            store_id,
            &mut batch,
        )
        .await?;
        let deadline = tokio::time::Instant::now() + batches.wait;
        let mut failed = None;
        while batch.len() < batches.size {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => take(message, projector, store_id, &mut batch).await?,
                Ok(Some(Err(error))) => {
                    failed = Some(BusError::unavailable(error));
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        // What was taken is projected before a failed stream is given up: unacknowledged,
        // its messages would come back only after an ACK_WAIT.
        project_deliveries(db, projector, batch, &mut failures).await?;
        if let Some(error) = failed {
            return Err(error);
        }
    }
    Ok(())
}

/// Adds a message to the batch, or terminates it if it is not an event at all (it would
/// otherwise be redelivered forever). A message from another store stops the consumer: it
/// is never applied, and never acknowledged for the store it belongs to.
async fn take(
    message: jetstream::Message,
    projector: &dyn Projector,
    store_id: &str,
    batch: &mut Batch,
) -> Result<(), BusError> {
    let sender = message
        .headers
        .as_ref()
        .and_then(|h| h.get(STORE_HEADER))
        .map(|v| v.as_str().to_owned());
    if let Some(sender) = sender.filter(|s| s != store_id) {
        return Err(BusError::ForeignMessage {
            owner: sender,
            ours: store_id.to_owned(),
        });
    }
    match serde_json::from_slice::<EventRecord>(&message.payload) {
        Ok(record) => {
            // A child of the publish span the header names (or, from a publisher that set
            // none, of the command the metadata names).
            let span = if traces::exporting() {
                tracing::info_span!("project", projector = projector.name(), event = %record.message_id())
            } else {
                tracing::Span::none()
            };
            let header = message
                .headers
                .as_ref()
                .and_then(|h| h.get(traces::TRACEPARENT))
                .map(|v| v.as_str().to_owned());
            traces::continue_trace(
                &span,
                header
                    .as_deref()
                    .or(traces::traceparent_in(&record.metadata)),
            );
            batch.deliveries.push(Delivery {
                message,
                _span: span,
            });
            batch.records.push(record);
        }
        Err(error) => {
            tracing::error!(projector = projector.name(), %error, "unreadable message; terminated");
            let _ = message.ack_with(AckKind::Term).await;
        }
    }
    Ok(())
}

/// Projects a batch in one transaction and acknowledges each message by its outcome. If the
/// batch fails, its events are tried one at a time, so one bad event cannot hold the others
/// back; an event that still fails after `PARK_AFTER` deliveries is parked.
async fn project_deliveries(
    db: &Db,
    projector: &dyn Projector,
    batch: Batch,
    failures: &mut Failures,
) -> Result<(), BusError> {
    let Batch {
        deliveries,
        records,
    } = batch;
    if deliveries.is_empty() {
        return Ok(());
    }
    let last_sequence = deliveries
        .last()
        .and_then(|d| d.message.info().ok())
        .map(|i| i.stream_sequence);
    match project_in_transaction(db, projector, &records, last_sequence).await {
        Ok(outcomes) => {
            record::projected(projector.name(), &records, &outcomes);
            for ((delivery, record), outcome) in deliveries.iter().zip(&records).zip(outcomes) {
                acknowledge(projector, delivery, record, outcome).await?;
            }
            Ok(())
        }
        Err(error) => {
            if deliveries.len() > 1 {
                tracing::warn!(projector = projector.name(), events = deliveries.len(), error = %error, "batch failed; projecting its events one by one");
            }
            for (delivery, record) in deliveries.iter().zip(&records) {
                project_alone(db, projector, delivery, record, failures).await?;
            }
            Ok(())
        }
    }
}

async fn project_in_transaction(
    db: &Db,
    projector: &dyn Projector,
    records: &[EventRecord],
    stream_sequence: Option<u64>,
) -> Result<Vec<Outcome>, flowlytix_projections::ProjectionError> {
    let projected = async {
        let mut tx = db.begin().await?;
        let outcomes = project_batch(tx.conn(), projector, records, stream_sequence).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
    .await;
    if projected.is_err() {
        record::projection_failed(projector.name());
    }
    projected
}

async fn project_alone(
    db: &Db,
    projector: &dyn Projector,
    delivery: &Delivery,
    record: &EventRecord,
    failures: &mut Failures,
) -> Result<(), BusError> {
    let info = delivery.message.info().ok();
    let sequence = info.as_ref().map(|i| i.stream_sequence);
    let records = std::slice::from_ref(record);
    let outcome = match project_in_transaction(db, projector, records, sequence).await {
        Ok(outcomes) => {
            record::projected(projector.name(), records, &outcomes);
            outcomes.first().copied().unwrap_or(Outcome::Skipped)
        }
        Err(error) if failures.record(record) >= PARK_AFTER => {
            let mut tx = db
                .begin()
                .await
                .map_err(flowlytix_projections::ProjectionError::from)?;
            let outcome = park(tx.conn(), projector, record, &error.to_string()).await?;
            tx.commit()
                .await
                .map_err(flowlytix_projections::ProjectionError::from)?;
            failures.forget(record);
            if outcome == Outcome::Parked {
                record::event_parked(projector.name());
            }
            outcome
        }
        Err(error) => {
            tracing::warn!(projector = projector.name(), event = %record.message_id(), %error, "projection failed; will retry");
            delivery
                .message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await
                .map_err(BusError::Unavailable)?;
            return Ok(());
        }
    };
    acknowledge(projector, delivery, record, outcome).await
}

async fn acknowledge(
    projector: &dyn Projector,
    delivery: &Delivery,
    record: &EventRecord,
    outcome: Outcome,
) -> Result<(), BusError> {
    let ack = match outcome {
        Outcome::Applied | Outcome::Skipped => AckKind::Ack,
        Outcome::Parked => {
            tracing::error!(projector = projector.name(), event = %record.message_id(), "event parked in dead_letters");
            AckKind::Ack
        }
        // Back off while the predecessor is missing (it comes back after an ACK_WAIT at
        // worst), so the wait costs few deliveries.
        Outcome::Gap => {
            let delivered = delivery.message.info().map_or(1, |i| i.delivered.max(1));
            let delay = Duration::from_millis(100).saturating_mul(delivered as u32);
            AckKind::Nak(Some(delay.min(MAX_GAP_DELAY)))
        }
    };
    delivery
        .message
        .ack_with(ack)
        .await
        .map_err(BusError::Unavailable)
}
