//! The identity this store got when its schema was made (migration 0007). It is stamped on
//! the bus's stream and on every message, so that a server never publishes to, or projects
//! from, a stream that belongs to another store.

use crate::db::Db;
use crate::with_db;

pub async fn store_identity(db: &Db) -> Result<String, sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query_scalar::<_, String>("select cast(store_id as text) from store_identity where id = 1")
            .fetch_one(pool)
            .await
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::sqlite_store;

    #[tokio::test]
    async fn the_store_has_one_identity() {
        let db = sqlite_store("identity").await;
        let identity = super::store_identity(&db).await.unwrap();
        assert!(uuid::Uuid::parse_str(&identity).is_ok());
        assert_eq!(super::store_identity(&db).await.unwrap(), identity);
    }
}
