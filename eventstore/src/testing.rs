//! Stores for this crate's tests.

use crate::Db;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// A migrated store on a new SQLite file of its own.
pub async fn sqlite_store(name: &str) -> Db {
    let path = std::env::temp_dir().join(format!(
        "flowlytix-{name}-test-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = crate::connect(&format!("sqlite://{}", path.display()), false)
        .await
        .unwrap();
    let Db::Sqlite(pool) = &db else {
        unreachable!("a sqlite:// URL opens SQLite")
    };
    SQLITE_MIGRATIONS.run(pool).await.unwrap();
    db
}
