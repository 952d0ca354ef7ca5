//! Broadcast core: every broadcast this node knows, from first hearing of it to publishing it,
//! with the decisions of the data plane in one pure struct.
//!
//! [`Broadcasts`] is pure, in the manner of quinn-proto and of the [`Transfer`] cores it owns (one
//! per broadcast being received): it opens nothing, reads no clock and touches no file. The shell
//! (`data/mod.rs`) feeds it what happened, with the current time, and carries out the
//! [`BroadcastAction`]s it emits. Randomness (retry jitter, the transfers' seeds) comes from an
//! RNG seeded at construction, so a run is reproducible.
//!
//! # What it decides
//! * **The lifecycle.** An origin's broadcast is *seeding* from the moment it is published (or
//!   resumed); it *fails* if its source changes under a chunk being served. A receiver's broadcast
//!   is *receiving* from the moment its workspace exists; it is *complete* once published under
//!   `received/`, and *fails* if a commit or the publication fails, or if the registry says the
//!   origin failed it. Broadcasts whose manifest was rejected or whose workspace could not be
//!   made are remembered as failed, so that they are never fetched again.
//! * **When to commit and finalize.** Verified pieces wait for a group commit: at most one commit
//!   runs per broadcast, and one starts as soon as a piece is waiting and none runs, so pieces
//!   that arrive during a commit share the next one ([`BroadcastAction::Commit`]). A piece is
//!   held only once its commit reports it durable. When the transfer is complete (or a resumed
//!   workspace is already complete) the core asks once for [`BroadcastAction::Finalize`].
//! * **When to advertise and serve.** A broadcast is served ([`BroadcastAction::Serve`]) from the
//!   moment it is added, the origin's with super-seeding in a swarm ([`SuperSeed`]), a receiver's
//!   from every chunk verified and written, durable or not (durability decides only what a
//!   restart keeps: in the lab's wire trace, waiting for the commit delayed each hop by 50 ms
//!   median, up to 230 ms p90). A full `Have` of those chunks goes to every neighbour when a
//!   broadcast is added and to every new neighbour; a `HaveUpdate` with a piece's chunks goes to
//!   every neighbour as soon as the piece is received. A receiver that fails because a commit
//!   failed or the origin declared the broadcast failed has its requests aborted and stops being
//!   served ([`BroadcastAction::AbortRequests`], [`BroadcastAction::Unserve`]); one whose
//!   publication under `received/` failed holds every chunk, verified and durable, and keeps
//!   serving them. An origin whose source changed under the newest version (the serving side
//!   reports it, [`handle_source_changed`](Broadcasts::handle_source_changed)) fails it and
//!   refuses every request for it from then on ([`BroadcastAction::RefuseServing`]); an older
//!   version whose source changed stops being served ([`BroadcastAction::Unserve`]).
//! * **Manifest fetching.** A broadcast heard of (a neighbour's `Have`, a registry record) but not
//!   known is *unknown*. Its manifest is fetched from a neighbour that announced it, each asked
//!   once, else from the origin, dialled at its registry address. One fetch runs at a time; a
//!   failed fetch is retried after an exponential backoff with jitter
//!   ([`manifest_retry_min`](BroadcastConfig::manifest_retry_min) doubling up to
//!   [`manifest_retry_max`](BroadcastConfig::manifest_retry_max)), and at once when a new
//!   neighbour announces it. An unknown broadcast not heard of for
//!   [`unknown_ttl`](BroadcastConfig::unknown_ttl) is forgotten, and at most
//!   [`max_unknown`](BroadcastConfig::max_unknown) are tracked, so peers cannot make the node
//!   remember without bound. A fetched manifest is checked against its id and validated here; a
//!   bad one fails the broadcast for good.
//! * **Pull on demand.** With [`pull`](BroadcastConfig::pull) (`node join --pull`), a broadcast
//!   heard of is tracked as unknown (who announced it, its record) but its manifest is fetched
//!   only once [`fetch`](Broadcasts::fetch) asked for it (`node fetch`): no workspace is made for
//!   anything else. A fetch of a name asks for its newest live version, which then follows the
//!   rules of every version (`versions`); one that a newer version supersedes before it is
//!   complete is remembered as superseded, and the newer one is not fetched unless asked. A
//!   fetch also works without `pull`: it asks again for a version removed here (`node rm`), or
//!   names the one already being received.
//! * **The strategy.** In a [`Strategy::Swarm`] every neighbour that has a piece is a source; in
//!   [`Strategy::OriginOnly`] only the origin is (the transfers never hear of other peers), and
//!   the origin serves every request.
//!
//! # Call order
//! 1. Create the core with [`Broadcasts::new`]. Add what the data dir holds:
//!    [`add_origin`](Broadcasts::add_origin) and [`add_receiver`](Broadcasts::add_receiver) (with
//!    the chunks already durable), and [`add_failed`](Broadcasts::add_failed) for what cannot be
//!    resumed.
//! 2. Feed every input through the matching method, with `now` read just before:
//!    * a neighbour is up or gone: [`handle_peer_up`](Broadcasts::handle_peer_up),
//!      [`handle_peer_down`](Broadcasts::handle_peer_down);
//!    * a data message on a neighbour's control stream:
//!      [`handle_peer_message`](Broadcasts::handle_peer_message);
//!    * a registry view: [`handle_registry`](Broadcasts::handle_registry);
//!    * `node send` built and saved a manifest: [`add_origin`](Broadcasts::add_origin) (ask
//!      [`is_seeding`](Broadcasts::is_seeding) first: publishing what is already seeding is a
//!      no-op);
//!    * a [`FetchManifest`](BroadcastAction::FetchManifest) ended:
//!      [`handle_manifest_fetched`](Broadcasts::handle_manifest_fetched); a
//!      [`CreateWorkspace`](BroadcastAction::CreateWorkspace) ended:
//!      [`add_receiver`](Broadcasts::add_receiver) or
//!      [`handle_workspace_failed`](Broadcasts::handle_workspace_failed);
//!    * a [`Request`](BroadcastAction::Request) ended with every chunk verified and written:
//!      [`handle_piece_received`](Broadcasts::handle_piece_received); otherwise:
//!      [`handle_piece_failed`](Broadcasts::handle_piece_failed);
//!    * a [`Commit`](BroadcastAction::Commit) ended:
//!      [`handle_durable`](Broadcasts::handle_durable) (persist, then acknowledge: only then are
//!      the pieces held, that is counted in progress and kept by a restart; they were
//!      advertised and served as soon as they were written);
//!    * a [`Finalize`](BroadcastAction::Finalize) ended:
//!      [`handle_finalized`](Broadcasts::handle_finalized);
//!    * `node rm`, `node cancel`, `node fetch`: [`remove`](Broadcasts::remove),
//!      [`cancel`](Broadcasts::cancel), [`fetch`](Broadcasts::fetch);
//!    * the serving side found the origin's source changed, or uploaded bytes:
//!      [`handle_source_changed`](Broadcasts::handle_source_changed),
//!      [`handle_uploaded`](Broadcasts::handle_uploaded).
//! 3. After every call, drain [`poll_action`](Broadcasts::poll_action) until it returns `None`
//!    and carry each action out, then re-arm the timer with
//!    [`poll_timeout`](Broadcasts::poll_timeout) (`None`: no timer).
//! 4. When the clock reaches `poll_timeout()`, call
//!    [`handle_timeout`](Broadcasts::handle_timeout) and go to step 3.
//!
//! [`list`](Broadcasts::list) and [`report`](Broadcasts::report) read the state for `node ls`
//! and for membership's heartbeats at any time.
//!
//! # The shell's side of the contract
//! * Every action that runs something (`FetchManifest`, `CreateWorkspace`, `Request`, `Commit`,
//!   `Finalize`) is answered by exactly one of the methods named above, unless a `Cancel` or an
//!   `AbortRequests` for it came first, or the peer was reported down (then report nothing).
//! * `Request` asks `peer` for chunks `first..first + count` of piece `piece`; a peer reported
//!   down has its requests aborted by the shell without reports.
//! * `Ban` closes the connection to the peer and tells the neighbour core.
//! * A chunk request for a broadcast served with `super_seed` is first put to
//!   [`handle_serve_request`](Broadcasts::handle_serve_request) (declined: answer
//!   `Elsewhere`), and an admitted one's end is reported with
//!   [`handle_served`](Broadcasts::handle_served), however the send ended.

mod audience;
mod bcast;
mod error;
pub mod priority;
mod pull;
mod retention;
mod superseed;
#[cfg(test)]
mod tests;
mod types;
mod versions;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use swarmcast_proto::{
    BroadcastId, BroadcastRecord, BroadcastState, ChunkIndex, Have, HaveUpdate, Message, NodeId,
    Progress, RegistryEntry, Status,
};
use tracing::{debug, error, info, warn};

