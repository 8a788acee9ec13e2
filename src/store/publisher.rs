//! The publisher: tails the event log in commit order and hands each committed event to the
//! bus, then advances its checkpoint. On PostgreSQL one instance publishes at a time (an
//! advisory lock held by its connection); if that instance dies, its connection closes, the
//! lock is released and another instance takes over from the stored checkpoint. An embedded
//! (SQLite) server is alone by construction and always publishes.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowlytix_eventstore::log::{events_after, LogCursor};
use flowlytix_eventstore::{publisher, Conn, Db, APPENDED};
use sqlx::{Connection, PgPool};
use tokio::sync::watch;

use crate::bus::EventBus;
use crate::monitoring::record;

/// Any fixed number: the advisory lock that elects the publishing instance.
const PUBLISHER_LOCK: i64 = 0x0066_6c6f_7770_7562;
const BATCH: i64 = 500;
/// How often the publisher looks for events that no append of this process announced: other
/// instances' appends, and transactions that became visible below the horizon later.
const POLL: Duration = Duration::from_millis(50);
/// How often a follower tries to take the lock.
const FOLLOWER_RETRY: Duration = Duration::from_millis(500);
/// How often an idle publisher counts what it has not published (reported by `/health`,
/// which shows at most this bound).
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// What `/health` shows of the publisher.
#[derive(Default)]
pub struct PublisherStatus {
    pub leader: AtomicBool,
    /// Events committed but not yet published, as last measured by the leader (counted up
    /// to 100 000).
    pub backlog: AtomicI64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

pub struct Publisher {
    db: Db,
    bus: Arc<dyn EventBus>,
    status: Arc<PublisherStatus>,
}

impl Publisher {
    pub fn new(db: Db, bus: Arc<dyn EventBus>, status: Arc<PublisherStatus>) -> Self {
        Self { db, bus, status }
    }

    /// Publishes until `shutdown` flips; a batch under way is finished (published and its
    /// checkpoint written) before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let led = self.lead_if_elected(shutdown.clone()).await;
            self.status.leader.store(false, Ordering::Relaxed);
            if let Err(error) = led {
                tracing::warn!(%error, "publisher stopped; will try again");
                self.set_error(Some(crate::telemetry::error_chain(&error)));
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOWER_RETRY) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// Returns `Ok` when another instance holds the lock, `Err` when leadership was lost.
    async fn lead_if_elected(&self, shutdown: watch::Receiver<bool>) -> Result<(), sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => self.lead_on_postgres(pool, shutdown).await,
            Db::Sqlite(pool) => {
                let mut connection = pool.acquire().await?;
                self.status.leader.store(true, Ordering::Relaxed);
                self.publish_while_leader(Conn::Sqlite(&mut connection), shutdown)
                    .await
            }
        }
    }

    async fn lead_on_postgres(
        &self,
        pool: &PgPool,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), sqlx::Error> {
        let mut lock_connection = pool.acquire().await?.detach();
        let elected: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(PUBLISHER_LOCK)
            .fetch_one(&mut lock_connection)
            .await?;
        if !elected {
            let _ = lock_connection.close().await;
            return Ok(());
        }
        self.status.leader.store(true, Ordering::Relaxed);
        tracing::info!("this instance is now the event publisher");
        let result = self
            .publish_while_leader(Conn::Postgres(&mut lock_connection), shutdown)
            .await;
        let _ = lock_connection.close().await;
        result
    }

    async fn publish_while_leader(
        &self,
        mut db: Conn<'_>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), sqlx::Error> {
        let mut cursor = publisher::checkpoint(db.reborrow()).await?;
        let mut backoff = Duration::from_millis(100);
        let mut backlog_measured = Instant::now() - BACKLOG_EVERY;
        // Stopping is looked at between batches only: a batch is published and its
        // checkpoint written, or not started.
        while !*shutdown.borrow() {
            // Listening before looking, so an append between the two still wakes us.
            let appended = APPENDED.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let batch = events_after(db.reborrow(), cursor, BATCH).await?;
            if batch.is_empty() {
                // Counting is not free and every commit wakes the loop: at most once a second.
                if backlog_measured.elapsed() >= BACKLOG_EVERY {
                    self.measure_backlog(db.reborrow(), cursor).await?;
                    backlog_measured = Instant::now();
                }
                tokio::select! {
                    _ = appended => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let last = batch.last().map(|(c, _)| *c);
            // Moved out, not copied: each event's payload and metadata are trees of strings.
            let events: Vec<_> = batch.into_iter().map(|(_, event)| event).collect();
            if let Err(error) = self.bus.publish(&events).await {
                // Nothing advances: the same batch goes again once the bus is back.
                record::publish_failed();
                self.set_error(Some(crate::telemetry::error_chain(&error)));
                tracing::warn!(error = %crate::telemetry::error_chain(&error), "publishing failed; retrying");
                self.measure_backlog(db.reborrow(), cursor).await?;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            backoff = Duration::from_millis(100);
            self.set_error(None);
            cursor = last.unwrap_or(cursor);
            record::published(events.len(), cursor.position);
            publisher::set_checkpoint(db.reborrow(), cursor).await?;
        }
        Ok(())
    }

    async fn measure_backlog(&self, db: Conn<'_>, cursor: LogCursor) -> Result<(), sqlx::Error> {
        let backlog = publisher::backlog(db, cursor).await?;
        self.status.backlog.store(backlog, Ordering::Relaxed);
        Ok(())
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.status.last_error.lock() {
            *slot = error;
        }
    }
}
