//! Appending to the log, on either backend.

use crate::db::Db;
use crate::error::{classify, AppendError};
use crate::group_commit;
use crate::write::Append;

/// Appends the events and returns their global positions in order. On PostgreSQL this is
/// one `insert … returning` statement, atomic on its own, or with a snapshot a transaction
/// of the insert and the snapshot, so a snapshot never runs ahead of the events it folds.
/// On SQLite, appends waiting at the same time are committed together (`group_commit`).
pub async fn append(db: &Db, append: Append) -> Result<Vec<i64>, AppendError> {
    let positions = match db {
        Db::Sqlite(_) => group_commit::append(db, append).await?,
        Db::Postgres(_) if append.snapshot.is_none() => {
            let mut connection = db.acquire().await.map_err(classify)?;
            append.write(connection.conn()).await?
        }
        Db::Postgres(_) => {
            let mut tx = db.begin().await.map_err(classify)?;
            let positions = append.write(tx.conn()).await?;
            tx.commit().await.map_err(classify)?;
            positions
        }
    };
    APPENDED.notify_waiters();
    Ok(positions)
}

/// Woken after every append in this process: the publishers here wait on it instead of a
/// database notification. A NOTIFY would make PostgreSQL serialize every appending
/// transaction's commit (it holds a database-wide lock from before the commit record is
/// written until it is flushed), which capped activations at a few hundred a second; other
/// instances' appends are found by the publisher's poll.
pub static APPENDED: tokio::sync::Notify = tokio::sync::Notify::const_new();
