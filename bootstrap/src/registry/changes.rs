//! Registry changes for heartbeating nodes: a bootstrap answers each heartbeat with what
//! changed since the node's [`RegistryCursor`], not with the whole registry, so that its cost
//! grows with churn rather than with the square of the fleet.
//!
//! Two pure halves, no clock read and no I/O:
//!
//! * [`ChangeLog`], at the bootstrap: a numbered copy of the registry view. The shell asks
//!   [`ChangeLog::needs_view`] before answering; if true it hands the registry's current
//!   [`view`](super::Registry::view) to [`ChangeLog::handle_view`], which numbers every entry
//!   whose record (apart from its heartbeat counter) or status changed, every changed
//!   broadcast record and every dropped entry. [`ChangeLog::answer`] then lists what is
//!   numbered after the cursor, or everything when the cursor is not from this log (another
//!   bootstrap, an earlier run of this one, or older than the removals it remembers).
//! * [`RegistryMirror`], at the node: applies those answers to its copy and hands the whole
//!   view on.
//!
//! A heartbeat counter that merely advanced is not a change: liveness reaches the node as the
//! entry's status, which the bootstrap derives. So an idle fleet's answers are empty, and a
//! node's mirror holds each entry as of its latest change (heartbeat counter and age included).
//! The shell takes a view only when the registry's
//! [`generation`](super::Registry::generation) moved since the last one
//! ([`ChangeLog::generation`]), so heartbeats of an idle fleet copy nothing; whole answers
//! then carry the heartbeat counters and ages of that last view.
//! Views are taken at most every [`ChangeLogConfig::refresh`], so an answer may be that much
//! behind the registry.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use swarmcast_proto::{
    BroadcastId, BroadcastRecord, NodeId, RegistryCursor, RegistryEntry, RegistryView,
};

/// Tuning of a [`ChangeLog`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeLogConfig {
    /// A view older than this is refreshed before answering. Default 100 ms.
    pub refresh: Duration,
    /// Dropped entries remembered for partial answers; a cursor older than the oldest
    /// forgotten one gets the whole view. Default 4096.
    pub max_removed: usize,
}

impl Default for ChangeLogConfig {
    fn default() -> Self {
        Self {
            refresh: Duration::from_millis(100),
            max_removed: 4096,
        }
    }
}

#[derive(Clone, Debug)]
struct Logged<T> {
    seq: u64,
    value: T,
}

/// The bootstrap's numbered copy of its registry view. (The module `changes` of the registry explains the protocol.)
#[derive(Clone, Debug)]
pub struct ChangeLog {
    config: ChangeLogConfig,
    epoch: u64,
    seq: u64,
    nodes: BTreeMap<NodeId, Logged<RegistryEntry>>,
    broadcasts: BTreeMap<BroadcastId, Logged<BroadcastRecord>>,
    /// `nodes` by change number, so that a partial answer costs what changed, not the
    /// registry's size (a scan of every entry per heartbeat made a fleet's heartbeats cost N²).
    node_seqs: BTreeMap<u64, NodeId>,
    /// `broadcasts` by change number.
    broadcast_seqs: BTreeMap<u64, BroadcastId>,
    /// In ascending change number.
    removed: VecDeque<(u64, NodeId)>,
    /// Removals numbered up to this were forgotten: older cursors get everything.
    floor: u64,
    refreshed: Option<Instant>,
    /// The registry generation of the last view, when given with `handle_view_at`.
    generation: Option<u64>,
}

/// Whether two entries differ in anything a node acts on: everything but the heartbeat
/// counter and the age.
fn same_entry(a: &RegistryEntry, b: &RegistryEntry) -> bool {
    let (x, y) = (&a.record, &b.record);
    a.status == b.status
        && x.id == y.id
        && x.name == y.name
        && x.role == y.role
        && x.addrs == y.addrs
        && x.version.incarnation == y.version.incarnation
        && x.progress == y.progress
        && x.pull == y.pull
        && x.groups == y.groups
}

