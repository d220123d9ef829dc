//! The one error type of the store, and the one place database errors are translated.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object the operation targets does not exist (or vanished concurrently).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was broken; the text names what clashed.
    #[error("{0}")]
    Conflict(String),
    /// A per-owner limit was reached.
    #[error("{0}")]
    Quota(String),
    /// The database cannot be reached or is not answering.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: corrupt rows, failed migrations, driver errors.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Translates a driver error. `conflict` describes a unique violation in words the
    /// caller understands.
    pub(crate) fn from_sqlx(err: sqlx::Error, conflict: &str) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(conflict.to_owned())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
            sqlx::Error::RowNotFound => StoreError::NotFound("row"),
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from_sqlx(err, "unique constraint violated")
    }
}
