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

/// The embedded store when `DATABASE_URL` is unset.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://data/flowlytix.db";

pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    match db {
        Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
    }
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