fn sorted_entries<'a>(entries: impl Iterator<Item = &'a RegistryEntry>) -> Vec<RegistryEntry> {
    let mut out: Vec<RegistryEntry> = entries.cloned().collect();
    out.sort_by(|a, b| (&a.record.name, &a.record.id).cmp(&(&b.record.name, &b.record.id)));
    out
}

fn sorted_broadcasts<'a>(
    records: impl Iterator<Item = &'a BroadcastRecord>,
) -> Vec<BroadcastRecord> {
    let mut out: Vec<BroadcastRecord> = records.cloned().collect();
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    out
}

impl ChangeLog {
    /// An empty log for the bootstrap run `epoch` (its incarnation; 0 counts as 1, because
    /// the default cursor carries epoch 0 and must never match).
    pub fn new(epoch: u64, config: ChangeLogConfig) -> Self {
        Self {
            config,
            epoch: epoch.max(1),
            seq: 0,
            nodes: BTreeMap::new(),
            broadcasts: BTreeMap::new(),
            node_seqs: BTreeMap::new(),
            broadcast_seqs: BTreeMap::new(),
            removed: VecDeque::new(),
            floor: 0,
            refreshed: None,
            generation: None,
        }
    }

    /// Where the log stands.
    pub fn cursor(&self) -> RegistryCursor {
        RegistryCursor {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Whether the shell must call [`ChangeLog::handle_view`] before [`ChangeLog::answer`].
    pub fn needs_view(&self, now: Instant) -> bool {
        self.refreshed
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.refresh)
    }

    /// The [`Registry::generation`](super::Registry::generation) of the last view given with
    /// [`ChangeLog::handle_view_at`], if any: while the registry's is the same, a new view
    /// would number nothing, so the shell need not take one. (Whole answers then carry the
    /// heartbeat counters and ages of that view.)
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// [`ChangeLog::handle_view`] of a view taken at registry generation `generation`.
    pub fn handle_view_at(&mut self, now: Instant, view: &RegistryView, generation: u64) {
        self.handle_view(now, view);
        self.generation = Some(generation);
    }

    /// The registry's whole view at `now`: number what changed since the previous one.
    pub fn handle_view(&mut self, now: Instant, view: &RegistryView) {
        self.generation = None;
        self.refreshed = Some(now);
        let mut seen: BTreeMap<NodeId, ()> = BTreeMap::new();
        for entry in &view.nodes {
            let id = entry.record.id;
            seen.insert(id, ());
            match self.nodes.get_mut(&id) {
                // Unchanged: keep its number, but hold the fresher counter and age for
                // whole answers.
                Some(logged) if same_entry(&logged.value, entry) => {
                    logged.value = entry.clone();
                }
                _ => {
                    self.seq += 1;
                    self.node_seqs.insert(self.seq, id);
                    let old = self.nodes.insert(
                        id,
                        Logged {
                            seq: self.seq,
                            value: entry.clone(),
                        },
                    );
                    if let Some(old) = old {
                        self.node_seqs.remove(&old.seq);
                    }
                }
            }
        }
        let gone: Vec<NodeId> = self
            .nodes
            .keys()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(old) = self.nodes.remove(&id) {
                self.node_seqs.remove(&old.seq);
            }
            self.seq += 1;
            self.removed.push_back((self.seq, id));
        }
        while self.removed.len() > self.config.max_removed {
            if let Some((seq, _)) = self.removed.pop_front() {
                self.floor = seq;
            }
        }
        // The registry never drops broadcast records; one missing from a view stays here.
        for record in &view.broadcasts {
            if self
                .broadcasts
                .get(&record.id)
                .is_none_or(|logged| logged.value != *record)
            {
                self.seq += 1;
                self.broadcast_seqs.insert(self.seq, record.id);
                let old = self.broadcasts.insert(
                    record.id,
                    Logged {
                        seq: self.seq,
                        value: record.clone(),
                    },
                );
                if let Some(old) = old {
                    self.broadcast_seqs.remove(&old.seq);
                }
            }
        }
    }

