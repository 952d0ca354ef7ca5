//! The inputs of the daemon's actors: what the neighbour actor ([`NeighbourInput`]), the data
//! plane ([`DataInput`]) and the data plane's serving side ([`ServeEvent`]) are sent. A leaf:
//! every task imports the messages it sends from here, not from the task that receives them, so
//! no two tasks import each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use swarmcast_net::{DialError, WireError};
use swarmcast_proto::{BroadcastId, BroadcastRecord, Message, NodeId, RegistryEntry, Role};
use tokio::sync::oneshot;

use crate::data::PublishError;
use crate::data::broadcast::{BroadcastInfo, ManifestFetchError, PieceError, TargetError};
use crate::manifest::{Built, ReadAs};
use crate::neighbours::{DialFailure, Direction, Unsent};
use crate::outbox::Outbox;
use crate::status::PublishInfo;
use crate::store::{StoreError, Workspace};

/// Inputs of the neighbour actor.
#[derive(Debug)]
pub(crate) enum NeighbourInput {
    /// A fresh registry view.
    Registry(Vec<RegistryEntry>),
    /// A connection is up, with its control stream.
    Connected(Box<Link>),
    /// A dial failed.
    DialFailed {
        id: NodeId,
        error: NeighbourDialError,
    },
    /// A connection ended.
    Closed { id: NodeId, stable_id: usize },
    /// A pong arrived.
    Pong { id: NodeId, nonce: u64 },
    /// A pong could not be queued on the control stream to this peer.
    Congested { id: NodeId, unsent: Unsent },
    /// Data-plane traffic (a have or have-update, either way) on the link to this peer.
    Active { id: NodeId },
    /// Packets arrived on the connection to this peer since the link last looked.
    Heard { id: NodeId },
    /// The data plane caught this peer serving bad data too often (it comes on a channel of
    /// its own, see `peers`).
    Ban { id: NodeId },
}

/// Why a dial to a neighbour failed, kept as types so that the neighbour core can tell a wrong
/// identity or a refused certificate from a peer that is merely out of reach.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NeighbourDialError {
    /// No connection (timeout, handshake failure).
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The address answered with another identity than the registry's.
    #[error("expected NodeId {expected}, met {met} ({role})")]
    WrongPeer {
        expected: NodeId,
        met: NodeId,
        role: Role,
    },
    /// The control stream could not be opened (the peer may have refused our certificate once
    /// the handshake was done).
    #[error("opening the control stream: {0}")]
    Stream(#[from] WireError),
}

impl NeighbourDialError {
    /// What the neighbour core makes of it.
    pub(crate) fn failure(&self) -> DialFailure {
        match self {
            Self::WrongPeer { .. } => DialFailure::WrongPeer,
            Self::Dial(DialError::Cert(_)) => DialFailure::Refused,
            Self::Dial(e) if e.cert_refusal().is_some() => DialFailure::Refused,
            Self::Stream(e) if e.cert_refusal().is_some() => DialFailure::Refused,
            Self::Dial(_) | Self::Stream(_) => DialFailure::Unreachable,
        }
    }
}

/// A connection to a neighbour with its control stream.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) direction: Direction,
    pub(crate) conn: quinn::Connection,
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
}

