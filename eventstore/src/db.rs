//! One handle for either backend: PostgreSQL (production, scale-out) or SQLite (embedded).
//!
//! sqlx has no runtime-generic connection with the types we use, so code that talks to the
//! database is written once inside [`with_db!`] / [`with_conn!`], which expand it for each
//! backend. SQL is shared where the dialects agree (numbered `$n` parameters work in both);
//! where they differ, [`Dialect::pick`] chooses the text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    pub fn pick<'a>(self, postgres: &'a str, sqlite: &'a str) -> &'a str {
        match self {
            Dialect::Postgres => postgres,
            Dialect::Sqlite => sqlite,
        }
    }
}

/// A connection borrowed from a transaction of either backend.
pub enum Conn<'a> {
    Postgres(&'a mut PgConnection),
    Sqlite(&'a mut SqliteConnection),
}

impl Conn<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Reborrows, so a `Conn` can be passed on and used again.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Postgres(c) => Conn::Postgres(c),
            Conn::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A connection checked out of either pool.
pub enum PooledConn {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl PooledConn {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            PooledConn::Postgres(c) => Conn::Postgres(c),
            PooledConn::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

pub enum Tx {
    Postgres(Transaction<'static, Postgres>),
    /// Holds this process's turn at writing the file until it ends.
    Sqlite(Transaction<'static, Sqlite>, WriterTurn),
}

/// This process's turn at writing one SQLite file (see [`Db::writer_turn`]).
pub struct WriterTurn(#[allow(dead_code)] OwnedMutexGuard<()>);

/// Something this process keeps once per SQLite file (not per pool: two pools on one file
/// share it).
pub type PerSqliteFile<T> = LazyLock<Mutex<HashMap<PathBuf, T>>>;

/// The `T` of `pool`'s file, made on first use. On every write: the path is copied only the
/// first time.
pub fn of_sqlite_file<T: Default + Clone>(registry: &PerSqliteFile<T>, pool: &SqlitePool) -> T {
    let options = pool.connect_options();
    let file = options.get_filename();
    let mut held = registry.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(value) = held.get(file) {
        return value.clone();
    }
    held.entry(file.to_path_buf()).or_default().clone()
}

/// One queue of writers per SQLite file in this process.
static SQLITE_WRITERS: PerSqliteFile<Arc<AsyncMutex<()>>> = LazyLock::new(Default::default);

async fn sqlite_writer_turn(pool: &SqlitePool) -> WriterTurn {
    let queue = of_sqlite_file(&SQLITE_WRITERS, pool);
    WriterTurn(queue.lock_owned().await)
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx, _) => Conn::Sqlite(tx),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx, _turn) => tx.commit().await,
        }
    }

    /// Rolls back now, before the turn is let go: dropping a transaction only queues its
    /// rollback, and the next writer would find the file still locked.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Sqlite(tx, _turn) => tx.rollback().await,
        }
    }
}

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }

    pub async fn acquire(&self) -> Result<PooledConn, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => PooledConn::Postgres(pool.acquire().await?),
            Db::Sqlite(pool) => PooledConn::Sqlite(pool.acquire().await?),
        })
    }

    /// Closes every connection of the pool, waiting for those in use.
    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            // Take the write lock up front: a deferred transaction that reads first cannot
            // upgrade once another writer has committed, and would fail instead of waiting.
            Db::Sqlite(pool) => {
                let turn = sqlite_writer_turn(pool).await;
                Tx::Sqlite(pool.begin_with("begin immediate").await?, turn)
            }
        })
    }

    /// As [`Db::begin`], with a turn already taken from [`Db::writer_turn`] (SQLite).
    pub async fn begin_in_turn(&self, turn: Option<WriterTurn>) -> Result<Tx, sqlx::Error> {
        match (self, turn) {
            (Db::Sqlite(pool), Some(turn)) => {
                Ok(Tx::Sqlite(pool.begin_with("begin immediate").await?, turn))
            }
            _ => self.begin().await,
        }
    }

    /// On SQLite, this process's turn at writing the file, for a write outside [`Db::begin`]
    /// (one statement on its own); none on PostgreSQL, which has row locks.
    ///
    /// SQLite has one writer at a time; one that finds the file locked sleeps in SQLite's
    /// busy handler (1, 2, 5 … 100 ms) and tries again, and may lose to a newcomer each
    /// time: under load, appends and projector batches waited up to a second. Writers of
    /// this process instead wait here, in order, woken as soon as the one before is done.
    /// (Another process on the same file still meets the busy handler.) Never held across
    /// a second `begin` in the same task: it is not reentrant.
    pub async fn writer_turn(&self) -> Option<WriterTurn> {
        match self {
            Db::Postgres(_) => None,
            Db::Sqlite(pool) => Some(sqlite_writer_turn(pool).await),
        }
    }
}

/// Evaluates `$body` with `$pool` bound to the concrete pool of `$db`.
#[macro_export]
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// Evaluates `$body` with `$conn` bound to the concrete connection of `$c`.
#[macro_export]
macro_rules! with_conn {
    ($c:expr, $conn:ident => $body:expr) => {
        match $c {
            $crate::db::Conn::Postgres($conn) => $body,
            $crate::db::Conn::Sqlite($conn) => $body,
        }
    };
}
