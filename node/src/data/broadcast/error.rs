//! The errors the broadcast core takes in (how a piece request or a manifest fetch ended, why a
//! stored broadcast could not be resumed) and the reason it gives for a failed broadcast.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use swarmcast_net::DialError;
use swarmcast_net::WireError;
use swarmcast_proto::{ErrorCode, NodeId, Role};

use crate::manifest::ManifestError;
use crate::store::StoreError;

/// Why a piece request ended without every chunk verified and written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PieceError {
    /// A chunk failed verification (hash or length): the peer served bad data.
    #[error("chunk {index} is bad: {source}")]
    BadChunk {
        /// The chunk.
        index: u32,
        /// What the store found.
        source: StoreError,
    },
    /// The origin declined: the piece is already in the swarm (super-seeding).
    #[error("declined: the piece is already in the swarm")]
    Declined,
    /// A chunk header that does not match the request.
    #[error("unexpected chunk header for chunk {got} (wanted chunk {wanted})")]
    UnexpectedHeader {
        /// The chunk asked for next.
        wanted: u32,
        /// The chunk the header named.
        got: u32,
    },
    /// The peer refused the request.
    #[error("refused: {code:?} {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Detail from the peer.
        message: String,
    },
    /// A frame other than a chunk or an error.
    #[error("unexpected frame in a chunk answer")]
    UnexpectedFrame,
    /// The stream ended before every chunk arrived.
    #[error("stream ended after {received} of {count} chunks")]
    EndedEarly {
        /// Chunks received.
        received: u32,
        /// Chunks asked for.
        count: u32,
    },
    /// A verified chunk could not be written.
    #[error("storing chunk {index}: {source}")]
    Store {
        /// The chunk.
        index: u32,
        /// The cause.
        source: StoreError,
    },
    /// The blocking task writing a chunk died.
    #[error("the task writing chunk {index} failed")]
    WriteTask {
        /// The chunk.
        index: u32,
    },
    /// Transport or framing failure.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Why a manifest fetch failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestFetchError {
    /// Transport or framing failure.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Dialling the origin failed.
    #[error("dialling the origin: {0}")]
    Dial(#[from] DialError),
    /// The origin's address answered with another identity.
    #[error("{addr} answered as {met} ({role}), not the origin {expected}")]
    WrongPeer {
        /// The address dialled.
        addr: SocketAddr,
        /// The origin's id.
        expected: NodeId,
        /// Who answered.
        met: NodeId,
        /// Its role.
        role: Role,
    },
    /// The peer refused.
    #[error("refused: {code:?} {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Detail from the peer.
        message: String,
    },
    /// An answer that is not the manifest asked for.
    #[error("unexpected answer to a manifest request")]
    UnexpectedAnswer,
    /// No answer in time.
    #[error("no manifest within {0:?}")]
    Timeout(Duration),
    /// The neighbour chosen is no longer connected.
    #[error("neighbour {} is no longer connected", .0.short())]
    NotConnected(NodeId),
}

/// Why a stored broadcast could not be resumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The saved manifest does not decode.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The origin's saved manifest is missing.
    #[error("the saved manifest is missing")]
    NoManifest,
    /// The workspace disappeared between listing and opening.
    #[error("workspace vanished")]
    Vanished,
}

/// Why a broadcast failed at this node (shown by `node ls`).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The registry says the origin failed the broadcast.
    #[error("the origin declared the broadcast failed")]
    OriginDeclared,
    /// The origin's source changed under a chunk being served.
    #[error("source changed under chunk {index}: refusing to serve it")]
    SourceChanged {
        /// The chunk whose bytes no longer match.
        index: u32,
    },
    /// A group commit failed: received chunks may not be durable.
    #[error("commit failed: {0}")]
    Commit(Arc<StoreError>),
    /// Publishing under `received/` failed.
    #[error("cannot publish under received/: {0}")]
    Finalize(Arc<StoreError>),
    /// The fetched manifest does not match its id or is invalid.
    #[error("rejected manifest: {0}")]
    Manifest(Arc<ManifestError>),
    /// The workspace could not be created.
    #[error("cannot create the workspace: {0}")]
    Workspace(Arc<StoreError>),
    /// A stored broadcast could not be resumed.
    #[error("cannot resume: {0}")]
    Resume(Arc<ResumeError>),
    /// Its origin cancelled it (`node cancel`).
    #[error("cancelled by its origin")]
    Cancelled,
    /// The node's `--max-disk` budget cannot hold it, even after removing what may be removed.
    #[error("not enough space within --max-disk: needs {needed} bytes, {free} free of {budget}")]
    NoDiskBudget {
        /// Bytes the broadcast needs.
        needed: u64,
        /// Bytes of the budget left after removing what could be removed.
        free: u64,
        /// The budget.
        budget: u64,
    },
    /// A newer version of the same name was published while this one was being received: it
    /// stopped and its partial data was removed.
    #[error("superseded by a newer version of {name:?}")]
    Superseded {
        /// The name.
        name: String,
    },
}
