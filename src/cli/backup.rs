//! `flowlytix backup FILE`: a consistent copy of the embedded store, taken while the server
//! serves.
//!
//! SQLite's `VACUUM INTO` writes the database as one read transaction sees it: every
//! transaction committed before it began and none after, events and read models (with
//! their checkpoints) at the same instant. In WAL mode it holds no lock that stops the
//! server's writers. PostgreSQL has tools of its own for this (docs/operations.md).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::store::{self, Db};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "flowlytix backup copies the embedded SQLite store, and DATABASE_URL names a PostgreSQL \
         database: back that up with pg_dump, or with a base backup and WAL archiving \
         (docs/operations.md, \"Backups\")"
    )]
    NotEmbedded,
    #[error("{} exists already: a backup never overwrites a file", .0.display())]
    Exists(PathBuf),
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("the copy failed: {0}")]
    Copy(#[from] sqlx::Error),
}

/// What was copied, as the command reports it.
pub struct Copied {
    file: PathBuf,
    events: i64,
    last_position: i64,
    bytes: u64,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backed up {} events (to position {}) to {} ({:.1} MB)",
            self.events,
            self.last_position,
            self.file.display(),
            self.bytes as f64 / 1e6
        )
    }
}

pub async fn backup(url: &str, file: &Path) -> Result<Copied, BackupError> {
    if store::sqlite_file(url)
        .map_err(BackupError::Copy)?
        .is_none()
    {
        return Err(BackupError::NotEmbedded);
    }
    let file = std::path::absolute(file).map_err(|source| BackupError::Create {
        path: file.to_owned(),
        source,
    })?;
    if file.exists() {
        return Err(BackupError::Exists(file));
    }
    // Not migrated: the copy is the store as it is.
    let db = store::connect_existing(url, false).await?;
    let Db::Sqlite(pool) = &db else {
        return Err(BackupError::NotEmbedded);
    };
    let create = |source| BackupError::Create {
        path: file.clone(),
        source,
    };
    // Made empty first (VACUUM INTO takes an empty file), owner only: the copy holds the
    // customers' data and the admins' password hashes, as the store does.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(create)?;
    let copied = sqlx::query("vacuum into $1")
        .bind(file.to_string_lossy().as_ref())
        .execute(pool)
        .await;
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&file);
        return Err(error.into());
    }
    // SQLite does not flush what VACUUM INTO wrote: a backup that a power cut can undo is
    // none.
    sync(&file).map_err(create)?;
    let (events, last_position): (i64, i64) =
        sqlx::query_as("select count(*), coalesce(max(global_position), 0) from events")
            .fetch_one(&read_only(&file).await?)
            .await?;
    db.close().await;
    let bytes = std::fs::metadata(&file).map_err(create)?.len();
    Ok(Copied {
        file,
        events,
        last_position,
        bytes,
    })
}

fn sync(file: &Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The copy, opened to count what it holds without changing it.
async fn read_only(file: &Path) -> Result<sqlx::SqlitePool, sqlx::Error> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
}
