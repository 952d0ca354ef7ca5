//! The inputs of the daemon's actors: what the neighbour actor ([`NeighbourInput`]), the data
//! plane ([`DataInput`]) and the data plane's serving side ([`ServeEvent`]) are sent. A leaf:
//! every task imports the messages it sends from here, not from the task that receives them, so
//! no two tasks import each other.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use swarmcast_proto::{BroadcastId, BroadcastRecord, Message, NodeId, RegistryEntry};
use tokio::sync::{mpsc, oneshot};

use crate::data::broadcast::{BroadcastInfo, ManifestFetchError, PieceError};
use crate::data::PublishError;
use crate::manifest::{Manifest, ReadAs};
use crate::neighbours::Direction;
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
    DialFailed { id: NodeId, error: String },
    /// A connection ended.
    Closed { id: NodeId, stable_id: usize },
    /// A pong arrived.
    Pong { id: NodeId, nonce: u64 },
    /// Data-plane traffic (a have or have-update, either way) on the link to this peer.
    Active { id: NodeId },
    /// The data plane caught this peer serving bad data too often.
    Ban { id: NodeId },
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
        tx: mpsc::Sender<Message>,
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
        /// Whose permissions the directory is read with.
        read_as: ReadAs,
        reply: oneshot::Sender<Result<PublishInfo, PublishError>>,
    },
    /// `node ls`.
    List {
        reply: oneshot::Sender<Vec<BroadcastInfo>>,
    },
    /// Internal: a manifest was built by a blocking task.
    Built {
        result: Result<(Manifest, Vec<u8>, PathBuf), PublishError>,
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
    /// Internal: publication under `received/` ended.
    Finalized {
        id: BroadcastId,
        result: Result<PathBuf, StoreError>,
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
}