pub use audience::{NotInAudience, serve_verdict};
pub use error::{Failure, ManifestFetchError, PieceError, ResumeError};
pub use retention::TargetError;
pub use superseed::SuperSeed;
pub use types::{
    BroadcastAction, BroadcastConfig, BroadcastInfo, COMMIT_INTERVAL, DEFAULT_KEEP, DataReport,
    LocalCopy, LocalLink, ManifestSource, Publication, Strategy,
};

use crate::status::RestrictedBroadcast;
use bcast::{Bcast, State};

use crate::bitfield::Bitfield;
use crate::listing::BroadcastPhase;
use crate::manifest::{Layout, Manifest};
use crate::store::StoreError;
use crate::swarm::{SwarmAction, Transfer};

/// A broadcast heard of whose manifest this node does not have yet.
#[derive(Debug)]
struct Unknown {
    /// Neighbours that announced it, not yet asked.
    sources: Vec<NodeId>,
    /// A fetch (or the workspace creation after it) is running.
    fetching: bool,
    /// Fetches started.
    attempts: u32,
    /// No fetch before this time (backoff after a failure).
    retry_at: Option<Instant>,
    /// Last time a neighbour or the registry mentioned it.
    heard: Instant,
    /// A neighbour that said it is the origin (its `Have` had `from_origin`): the origin until
    /// the registry's record names one.
    claimed_origin: Option<NodeId>,
    /// The publication `seq` a neighbour's `Have` gave: until the registry's record says.
    claimed_seq: u64,
    /// The audience a neighbour's `Have` gave (restricted): until the registry's record says.
    claimed_audience: Option<swarmcast_proto::Audience>,
    /// (chunks, bytes) once its manifest was fetched.
    totals: Option<(u64, u64)>,
}

/// A broadcast remembered as failed without a manifest or workspace.
#[derive(Debug)]
struct Lost {
    name: String,
    failure: Failure,
    /// (chunks, bytes) when its manifest was known here (else the registry's record says).
    totals: Option<(u64, u64)>,
    /// When it was remembered (see `Broadcasts::remember_lost`).
    order: u64,
}

/// How long a transfer waits for its origin's `Have` before taking a connected origin as a
/// source of every piece (it holds them all). The announcement normally comes within a round
/// trip, but one dropped (a node that heard of more unknown broadcasts at once than it tracks,
/// `max_unknown`) is not repeated, and the transfer then waited for ever: in `bench sends`,
/// 40% of the broadcasts after the 2,000th of 5,000 stayed at 0 chunks at both receivers.
pub const ASSUME_ORIGIN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The broadcast core. See the [module docs](self).
#[derive(Debug)]
pub struct Broadcasts {
    config: BroadcastConfig,
    me: NodeId,
    rng: StdRng,
    broadcasts: BTreeMap<BroadcastId, Bcast>,
    lost: BTreeMap<BroadcastId, Lost>,
    /// `lost` in the order remembered (with stale places for entries since re-remembered).
    lost_order: VecDeque<(u64, BroadcastId)>,
    lost_count: u64,
    unknown: BTreeMap<BroadcastId, Unknown>,
    /// Neighbours, with when each connection came up (the stall invariant counts only peers
    /// connected for the whole window).
    peers: BTreeMap<NodeId, Instant>,
    /// When timers last ran while a transfer was active (pause detection, see
    /// [`BroadcastConfig::tick`]).
    last_tick: Option<Instant>,
    /// Peers a transfer banned for bad chunks: no transfer of this node fetches from them
    /// again, though they stay neighbours and are still served.
    banned: BTreeSet<NodeId>,
    /// Latest have bitfields (chunks) per broadcast and peer. Ordered, as every map here: the
    /// order in which a transfer hears of its peers decides whom it asks first.
    haves: BTreeMap<BroadcastId, BTreeMap<NodeId, Bitfield>>,
    records: BTreeMap<BroadcastId, BroadcastRecord>,
    nodes: Vec<RegistryEntry>,
    uploaded_to: BTreeMap<NodeId, u64>,
    actions: VecDeque<BroadcastAction>,
    /// Broadcasts with a transfer that is not complete: the only ones with timers or requests.
    active: BTreeSet<BroadcastId>,
    /// Broadcasts held here, by name.
    names: BTreeMap<String, BTreeSet<BroadcastId>>,
    /// Live (not failed) versions known per name: registry records and this node's own.
    live: BTreeMap<String, BTreeSet<versions::VersionKey>>,
    /// The highest publication `seq` known per name (failed versions included).
    max_seq: BTreeMap<String, u64>,
    /// The version `received/<name>` is known to point at on disk, per name (set once a
    /// [`BroadcastAction::Link`] has ended, so that nothing is reported shown before it is).
    linked: BTreeMap<String, BroadcastId>,
    /// Names with a [`BroadcastAction::Link`] (`Some`) or [`BroadcastAction::Unlink`] (`None`)
    /// under way: one at a time per name, so that two never race on the symlink; the next is
    /// decided when it ends.
    linking: BTreeMap<String, Option<BroadcastId>>,
    /// Per name, the version whose link failed last (not tried again for it; listed complete
    /// at its own path).
    link_refused: BTreeMap<String, BroadcastId>,
    /// Broadcasts removed here (`node rm`, retention, superseded, ended by their origin): never
    /// fetched again.
    removed: BTreeSet<BroadcastId>,
    /// Broadcasts asked for with [`fetch`](Self::fetch) whose workspace does not exist yet: the
    /// only unknown ones whose manifest a [`pull`](BroadcastConfig::pull) node fetches, and
    /// tracked even past [`max_unknown`](BroadcastConfig::max_unknown).
    asked: BTreeSet<BroadcastId>,
    /// What changed since the last [`DataReport`].
    report_due: ReportDue,
    /// When the last report was made.
    last_report: Option<Instant>,
}

/// Whether the [`DataReport`] is out of date, and how urgently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ReportDue {
    /// Nothing changed.
    No,
    /// Progress only: at most one report per `report_interval`.
    Progress,
    /// A lifecycle change (added, complete, failed, a record): at once.
    Now,
}

impl Broadcasts {
    /// An empty core for node `me`, with its randomness drawn from `seed`.
    pub fn new(config: BroadcastConfig, me: NodeId, seed: u64) -> Self {
        Self {
            config,
            me,
            rng: StdRng::seed_from_u64(seed),
            broadcasts: BTreeMap::new(),
            lost: BTreeMap::new(),
            lost_order: VecDeque::new(),
            lost_count: 0,
            unknown: BTreeMap::new(),
            peers: BTreeMap::new(),
            last_tick: None,
            banned: BTreeSet::new(),
            haves: BTreeMap::new(),
            records: BTreeMap::new(),
            nodes: Vec::new(),
            uploaded_to: BTreeMap::new(),
            actions: VecDeque::new(),
            active: BTreeSet::new(),
            names: BTreeMap::new(),
            live: BTreeMap::new(),
            max_seq: BTreeMap::new(),
            linked: BTreeMap::new(),
            linking: BTreeMap::new(),
            link_refused: BTreeMap::new(),
            removed: BTreeSet::new(),
            asked: BTreeSet::new(),
            report_due: ReportDue::Now,
            last_report: None,
        }
    }

    /// Mark the report out of date.
    fn report_change(&mut self, due: ReportDue) {
        self.report_due = self.report_due.max(due);
    }

    /// When a progress-only report may be made.
    fn report_at(&self) -> Option<Instant> {
        match self.report_due {
            ReportDue::No => None,
            ReportDue::Now => self.last_report,
            ReportDue::Progress => self.last_report.map(|t| t + self.config.report_interval),
        }
    }

    /// A new [`DataReport`] if it changed and is due: a lifecycle change at once, progress at
    /// most once per [`report_interval`](BroadcastConfig::report_interval). Call it after
    /// draining [`poll_action`](Self::poll_action); [`poll_timeout`](Self::poll_timeout)
    /// includes the time a pending one falls due. It costs O(broadcasts) when it returns a
    /// report and O(1) otherwise.
    pub fn poll_report(&mut self, now: Instant) -> Option<DataReport> {
        if self.report_due == ReportDue::No {
            return None;
        }
        if self.report_at().is_some_and(|t| t > now) && self.report_due != ReportDue::Now {
            return None;
        }
        self.report_due = ReportDue::No;
        self.last_report = Some(now);
        Some(self.report())
    }

