//! The database alone, at the bench's concurrency: the baselines the server's figures are
//! divided by. Either backend: PostgreSQL (`postgres://…`) or the embedded SQLite file
//! (`sqlite://path`, opened with the server's own settings: WAL, `synchronous=FULL`).
//! Its pool pings connections as the server's does (only those idle for a while).

use std::str::FromStr;
use std::time::{Duration, Instant};

use flowlytix_server::store::{ping_only_if_idle, Db};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::BoxError;

/// A pool on the server's database, sized for the bench's workers.
pub struct Baseline {
    pub db: Db,
}

impl Baseline {
    pub async fn connect(url: &str, connections: u32) -> Result<Self, BoxError> {
        let db = if url.starts_with("sqlite:") {
            // The server's connection settings (store::connect), so that an insert here
            // costs what one costs the server: every commit synced.
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            Db::Sqlite(
                ping_only_if_idle(SqlitePoolOptions::new())
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?,
            )
        } else {
            Db::Postgres(
                ping_only_if_idle(PgPoolOptions::new())
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await?,
            )
        };
        Ok(Self { db })
    }

    /// On PostgreSQL, waits (until `started + limit`) for a second in which no other query
    /// runs in this database; true if it came. SQLite has no such view: true at once.
    pub async fn wait_quiet(&self, limit: Duration, started: Instant) -> bool {
        let Db::Postgres(pool) = &self.db else {
            return true;
        };
        let mut quiet_samples = 0;
        while quiet_samples < 10 && started.elapsed() < limit {
            let active: Result<i64, sqlx::Error> = sqlx::query_scalar(
                "select count(*) from pg_stat_activity
                 where datname = current_database() and state = 'active' and pid <> pg_backend_pid()",
            )
            .fetch_one(pool)
            .await;
            quiet_samples = if matches!(active, Ok(0)) {
                quiet_samples + 1
            } else {
                0
            };
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        quiet_samples >= 10
    }

    pub async fn create_scratch(&self) -> Result<(), sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => sqlx::query(
                "create table if not exists bench_scratch (id bigserial primary key, payload json not null)",
            )
            .execute(pool)
            .await
            .map(drop),
            Db::Sqlite(pool) => sqlx::query(
                "create table if not exists bench_scratch (id integer primary key autoincrement, payload text not null)",
            )
            .execute(pool)
            .await
            .map(drop),
        }
    }

    /// One single-row insert, in its own (auto-committed) transaction.
    pub async fn insert_scratch(db: &Db, payload: String) -> Result<(), sqlx::Error> {
        match db {
            Db::Postgres(pool) => {
                sqlx::query("insert into bench_scratch (payload) values ($1::json)")
                    .bind(payload)
                    .execute(pool)
                    .await
            }
            .map(drop),
            Db::Sqlite(pool) => sqlx::query("insert into bench_scratch (payload) values ($1)")
                .bind(payload)
                .execute(pool)
                .await
                .map(drop),
        }
    }

    pub async fn drop_scratch(&self) -> Result<(), sqlx::Error> {
        flowlytix_projections::with_db!(&self.db, pool => {
            sqlx::query("drop table if exists bench_scratch").execute(pool).await.map(drop)
        })
    }

    /// Events in the log.
    pub async fn count_events(&self) -> Result<u64, BoxError> {
        let count: i64 = flowlytix_projections::with_db!(&self.db, pool => {
            sqlx::query_scalar("select count(*) from events").fetch_one(pool).await?
        });
        Ok(u64::try_from(count)?)
    }

    pub async fn close(&self) {
        self.db.close().await;
    }
}
