//! Client side of the bootstrap protocol, used by nodes, by fellow bootstraps and by the CLI.

use std::net::SocketAddr;
use std::time::Duration;

use swarmcast_certs::{CertError, PeerInfo};
use swarmcast_proto::{
    Announce, BroadcastRecord, Heartbeat, Limits, Lookup, Message, NodeId, Register, Registered,
    RegistryView, Role,
};

use swarmcast_net::wire::{self, WireError};
use swarmcast_net::{CertRefusal, CloseCode, DialError};

/// Errors of a bootstrap client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Transport or protocol failure.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer's certificate could not be read.
    #[error("peer certificate: {0}")]
    Cert(#[from] CertError),
    /// The peer at that address is not a bootstrap.
    #[error("{addr} is not a bootstrap (its certificate says role {role})")]
    NotBootstrap {
        /// Dialled address.
        addr: SocketAddr,
        /// The role it has.
        role: Role,
    },
}

impl ClientError {
    /// The certificate refusal that failed the handshake, if that is what happened (see
    /// [`CertRefusal`]).
    pub fn cert_refusal(&self) -> Option<CertRefusal> {
        match self {
            Self::Wire(e) => e.cert_refusal(),
            Self::Cert(_) | Self::NotBootstrap { .. } => None,
        }
    }
}

impl From<DialError> for ClientError {
    fn from(e: DialError) -> Self {
        match e {
            DialError::Wire(e) => Self::Wire(e),
            DialError::Cert(e) => Self::Cert(e),
        }
    }
}

/// A connection to one bootstrap.
#[derive(Debug, Clone)]
pub struct BootstrapClient {
    conn: quinn::Connection,
    peer: PeerInfo,
    addr: SocketAddr,
    limits: Limits,
    timeout: Duration,
}

impl BootstrapClient {
    /// Dial a bootstrap; fails unless its certificate has the bootstrap role.
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        config: &quinn::ClientConfig,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let (conn, peer) = swarmcast_net::connect(endpoint, config, addr, timeout).await?;
        if peer.role != Role::Bootstrap {
            conn.close(CloseCode::WrongPeer.into(), b"not a bootstrap");
            return Err(ClientError::NotBootstrap {
                addr,
                role: peer.role,
            });
        }
        Ok(Self {
            conn,
            peer,
            addr,
            limits: Limits::default(),
            timeout,
        })
    }

    /// The bootstrap's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bootstrap's certificate identity.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The underlying connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Whether the connection has been closed (by either side, or by a timeout).
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Set the per-request timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    async fn call(&self, msg: Message) -> Result<Message, ClientError> {
        Ok(wire::request(&self.conn, &msg, &self.limits, self.timeout).await?)
    }

    /// Register this node (`id` must be this process's certificate NodeId).
    pub async fn register(
        &self,
        id: NodeId,
        incarnation: u64,
        addrs: Vec<SocketAddr>,
    ) -> Result<Registered, ClientError> {
        self.register_with(Register {
            id,
            incarnation,
            addrs,
            pull: false,
        })
        .await
    }

    /// Register this node with every field of [`Register`] (`pull` among them).
    pub async fn register_with(&self, register: Register) -> Result<Registered, ClientError> {
        match self.call(Message::Register(register)).await? {
            Message::Registered(r) => Ok(r),
            _ => Err(WireError::Unexpected("expected Registered").into()),
        }
    }

    /// Send one heartbeat.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<(), ClientError> {
        match self.call(Message::Heartbeat(hb)).await? {
            Message::Ack(_) => Ok(()),
            _ => Err(WireError::Unexpected("expected Ack").into()),
        }
    }

    /// Send one heartbeat asking for what changed since `hb.changes_since` (set it). `None`
    /// if the bootstrap only acknowledged (it predates change answers): then ask
    /// [`BootstrapClient::lookup`].
    pub async fn heartbeat_changes(
        &self,
        hb: Heartbeat,
    ) -> Result<Option<RegistryView>, ClientError> {
        match self.call(Message::Heartbeat(hb)).await? {
            Message::Registry(v) => Ok(Some(v)),
            Message::Ack(_) => Ok(None),
            _ => Err(WireError::Unexpected("expected Registry or Ack").into()),
        }
    }

    /// The bootstrap's whole registry view.
    pub async fn lookup(&self) -> Result<RegistryView, ClientError> {
        match self.call(Message::Lookup(Lookup {})).await? {
            Message::Registry(v) => Ok(v),
            _ => Err(WireError::Unexpected("expected Registry").into()),
        }
    }

    /// Register or update a broadcast record (origin only).
    pub async fn announce(&self, record: BroadcastRecord) -> Result<(), ClientError> {
        match self.call(Message::Announce(Announce { record })).await? {
            Message::Ack(_) => Ok(()),
            _ => Err(WireError::Unexpected("expected Ack").into()),
        }
    }

    /// Close the connection.
    pub fn close(&self) {
        self.conn.close(CloseCode::Shutdown.into(), b"bye");
    }
}
