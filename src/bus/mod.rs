//! Where committed events go after the publisher reads them: NATS JetStream in production,
//! or straight into the projectors in-process when no NATS is configured.

mod in_process;
pub mod jetstream;

use std::future::Future;
use std::pin::Pin;

use flowlytix_eventstore::EventRecord;

pub use in_process::InProcessBus;
pub use jetstream::JetStreamBus;

/// A failure of one of the NATS client's many error types.
pub type NatsError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS is unavailable")]
    Unavailable(#[source] NatsError),
    #[error("an event cannot be encoded")]
    Encode(#[from] serde_json::Error),
    #[error("projection failed")]
    Projection(#[from] flowlytix_projections::ProjectionError),
    #[error("the event {0} arrived before one of its aggregate's earlier events")]
    Gap(String),
    #[error("the NATS stream {stream} belongs to event store {owner}, not to this one ({ours}): give each deployment its own NATS_STREAM and NATS_SUBJECT_PREFIX")]
    ForeignStream {
        stream: String,
        owner: String,
        ours: String,
    },
    #[error("a message on the stream came from event store {owner}, not from this one ({ours}); it is not projected")]
    ForeignMessage { owner: String, ours: String },
}

impl BusError {
    pub(crate) fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>>;

/// Delivers events, in the order given, at least once. Returns only when every event is
/// durably accepted (acknowledged by JetStream, or projected in-process).
pub trait EventBus: Send + Sync {
    fn publish<'a>(&'a self, events: &'a [EventRecord]) -> PublishFuture<'a>;
    /// Whether the bus is reachable right now (for `/health`).
    fn is_connected(&self) -> bool;
    fn name(&self) -> &'static str;
}