    /// The settings.
    pub fn config(&self) -> &BroadcastConfig {
        &self.config
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<BroadcastAction> {
        self.actions.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (`None`: no timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let transfers = self.active.iter().filter_map(|id| {
            crate::work::tick(1);
            self.broadcasts
                .get(id)?
                .transfer
                .as_ref()
                .and_then(Transfer::poll_timeout)
        });
        let unknown = self.unknown.values().filter(|u| !u.fetching).map(|u| {
            let expiry = u.heard + self.config.unknown_ttl;
            u.retry_at.map_or(expiry, |r| r.min(expiry))
        });
        let report = self
            .report_at()
            .filter(|_| self.report_due == ReportDue::Progress);
        let stalls = self.active.iter().filter_map(|id| {
            let b = self.broadcasts.get(id)?;
            match (b.stall_check, b.assume_origin_at) {
                (Some(s), Some(a)) => Some(s.min(a)),
                (s, a) => s.or(a),
            }
        });
        let tick = self.last_tick.map(|t| t + self.config.tick);
        let commits = self.active.iter().filter_map(|id| {
            let b = self.broadcasts.get(id)?;
            Self::commit_due(b)
        });
        transfers
            .chain(commits)
            .chain(unknown)
            .chain(report)
            .chain(stalls)
            .chain(tick)
            .min()
    }

    /// Transfers whose origin has not announced itself within [`ASSUME_ORIGIN_AFTER`]: a
    /// connected, unbanned origin becomes a source of every piece (see `start_transfer`).
    fn assume_origins(&mut self, now: Instant) {
        let due: Vec<BroadcastId> = (self.active.iter())
            .filter(|id| {
                (self.broadcasts.get(*id))
                    .is_some_and(|b| b.assume_origin_at.is_some_and(|t| t <= now))
            })
            .copied()
            .collect();
        for id in due {
            let Some(b) = self.broadcasts.get_mut(&id) else {
                continue;
            };
            b.assume_origin_at = None;
            let Some(origin) = b.origin else {
                continue;
            };
            let announced = self.haves.get(&id).is_some_and(|h| h.contains_key(&origin));
            if announced || !self.peers.contains_key(&origin) || self.banned.contains(&origin) {
                continue;
            }
            let all = b.piece_bitfield(&Bitfield::full(b.layout.chunk_count()));
            if let Some(t) = b.transfer.as_mut() {
                debug!(broadcast = %id.short(), "no announcement from the origin: asking it anyway");
                t.handle_peer_have(now, origin, &all);
            }
            self.drain(now, id);
        }
    }

    /// The clock reached [`poll_timeout`](Self::poll_timeout): run due transfer timers, retry
    /// due manifest fetches, forget unknown broadcasts nobody mentions any more, and report
    /// transfers that stalled.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.notice_pause(now);
        self.check_stalls(now);
        self.assume_origins(now);
        // Shares again (a transfer that left `active` without an event of its own).
        self.share_out(now);
        let due: Vec<BroadcastId> = self
            .active
            .iter()
            .filter(|id| {
                crate::work::tick(1);
                self.broadcasts
                    .get(*id)
                    .and_then(|b| b.transfer.as_ref())
                    .and_then(Transfer::poll_timeout)
                    .is_some_and(|t| t <= now)
            })
            .copied()
            .collect();
        for id in due {
            if let Some(t) = self.transfer_mut(id) {
                t.handle_timeout(now);
            }
            self.drain(now, id);
        }
        let commits: Vec<BroadcastId> = (self.active.iter())
            .filter(|id| {
                (self.broadcasts.get(*id))
                    .and_then(Self::commit_due)
                    .is_some_and(|t| t <= now)
            })
            .copied()
            .collect();
        for id in commits {
            self.start_commit(now, id);
        }
        let ttl = self.config.unknown_ttl;
        let expired: Vec<BroadcastId> = self
            .unknown
            .iter()
            .filter(|(_, u)| !u.fetching && u.heard + ttl <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            debug!(broadcast = %id.short(), "forgetting an unknown broadcast nobody mentions");
            self.unknown.remove(&id);
            self.asked.remove(&id);
            self.haves.remove(&id);
        }
        let retry: Vec<BroadcastId> = self
            .unknown
            .iter()
            .filter(|(_, u)| !u.fetching && u.retry_at.is_some_and(|r| r <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in retry {
            if let Some(u) = self.unknown.get_mut(&id) {
                u.retry_at = None;
            }
            self.fetch_manifest(id);
        }
    }

    /// Whether `id` is seeding here (publishing it again changes nothing).
    pub fn is_seeding(&self, id: &BroadcastId) -> bool {
        self.broadcasts
            .get(id)
            .is_some_and(|b| b.source.is_some() && !b.failed())
    }

    /// Start seeding `id` from `source`: published now (`known` is `None`: it becomes the
    /// newest version of its name, published at `wall_ms`, ms since the Unix epoch), or resumed
    /// from the data dir with the publication it had. Replaces a failed broadcast of the same
    /// id. Returns the publication, which is also persisted
    /// ([`BroadcastAction::SaveVersion`]) when new.
    #[allow(clippy::too_many_arguments)]
    pub fn add_origin(
        &mut self,
        _now: Instant,
        id: BroadcastId,
        manifest: Arc<Manifest>,
        layout: Arc<Layout>,
        source: PathBuf,
        known: Option<Publication>,
        wall_ms: u64,
    ) -> Publication {
        let name = manifest.name.clone();
        let publication = known.unwrap_or_else(|| Publication {
            seq: self.next_seq(&name),
            published_ms: wall_ms,
        });
        let held = Bitfield::full(layout.chunk_count());
        let mut b = Bcast::new(manifest, layout, State::Seeding, held);
        b.origin = Some(self.me);
        b.source = Some(source);
        b.version = 1;
        b.seq = publication.seq;
        b.published_ms = publication.published_ms;
        let have = b.have(id);
        self.broadcasts.insert(id, b);
        self.unknown.remove(&id);
        self.lost.remove(&id);
        self.index_name(id);
        if known.is_none() {
            info!(broadcast = %id.short(), %name, seq = publication.seq, "new version");
            self.push(BroadcastAction::SaveVersion { id, publication });
        }
        // Versions of this name being received here are older now.
        self.supersede_older(&name);
        self.enforce_keep(&name);
        self.report_change(ReportDue::Now);
        let super_seed = self.config.strategy.super_seeds();
        if let Some(b) = self.broadcasts.get_mut(&id) {
            b.first_round = super_seed.then(|| SuperSeed::new(b.layout.chunk_count()));
        }
        let audience = (self.broadcasts.get(&id)).and_then(|b| b.manifest.audience.clone());
        let priority =
            (self.broadcasts.get(&id)).map_or_else(Default::default, |b| b.manifest.priority);
        self.push(BroadcastAction::Serve {
            id,
            super_seed,
            audience,
            priority,
        });
        self.push(BroadcastAction::Flood { msg: have });
        publication
    }

    /// Start receiving `id` into its workspace, which durably holds `held` (all of it: publish
    /// at once). `resumed`: the workspace was there when the process started; `known`: its
    /// publication as persisted (or `None`: learnt from the registry). A workspace that is not
    /// complete and whose version is superseded already is removed instead.
    #[allow(clippy::too_many_arguments)]
    pub fn add_receiver(
        &mut self,
        now: Instant,
        id: BroadcastId,
        manifest: Arc<Manifest>,
        layout: Arc<Layout>,
        held: Bitfield,
        resumed: bool,
        known: Option<Publication>,
    ) {
        let complete = held.is_complete();
        let name = manifest.name.clone();
        self.asked.remove(&id);
        if self.removed.contains(&id)
            || (!complete && self.records.get(&id).is_some_and(|r| self.is_superseded(r)))
        {
            info!(broadcast = %id.short(), %name, "a newer version is out: removing this one's workspace");
            self.unknown.remove(&id);
            self.haves.remove(&id);
            let failure = Failure::Superseded { name: name.clone() };
            let totals = Some((u64::from(layout.chunk_count()), layout.total_bytes));
            self.remember_lost(
                id,
                Lost {
                    name,
                    failure,
                    totals,
                    order: 0,
                },
            );
            self.push(BroadcastAction::Remove { id });
            self.report_change(ReportDue::Now);
            return;
        }
        // Complete only once published under `received/` (see `handle_finalized`).
        let mut b = Bcast::new(manifest, layout, State::Receiving, held);
        b.origin = self
            .records
            .get(&id)
            .map(|r| r.origin)
            .or_else(|| self.unknown.get(&id).and_then(|u| u.claimed_origin));
        if resumed {
            b.resumed_chunks = u64::from(b.held_chunks.count_ones());
        }
        if let Some(p) = known {
            b.seq = p.seq;
            b.published_ms = p.published_ms;
        }
        match self.records.get(&id) {
            Some(r) => {
                b.seq = r.seq;
                b.published_ms = r.published_ms;
            }
            None if b.seq == 0 => {
                b.seq = self.unknown.get(&id).map_or(0, |u| u.claimed_seq);
            }
            None => {}
        }
        self.push(BroadcastAction::Serve {
            id,
            super_seed: false,
            audience: b.manifest.audience.clone(),
            priority: b.manifest.priority,
        });
        if complete {
            b.finalizing = true;
            self.push(BroadcastAction::Finalize { id });
        }
        let have = b.have(id);
        self.broadcasts.insert(id, b);
        self.unknown.remove(&id);
        self.index_name(id);
        self.report_change(ReportDue::Now);
        self.start_transfer(now, id);
        self.push(BroadcastAction::Flood { msg: have });
    }

    /// Remember `id` as failed without a manifest (it is never fetched again).
    pub fn add_failed(&mut self, id: BroadcastId, name: String, failure: Failure) {
        self.asked.remove(&id);
        let totals = self.unknown.remove(&id).and_then(|u| u.totals);
        self.haves.remove(&id);
        self.remember_lost(
            id,
            Lost {
                name,
                failure,
                totals,
                order: 0,
            },
        );
        self.report_change(ReportDue::Now);
    }

    /// Remember `id` as lost; past [`max_lost`](BroadcastConfig::max_lost), forget the oldest
    /// (keeping only its id, so that it is never fetched again).
    fn remember_lost(&mut self, id: BroadcastId, lost: Lost) {
        self.lost_count += 1;
        self.lost_order.push_back((self.lost_count, id));
        self.lost.insert(
            id,
            Lost {
                order: self.lost_count,
                ..lost
            },
        );
        while self.lost.len() > self.config.max_lost.max(1) {
            let Some((order, old)) = self.lost_order.pop_front() else {
                break;
            };
            if self.lost.get(&old).is_some_and(|l| l.order == order) {
                self.lost.remove(&old);
                self.removed.insert(old);
            }
        }
        // Entries re-remembered or resumed leave stale places behind; drop them in bulk.
        if self.lost_order.len() > 2 * self.config.max_lost.max(1) {
            let lost = &self.lost;
            self.lost_order
                .retain(|(order, id)| lost.get(id).is_some_and(|l| l.order == *order));
        }
    }

    /// A neighbour connection is up (or replaced): it gets a full `Have` of every broadcast.
    ///
    /// A replaced connection (the peer restarted, or a duplicated pair was settled) is the old
    /// one's end first: what the transfers knew of the peer (its requests on the old
    /// connection, its health, its haves) is dropped, and its new `Have` starts it afresh. (A
    /// restarted origin was otherwise still *suspect* from its requests that timed out while
    /// it was down, and probed only on the backoff's schedule: 12 s of stall in the chaos
    /// `origin-crash` preset, where it was the only holder of what the receivers lacked.)
    pub fn handle_peer_up(&mut self, now: Instant, peer: NodeId) {
        if self.peers.contains_key(&peer) {
            self.handle_peer_down(now, peer);
        }
        let haves: Vec<Message> = self.broadcasts.iter().map(|(id, b)| b.have(*id)).collect();
        for msg in haves {
            self.push(BroadcastAction::Send { peer, msg });
        }
        self.peers.insert(peer, now);
        // The neighbour count goes out with the report (metrics).
        self.report_change(ReportDue::Progress);
    }

    /// A neighbour is gone (the shell drops its requests without reports).
    pub fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.peers.remove(&peer);
        self.report_change(ReportDue::Progress);
        for h in self.haves.values_mut() {
            h.remove(&peer);
        }
        let ids: Vec<BroadcastId> = self.active.iter().copied().collect();
        for id in ids {
            if let Some(t) = self.transfer_mut(id) {
                t.handle_peer_gone(now, peer);
                self.drain(now, id);
            }
        }
    }

    /// A data message on a neighbour's control stream: `Have` and `HaveUpdate` count, anything
    /// else is ignored.
    pub fn handle_peer_message(&mut self, now: Instant, peer: NodeId, msg: Message) {
        match msg {
            Message::Have(h) => self.handle_have(now, peer, h),
            Message::HaveUpdate(u) => self.handle_have_update(now, peer, u),
            other => {
                debug!(peer = %peer.short(), kind = other.kind(), "ignoring message on control stream");
            }
        }
    }

    fn handle_have(&mut self, now: Instant, peer: NodeId, h: Have) {
        let id = h.broadcast;
        let strategy = self.config.strategy;
        if let Some(b) = self.broadcasts.get_mut(&id) {
            let bits = Bitfield::from_bytes(b.layout.chunk_count(), &h.bits)
                .ok()
                .filter(|_| h.chunks == b.layout.chunk_count());
            let Some(bits) = bits else {
                // A bitfield of the wrong length for a manifest both sides have: no honest
                // peer sends one. Banned once (and logged once), then ignored.
                self.ban_for_violation(now, id, peer, "a Have bitfield of the wrong length");
                return;
            };
            // The origin saying so of itself starts the transfer now rather than at the
            // registry's record (a heartbeat or two later); the record has the last word.
            let recorded = self.records.contains_key(&id);
            let claimed = h.from_origin && b.origin.is_none() && !recorded;
            if claimed {
                debug!(broadcast = %id.short(), peer = %peer.short(), "origin known from its Have");
                b.origin = Some(peer);
            }
            // Its place among its name's versions, until the registry's record says.
            let placed = h.seq > 0 && b.seq == 0 && !recorded && b.source.is_none();
            if placed {
                b.seq = h.seq;
                // Kept, so that a restart before the record arrives still knows the place.
                let publication = Publication {
                    seq: b.seq,
                    published_ms: b.published_ms,
                };
                self.actions
                    .push_back(BroadcastAction::SaveVersion { id, publication });
            }
            let pieces = b.piece_bitfield(&bits);
            let usable = strategy.may_fetch_from(peer, b.origin) && !self.banned.contains(&peer);
            if let Some(t) = b.transfer.as_mut().filter(|_| usable) {
                t.handle_peer_have(now, peer, &pieces);
            }
            self.haves.entry(id).or_default().insert(peer, bits);
            if claimed {
                self.start_transfer(now, id);
            }
            self.drain(now, id);
            if placed {
                let name = (self.broadcasts.get(&id))
                    .map(|b| b.manifest.name.clone())
                    .unwrap_or_default();
                self.relink(&name);
                self.report_change(ReportDue::Now);
            }
            return;
        }
        if self.lost.contains_key(&id)
            || self.removed.contains(&id)
            || self.records.get(&id).is_some_and(|r| self.is_superseded(r))
        {
            return;
        }
        // Restricted to others (by its record, else by what the announcement says): nothing
        // of it is tracked, fetched or relayed here.
        let audience = match self.records.get(&id) {
            Some(r) => (r.origin != self.me).then(|| r.audience.clone()).flatten(),
            None => h.audience.clone(),
        };
        if !self.admits_me(audience.as_ref()) {
            debug!(broadcast = %id.short(), peer = %peer.short(), "announced broadcast is for others; ignoring it");
            return;
        }
        // An announcement: remember who has it and fetch the manifest.
        let Ok(bits) = Bitfield::from_bytes(h.chunks, &h.bits) else {
            return;
        };
        let Some(u) = self.unknown_entry(now, id) else {
            return;
        };
        if h.from_origin && u.claimed_origin.is_none() {
            u.claimed_origin = Some(peer);
        }
        if u.claimed_seq == 0 {
            u.claimed_seq = h.seq;
        }
        if u.claimed_audience.is_none() {
            u.claimed_audience = h.audience;
        }
        if !u.sources.contains(&peer) {
            u.sources.push(peer);
            // A new source is news: do not wait out the backoff of the old ones.
            u.retry_at = None;
        }
        self.haves.entry(id).or_default().insert(peer, bits);
        self.fetch_manifest(id);
    }

    fn handle_have_update(&mut self, now: Instant, peer: NodeId, u: HaveUpdate) {
        let id = u.broadcast;
        let strategy = self.config.strategy;
        let Some(b) = self.broadcasts.get_mut(&id) else {
            // Not known yet (its manifest is on the way): the chunks go into the bitfield of
            // the peer's announcement, which the transfer starts from, rather than being lost.
            if let Some(bits) = self.haves.get_mut(&id).and_then(|h| h.get_mut(&peer)) {
                let total = bits.len();
                for c in u.chunks.iter().filter(|c| c.0 < total) {
                    bits.set(c.0);
                }
            }
            return;
        };
        let total = b.layout.chunk_count();
        let bits = self
            .haves
            .entry(id)
            .or_default()
            .entry(peer)
            .or_insert_with(|| Bitfield::new(total));
        let mut pieces = BTreeSet::new();
        for c in u.chunks {
            if c.0 < total && bits.set(c.0) {
                pieces.insert(b.layout.piece_of[c.0 as usize]);
            }
        }
        let usable = strategy.may_fetch_from(peer, b.origin) && !self.banned.contains(&peer);
        if let Some(t) = b.transfer.as_mut().filter(|_| usable) {
            for p in pieces {
                if b.layout.chunks_of(p).all(|c| bits.get(c)) {
                    t.handle_peer_piece(now, peer, p);
                }
            }
        }
        self.drain(now, id);
    }

    /// A fresh registry view: who is where, and every broadcast record.
    pub fn handle_registry(
        &mut self,
        now: Instant,
        nodes: Vec<RegistryEntry>,
        broadcasts: Vec<BroadcastRecord>,
    ) {
        self.nodes = nodes;
        let mut names = BTreeSet::new();
        for r in broadcasts {
            let id = r.id;
            // Nothing new: the record as held, of a broadcast already acted on (known, lost or
            // removed here). A view lists every record at every beat; skipping these keeps a
            // beat's cost to one lookup per record, whatever the history.
            if self.records.get(&id) == Some(&r)
                && (self.broadcasts.contains_key(&id)
                    || self.lost.contains_key(&id)
                    || self.removed.contains(&id))
            {
                continue;
            }
            // Records name the totals of broadcasts known only as lost.
            self.report_change(ReportDue::Progress);
            let origin = r.origin;
            let ended = match r.state {
                BroadcastState::Failed => Some(Failure::OriginDeclared),
                BroadcastState::Cancelled => Some(Failure::Cancelled),
                BroadcastState::Active => None,
            };
            self.note_record(&r);
            names.insert(r.name.clone());
            self.records.insert(id, r);
            if let Some(failure) = ended {
                self.unknown.remove(&id);
                self.origin_ended(id, failure);
                continue;
            }
            if self.removed.contains(&id) {
                continue;
            }
            if !self.broadcasts.contains_key(&id) && !self.may_receive(id) {
                // For others: what an announcement made this node track is dropped.
                if self.unknown.remove(&id).is_some() {
                    debug!(broadcast = %id.short(), "broadcast is for others (its record says); forgetting it");
                }
                self.asked.remove(&id);
                self.haves.remove(&id);
                continue;
            }
            if let Some(b) = self.broadcasts.get_mut(&id) {
                // The record's origin (checked by the bootstraps against the announcer's
                // certificate) overrides one a peer claimed in its `Have`.
                if b.origin.is_some_and(|o| o != origin) && matches!(b.state, State::Receiving) {
                    warn!(broadcast = %id.short(), claimed = %b.origin.map(|o| o.short()).unwrap_or_default(), origin = %origin.short(), "a peer claimed to be the origin; the registry names another");
                    b.origin = Some(origin);
                    if b.transfer.take().is_some() {
                        self.active.remove(&id);
                        self.push(BroadcastAction::AbortRequests { id });
                    }
                }
                self.start_transfer(now, id);
            } else if !self.lost.contains_key(&id)
                && !self.records.get(&id).is_some_and(|r| self.is_superseded(r))
                // A pull node keeps its unknown slots for announcements (who holds what, for
                // a later fetch): a record only keeps one it has alive.
                && (self.wants(id) || self.unknown.contains_key(&id))
                && self.unknown_entry(now, id).is_some()
            {
                self.fetch_manifest(id);
            }
        }
        for name in names {
            self.supersede_older(&name);
            self.relink(&name);
            // Versions whose place only now became known may be beyond --keep.
            self.enforce_keep(&name);
        }
    }

    /// The unknown entry of `id`, created if there is room; marks it heard of now.
    fn unknown_entry(&mut self, now: Instant, id: BroadcastId) -> Option<&mut Unknown> {
        if !self.unknown.contains_key(&id)
            && self.unknown.len() >= self.config.max_unknown
            && !self.asked.contains(&id)
        {
            return None;
        }
        let u = self.unknown.entry(id).or_insert(Unknown {
            sources: Vec::new(),
            fetching: false,
            attempts: 0,
            retry_at: None,
            heard: now,
            claimed_origin: None,
            claimed_seq: 0,
            claimed_audience: None,
            totals: None,
        });
        u.heard = now;
        Some(u)
    }

    /// Start a manifest fetch for an unknown broadcast, unless one runs, it is backing off, or
    /// this node pulls on demand and was not asked for it.
    fn fetch_manifest(&mut self, id: BroadcastId) {
        if !self.wants(id) {
            return;
        }
        let Some(u) = self.unknown.get_mut(&id) else {
            return;
        };
        if u.fetching || u.retry_at.is_some() {
            return;
        }
        // Ask a neighbour that announced it, else dial the origin.
        let from = if let Some(i) = u.sources.iter().position(|p| self.peers.contains_key(p)) {
            ManifestSource::Peer(u.sources.remove(i))
        } else {
            let origin = self.records.get(&id).and_then(|r| {
                let entry = self
                    .nodes
                    .iter()
                    .find(|e| e.record.id == r.origin && e.status != Status::Dead)?;
                Some(ManifestSource::Origin {
                    node: r.origin,
                    addr: entry.record.addrs.first().copied()?,
                })
            });
            // Nobody to ask: the next announcement or registry view tries again.
            let Some(origin) = origin else { return };
            origin
        };
        u.fetching = true;
        u.attempts += 1;
        self.push(BroadcastAction::FetchManifest { id, from });
    }

    /// A manifest fetch ended: create the workspace, retry later, or fail for good.
    pub fn handle_manifest_fetched(
        &mut self,
        now: Instant,
        id: BroadcastId,
        result: Result<Vec<u8>, ManifestFetchError>,
    ) {
        let Some(u) = self.unknown.get_mut(&id) else {
            return;
        };
        let bytes = match result {
            Ok(b) => b,
            Err(e) => {
                u.fetching = false;
                let shift = u.attempts.saturating_sub(1).min(16);
                let base = self
                    .config
                    .manifest_retry_min
                    .saturating_mul(1 << shift)
                    .min(self.config.manifest_retry_max);
                // Up to half as much again at random, so that nodes do not retry in step.
                let delay = base.mul_f64(1.0 + self.rng.random::<f64>() * 0.5);
                debug!(broadcast = %id.short(), error = %e, attempts = u.attempts, ?delay, "manifest fetch failed; will retry");
                u.retry_at = Some(now + delay);
                return;
            }
        };
        let manifest = match Manifest::decode(&bytes, &id, &self.config.limits) {
            Ok(m) => m,
            Err(e) => {
                error!(broadcast = %id.short(), error = %e, "rejected manifest");
                self.add_failed(id, String::new(), Failure::Manifest(Arc::new(e)));
                return;
            }
        };
        if !self.admits_me(manifest.audience.as_ref()) {
            // Whoever served it should not have (every node serves only the audience): no
            // workspace, and never fetched again.
            warn!(broadcast = %id.short(), "fetched a manifest whose audience excludes this node; dropping it");
            self.unknown.remove(&id);
            self.asked.remove(&id);
            self.haves.remove(&id);
            self.removed.insert(id);
            return;
        }
        // Still `fetching` until the workspace exists: no second fetch meanwhile.
        let manifest = Arc::new(manifest);
        let layout = Arc::new(Layout::new(&manifest));
        if let Some(u) = self.unknown.get_mut(&id) {
            u.totals = Some((u64::from(layout.chunk_count()), layout.total_bytes));
        }
        if let Err(failure) = self.make_room(layout.total_bytes) {
            error!(broadcast = %id.short(), name = %manifest.name, error = %failure, "refusing the broadcast");
            self.add_failed(id, manifest.name.clone(), failure);
            return;
        }
        let (links, local) = self.local_plan(&manifest, &layout);
        if !links.is_empty() || !local.is_empty() {
            info!(broadcast = %id.short(), files = links.len(), chunks = local.len(), "held here already: linking files and copying chunks locally");
        }
        self.push(BroadcastAction::CreateWorkspace {
            id,
            bytes,
            manifest,
            layout,
            links,
            local,
        });
    }

    /// The workspace of `id` could not be created: remember it as failed.
    pub fn handle_workspace_failed(&mut self, id: BroadcastId, name: String, error: StoreError) {
        error!(broadcast = %id.short(), %name, error = %error, "cannot create the workspace");
        self.add_failed(id, name, Failure::Workspace(Arc::new(error)));
    }

    /// Create the transfer core once the origin is known.
    fn start_transfer(&mut self, now: Instant, id: BroadcastId) {
        let strategy = self.config.strategy;
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        if b.transfer.is_some() || !matches!(b.state, State::Receiving) {
            return;
        }
        if b.origin.is_none() {
            b.origin = self.records.get(&id).map(|r| r.origin);
        }
        let Some(origin) = b.origin else {
            debug!(broadcast = %id.short(), "waiting for the registry to name the origin");
            return;
        };
        let pieces: Vec<u64> = b.layout.pieces.iter().map(|p| p.bytes).collect();
        let held = b.piece_bitfield(&b.held_chunks);
        let seed = self.rng.random();
        let mut t = Transfer::new(self.config.swarm.clone(), pieces, held, origin, seed);
        // Its share among the transfers already running, before its first request.
        let newcomer = priority::Competitor {
            id,
            priority: b.manifest.priority,
            busy_at: BTreeSet::new(),
        };
        let (_, shares) = self.shares(Some(newcomer));
        if let Some(share) = shares.get(&id) {
            t.set_share(now, share.clone());
        }
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        if let Some(haves) = self.haves.get(&id) {
            for (peer, chunks) in haves {
                if self.peers.contains_key(peer)
                    && !self.banned.contains(peer)
                    && strategy.may_fetch_from(*peer, Some(origin))
                {
                    t.handle_peer_have(now, *peer, &b.piece_bitfield(chunks));
                }
            }
        }
        // The origin holds every piece. Its `Have` may never have reached the transfer: a node
        // that hears of more broadcasts at once than it tracks (`max_unknown`) drops the
        // announcements of the ones it cannot track, and learns of them later from the
        // registry, while an announcement is not repeated. A connected origin is then a
        // source of everything, or the transfer would wait for ever (bench sends: 40% of the
        // broadcasts after the 2,000th of 5,000 stayed at 0 chunks held at both receivers).
        // Its `Have` normally comes within a round trip; if none came within
        // `ASSUME_ORIGIN_AFTER`, `handle_timeout` takes a connected origin as holding all.
        let origin_announced = self.haves.get(&id).is_some_and(|h| h.contains_key(&origin));
        b.assume_origin_at = (!origin_announced).then(|| now + ASSUME_ORIGIN_AFTER);
        info!(broadcast = %id.short(), name = %b.manifest.name, pieces = b.layout.piece_count(), "receiving");
        b.transfer = Some(t);
        b.stall_check = Some(now + self.config.stall_after);
        b.stall_suspect = false;
        self.active.insert(id);
        self.last_tick.get_or_insert(now);
        // No longer waiting for the registry (`DataReport::awaiting_registry`).
        self.report_change(ReportDue::Now);
        self.drain(now, id);
    }

    /// A request ended with every chunk of `piece` verified and written (not yet durable).
    /// `bytes`: chunk payload bytes received.
    pub fn handle_piece_received(
        &mut self,
        now: Instant,
        id: BroadcastId,
        peer: NodeId,
        piece: u32,
        bytes: u64,
    ) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        b.fetched_bytes += bytes;
        let Some(t) = b.transfer.as_mut() else { return };
        t.handle_piece_received(now, peer, piece);
        b.stall_check = Some(now + self.config.stall_after);
        b.stall_suspect = false;
        b.commit_waiting = true;
        let fresh: Vec<u32> = b
            .layout
            .chunks_of(piece)
            .filter(|&c| b.advertised.set(c))
            .collect();
        self.advertise(id, fresh);
        self.drain(now, id);
        self.start_commit(now, id);
    }

    /// A request ended otherwise. `bytes`: chunk payload bytes received before it did.
    pub fn handle_piece_failed(
        &mut self,
        now: Instant,
        id: BroadcastId,
        peer: NodeId,
        piece: u32,
        error: &PieceError,
        bytes: u64,
    ) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        b.fetched_bytes += bytes;
        let Some(t) = b.transfer.as_mut() else { return };
        match error {
            PieceError::BadChunk { .. } => {
                warn!(broadcast = %id.short(), peer = %peer.short(), piece, %error, "peer served a bad chunk");
                t.handle_piece_bad(now, peer, piece);
            }
            PieceError::Declined => t.handle_piece_declined(now, peer, piece),
            _ => {
                debug!(broadcast = %id.short(), peer = %peer.short(), piece, %error, "piece request failed");
                t.handle_piece_failed(now, peer, piece);
            }
        }
        self.drain(now, id);
    }

