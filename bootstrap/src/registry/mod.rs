//! The registry core: a pure, I/O-free, state-based replicated map of nodes and broadcasts.
//!
//! It opens no sockets and reads no clock: every method that needs time takes `now`. The server
//! shell feeds it records from nodes and deltas from fellow bootstraps, and turns its answers
//! into messages; a simulation can drive hundreds of them on a virtual clock.
//!
//! # Driving the core
//! Like quinn-proto's `Connection`, the core is driven by its owner in a fixed order:
//!
//! 1. Call the matching input method for every input, with the current time: [`Registry::observe`]
//!    for a registration or heartbeat, [`Registry::merge_broadcast`] for an announcement,
//!    [`Registry::apply_delta`] (or [`Registry::merge`], e.g. for a snapshot) for anti-entropy.
//! 2. Drain [`Registry::poll_event`] until it returns `None`.
//! 3. Ask [`Registry::poll_timeout`] and arm a timer for the instant it returns (it may already be
//!    past: then fire at once). When the timer fires, call [`Registry::handle_timeout`] and go
//!    back to 2. Calling `handle_timeout` more often than that is harmless.
//!
//! Nodes are answered from a [`ChangeLog`] of views rather than from whole views: see
//! [`changes`](self::ChangeLog) for what changed since a node's cursor.
//!
//! Queries ([`Registry::digest`], [`Registry::delta_for`], [`Registry::answer_wants`],
//! [`Registry::view`], [`Registry::status`], [`Registry::export`]) take `&self` and may be
//! called at any time. The core does not check authorization: the shell decides who may write
//! which entry (a node only its own, a fellow bootstrap any) before calling it.
//!
//! # Merge
//! A node entry is its [`NodeRecord`] plus `last_advanced`, the local instant at which its
//! version last advanced (observed directly, or derived from a fellow's age as `now - age`).
//! Merging an entry into the registry:
//!
//! * a **higher** [`Version`] replaces the record and its freshness wholesale;
//! * an **equal** version keeps the fresher `last_advanced` (the max). Its record is normally
//!   identical, because an owner writes one record per version; should two differ anyway, the
//!   greater one by a fixed order of its fields (name, role, addrs, progress) wins, so that
//!   merge stays a function of the set of updates;
//! * a **lower** version is ignored;
//! * an update whose age is past [`RegistryConfig::drop_after`] is ignored, so that a slower
//!   replica cannot resurrect an entry this one has dropped.
//!
//! This is a join on a semilattice, so merge is commutative, associative and idempotent (the
//! property tests in this module check it). Broadcast records merge the same way on their own
//! `version`; see [`Registry::merge_broadcast`].
//!
//! # Liveness and garbage collection
//! Status is derived locally from `age = now - last_advanced`:
//!
//! | age                                     | status                                     |
//! |-----------------------------------------|--------------------------------------------|
//! | `< suspect_after`                       | [`Status::Alive`]                          |
//! | `< dead_after`                          | [`Status::Suspect`]                        |
//! | `<= drop_after` (`dead_after + gc_after`) | [`Status::Dead`]                         |
//! | `> drop_after`                          | gone; dropped by the next `handle_timeout` |
//!
//! An expired entry disappears from [`Registry::status`], views, exports and deltas at once (and
//! from digests, which take no `now`, at the next `handle_timeout`). `handle_timeout` replaces it with a *tombstone* that remembers its version for another
//! `gc_after`. A tombstone refuses updates at or below that version, so an entry that a fellow
//! still holds a moment longer (its copy may look a few milliseconds fresher, because ages do not
//! count transit time) cannot ping-pong back. A higher version (a restarted node) is taken.
//!
//! # Ages on the wire
//! Freshness travels as an age in milliseconds, never a wall-clock time, so clock skew between
//! machines cannot revive or kill anyone. Ages are rounded *up* when exported: a relay can make
//! an entry look older by under a millisecond, never fresher, so repeated relaying cannot keep a
//! dead node alive. Transit time is not added to the age, so a replica may see an entry fresher
//! than its observer did by one message delay; merge takes the max of equal versions, but a
//! fellow only sends versions the other side lacks, so that offset does not accumulate.
//!
//! For the same reason a fresher sighting of an *equal* version never spreads: liveness travels
//! as version advances. Nodes should therefore bump their heartbeat on every send, retries
//! included.
//!
//! # Anti-entropy (push-pull)
//! ```text
//! A: digest()                         --Digest-->  B: delta_for(now, &digest)
//! A: apply_delta(now, &delta)         <--Delta---
//!    answer_wants(now, &delta.want_*) --Delta-->  B: apply_delta(now, &answer)
//! ```
//! After one such round both sides hold the same versions of every entry (their ages differ by
//! the transit time).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use swarmcast_proto::{
    BroadcastId, BroadcastRecord, Delta, Digest, EntryUpdate, NodeId, NodeRecord, Progress,
    RegistryEntry, RegistryView, Status, Version,
};

