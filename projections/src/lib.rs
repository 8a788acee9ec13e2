//! Read models and the projectors that maintain them.
//!
//! A projector turns events into rows. [`project`] wraps every projector in the same
//! bookkeeping: an event at or below the aggregate's applied version is skipped (redelivery),
//! one that arrives ahead of a missing predecessor is held back (a gap), and the row changes,
//! the version and the checkpoint commit together in the caller's transaction.

pub mod analytics;
pub mod db;
pub mod log;
mod projector;
pub mod replay;
pub mod subscriptions;

pub use db::{Conn, Db, Dialect, Tx};
pub use log::{EventRecord, LogCursor};
pub use projector::{project, reset_read_models, Outcome, ProjectionError, Projector};

/// Every projector this server runs, in a stable order.
pub fn all_projectors() -> Vec<Box<dyn Projector>> {
    vec![
        Box::new(subscriptions::SubscriptionsProjector),
        Box::new(analytics::AnalyticsProjector),
    ]
}