/// Inputs of the data-plane actor.
#[derive(Debug)]
pub(crate) enum DataInput {
    /// A neighbour connection is up (or replaced).
    PeerUp {
        id: NodeId,
        conn: quinn::Connection,
        /// Where the data plane's advertisements to it go (merged, never dropped).
        outbox: Arc<Outbox>,
    },
    /// A neighbour is gone.
    PeerDown { id: NodeId },
    /// A data-plane message on a neighbour's control stream.
    PeerMessage { id: NodeId, msg: Message },
    /// A fresh registry view.
    Registry {
        nodes: Vec<RegistryEntry>,
        broadcasts: Vec<BroadcastRecord>,
    },
    /// `node send`.
    Publish {
        dir: PathBuf,
        chunk_size: u32,
        /// Hash every file (no reuse of the previous version's hashes).
        rehash: bool,
        /// `--to`: restricted to these nodes and groups (checked, canonical).
        audience: Option<swarmcast_proto::Audience>,
        /// `--priority`.
        priority: swarmcast_proto::Priority,
        /// Whose permissions the directory is read with.
        read_as: ReadAs,
        reply: oneshot::Sender<Result<PublishInfo, PublishError>>,
    },
    /// `node ls`.
    List {
        reply: oneshot::Sender<Vec<BroadcastInfo>>,
    },
    /// `node rm`.
    Remove {
        target: String,
        reply: oneshot::Sender<Result<Vec<BroadcastId>, TargetError>>,
    },
    /// `node cancel`.
    Cancel {
        target: String,
        reply: oneshot::Sender<Result<Vec<BroadcastId>, TargetError>>,
    },
    /// `node fetch`.
    Fetch {
        target: String,
        reply: oneshot::Sender<Result<Vec<BroadcastId>, TargetError>>,
    },
    /// Internal: a manifest was built by a blocking task.
    Built {
        result: Result<(Built, Vec<u8>, PathBuf), PublishError>,
        reply: oneshot::Sender<Result<PublishInfo, PublishError>>,
    },
    /// Internal: a manifest fetch ended.
    ManifestFetched {
        id: BroadcastId,
        result: Result<Vec<u8>, ManifestFetchError>,
    },
    /// Internal: a workspace was created (or resumed) by a blocking task.
    WorkspaceCreated {
        id: BroadcastId,
        name: String,
        result: Result<Arc<Workspace>, StoreError>,
    },
    /// Internal: a piece request ended.
    PieceDone {
        id: BroadcastId,
        peer: NodeId,
        piece: u32,
        result: Result<(), PieceError>,
        bytes: u64,
    },
    /// Internal: a group commit ended.
    Committed {
        id: BroadcastId,
        result: Result<Vec<u32>, StoreError>,
    },
    /// Internal: finishing a complete workspace ended.
    Finalized {
        id: BroadcastId,
        result: Result<PathBuf, StoreError>,
    },
    /// Internal: pointing `received/<name>` at a version ended.
    Linked {
        name: String,
        id: BroadcastId,
        result: Result<PathBuf, StoreError>,
    },
    /// Internal: removing `received/<name>` (if it pointed at `id`) ended.
    Unlinked {
        name: String,
        id: BroadcastId,
        result: Result<bool, StoreError>,
    },
}

/// Events the serving side reports to the data plane.
#[derive(Debug)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum ServeEvent {
    /// The origin's source no longer matches the manifest at chunk `index`.
    SourceChanged { id: BroadcastId, index: u32 },
    /// Bytes uploaded to a peer.
    Uploaded {
        id: BroadcastId,
        peer: NodeId,
        bytes: u64,
    },
    /// A chunk request for chunks `first..end` of a broadcast served with super-seeding: may
    /// it be served? (The core's answer; `false`: answer `Elsewhere`.)
    Admit {
        id: BroadcastId,
        first: u32,
        end: u32,
        reply: oneshot::Sender<bool>,
    },
    /// An admitted send ended (`delivered`: the requester acknowledged every byte).
    Served {
        id: BroadcastId,
        first: u32,
        end: u32,
        delivered: bool,
    },
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn closed_by_peer(alert: u8) -> quinn::ConnectionError {
        quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn::TransportErrorCode::crypto(alert),
            frame_type: None,
            reason: bytes::Bytes::new(),
        })
    }

    #[test]
    fn dial_errors_tell_the_core_a_wrong_identity_and_a_refused_certificate_from_a_timeout() {
        let timeout =
            NeighbourDialError::Dial(DialError::Wire(WireError::Timeout(Duration::from_secs(2))));
        assert_eq!(timeout.failure(), DialFailure::Unreachable);
        let lost =
            NeighbourDialError::Stream(WireError::Connection(quinn::ConnectionError::TimedOut));
        assert_eq!(lost.failure(), DialFailure::Unreachable);
        let wrong = NeighbourDialError::WrongPeer {
            expected: NodeId([1; 32]),
            met: NodeId([2; 32]),
            role: Role::Node,
        };
        assert_eq!(wrong.failure(), DialFailure::WrongPeer);
        // The peer refused our certificate (unknown_ca) once our side of the handshake was done.
        let refused = NeighbourDialError::Stream(WireError::Connection(closed_by_peer(48)));
        assert_eq!(refused.failure(), DialFailure::Refused);
        let refused =
            NeighbourDialError::Dial(DialError::Wire(WireError::Connection(closed_by_peer(45))));
        assert_eq!(refused.failure(), DialFailure::Refused);
    }
}

/// How often the fleet progress of a broadcast was read (`node fleet`, `node send --wait`),
/// counted by whether the broadcast was settled then ([`FleetProgress::outcome`]): what the
/// status board tells membership, whose core decides whether a read is worth a heartbeat. A
/// pair of counters in a `watch` channel, so reads coalesce and none is lost.
///
/// [`FleetProgress::outcome`]: crate::status::FleetProgress::outcome
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FleetReads {
    /// Reads of a broadcast some alive node was still receiving.
    pub(crate) unsettled: u64,
    /// Reads of a settled broadcast.
    pub(crate) settled: u64,
}