    /// The answer to a heartbeat carrying `since`: what changed after it (partial), or
    /// everything if `since` is not a cursor this log can continue.
    pub fn answer(&self, since: RegistryCursor) -> RegistryView {
        let continues =
            since.epoch == self.epoch && since.seq >= self.floor && since.seq <= self.seq;
        if !continues {
            return RegistryView {
                nodes: sorted_entries(self.nodes.values().map(|l| &l.value)),
                broadcasts: sorted_broadcasts(self.broadcasts.values().map(|l| &l.value)),
                cursor: Some(self.cursor()),
                partial: false,
                removed: Vec::new(),
                progress_ack: None,
            };
        }
        let after = since.seq;
        let newer = (std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded);
        let first_removed = self.removed.partition_point(|(seq, _)| *seq <= after);
        RegistryView {
            nodes: sorted_entries(
                (self.node_seqs.range(newer))
                    .filter_map(|(_, id)| self.nodes.get(id))
                    .map(|l| &l.value),
            ),
            broadcasts: sorted_broadcasts(
                (self.broadcast_seqs.range(newer))
                    .filter_map(|(_, id)| self.broadcasts.get(id))
                    .map(|l| &l.value),
            ),
            cursor: Some(self.cursor()),
            partial: true,
            removed: (self.removed.range(first_removed..))
                .map(|(_, id)| *id)
                .collect(),
            progress_ack: None,
        }
    }
}

/// A node's copy of one bootstrap's registry, kept up to date by partial answers. (The module
/// `changes` of the registry explains the protocol.)
#[derive(Clone, Debug, Default)]
pub struct RegistryMirror {
    cursor: Option<RegistryCursor>,
    nodes: BTreeMap<NodeId, RegistryEntry>,
    broadcasts: BTreeMap<BroadcastId, BroadcastRecord>,
}

impl RegistryMirror {
    /// The cursor to send with the next heartbeat (the default one, which no bootstrap
    /// continues, while nothing was received).
    pub fn since(&self) -> RegistryCursor {
        self.cursor.unwrap_or_default()
    }

    /// Apply an answer; returns whether the copy changed.
    ///
    /// A whole view replaces the copy. A partial one is applied only if it continues this
    /// copy's cursor (same bootstrap run); otherwise it is ignored and the cursor reset, so
    /// that the next answer is whole.
    pub fn apply(&mut self, view: RegistryView) -> bool {
        if view.partial {
            let continues = matches!(
                (self.cursor, view.cursor),
                (Some(mine), Some(theirs)) if mine.epoch == theirs.epoch && theirs.seq >= mine.seq
            );
            if !continues {
                self.cursor = None;
                return false;
            }
            self.cursor = view.cursor;
            let mut changed = false;
            for id in &view.removed {
                changed |= self.nodes.remove(id).is_some();
            }
            for entry in view.nodes {
                changed |= self.nodes.get(&entry.record.id) != Some(&entry);
                self.nodes.insert(entry.record.id, entry);
            }
            for record in view.broadcasts {
                changed |= self.broadcasts.get(&record.id) != Some(&record);
                self.broadcasts.insert(record.id, record);
            }
            return changed;
        }
        self.cursor = view.cursor;
        let nodes: BTreeMap<NodeId, RegistryEntry> =
            view.nodes.into_iter().map(|e| (e.record.id, e)).collect();
        let broadcasts: BTreeMap<BroadcastId, BroadcastRecord> =
            view.broadcasts.into_iter().map(|b| (b.id, b)).collect();
        let changed = nodes != self.nodes || broadcasts != self.broadcasts;
        self.nodes = nodes;
        self.broadcasts = broadcasts;
        changed
    }

    /// The whole copy, sorted as [`Registry::view`](super::Registry::view) sorts.
    pub fn view(&self) -> RegistryView {
        RegistryView {
            nodes: sorted_entries(self.nodes.values()),
            broadcasts: sorted_broadcasts(self.broadcasts.values()),
            cursor: self.cursor,
            partial: false,
            removed: Vec::new(),
            progress_ack: None,
        }
    }

    /// The record of broadcast `id` in the copy, if any.
    pub fn broadcast(&self, id: &BroadcastId) -> Option<&BroadcastRecord> {
        self.broadcasts.get(id)
    }
}
