//! What can go wrong reading or appending to the log.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the event store failed")]
    Database(#[from] sqlx::Error),
    #[error("cannot encode an event")]
    Encode(#[from] serde_json::Error),
    #[error("the events of {aggregate_id} jump from version {version} to {found}")]
    Gap {
        aggregate_id: String,
        version: u64,
        found: u64,
    },
    #[error("{inserted} rows came back from appending {sent} events")]
    Unconfirmed { sent: usize, inserted: usize },
    /// A group commit's append whose outcome its writer could not tell (nothing of the
    /// group was committed, or the writer stopped).
    #[error("the append was not confirmed: {0}")]
    Unanswered(&'static str),
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// One of the sequences is taken: another writer appended first.
    #[error("another writer appended to the aggregate first")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A taken sequence (the unique key on aggregate type, id and sequence) is a conflict.
pub(crate) fn classify(error: sqlx::Error) -> AppendError {
    match &error {
        sqlx::Error::Database(e) if e.is_unique_violation() => AppendError::Conflict,
        _ => AppendError::Store(error.into()),
    }
}
