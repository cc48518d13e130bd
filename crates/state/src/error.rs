//! Errors of the state machine: a request error goes back to the caller, anything else is fatal.

use keel_api::EtcdError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The request is refused; the store is unchanged.
    #[error(transparent)]
    Request(#[from] EtcdError),
    #[error("backend: {0}")]
    Backend(#[from] redb::Error),
    #[error("backend data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot decode a committed entry at index {index}: {reason}")]
    BadEntry { index: u64, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl StateError {
    /// Whether the member cannot go on (as opposed to one request being refused).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, StateError::Request(_))
    }
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for StateError {
            fn from(error: $error) -> Self {
                StateError::Backend(error.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
