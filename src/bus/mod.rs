//! Where committed events go after the publisher reads them: NATS JetStream in production,
//! or straight into the projectors in-process when no NATS is configured.

mod in_process;
pub mod jetstream;

use std::future::Future;
use std::pin::Pin;

use flowlytix_projections::EventRecord;

pub use in_process::InProcessBus;
pub use jetstream::JetStreamBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("projection failed: {0}")]
    Projection(String),
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
