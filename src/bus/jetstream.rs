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
use flowlytix_projections::Db;
use flowlytix_projections::{project, EventRecord, Outcome, Projector};
use futures::StreamExt;
use tokio::sync::watch;

use super::{BusError, EventBus, PublishFuture};

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

#[derive(Clone, Debug)]
pub struct JetStreamSettings {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

#[derive(Clone)]
pub struct JetStreamBus {
    client: async_nats::Client,
    context: Context,
    settings: JetStreamSettings,
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
        })
    }

    /// Creates the stream if it is missing.
    pub async fn ensure_stream(&self) -> Result<jetstream::stream::Stream, BusError> {
        self.context
            .get_or_create_stream(StreamConfig {
                name: self.settings.stream.clone(),
                subjects: vec![format!("{}.>", self.settings.subject_prefix)],
                storage: StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(BusError::unavailable)
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
            let mut acks = Vec::with_capacity(events.len());
            for event in events {
                let mut headers = HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    event.message_id().as_str(),
                );
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

/// Feeds one projector from its durable consumer until `shutdown` flips. Each message is
/// projected in its own transaction and acknowledged only after that commits; an event that
/// is ahead of a missing predecessor is negatively acknowledged, to come back later.
pub async fn run_projector(
    bus: JetStreamBus,
    db: Db,
    projector: Arc<dyn Projector>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = format!("projector-{}", projector.name());
    while !*shutdown.borrow() {
        let consumed = tokio::select! {
            result = consume(&bus, &db, projector.as_ref(), &name) => result,
            _ = shutdown.changed() => return,
        };
        if let Err(error) = consumed {
            tracing::warn!(projector = projector.name(), error = %crate::telemetry::error_chain(&error), "projector lost its consumer; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn consume(
    bus: &JetStreamBus,
    db: &Db,
    projector: &dyn Projector,
    name: &str,
) -> Result<(), BusError> {
    let stream = bus.ensure_stream().await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                filter_subject: format!("{}.>", bus.settings.subject_prefix),
                ..Default::default()
            },
        )
        .await
        .map_err(BusError::unavailable)?;
    let mut messages = consumer.messages().await.map_err(BusError::unavailable)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(BusError::unavailable)?;
        let sequence = message.info().map(|i| i.stream_sequence).ok();
        let record: EventRecord = match serde_json::from_slice(&message.payload) {
            Ok(record) => record,
            Err(error) => {
                // Not ours to read: terminate it rather than redeliver forever.
                tracing::error!(projector = projector.name(), %error, "unreadable message");
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            }
        };
        let outcome = async {
            let mut tx = db.begin().await?;
            let outcome = project(tx.conn(), projector, &record, sequence).await?;
            if outcome == Outcome::Applied {
                tx.commit().await?;
            }
            Ok::<_, flowlytix_projections::ProjectionError>(outcome)
        }
        .await;
        let ack = match outcome {
            Ok(Outcome::Applied | Outcome::Skipped) => AckKind::Ack,
            Ok(Outcome::Gap) => AckKind::Nak(Some(Duration::from_millis(200))),
            Err(error) => {
                tracing::warn!(projector = projector.name(), event = %record.message_id(), %error, "projection failed; will retry");
                AckKind::Nak(Some(Duration::from_secs(1)))
            }
        };
        message.ack_with(ack).await.map_err(BusError::Unavailable)?;
    }
    Ok(())
}
