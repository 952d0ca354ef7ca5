//! Typed errors of the data-plane shell; those the broadcast core takes in are in
//! [`broadcast`](super::broadcast).

use crate::manifest::BuildError;
use crate::store::StoreError;

/// Why `node send` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The directory could not be turned into a manifest.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The directory's absolute path could not be found.
    #[error("{}: {source}", dir.display())]
    Canonicalize {
        /// The directory.
        dir: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The manifest could not be saved.
    #[error(transparent)]
    Save(#[from] StoreError),
    /// The blocking task building the manifest died.
    #[error("the manifest build task failed")]
    Task,
}
