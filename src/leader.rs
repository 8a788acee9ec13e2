//! Duties one instance at a time performs on a timer (recording deadline notices, culling dead
//! leases): the election they share.
//!
//! On PostgreSQL only the instance holding the duty's advisory lock (on a connection of its
//! own, which the duty's passes also use, so a lost lock fails the pass) performs it; if it
//! dies, its connection closes and another instance takes over within a second. The embedded
//! server is alone and always leads. Exactly-once does not rest on the lock: every duty has
//! the aggregates decide, and their optimistic lock makes a second run record nothing. The
//! lock only spares the work.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowlytix_projections::{Conn, Db};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

/// How often a follower tries to take the lock.
const FOLLOWER_RETRY: Duration = Duration::from_secs(1);

pub type PassFuture<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// A duty: a pass at once when elected (a new leader catches up), then one every `interval`.
pub trait Duty: Send + Sync {
    /// For the logs: "this instance now <name>".
    fn name(&self) -> &'static str;
    /// Any fixed number, distinct for each duty: the advisory lock that elects its leader.
    fn lock(&self) -> i64;
    fn interval(&self) -> Duration;
    /// A new leader starts afresh (it knows nothing of earlier leaders' passes).
    fn elected(&mut self) {}
    /// One pass at `now`. It stops between steps once `shutdown` flips.
    fn pass<'a>(
        &'a mut self,
        db: Conn<'a>,
        now: DateTime<Utc>,
        shutdown: &'a watch::Receiver<bool>,
    ) -> PassFuture<'a>;
}

/// Performs `duty` whenever this instance is elected, until `shutdown` flips.
pub async fn run(mut duty: impl Duty, db: Db, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(error) = lead_if_elected(&mut duty, &db, shutdown.clone()).await {
            tracing::warn!(duty = duty.name(), error = %crate::telemetry::error_chain(&error), "stopped; will try again");
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOWER_RETRY.min(duty.interval())) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// `Ok` when another instance leads (or at shutdown), `Err` when leadership was lost.
async fn lead_if_elected(
    duty: &mut impl Duty,
    db: &Db,
    shutdown: watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    match db {
        Db::Postgres(pool) => lead_on_postgres(duty, pool, shutdown).await,
        Db::Sqlite(_) => lead(duty, db, None, shutdown).await,
    }
}

async fn lead_on_postgres(
    duty: &mut impl Duty,
    pool: &PgPool,
    shutdown: watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    let mut lock_connection = pool.acquire().await?.detach();
    let elected: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(duty.lock())
        .fetch_one(&mut lock_connection)
        .await?;
    if !elected {
        let _ = lock_connection.close().await;
        return Ok(());
    }
    tracing::info!(duty = duty.name(), "this instance now leads");
    let result = lead(
        duty,
        &Db::Postgres(pool.clone()),
        Some(&mut lock_connection),
        shutdown,
    )
    .await;
    let _ = lock_connection.close().await;
    result
}

async fn lead(
    duty: &mut impl Duty,
    db: &Db,
    mut lock: Option<&mut PgConnection>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), sqlx::Error> {
    duty.elected();
    let mut ticks = tokio::time::interval(duty.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let now = Utc::now();
        match lock.as_deref_mut() {
            // The lock's own connection: a lost lock fails the pass.
            Some(connection) => {
                duty.pass(Conn::Postgres(connection), now, &shutdown)
                    .await?
            }
            None => {
                let mut connection = db.acquire().await?;
                duty.pass(connection.conn(), now, &shutdown).await?
            }
        }
    }
}