mod changes;
mod config;
mod order;
mod progress;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
mod time;

pub use changes::{ChangeLog, ChangeLogConfig, RegistryMirror};
pub use config::{RegistryConfig, RegistryConfigError};
use order::{broadcast_cmp, content_cmp};
pub use progress::{ProgressUpdate, merge_progress};
use time::{age_ms, instant_before};

/// At most this many events wait in the queue; past it the oldest are dropped.
pub const MAX_EVENTS: usize = 10_000;

/// Something that happened in the registry, for logs and for the shell to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A node entry appeared (new, or back after being dropped).
    Added {
        /// The node.
        id: NodeId,
        /// Its name.
        name: String,
    },
    /// A node entry's locally observed liveness changed.
    StatusChanged {
        /// The node.
        id: NodeId,
        /// Its name.
        name: String,
        /// The status last reported.
        from: Status,
        /// The status now.
        to: Status,
    },
    /// A node entry was garbage-collected.
    Dropped {
        /// The node.
        id: NodeId,
        /// Its name.
        name: String,
    },
    /// A broadcast record appeared.
    BroadcastAdded {
        /// The broadcast.
        id: BroadcastId,
    },
}

/// What the registry holds for one node id.
#[derive(Clone, Debug)]
enum Slot {
    /// A node entry (possibly expired but not yet dropped by `handle_timeout`).
    Live {
        record: NodeRecord,
        last_advanced: Instant,
        /// The status last reported by an event.
        reported: Status,
    },
    /// A dropped entry: refuses updates at or below `version`.
    Tombstone {
        version: Version,
        last_advanced: Instant,
    },
}

impl Slot {
    fn last_advanced(&self) -> Instant {
        match self {
            Slot::Live { last_advanced, .. } | Slot::Tombstone { last_advanced, .. } => {
                *last_advanced
            }
        }
    }
}

/// A slot plus the deadline it is filed under in `Registry::deadlines`.
#[derive(Clone, Debug)]
struct Entry {
    slot: Slot,
    deadline: Option<Instant>,
}

/// What a slot amounts to at some instant.
enum Effective<'a> {
    Live {
        record: &'a NodeRecord,
        last_advanced: Instant,
    },
    Tombstone(Version),
    Absent,
}

/// How far above the highest `seq` held for a name ([`Registry::max_seq`]) an origin may
/// announce a new version of it: a Lamport clock moves one step per publication, so a larger
/// jump is a broken or hostile origin trying to make its version the newest for good. Such an
/// announcement is refused (anti-entropy between bootstraps is not bounded: a fellow holds
/// what it accepted). After every bootstrap lost its registry, a name with more than this
/// many versions is refused until its origin re-announces a version within the bound.
pub const MAX_SEQ_AHEAD: u64 = 1000;

/// The most progress items a node's record holds for broadcasts this registry has no record
/// of (see [`Registry::observe_heartbeat`]): one heartbeat's worth.
pub const MAX_UNKNOWN_PROGRESS: usize = 4096;

