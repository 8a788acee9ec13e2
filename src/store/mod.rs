//! The server's side of the event store (the log itself is `flowlytix_eventstore`): the
//! executor (with its aggregate cache), lookups, the publisher, and the migrations of the
//! whole schema.

mod cache;
mod command_names;
mod executor;
#[cfg(test)]
mod executor_tests;
pub mod idempotency;
mod lookup;
pub mod notices;
pub mod publisher;
pub mod webhook_queue;

pub use executor::{CommandName, Committed, Dated, EventMetadata, ExecuteError, Executor};
pub use flowlytix_eventstore::snapshot::SNAPSHOT_INTERVAL;
pub use flowlytix_eventstore::{
    connect, connect_for_serving, is_statement_timeout, ping_only_if_idle, Db, StoreError,
};
pub use lookup::Lookup;

pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    match db {
        Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
    }
}

/// Connects to the store at `url` and migrates it. A serving instance (`statement_limit`
/// set) then reconnects with every statement cut off after that limit: migrations may take
/// long, a serving pool's statements may not.
pub async fn open(
    url: &str,
    echo_sql: bool,
    statement_limit: Option<std::time::Duration>,
) -> Result<Db, OpenError> {
    let db = connect(url, echo_sql).await?;
    migrate(&db).await?;
    let db = match statement_limit {
        Some(limit) => {
            db.close().await;
            connect_for_serving(url, echo_sql, limit).await?
        }
        None => db,
    };
    match &db {
        Db::Sqlite(_) => tracing::info!(database = %url, "using the embedded SQLite store"),
        Db::Postgres(_) => tracing::info!("using PostgreSQL"),
    }
    Ok(db)
}

/// Opens the store a one-off command works on (`replay`, `events export`, `admin …`):
/// only `serve` and `migrate` create one. Run in the wrong directory or with the wrong
/// `DATABASE_URL`, [`open`] would make an empty store and the command would read nothing
/// from it, successfully. An existing store is migrated as the server would migrate it.
pub async fn open_existing(url: &str, echo_sql: bool) -> Result<Db, OpenError> {
    let db = connect_existing(url, echo_sql).await?;
    migrate(&db).await?;
    Ok(db)
}

/// As [`open_existing`], without migrating: for reading the store exactly as it is.
pub async fn connect_existing(url: &str, echo_sql: bool) -> Result<Db, OpenError> {
    if let Some(file) = sqlite_file(url)? {
        if !file.exists() {
            return Err(OpenError::Missing(file));
        }
    }
    let db = connect(url, echo_sql).await?;
    let tables: i64 = flowlytix_eventstore::with_db!(&db, pool => {
        sqlx::query_scalar(db.dialect().pick(
            "select count(*) from information_schema.tables
             where table_schema = current_schema() and table_name = '_sqlx_migrations'",
            "select count(*) from sqlite_master where type = 'table' and name = '_sqlx_migrations'",
        ))
        .fetch_one(pool)
        .await?
    });
    if tables == 0 {
        db.close().await;
        return Err(OpenError::NoSchema);
    }
    Ok(db)
}

/// The file of an SQLite URL, as seen from the current directory; `None` for PostgreSQL
/// and for an in-memory SQLite store.
pub fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, sqlx::Error> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    let file = options.get_filename();
    if file.as_os_str() == ":memory:" || file.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(std::path::absolute(file)?))
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "no database at {} (DATABASE_URL, or sqlite://data/flowlytix.db when unset; \
         relative paths start in the current directory): `flowlytix serve` or \
         `flowlytix migrate` creates it; run this command with the server's environment, \
         from its working directory",
        .0.display()
    )]
    Missing(std::path::PathBuf),
    #[error(
        "the database at DATABASE_URL has no Flowlytix tables: `flowlytix serve` or \
         `flowlytix migrate` creates them; check that DATABASE_URL is the server's"
    )]
    NoSchema,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};

    /// `backend/version` → SHA-384 hex, from `migrations/CHECKSUMS`.
    fn recorded() -> BTreeMap<String, String> {
        include_str!("../../migrations/CHECKSUMS")
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once(' '))
            .map(|(key, sum)| (key.to_owned(), sum.trim().to_owned()))
            .collect()
    }

    #[test]
    fn landed_migrations_are_never_edited() {
        let mut recorded = recorded();
        let mut unrecorded = Vec::new();
        for (backend, migrator) in [
            ("postgres", &POSTGRES_MIGRATIONS),
            ("sqlite", &SQLITE_MIGRATIONS),
        ] {
            for migration in migrator.iter() {
                let key = format!("{backend}/{:04}", migration.version);
                let actual: String = migration
                    .checksum
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect();
                match recorded.remove(&key) {
                    Some(expected) => assert_eq!(
                        actual, expected,
                        "migration {key} ({}) changed after it landed: revert it and add a new migration",
                        migration.description
                    ),
                    None => unrecorded.push(format!("{key} {actual}")),
                }
            }
        }
        assert!(
            recorded.is_empty(),
            "landed migrations were removed: {:?}",
            recorded.keys()
        );
        assert!(
            unrecorded.is_empty(),
            "record each new migration in migrations/CHECKSUMS once it is final:\n{}",
            unrecorded.join("\n")
        );
    }
}
