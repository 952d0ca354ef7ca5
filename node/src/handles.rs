//! The narrow handles the daemon's tasks get instead of one shared context: who this node is
//! ([`Me`]), how to dial ([`Dialer`]), what serves request streams ([`Server`]), and the
//! [`StatusBoard`] that `node status` reads, which every task writes its own part of through a
//! `watch` channel of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarmcast_bootstrap::{BootstrapClient, ClientError};
use swarmcast_certs::PeerInfo;
use swarmcast_net::DialError;
use swarmcast_proto::{BroadcastId, BroadcastState, NodeId};
use tokio::sync::{mpsc, watch};

use crate::data::broadcast::{DataReport, Failure};
use crate::data::serve::Catalog;
use crate::inputs::{FleetReads, ServeEvent};
use crate::status::{FleetProgress, MembershipStatus, NeighbourStatus, NodeStatus};

/// This node's identity and addresses.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) incarnation: u64,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: SocketAddr,
}

/// Dials other nodes and bootstraps from this node's endpoint, with its client TLS config.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
}

impl Dialer {
    pub(crate) fn new(endpoint: quinn::Endpoint, client_config: quinn::ClientConfig) -> Self {
        Self {
            endpoint,
            client_config,
        }
    }

    /// Dial `addr` and return the connection with the certificate identity met.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<(quinn::Connection, PeerInfo), DialError> {
        swarmcast_net::connect(&self.endpoint, &self.client_config, addr, timeout).await
    }

    /// Dial the bootstrap at `addr` (its certificate must carry the bootstrap role).
    pub(crate) async fn bootstrap(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<BootstrapClient, ClientError> {
        BootstrapClient::connect(&self.endpoint, &self.client_config, addr, timeout).await
    }
}

/// What serves request streams (chunks and manifests): the catalog of servable broadcasts and
/// where to report what happened.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) events: mpsc::Sender<ServeEvent>,
}

/// The writing ends of the status board, one per task.
#[derive(Debug)]
pub(crate) struct BoardWriters {
    pub(crate) membership: watch::Sender<MembershipStatus>,
    pub(crate) neighbours: watch::Sender<Vec<NeighbourStatus>>,
    pub(crate) data: watch::Sender<DataReport>,
}

/// What `node status` and `node fleet` read: the latest of each task's part.
#[derive(Debug, Clone)]
pub(crate) struct StatusBoard {
    me: Me,
    started: Instant,
    membership: watch::Receiver<MembershipStatus>,
    neighbours: watch::Receiver<Vec<NeighbourStatus>>,
    data: watch::Receiver<DataReport>,
    /// Tells membership of fleet reads, whose core decides whether one is worth a heartbeat
    /// off its period (see [`MembershipLinks::fleet_reads`]).
    ///
    /// [`MembershipLinks::fleet_reads`]: crate::membership::MembershipLinks::fleet_reads
    fleet_reads: Arc<watch::Sender<FleetReads>>,
}

impl StatusBoard {
    /// An empty board and its writers.
    pub(crate) fn new(me: Me) -> (Self, BoardWriters) {
        let (membership, membership_rx) = watch::channel(MembershipStatus::default());
        let (neighbours, neighbours_rx) = watch::channel(Vec::new());
        let (data, data_rx) = watch::channel(DataReport::default());
        let board = Self {
            me,
            started: Instant::now(),
            membership: membership_rx,
            neighbours: neighbours_rx,
            data: data_rx,
            fleet_reads: Arc::new(watch::channel(FleetReads::default()).0),
        };
        let writers = BoardWriters {
            membership,
            neighbours,
            data,
        };
        (board, writers)
    }

    /// The fleet reads [`fleet`](Self::fleet) counts, as membership reads them.
    pub(crate) fn fleet_reads(&self) -> watch::Receiver<FleetReads> {
        self.fleet_reads.subscribe()
    }

    /// The data plane's report (progress, records, uploads) as membership reads it.
    pub(crate) fn data(&self) -> watch::Receiver<DataReport> {
        self.data.clone()
    }

    pub(crate) fn status(&self) -> NodeStatus {
        let m = self.membership.borrow();
        let data = self.data.borrow();
        let uploaded_to = (data.uploaded_to.iter())
            .map(|(id, bytes)| (id.to_hex(), *bytes))
            .collect();
        let restricted = data.restricted.clone();
        let prioritized = data.prioritized.clone();
        drop(data);
        NodeStatus {
            id: self.me.id.to_hex(),
            name: self.me.name.clone(),
            incarnation: self.me.incarnation,
            listen: self.me.listen,
            advertise: self.me.advertise,
            registered: m.registered,
            bootstrap: m.bootstrap,
            seeds: m.seeds.clone(),
            neighbours: self.neighbours.borrow().clone(),
            registry_size: m.registry_size,
            registry_alive: m.registry_alive,
            uptime_s: self.started.elapsed().as_secs(),
            uploaded_to,
            last_heartbeat: m.last_heartbeat,
            restricted,
            prioritized,
        }
    }

    /// The certificate names of the nodes in the latest registry view.
    pub(crate) fn node_names(&self) -> std::collections::BTreeSet<String> {
        let m = self.membership.borrow();
        (m.view.iter())
            .filter(|e| e.record.role == swarmcast_proto::Role::Node)
            .map(|e| e.record.name.clone())
            .collect()
    }

    /// Fleet progress of one broadcast from the latest registry view.
    pub(crate) fn fleet(&self, id: BroadcastId) -> FleetProgress {
        let m = self.membership.borrow();
        let record = m.view_broadcasts.iter().find(|r| r.id == id);
        let mut out = FleetProgress::from_registry(id, record, &m.view);
        out.failed = record
            .and_then(|r| match r.state {
                BroadcastState::Failed => Some(Failure::OriginDeclared),
                BroadcastState::Cancelled => Some(Failure::Cancelled),
                BroadcastState::Active => None,
            })
            .map(|f| f.to_string());
        drop(m);
        // Membership's core decides whether this read is worth a heartbeat now (someone follows
        // an unfinished broadcast: the last completion then reaches it within a few round trips).
        let settled = out.outcome().is_settled();
        self.fleet_reads.send_modify(|r| {
            if settled {
                r.settled += 1;
            } else {
                r.unsettled += 1;
            }
        });
        out
    }
}
