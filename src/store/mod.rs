//! The event store (PostgreSQL via postgres-es) and the queries that read it directly.

mod executor;
mod lookup;

pub use executor::{Committed, EventMetadata, ExecuteError, Executor};
pub use lookup::Lookup;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub async fn connect(url: &str, echo_sql: bool) -> Result<PgPool, sqlx::Error> {
    let mut options: PgConnectOptions = url.parse()?;
    options = if echo_sql {
        options.log_statements(tracing::log::LevelFilter::Info)
    } else {
        options.log_statements(tracing::log::LevelFilter::Trace)
    };
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    POSTGRES_MIGRATIONS.run(pool).await
}
