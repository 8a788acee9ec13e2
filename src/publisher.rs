//! The publisher: tails the event log in commit order and hands each committed event to the
//! bus, then advances its checkpoint. One instance publishes at a time (a PostgreSQL
//! advisory lock held by its connection); if that instance dies, its connection closes, the
//! lock is released and another instance takes over from the stored checkpoint.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowlytix_projections::log::{events_after, LogCursor};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

use crate::bus::EventBus;

/// Any fixed number: the advisory lock that elects the publishing instance.
const PUBLISHER_LOCK: i64 = 0x0066_6c6f_7770_7562;
const BATCH: i64 = 500;
/// How often the publisher looks for events even without a notification, and how often a
/// follower tries to take the lock.
const POLL: Duration = Duration::from_millis(250);
const FOLLOWER_RETRY: Duration = Duration::from_millis(500);

/// What `/health` shows of the publisher.
#[derive(Default)]
pub struct PublisherStatus {
    pub leader: AtomicBool,
    /// Events committed but not yet published, as last measured by the leader.
    pub backlog: AtomicI64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

pub struct Publisher {
    pool: PgPool,
    bus: Arc<dyn EventBus>,
    status: Arc<PublisherStatus>,
}

impl Publisher {
    pub fn new(pool: PgPool, bus: Arc<dyn EventBus>, status: Arc<PublisherStatus>) -> Self {
        Self { pool, bus, status }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            let led = tokio::select! {
                result = self.lead_if_elected() => result,
                _ = shutdown.changed() => break,
            };
            self.status.leader.store(false, Ordering::Relaxed);
            match led {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(%error, "publisher stopped; will try again");
                    self.set_error(Some(error));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOWER_RETRY) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    /// Returns `Ok` when another instance holds the lock, `Err` when leadership was lost.
    async fn lead_if_elected(&self) -> Result<(), String> {
        let text = |e: sqlx::Error| e.to_string();
        let mut lock_connection = self.pool.acquire().await.map_err(text)?.detach();
        let elected: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(PUBLISHER_LOCK)
            .fetch_one(&mut lock_connection)
            .await
            .map_err(text)?;
        if !elected {
            let _ = lock_connection.close().await;
            return Ok(());
        }
        self.status.leader.store(true, Ordering::Relaxed);
        tracing::info!("this instance is now the event publisher");
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(text)?;
        listener.listen("flowlytix_events").await.map_err(text)?;
        let result = self.publish_while_leader(&mut lock_connection, &mut listener).await;
        let _ = lock_connection.close().await;
        result
    }

    async fn publish_while_leader(
        &self,
        db: &mut PgConnection,
        listener: &mut PgListener,
    ) -> Result<(), String> {
        let text = |e: sqlx::Error| e.to_string();
        let (tx_id, position): (String, i64) =
            sqlx::query_as("select tx_id::text, global_position from publisher_checkpoint where id = 1")
                .fetch_one(&mut *db)
                .await
                .map_err(text)?;
        let mut cursor = LogCursor { tx_id: tx_id.parse().unwrap_or(0), position };
        let mut backoff = Duration::from_millis(100);
        loop {
            let batch = events_after(&mut *db, cursor, BATCH).await.map_err(text)?;
            if batch.is_empty() {
                self.measure_backlog(db, cursor).await.map_err(text)?;
                // Woken by a commit's notification, or by the poll interval: a transaction
                // below the horizon may become visible without a notification of its own.
                let _ = tokio::time::timeout(POLL, listener.recv()).await;
                continue;
            }
            let events: Vec<_> = batch.iter().map(|(_, event)| event.clone()).collect();
            match self.bus.publish(&events).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    self.set_error(None);
                }
                Err(error) => {
                    // Nothing advances: the same batch goes again once the bus is back.
                    self.set_error(Some(error.to_string()));
                    tracing::warn!(%error, "publishing failed; retrying");
                    self.measure_backlog(db, cursor).await.map_err(text)?;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
            cursor = batch.last().map_or(cursor, |(c, _)| *c);
            sqlx::query(
                "update publisher_checkpoint set tx_id = $1::text::xid8, global_position = $2, updated_at = now()
                 where id = 1",
            )
            .bind(cursor.tx_id.to_string())
            .bind(cursor.position)
            .execute(&mut *db)
            .await
            .map_err(text)?;
        }
    }

    async fn measure_backlog(&self, db: &mut PgConnection, cursor: LogCursor) -> Result<(), sqlx::Error> {
        let backlog: i64 = sqlx::query_scalar(
            "select count(*) from events where (tx_id, global_position) > ($1::text::xid8, $2)",
        )
        .bind(cursor.tx_id.to_string())
        .bind(cursor.position)
        .fetch_one(db)
        .await?;
        self.status.backlog.store(backlog, Ordering::Relaxed);
        Ok(())
    }

    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.status.last_error.lock() {
            *slot = error;
        }
    }
}
