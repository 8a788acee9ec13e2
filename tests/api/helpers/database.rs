//! The backend of this test run and fresh databases on it.

use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend of this test run (`FLOWLYTIX_TEST_BACKEND`).
pub fn backend() -> Backend {
    match std::env::var("FLOWLYTIX_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// For tests of what only PostgreSQL + NATS have (JetStream, several instances, the xid8
/// horizon): true, after saying so once, when this run is on SQLite.
pub fn skip_unless_postgres() -> bool {
    static SAID: OnceLock<()> = OnceLock::new();
    if backend() == Backend::Postgres {
        return false;
    }
    SAID.get_or_init(|| {
        eprintln!(
            "note: the PostgreSQL + NATS tests (read_side) pass trivially on the SQLite backend; \
             `scripts/test` runs them with FLOWLYTIX_TEST_BACKEND=postgres"
        )
    });
    true
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database for this run's backend and returns its URL.
pub async fn fresh_database_url() -> String {
    match backend() {
        Backend::Postgres => fresh_database().await,
        Backend::Sqlite => {
            let dir =
                std::env::temp_dir().join(format!("flowlytix-test-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("create a temporary directory");
            format!("sqlite://{}", dir.join("flowlytix.db").display())
        }
    }
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn fresh_database() -> String {
    let name = format!("flowlytix_test_{}", Uuid::new_v4().simple());
    let server = server_url();
    let mut connection = PgConnection::connect(&server)
        .await
        .expect("PostgreSQL must be running (see README)");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut connection)
        .await
        .expect("create test database");
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base)
        .to_owned();
    format!("{base}/{name}")
}
