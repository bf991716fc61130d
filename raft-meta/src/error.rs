//! The errors `MetaClient` callers branch on.

use crate::types::CommandError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaError {
    /// The state machine refused the command; retrying the same command
    /// gives the same answer.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// No quorum, no leader, or the Raft node stopped: retry later.
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// Local storage failed; the node cannot serve metadata.
    #[error("metadata storage: {0}")]
    Storage(String),
    /// A stored record could not be decoded.
    #[error("metadata corrupt: {0}")]
    Corrupt(String),
    /// The command is larger than any the metadata takes.
    #[error("a metadata change of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
}

impl MetaError {
    pub(crate) fn from_sled(e: sled::Error) -> Self {
        MetaError::Storage(e.to_string())
    }

    /// Whether the same request may succeed if retried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MetaError::Unavailable(_))
    }
}

impl From<crate::state_machine::tx::Fatal> for MetaError {
    fn from(f: crate::state_machine::tx::Fatal) -> Self {
        match f {
            crate::state_machine::tx::Fatal::Storage(e) => MetaError::Storage(e.to_string()),
            crate::state_machine::tx::Fatal::Corrupt(e) => MetaError::Corrupt(e.to_string()),
        }
    }
}

impl From<crate::records::DecodeError> for MetaError {
    fn from(e: crate::records::DecodeError) -> Self {
        MetaError::Corrupt(e.to_string())
    }
}

impl From<crate::table::DbError> for MetaError {
    fn from(e: crate::table::DbError) -> Self {
        MetaError::Storage(e.to_string())
    }
}