    /// Start a group commit of `id` if pieces wait, none runs, and either the last one started
    /// at least [`BroadcastConfig::commit_interval`] ago or every piece has arrived (the last
    /// commit of a transfer never waits). Otherwise [`poll_timeout`](Self::poll_timeout)
    /// names the time it may start.
    fn start_commit(&mut self, now: Instant, id: BroadcastId) {
        let interval = self.config.commit_interval;
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        if !b.commit_waiting || b.commit_running {
            return;
        }
        let everything = b.transfer.as_ref().is_none_or(Transfer::has_every_piece);
        if !everything && b.commit_not_before.is_some_and(|t| now < t) {
            return;
        }
        b.commit_waiting = false;
        b.commit_running = true;
        b.commit_not_before = Some(now + interval);
        self.push(BroadcastAction::Commit { id });
    }

    /// When a waiting commit of `b` may start, if one waits for its interval.
    fn commit_due(b: &Bcast) -> Option<Instant> {
        (b.commit_waiting && !b.commit_running)
            .then_some(b.commit_not_before)
            .flatten()
    }

    /// A commit ended: `chunks` are now durable (persist, then acknowledge). They become held
    /// (those not advertised on arrival yet are advertised now); a failed commit fails the
    /// broadcast.
    pub fn handle_durable(
        &mut self,
        now: Instant,
        id: BroadcastId,
        chunks: Result<Vec<u32>, StoreError>,
    ) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        b.commit_running = false;
        let chunks = match chunks {
            Ok(c) => c,
            Err(e) => {
                error!(broadcast = %id.short(), error = %e, "commit failed: stopping and removing its data");
                // What was written may not be what a restart finds: stop fetching into the
                // workspace and serving from it, and free it (a restart fetches it again).
                self.forget(id, Some(Failure::Commit(Arc::new(e))));
                return;
            }
        };
        let mut pieces = BTreeSet::new();
        for c in &chunks {
            if b.hold(*c) {
                pieces.insert(b.layout.piece_of[*c as usize]);
            }
        }
        if !pieces.is_empty() {
            self.report_due = self.report_due.max(ReportDue::Progress);
        }
        let durable: Vec<u32> = pieces
            .into_iter()
            .filter(|p| b.layout.chunks_of(*p).all(|c| b.held_chunks.get(c)))
            .collect();
        if let Some(t) = b.transfer.as_mut() {
            t.handle_durable(now, &durable);
        }
        // Normally advertised on arrival already.
        let fresh: Vec<u32> = chunks
            .into_iter()
            .filter(|&c| b.advertised.set(c))
            .collect();
        self.advertise(id, fresh);
        self.drain(now, id);
        self.start_commit(now, id);
    }

    /// Tell every neighbour that `chunks` of `id` may now be asked of us.
    fn advertise(&mut self, id: BroadcastId, chunks: Vec<u32>) {
        if chunks.is_empty() {
            return;
        }
        let msg = Message::HaveUpdate(HaveUpdate {
            broadcast: id,
            chunks: chunks.into_iter().map(ChunkIndex).collect(),
        });
        self.push(BroadcastAction::Flood { msg });
    }

    /// Publication under `received/` ended.
    pub fn handle_finalized(
        &mut self,
        now: Instant,
        id: BroadcastId,
        result: Result<PathBuf, StoreError>,
    ) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        b.finalizing = false;
        let name = b.manifest.name.clone();
        match result {
            Ok(path) => {
                info!(broadcast = %id.short(), %name, path = %path.display(), "broadcast complete");
                b.path = Some(path);
                b.state = State::Complete;
            }
            Err(e) => {
                error!(broadcast = %id.short(), error = %e, "cannot finish the received directory");
                b.state = State::Failed(Failure::Finalize(Arc::new(e)));
            }
        }
        // Complete or failed: no timers or requests any more.
        self.active.remove(&id);
        self.share_out(now);
        self.report_change(ReportDue::Now);
        self.relink(&name);
        self.enforce_keep(&name);
    }

    /// The origin's source no longer matches the manifest at chunk `index`. If a newer version
    /// of the name is out, that is expected (the directory moved on): the version stops being
    /// seeded, once, quietly. Otherwise the broadcast fails loudly (and the registry is told,
    /// through a new record version).
    pub fn handle_source_changed(&mut self, id: BroadcastId, index: u32) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let Some(b) = self.broadcasts.get(&id) else {
            return;
        };
        if !matches!(b.state, State::Seeding) {
            return;
        }
        let name = b.manifest.name.clone();
        if self.newest_live(&name).is_some_and(|newest| newest > key) {
            info!(broadcast = %id.short(), %name, index, "the source of this older version changed: no longer seeding it");
            if let Some(b) = self.broadcasts.get_mut(&id) {
                b.state = State::Superseded;
            }
            self.push(BroadcastAction::Unserve { id });
            self.report_change(ReportDue::Now);
            return;
        }
        let failure = Failure::SourceChanged { index };
        error!(broadcast = %id.short(), %name, error = %failure, "broadcast FAILED: the source directory changed while it was being sent");
        if let Some(b) = self.broadcasts.get_mut(&id) {
            b.state = State::Failed(failure);
            b.version += 1;
        }
        if let Some(l) = self.live.get_mut(&name) {
            l.remove(&key);
        }
        self.push(BroadcastAction::RefuseServing { id });
        self.report_change(ReportDue::Now);
    }

    /// Whether to serve chunks `first..end` of `id` to a request that arrived at `now`: the
    /// origin's super-seeding ([`SuperSeed::admit`]) for a broadcast it serves with
    /// `super_seed`, always otherwise. An admitted send is reported with
    /// [`handle_served`](Self::handle_served) once it ended, however it ended.
    pub fn handle_serve_request(
        &mut self,
        now: Instant,
        id: BroadcastId,
        first: u32,
        end: u32,
    ) -> bool {
        let round = self
            .broadcasts
            .get_mut(&id)
            .and_then(|b| b.first_round.as_mut());
        round.is_none_or(|r| r.admit(now, first, end))
    }

    /// A send that [`handle_serve_request`](Self::handle_serve_request) admitted ended at
    /// `now`: `delivered` if the requester acknowledged every byte.
    pub fn handle_served(
        &mut self,
        now: Instant,
        id: BroadcastId,
        first: u32,
        end: u32,
        delivered: bool,
    ) {
        let round = self
            .broadcasts
            .get_mut(&id)
            .and_then(|b| b.first_round.as_mut());
        if let Some(r) = round {
            r.finished(now, first, end, delivered);
        }
    }

    /// `bytes` of chunk payload of `id` went to `peer`.
    pub fn handle_uploaded(&mut self, id: BroadcastId, peer: NodeId, bytes: u64) {
        if let Some(b) = self.broadcasts.get_mut(&id) {
            b.uploaded_bytes += bytes;
        }
        *self.uploaded_to.entry(peer).or_default() += bytes;
        self.report_change(ReportDue::Progress);
    }

    /// Every broadcast, for `node ls`, sorted by name then id.
    pub fn list(&self) -> Vec<BroadcastInfo> {
        let mut out: Vec<BroadcastInfo> = self
            .broadcasts
            .iter()
            .map(|(id, b)| {
                let mut info = b.info(*id);
                info.current = self.is_current(*id, &b.manifest.name);
                // Complete once received/ shows it: until its link is on disk it is still
                // being finished, so that whoever polls `node ls` for `complete` then reads
                // received/<name> finds it there.
                if info.state == BroadcastPhase::Complete
                    && self.link_pending(*id, &b.manifest.name)
                {
                    info.state = BroadcastPhase::Receiving;
                }
                info
            })
            .collect();
        for (id, l) in &self.lost {
            // No manifest here: the registry record knows the totals.
            let record = self.records.get(id);
            let name = match (&l.name, record) {
                (n, Some(r)) if n.is_empty() => r.name.clone(),
                (n, _) => n.clone(),
            };
            let state = match l.failure {
                Failure::Superseded { .. } => BroadcastPhase::Superseded,
                Failure::Cancelled => BroadcastPhase::Cancelled,
                _ => BroadcastPhase::Failed,
            };
            out.push(BroadcastInfo {
                id: id.to_hex(),
                name,
                state,
                seq: record.map_or(0, |r| r.seq),
                published_ms: record.map_or(0, |r| r.published_ms),
                current: false,
                chunks_held: 0,
                chunks_total: l.totals.map_or(record.map_or(0, |r| r.chunks), |t| t.0),
                bytes_held: 0,
                bytes_total: l.totals.map_or(record.map_or(0, |r| r.size), |t| t.1),
                path: None,
                error: Some(l.failure.to_string()),
                fetched_bytes: 0,
                resumed_chunks: 0,
                uploaded_bytes: 0,
                audience: record.and_then(|r| r.audience.clone()),
                priority: swarmcast_proto::Priority::Normal,
            });
        }
        // Each name's versions newest first, as ordered by publication.
        let key = |i: &BroadcastInfo| {
            let id: Option<BroadcastId> = i.id.parse().ok();
            let origin = id.and_then(|id| {
                self.broadcasts
                    .get(&id)
                    .and_then(|b| b.origin)
                    .or_else(|| self.records.get(&id).map(|r| r.origin))
            });
            (i.seq, origin, id)
        };
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| key(b).cmp(&key(a))));
        out
    }

    /// How many broadcasts are seeding, receiving, complete, failed, superseded and cancelled (in that order, as
    /// `metrics::STATES`). O(broadcasts): read it when [`poll_report`](Self::poll_report)
    /// gives a report, not per event.
    pub fn state_counts(&self) -> [usize; 6] {
        let mut out = [0; 6];
        for b in self.broadcasts.values() {
            let i = match b.state {
                State::Seeding => 0,
                State::Receiving => 1,
                State::Complete => 2,
                State::Failed(_) => 3,
                State::Superseded => 4,
                State::Cancelled => 5,
            };
            out[i] += 1;
        }
        for l in self.lost.values() {
            out[match l.failure {
                Failure::Superseded { .. } => 4,
                Failure::Cancelled => 5,
                _ => 3,
            }] += 1;
        }
        out
    }

    /// Progress, records and upload counters for membership and `node status`.
    ///
    /// Progress covers every broadcast this node knows, failed ones included with the reason
    /// (so that `node send --wait` at the origin can stop waiting for this node and say why);
    /// a broadcast is `complete` here once `received/<name>` shows it (or a newer version), or
    /// at its origin.
    pub fn report(&self) -> DataReport {
        crate::work::tick((self.broadcasts.len() + self.lost.len()) as u64);
        let known = self.broadcasts.iter().map(|(id, b)| Progress {
            broadcast: *id,
            held: u64::from(b.held_chunks.count_ones()),
            total: u64::from(b.layout.chunk_count()),
            // A receiver's copy counts once received/<name> shows it or a newer version, so
            // that `--wait` never returns while a node's received/ shows an older one.
            complete: match b.state {
                State::Seeding | State::Superseded | State::Cancelled => true,
                State::Complete => self.received_shows(*id),
                _ => false,
            },
            failed: match &b.state {
                State::Failed(f) => Some(f.to_string()),
                _ => None,
            },
        });
        let lost = self.lost.iter().map(|(id, l)| Progress {
            broadcast: *id,
            held: 0,
            total: l
                .totals
                .map_or(self.records.get(id).map_or(0, |r| r.chunks), |t| t.0),
            complete: false,
            failed: Some(l.failure.to_string()),
        });
        DataReport {
            progress: known.chain(lost).collect(),
            records: self
                .broadcasts
                .iter()
                .filter_map(|(id, b)| b.record(*id, self.me))
                .collect(),
            uploaded_to: self.uploaded_to.clone(),
            awaiting_registry: self.broadcasts.values().any(|b| {
                matches!(b.state, State::Receiving) && b.transfer.is_none() && b.origin.is_none()
            }),
            restricted: (self.broadcasts.iter())
                .filter_map(|(id, b)| {
                    Some(RestrictedBroadcast {
                        id: id.to_hex(),
                        name: b.manifest.name.clone(),
                        audience: b.manifest.audience.clone()?,
                    })
                })
                .collect(),
            prioritized: (self.broadcasts.iter())
                .filter(|(_, b)| !b.manifest.priority.is_normal())
                .map(|(id, b)| crate::status::PrioritizedBroadcast {
                    id: id.to_hex(),
                    name: b.manifest.name.clone(),
                    priority: b.manifest.priority,
                })
                .collect(),
        }
    }

    /// The transfer core of `id`, while it is being received (for inspection).
    pub fn transfer(&self, id: &BroadcastId) -> Option<&Transfer> {
        self.broadcasts.get(id)?.transfer.as_ref()
    }

    fn transfer_mut(&mut self, id: BroadcastId) -> Option<&mut Transfer> {
        self.broadcasts.get_mut(&id)?.transfer.as_mut()
    }

    fn push(&mut self, action: BroadcastAction) {
        self.actions.push_back(action);
    }

    /// `peer` broke the protocol in a way no honest peer does (`what`): ban it as bad chunks
    /// do (never fetched from again, by any transfer; still served), logging it once.
    fn ban_for_violation(&mut self, now: Instant, id: BroadcastId, peer: NodeId, what: &str) {
        if !self.banned.insert(peer) {
            return;
        }
        warn!(broadcast = %id.short(), peer = %peer.short(), violation = what, "banning peer for a protocol violation: never fetched from again, still served");
        self.actions.push_back(BroadcastAction::Ban { peer });
        if let Some(t) = self.transfer_mut(id) {
            t.handle_peer_gone(now, peer);
            self.drain(now, id);
        }
        self.ban_elsewhere(now, id, peer);
    }

    /// A peer banned by the transfer of `by`: every other transfer stops fetching from it now
    /// (its requests there are cancelled), rather than each collecting strikes of its own.
    fn ban_elsewhere(&mut self, now: Instant, by: BroadcastId, peer: NodeId) {
        let ids: Vec<BroadcastId> = self.active.iter().copied().filter(|&i| i != by).collect();
        for id in ids {
            if let Some(t) = self.transfer_mut(id) {
                t.handle_peer_gone(now, peer);
                self.drain(now, id);
            }
        }
    }

    /// Timers ran after a gap of more than twice [`BroadcastConfig::tick`] while a transfer
    /// was active: this process was not running (SIGSTOP, a suspended VM). No peer could be
    /// asked meanwhile and none of the connections can be vouched for, so every stall window
    /// and every peer's connected time start over now.
    fn notice_pause(&mut self, now: Instant) {
        if self.active.is_empty() {
            self.last_tick = None;
            return;
        }
        let paused = self
            .last_tick
            .is_some_and(|t| now.saturating_duration_since(t) > self.config.tick * 2);
        self.last_tick = Some(now);
        if !paused {
            return;
        }
        debug!("timers ran late: this process was paused; stall windows start over");
        for since in self.peers.values_mut() {
            *since = now;
        }
        for id in &self.active {
            if let Some(b) = self.broadcasts.get_mut(id) {
                b.stall_check = Some(now + self.config.stall_after);
                b.stall_suspect = false;
            }
        }
    }

    /// The stall invariant: a transfer that made no progress for `stall_after` while
    /// connected, unbanned peers hold chunks it lacks is reported once ([`BroadcastAction::
    /// Stalled`]) with what it waits for. Only peers connected for the whole window count (a
    /// peer back from a partition has not had the time to answer), and the finding must still
    /// hold `stall_confirm` later (news that just arrived gets the time to be asked for). A
    /// transfer whose peers hold nothing it lacks is waiting for data, not stalled, and is
    /// checked again later. O(chunks / 64 × peers) per check, at most twice per `stall_after`
    /// per transfer.
    fn check_stalls(&mut self, now: Instant) {
        let due: Vec<BroadcastId> = self
            .active
            .iter()
            .copied()
            .filter(|id| {
                self.broadcasts
                    .get(id)
                    .and_then(|b| b.stall_check)
                    .is_some_and(|t| t <= now)
            })
            .collect();
        let window_start = now.checked_sub(self.config.stall_after);
        for id in due {
            let Some(b) = self.broadcasts.get(&id) else {
                continue;
            };
            let holders: Vec<(NodeId, u32)> = self
                .haves
                .get(&id)
                .into_iter()
                .flatten()
                .filter(|(p, _)| {
                    let since = self.peers.get(p);
                    since.is_some_and(|s| window_start.is_some_and(|w| *s <= w))
                        && !self.banned.contains(p)
                })
                .map(|(p, bits)| (*p, bits.count_not_in(&b.advertised)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let missing = b.layout.chunk_count() - b.advertised.count_ones();
            let requests: Vec<(NodeId, u32, bool)> = b
                .transfer
                .as_ref()
                .map(|t| {
                    t.peers()
                        .into_iter()
                        .map(|p| (p.id, p.in_flight, p.suspect))
                        .collect()
                })
                .unwrap_or_default();
            let found = !holders.is_empty() && missing > 0;
            let stalled = found && b.stall_suspect;
            if let Some(b) = self.broadcasts.get_mut(&id) {
                b.stall_suspect = found && !stalled;
                b.stall_check = if stalled {
                    None
                } else if found {
                    Some(now + self.config.stall_confirm)
                } else {
                    Some(now + self.config.stall_after)
                };
            }
            if stalled {
                self.push(BroadcastAction::Stalled {
                    id,
                    missing,
                    holders,
                    requests,
                });
            }
        }
    }

    /// Whether a transfer banned `peer` (it is never fetched from again).
    pub fn is_banned(&self, peer: &NodeId) -> bool {
        self.banned.contains(peer)
    }

    /// Turn the transfer's actions into the core's, then hand every competing transfer its
    /// share again (the transfer's requests may have moved).
    fn drain(&mut self, now: Instant, id: BroadcastId) {
        self.drain_one(now, id);
        self.share_out(now);
    }

    /// Each transfer being received gets its [`Share`](crate::swarm::Share) of the node's
    /// request budget by priority (`priority::shares`); a lone transfer gets no limit beyond
    /// its config's. Higher priorities first, so that their fresh requests count for the
    /// caps of the lower ones at the next event.
    fn share_out(&mut self, now: Instant) {
        let (mut competitors, shares) = self.shares(None);
        competitors.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
        for c in competitors {
            let Some(share) = shares.get(&c.id) else {
                continue;
            };
            let changed = (self.transfer_mut(c.id)).is_some_and(|t| t.share() != share);
            if changed {
                if let Some(t) = self.transfer_mut(c.id) {
                    t.set_share(now, share.clone());
                }
                self.drain_one(now, c.id);
            }
        }
    }

    /// The transfers being received (and `extra`), with their shares.
    fn shares(
        &self,
        extra: Option<priority::Competitor>,
    ) -> (
        Vec<priority::Competitor>,
        BTreeMap<BroadcastId, crate::swarm::Share>,
    ) {
        let mut competitors: Vec<priority::Competitor> = (self.active.iter())
            .filter_map(|id| {
                crate::work::tick(1);
                let b = self.broadcasts.get(id)?;
                b.transfer.as_ref().filter(|t| !t.is_complete())?;
                Some(priority::Competitor {
                    id: *id,
                    priority: b.manifest.priority,
                    busy_at: BTreeSet::new(),
                })
            })
            .chain(extra)
            .collect();
        // Where each one fetches matters only below the highest priority present: a node
        // receiving many broadcasts of one priority (`bench sends`) skips the walk.
        let top = competitors.iter().map(|c| c.priority).max();
        if competitors.iter().any(|c| Some(c.priority) != top) {
            for c in &mut competitors {
                let t = self.broadcasts.get(&c.id).and_then(|b| b.transfer.as_ref());
                c.busy_at = t.map(|t| t.busy_peers().collect()).unwrap_or_default();
            }
        }
        let shares = if competitors.len() <= 1 {
            (competitors.iter())
                .map(|c| (c.id, crate::swarm::Share::default()))
                .collect()
        } else {
            priority::shares(&competitors, self.config.swarm.max_in_flight_bytes)
        };
        (competitors, shares)
    }

    /// Turn one transfer's actions into the core's.
    fn drain_one(&mut self, now: Instant, id: BroadcastId) {
        loop {
            let Some(b) = self.broadcasts.get_mut(&id) else {
                return;
            };
            let Some(t) = b.transfer.as_mut() else { return };
            let Some(action) = t.poll_action() else {
                return;
            };
            match action {
                SwarmAction::Request { peer, piece } => {
                    if !self.peers.contains_key(&peer) {
                        t.handle_peer_gone(now, peer);
                        continue;
                    }
                    let range = b.layout.chunks_of(piece);
                    self.actions.push_back(BroadcastAction::Request {
                        id,
                        peer,
                        piece,
                        first: range.start,
                        count: range.end - range.start,
                    });
                }
                SwarmAction::Cancel { peer, piece } => {
                    self.actions
                        .push_back(BroadcastAction::Cancel { id, peer, piece });
                }
                SwarmAction::Ban { peer } => {
                    if self.banned.insert(peer) {
                        warn!(broadcast = %id.short(), peer = %peer.short(), "banning peer after repeated bad chunks: never fetched from again, still served");
                        self.actions.push_back(BroadcastAction::Ban { peer });
                        self.ban_elsewhere(now, id, peer);
                        // `ban_elsewhere` drained the other transfers; go on with this one.
                    }
                }
                SwarmAction::Complete => {
                    if !b.finalizing && matches!(b.state, State::Receiving) {
                        b.finalizing = true;
                        self.actions.push_back(BroadcastAction::Finalize { id });
                    }
                }
            }
        }
    }
}
