//! The garbage collection scheduler's errors, each with its containerd
//! kind.

use std::sync::Arc;

use crated_core::error::KindError;
use crated_core::Kind;

/// What a caller waiting for a collection can be told; `?` turns it into a
/// [`crated_core::Error`] of its kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The scheduler's task has ended (its runtime is shutting down).
    #[error("garbage collection scheduler has stopped")]
    Stopped,
    /// The collection ran and failed. Every waiter of that collection
    /// gets the same error, shared.
    #[error("garbage collection failed: {0}")]
    CollectionFailed(#[source] Arc<crated_core::Error>),
}

impl KindError for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Stopped => Kind::Unavailable,
            Error::CollectionFailed(err) => err.kind(),
        }
    }
}
