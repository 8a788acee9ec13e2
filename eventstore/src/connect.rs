//! Opening the store: the pool settings of each backend.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::ConnectOptions;

use crate::db::Db;

/// Connects to PostgreSQL (`postgres://…`) or SQLite (`sqlite://path`), creating the SQLite
/// file and its directory if needed. For migrations and one-off commands: no statement is
/// cut short (a migration or a replay's read of the whole log may take long).
pub async fn connect(url: &str, echo_sql: bool) -> Result<Db, sqlx::Error> {
    connect_with_limit(url, echo_sql, None).await
}

/// As [`connect`], for a serving instance: on PostgreSQL every statement is cancelled by the
/// database after `limit`. A request that is given up on (an idempotent attempt stopped at
/// its run limit) drops its future, but a statement already sent runs on in PostgreSQL, and
/// an append waiting on a lock would commit whenever the lock is let go, perhaps after a
/// retry took the key over and ran the command again. SQLite's writers give up after their
/// busy timeout already.
pub async fn connect_for_serving(
    url: &str,
    echo_sql: bool,
    limit: Duration,
) -> Result<Db, sqlx::Error> {
    connect_with_limit(url, echo_sql, Some(limit)).await
}

async fn connect_with_limit(
    url: &str,
    echo_sql: bool,
    statement_limit: Option<Duration>,
) -> Result<Db, sqlx::Error> {
    let level = if echo_sql {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Trace
    };
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // WAL lets readers work while the one writer writes; FULL makes every
            // acknowledged commit survive a power cut, not only a crash.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .log_statements(level);
        if let Some(dir) = std::path::Path::new(options.get_filename())
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            if !dir.exists() {
                // The database holds customer data and credential hashes: owner only.
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            }
        }
        let pool = ping_only_if_idle(SqlitePoolOptions::new())
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        return Ok(Db::Sqlite(pool));
    }
    let mut options = PgConnectOptions::from_str(url)?.log_statements(level);
    if let Some(limit) = statement_limit {
        // Sent with the startup packet: no round trip per connection or statement.
        options = options.options([("statement_timeout", format!("{}ms", limit.as_millis()))]);
    }
    let pool = ping_only_if_idle(PgPoolOptions::new())
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    Ok(Db::Postgres(pool))
}

/// A pooled connection idle for this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(5);

/// sqlx pings every connection before handing it out by default: a round trip (on SQLite, a
/// hop to the connection's thread and back) before every query or transaction, about a tenth
/// of an activation's CPU. A connection that was in use a moment ago is live; only one that
/// sat idle (and may have been cut by a restart or a proxy) is checked, and dropped if it
/// does not answer.
pub fn ping_only_if_idle<DB: sqlx::Database>(
    options: sqlx::pool::PoolOptions<DB>,
) -> sqlx::pool::PoolOptions<DB> {
    options
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE_FOR {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// Whether a store failure is PostgreSQL cancelling a statement that ran past the serving
/// pool's limit (SQLSTATE 57014): the database is too busy or a lock is held, so the caller
/// may retry, unlike a fault of ours.
pub fn is_statement_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(sqlx::Error::Database(database)) = error.downcast_ref::<sqlx::Error>() {
            return database.code().as_deref() == Some("57014");
        }
        cause = error.source();
    }
    false
}