/// The replicated registry of one bootstrap. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Registry {
    config: RegistryConfig,
    nodes: BTreeMap<NodeId, Entry>,
    /// Every `(deadline, id)` of `nodes`: when the slot's status may next change.
    deadlines: BTreeSet<(Instant, NodeId)>,
    broadcasts: BTreeMap<BroadcastId, BroadcastRecord>,
    /// The highest `seq` of any record held per broadcast name (see [`Registry::max_seq`]).
    max_seq: BTreeMap<String, u64>,
    events: VecDeque<RegistryEvent>,
    events_dropped: u64,
    /// Bumped by every change a view shows other than a heartbeat counter or an age that
    /// merely advanced (see [`Registry::generation`]).
    generation: u64,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            nodes: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            broadcasts: BTreeMap::new(),
            max_seq: BTreeMap::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            generation: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// A record received directly from its owner (registration or heartbeat), age 0.
    ///
    /// Returns whether it changed anything. Same merge rules as [`Registry::merge`].
    pub fn observe(&mut self, now: Instant, record: NodeRecord) -> bool {
        self.upsert(now, Cow::Owned(record), now)
    }

    /// A heartbeat from its owner: `record` (whose own `progress` is ignored) with the
    /// heartbeat's progress, merged into the progress held for the node by the rule of
    /// [`merge_progress`]; then observed as by [`Registry::observe`].
    ///
    /// Returns the change number of the node's progress stream held afterwards (the answer's
    /// `progress_ack`, from which the node continues): 0 when nothing of its incarnation is
    /// held.
    pub fn observe_heartbeat(
        &mut self,
        now: Instant,
        mut record: NodeRecord,
        update: ProgressUpdate,
    ) -> u64 {
        let id = record.id;
        let incarnation = record.version.incarnation;
        let held = self.held_progress(now, &id, incarnation);
        let held_unknown: BTreeSet<BroadcastId> = held
            .into_iter()
            .flat_map(|r| &r.progress)
            .map(|p| p.broadcast)
            .filter(|b| !self.broadcasts.contains_key(b))
            .collect();
        let (mut progress, seq) = merge_progress(held, update);
        self.cap_unknown_progress(&record, &held_unknown, &mut progress);
        record.progress = progress;
        record.progress_seq = seq;
        self.observe(now, record);
        self.held_progress(now, &id, incarnation)
            .map_or(0, |r| r.progress_seq)
    }

    /// Bound what a node may claim about broadcasts this registry holds no record of: at most
    /// [`MAX_UNKNOWN_PROGRESS`] items (those already held first). An honest node has such items
    /// only briefly (its origin's announcement not replicated here yet); a node claiming
    /// progress on thousands of broadcasts nobody announced would otherwise grow its record,
    /// and with it every view and snapshot, without bound. Logged once as it crosses the bound.
    fn cap_unknown_progress(
        &self,
        record: &NodeRecord,
        held_unknown: &BTreeSet<BroadcastId>,
        progress: &mut Vec<Progress>,
    ) {
        let unknown = |p: &Progress| !self.broadcasts.contains_key(&p.broadcast);
        let count = progress.iter().filter(|p| unknown(p)).count();
        if count <= MAX_UNKNOWN_PROGRESS {
            return;
        }
        let mut room = MAX_UNKNOWN_PROGRESS.saturating_sub(
            progress
                .iter()
                .filter(|p| held_unknown.contains(&p.broadcast))
                .count(),
        );
        progress.retain(|p| {
            if !unknown(p) || held_unknown.contains(&p.broadcast) {
                return true;
            }
            let keep = room > 0;
            room = room.saturating_sub(1);
            keep
        });
        if held_unknown.len() < MAX_UNKNOWN_PROGRESS {
            tracing::warn!(
                node = %record.name,
                id = %record.id.short(),
                claimed = count,
                kept = MAX_UNKNOWN_PROGRESS,
                "a node claims progress on more broadcasts than announced here; ignoring the rest"
            );
        }
    }

    /// The live record of `id` if it is of `incarnation`.
    fn held_progress(&self, now: Instant, id: &NodeId, incarnation: u64) -> Option<&NodeRecord> {
        match self.effective(now, &self.nodes.get(id)?.slot) {
            Effective::Live { record, .. } if record.version.incarnation == incarnation => {
                Some(record)
            }
            _ => None,
        }
    }

    /// An entry learned from a fellow bootstrap (anti-entropy) or a snapshot.
    ///
    /// Returns whether it changed anything. An update older than
    /// [`RegistryConfig::drop_after`] is ignored.
    pub fn merge(&mut self, now: Instant, update: EntryUpdate) -> bool {
        match self.arrival(now, update.age_ms) {
            Some(last) => self.upsert(now, Cow::Owned(update.record), last),
            None => false,
        }
    }

    /// A broadcast record from its origin, a fellow or a snapshot. Returns whether it changed
    /// anything.
    ///
    /// The higher `version` wins. Equal versions with different contents only come from a
    /// misbehaving origin; they are resolved deterministically so that merge stays commutative:
    /// `Failed` beats `Active`, then the greater name, origin, size and chunk count win. (Digests
    /// carry only versions, so such a conflict converges once the origin bumps the version.)
    /// Broadcast records are never garbage-collected here.
    pub fn merge_broadcast(&mut self, record: BroadcastRecord) -> bool {
        self.merge_broadcast_ref(Cow::Owned(record))
    }

    /// The highest publication `seq` of any broadcast record of `name` held here (0 if none):
    /// what the bound on a new version's `seq` ([`MAX_SEQ_AHEAD`]) is measured from.
    pub fn max_seq(&self, name: &str) -> u64 {
        self.max_seq.get(name).copied().unwrap_or(0)
    }

    /// Versions of every entry and every broadcast, sorted by id.
    ///
    /// Having no clock, it includes entries that expired since the last
    /// [`Registry::handle_timeout`]; that is harmless (a fellow cannot get them from
    /// [`Registry::answer_wants`]), and calling `handle_timeout` first leaves them out.
    pub fn digest(&self) -> Digest {
        Digest {
            nodes: self
                .nodes
                .iter()
                .filter_map(|(id, e)| match &e.slot {
                    Slot::Live { record, .. } => Some((*id, record.version)),
                    Slot::Tombstone { .. } => None,
                })
                .collect(),
            broadcasts: self
                .broadcasts
                .iter()
                .map(|(id, b)| (*id, b.version))
                .collect(),
        }
    }

    /// Answer a fellow's digest: the entries it lacks or holds older, plus want lists of what it
    /// holds newer (or what this registry lacks). Everything is sorted by id.
    pub fn delta_for(&self, now: Instant, digest: &Digest) -> Delta {
        let mut theirs: BTreeMap<NodeId, Version> = BTreeMap::new();
        for (id, version) in &digest.nodes {
            let v = theirs.entry(*id).or_insert(*version);
            *v = (*v).max(*version);
        }
        let mut delta = Delta::default();
        for (id, entry) in &self.nodes {
            let their = theirs.remove(id);
            match (self.effective(now, &entry.slot), their) {
                (Effective::Live { record, .. }, Some(v)) if v > record.version => {
                    delta.want_nodes.push(*id);
                }
                (Effective::Live { record, .. }, Some(v)) if v == record.version => {}
                (
                    Effective::Live {
                        record,
                        last_advanced,
                    },
                    _,
                ) => delta.nodes.push(EntryUpdate {
                    record: record.clone(),
                    age_ms: age_ms(now, last_advanced),
                }),
                (Effective::Tombstone(mine), Some(v)) if v > mine => delta.want_nodes.push(*id),
                (Effective::Absent, Some(_)) => delta.want_nodes.push(*id),
                (Effective::Tombstone(_) | Effective::Absent, _) => {}
            }
        }
        // What is left is unknown here; `theirs` is sorted, so the want list stays sorted.
        delta.want_nodes.extend(theirs.into_keys());
        delta.want_nodes.sort_unstable();

        let mut theirs: BTreeMap<BroadcastId, u64> = BTreeMap::new();
        for (id, version) in &digest.broadcasts {
            let v = theirs.entry(*id).or_insert(*version);
            *v = (*v).max(*version);
        }
        for (id, record) in &self.broadcasts {
            match theirs.remove(id) {
                Some(v) if v > record.version => delta.want_broadcasts.push(*id),
                Some(v) if v == record.version => {}
                _ => delta.broadcasts.push(record.clone()),
            }
        }
        delta.want_broadcasts.extend(theirs.into_keys());
        delta.want_broadcasts.sort_unstable();
        delta
    }

    /// The entries a fellow asked for (its want lists), as a delta with empty want lists.
    ///
    /// Unknown, expired and repeated ids are skipped.
    pub fn answer_wants(
        &self,
        now: Instant,
        want_nodes: &[NodeId],
        want_broadcasts: &[BroadcastId],
    ) -> Delta {
        let want_nodes: BTreeSet<&NodeId> = want_nodes.iter().collect();
        let want_broadcasts: BTreeSet<&BroadcastId> = want_broadcasts.iter().collect();
        Delta {
            nodes: want_nodes
                .into_iter()
                .filter_map(|id| self.update(now, id))
                .collect(),
            broadcasts: want_broadcasts
                .into_iter()
                .filter_map(|id| self.broadcasts.get(id).cloned())
                .collect(),
            want_nodes: Vec::new(),
            want_broadcasts: Vec::new(),
        }
    }

    /// Merge every entry and record of a delta (its want lists are for
    /// [`Registry::answer_wants`]). Returns whether anything changed.
    pub fn apply_delta(&mut self, now: Instant, delta: &Delta) -> bool {
        let mut changed = false;
        for update in &delta.nodes {
            if let Some(last) = self.arrival(now, update.age_ms) {
                changed |= self.upsert(now, Cow::Borrowed(&update.record), last);
            }
        }
        for record in &delta.broadcasts {
            changed |= self.merge_broadcast_ref(Cow::Borrowed(record));
        }
        changed
    }

    /// The whole registry as a client sees it: nodes with their status and age, sorted by name
    /// then id, and broadcasts sorted by name then id.
    pub fn view(&self, now: Instant) -> RegistryView {
        let mut nodes: Vec<RegistryEntry> = self
            .nodes
            .values()
            .filter_map(|e| match self.effective(now, &e.slot) {
                Effective::Live {
                    record,
                    last_advanced,
                } => Some(RegistryEntry {
                    record: record.clone(),
                    status: self.status_at(now, last_advanced)?,
                    age_ms: age_ms(now, last_advanced),
                }),
                Effective::Tombstone(_) | Effective::Absent => None,
            })
            .collect();
        nodes.sort_by(|a, b| (&a.record.name, &a.record.id).cmp(&(&b.record.name, &b.record.id)));
        let mut broadcasts: Vec<BroadcastRecord> = self.broadcasts.values().cloned().collect();
        broadcasts.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        RegistryView {
            nodes,
            broadcasts,
            ..Default::default()
        }
    }

    /// How many live entries are alive, suspect and dead at `now`, without copying any record.
    pub fn status_counts(&self, now: Instant) -> [(Status, usize); 3] {
        let mut counts = [(Status::Alive, 0), (Status::Suspect, 0), (Status::Dead, 0)];
        for e in self.nodes.values() {
            if let Effective::Live { last_advanced, .. } = self.effective(now, &e.slot) {
                let status = self.status_at(now, last_advanced);
                if let Some(c) = counts.iter_mut().find(|(s, _)| Some(*s) == status) {
                    c.1 += 1;
                }
            }
        }
        counts
    }

    /// The addresses of every bootstrap entry not dead at `now` other than `me`, without
    /// copying any record (the tick asks every anti-entropy period).
    pub fn bootstrap_addrs(&self, now: Instant, me: &NodeId) -> Vec<std::net::SocketAddr> {
        let mut out = Vec::new();
        for (id, e) in &self.nodes {
            if let Effective::Live {
                record,
                last_advanced,
            } = self.effective(now, &e.slot)
            {
                let status = self.status_at(now, last_advanced);
                if record.role == swarmcast_proto::Role::Bootstrap
                    && id != me
                    && status.is_some_and(|s| s != Status::Dead)
                {
                    out.extend(record.addrs.iter().copied());
                }
            }
        }
        out
    }

    /// The status of one node at `now`; `None` if unknown or expired.
    pub fn status(&self, now: Instant, id: &NodeId) -> Option<Status> {
        match self.effective(now, &self.nodes.get(id)?.slot) {
            Effective::Live { last_advanced, .. } => self.status_at(now, last_advanced),
            Effective::Tombstone(_) | Effective::Absent => None,
        }
    }

    /// The record held for a node, if any. Without a clock this may be an entry that expired
    /// since the last [`Registry::handle_timeout`]; use [`Registry::status`] to know.
    pub fn get(&self, id: &NodeId) -> Option<&NodeRecord> {
        match &self.nodes.get(id)?.slot {
            Slot::Live { record, .. } => Some(record),
            Slot::Tombstone { .. } => None,
        }
    }

    /// How many node entries are held (including any expired since the last
    /// [`Registry::handle_timeout`]; tombstones are not counted).
    pub fn len(&self) -> usize {
        self.nodes
            .values()
            .filter(|e| matches!(e.slot, Slot::Live { .. }))
            .count()
    }

    /// Whether no node entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many broadcast records are held.
    pub fn broadcast_count(&self) -> usize {
        self.broadcasts.len()
    }

    /// Everything, as updates with their ages, sorted by id: for a snapshot, or to seed another
    /// registry. Merging the result into an empty registry at the same `now` reproduces this one
    /// (up to sub-millisecond rounding of ages, which is always towards older).
    pub fn export(&self, now: Instant) -> (Vec<EntryUpdate>, Vec<BroadcastRecord>) {
        let nodes = self
            .nodes
            .keys()
            .filter_map(|id| self.update(now, id))
            .collect();
        (nodes, self.broadcasts.values().cloned().collect())
    }

    /// Advance the clock: emit status transitions and drop expired entries.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(entry) = self.nodes.get_mut(&id) {
                entry.deadline = None;
            }
            self.refresh(now, id);
        }
    }

    /// The next instant at which a status changes or an entry is due for garbage collection, if
    /// any. It may be in the past if [`Registry::handle_timeout`] has not been called since.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// A number that changes whenever a [`view`](Registry::view) would show something new
    /// apart from heartbeat counters and ages: a record's contents (addresses, incarnation,
    /// progress), a status, an entry added or dropped, a broadcast record. A
    /// [`ChangeLog`] need not refresh while it stays the same.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<RegistryEvent> {
        self.events.pop_front()
    }

    /// How many events were discarded because nobody drained [`Registry::poll_event`] and the
    /// queue passed [`MAX_EVENTS`].
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    // ----- internals -----

    /// The local `last_advanced` of an update of age `age_ms` arriving at `now`, or `None` if it
    /// is already past the drop horizon.
    fn arrival(&self, now: Instant, age_ms: u64) -> Option<Instant> {
        let age = Duration::from_millis(age_ms);
        (age <= self.config.drop_after()).then(|| instant_before(now, age))
    }

    fn status_at(&self, now: Instant, last_advanced: Instant) -> Option<Status> {
        self.config
            .classify(now.saturating_duration_since(last_advanced))
    }

    fn effective<'a>(&self, now: Instant, slot: &'a Slot) -> Effective<'a> {
        let age = now.saturating_duration_since(slot.last_advanced());
        match slot {
            Slot::Live {
                record,
                last_advanced,
                ..
            } if age <= self.config.drop_after() => Effective::Live {
                record,
                last_advanced: *last_advanced,
            },
            Slot::Live { record, .. } if age <= self.config.forget_after() => {
                Effective::Tombstone(record.version)
            }
            Slot::Tombstone { version, .. } if age <= self.config.forget_after() => {
                Effective::Tombstone(*version)
            }
            Slot::Live { .. } | Slot::Tombstone { .. } => Effective::Absent,
        }
    }

    /// One exported update for `id`, if it is live at `now`.
    fn update(&self, now: Instant, id: &NodeId) -> Option<EntryUpdate> {
        match self.effective(now, &self.nodes.get(id)?.slot) {
            Effective::Live {
                record,
                last_advanced,
            } => Some(EntryUpdate {
                record: record.clone(),
                age_ms: age_ms(now, last_advanced),
            }),
            Effective::Tombstone(_) | Effective::Absent => None,
        }
    }

    /// Merge `record`, which advanced at `last`, into the registry. The join of the semilattice.
    fn upsert(&mut self, now: Instant, record: Cow<'_, NodeRecord>, last: Instant) -> bool {
        let id = record.id;
        let existing = self
            .nodes
            .get(&id)
            .map(|e| (&e.slot, self.effective(now, &e.slot)));
        // The name of a stored entry that expired unseen: only looked at on that rare path.
        let stored_name = || match existing {
            Some((Slot::Live { record, .. }, _)) => Some(record.name.clone()),
            _ => None,
        };
        let (reported, expired_unreported) = match existing {
            None | Some((_, Effective::Absent)) => (None, stored_name()),
            Some((_, Effective::Tombstone(version))) => {
                if record.version <= version {
                    return false;
                }
                (None, stored_name())
            }
            Some((
                slot,
                Effective::Live {
                    record: mine,
                    last_advanced,
                },
            )) => {
                if record.version < mine.version {
                    return false;
                }
                if record.version == mine.version {
                    // Equal versions: each half of (content, freshness) takes its max.
                    let better_content = content_cmp(&record, mine).is_gt();
                    let fresher = last > last_advanced;
                    if !better_content && !fresher {
                        return false;
                    }
                    if let Some(Entry {
                        slot:
                            Slot::Live {
                                record: mine,
                                last_advanced,
                                ..
                            },
                        ..
                    }) = self.nodes.get_mut(&id)
                    {
                        if better_content {
                            *mine = record.into_owned();
                            self.generation += 1;
                        }
                        *last_advanced = (*last_advanced).max(last);
                    }
                    self.settle(now, id);
                    return true;
                }
                if mine.version.incarnation != record.version.incarnation
                    || content_cmp(&record, mine).is_ne()
                {
                    self.generation += 1;
                }
                let reported = match slot {
                    Slot::Live { reported, .. } => Some(*reported),
                    Slot::Tombstone { .. } => None,
                };
                (reported, None)
            }
        };
        // A stored entry that expired before `handle_timeout` saw it is reported dropped first.
        if let Some(name) = expired_unreported {
            self.push_event(RegistryEvent::Dropped { id, name });
        }
        let record = record.into_owned();
        // `last` is within the drop horizon (see `arrival`), so this is never `None`.
        let status = self.status_at(now, last).unwrap_or(Status::Dead);
        match reported {
            Some(from) if from != status => self.push_event(RegistryEvent::StatusChanged {
                id,
                name: record.name.clone(),
                from,
                to: status,
            }),
            Some(_) => {}
            None => self.push_event(RegistryEvent::Added {
                id,
                name: record.name.clone(),
            }),
        }
        let slot = Slot::Live {
            record,
            last_advanced: last,
            reported: status,
        };
        match self.nodes.get_mut(&id) {
            Some(entry) => entry.slot = slot,
            None => {
                self.nodes.insert(
                    id,
                    Entry {
                        slot,
                        deadline: None,
                    },
                );
            }
        }
        self.schedule(now, id);
        true
    }

    /// After a live entry's freshness changed: report a status change and reschedule.
    fn settle(&mut self, now: Instant, id: NodeId) {
        let status = match self.nodes.get(&id) {
            Some(Entry {
                slot: Slot::Live { last_advanced, .. },
                ..
            }) => self.status_at(now, *last_advanced),
            _ => return,
        };
        if let Some(Entry {
            slot: Slot::Live {
                reported, record, ..
            },
            ..
        }) = self.nodes.get_mut(&id)
        {
            if let Some(status) = status.filter(|s| s != reported) {
                let from = std::mem::replace(reported, status);
                let name = record.name.clone();
                self.push_event(RegistryEvent::StatusChanged {
                    id,
                    name,
                    from,
                    to: status,
                });
            }
        }
        self.schedule(now, id);
    }

    /// A deadline of `id` is due: report its status, drop it, or forget its tombstone.
    fn refresh(&mut self, now: Instant, id: NodeId) {
        let Some(entry) = self.nodes.get_mut(&id) else {
            return;
        };
        let age = now.saturating_duration_since(entry.slot.last_advanced());
        if age > self.config.forget_after() {
            if let Slot::Live { record, .. } = &entry.slot {
                let name = record.name.clone();
                self.push_event(RegistryEvent::Dropped { id, name });
            }
            self.unschedule(id);
            self.nodes.remove(&id);
            return;
        }
        if let Slot::Live {
            record,
            last_advanced,
            ..
        } = &entry.slot
        {
            if age > self.config.drop_after() {
                let name = record.name.clone();
                entry.slot = Slot::Tombstone {
                    version: record.version,
                    last_advanced: *last_advanced,
                };
                self.push_event(RegistryEvent::Dropped { id, name });
                self.schedule(now, id);
                return;
            }
        }
        self.settle(now, id);
    }

    /// File `id` under its next deadline (replacing any earlier one).
    fn schedule(&mut self, now: Instant, id: NodeId) {
        self.unschedule(id);
        let Some(entry) = self.nodes.get_mut(&id) else {
            return;
        };
        let last = entry.slot.last_advanced();
        let age = now.saturating_duration_since(last);
        let boundary = match entry.slot {
            Slot::Live { .. } => self.config.next_boundary(age),
            Slot::Tombstone { .. } => self
                .config
                .forget_after()
                .checked_add(Duration::from_nanos(1)),
        };
        entry.deadline = boundary.and_then(|b| last.checked_add(b));
        if let Some(at) = entry.deadline {
            self.deadlines.insert((at, id));
        }
    }

    fn unschedule(&mut self, id: NodeId) {
        if let Some(at) = self.nodes.get_mut(&id).and_then(|e| e.deadline.take()) {
            self.deadlines.remove(&(at, id));
        }
    }

    fn merge_broadcast_ref(&mut self, record: Cow<'_, BroadcastRecord>) -> bool {
        if record.seq > self.max_seq(&record.name) {
            self.max_seq.insert(record.name.clone(), record.seq);
        }
        match self.broadcasts.get_mut(&record.id) {
            Some(mine) if broadcast_cmp(&record, mine).is_gt() => {
                *mine = record.into_owned();
                self.generation += 1;
                true
            }
            Some(_) => false,
            None => {
                let id = record.id;
                self.broadcasts.insert(id, record.into_owned());
                self.push_event(RegistryEvent::BroadcastAdded { id });
                true
            }
        }
    }

    fn push_event(&mut self, event: RegistryEvent) {
        self.generation += 1;
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.events_dropped = self.events_dropped.saturating_add(1);
        }
        self.events.push_back(event);
    }
}
