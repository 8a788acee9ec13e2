//! Read models and the projectors that maintain them.
//!
//! A projector turns events into rows. [`project_batch`] wraps every projector in the same
//! bookkeeping, a batch at a time: an event at or below the aggregate's applied version is
//! skipped (redelivery), one that arrives ahead of a missing predecessor is held back (a
//! gap), one that cannot be read is parked (`dead_letters`), and the row changes, the
//! versions and the checkpoint commit together in the caller's transaction.

pub mod analytics;
pub mod catalogue;
mod copy;
pub mod leases;
mod projector;
pub mod replay;
pub mod seats;
pub mod subscriptions;
pub mod webhooks;

// The log and database types projectors are written against, from the event store.
pub use flowlytix_eventstore::{with_conn, with_db, Conn, Db, Dialect, EventRecord, LogCursor, Tx};
pub use projector::{
    decode, park, project, project_batch, reset_read_models, Due, Outcome, ProjectionError,
    Projector,
};

/// Every read-model projector, in a stable order: what a replay rebuilds.
pub fn all_projectors() -> Vec<Box<dyn Projector>> {
    vec![
        Box::new(subscriptions::SubscriptionsProjector),
        Box::new(analytics::AnalyticsProjector),
        Box::new(catalogue::CatalogueProjector),
    ]
}

/// Every projector the bus feeds: the read models, then the webhook queue (which a replay
/// leaves alone: see [`webhooks`]).
pub fn streaming_projectors() -> Vec<Box<dyn Projector>> {
    let mut projectors = all_projectors();
    projectors.push(Box::new(webhooks::WebhooksProjector));
    projectors
}

/// The streaming projectors a server runs: all of them, but analytics only when it is
/// enabled (`ENABLE_ANALYTICS`).
pub fn enabled_projectors(analytics: bool) -> Vec<Box<dyn Projector>> {
    let analytics_name = analytics::AnalyticsProjector.name();
    streaming_projectors()
        .into_iter()
        .filter(|projector| analytics || projector.name() != analytics_name)
        .collect()
}
