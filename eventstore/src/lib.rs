//! The event store of the Flowlytix server, on PostgreSQL (production, scale-out) or SQLite
//! (embedded): the [`Db`] handle, appending (with group commit on SQLite), loading an
//! aggregate from its snapshot and the events after it, reading the log in commit order
//! (projectors, the feed, the publisher), and the store's identity.
//!
//! The server's executor appends through [`append`] rather than cqrs-es's
//! `PersistedEventStore`, because it needs each event's global position back from the
//! insert itself (`returning`), the tail of a stream after a snapshot, and snapshots of its
//! own. The `events` rows are the ones postgres-es / sqlite-es write: the same seven columns,
//! `payload` and `metadata` bound as the same `serde_json::Value`s (the event, and the
//! metadata map); `global_position`, `tx_id` and `recorded_at` are left to their defaults.
//! [`EventRepository`] implements cqrs-es's repository trait on the same rows, so a plain
//! `CqrsFramework` runs on this store too.

mod append;
mod connect;
pub mod db;
mod error;
mod group_commit;
mod identity;
pub mod log;
pub mod publisher;
mod repository;
pub mod snapshot;
pub mod stream;
mod tagged;
#[cfg(test)]
mod testing;
mod write;

pub use append::{append, APPENDED};
pub use connect::{connect, connect_for_serving, is_statement_timeout, ping_only_if_idle};
pub use db::{Conn, Db, Dialect, PooledConn, Tx};
pub use error::{AppendError, StoreError};
pub use identity::store_identity;
pub use log::{EventRecord, LogCursor};
pub use repository::EventRepository;
pub use write::{Append, NewEvent, NewSnapshot};
