//! Versions of a name: their order, which one `received/<name>` points at, and which older ones
//! a newer publication supersedes.
//!
//! Versions of a name are ordered by `(seq, origin, id)`, highest newest (see
//! [`BroadcastRecord::version_key`]). An origin gives a new version the `seq` one above the
//! highest it knows for the name, from the registry and from its own versions (a Lamport
//! clock): two origins publishing the same name at once may pick the same `seq`, and then the
//! higher origin id is the newer. A *live* version is one whose record is not failed.
//!
//! * A receiver fetches only the newest live version of each name. One it was receiving when a
//!   newer one was published is superseded: its requests stop, it is no longer served, its
//!   partial data is removed, and it is remembered as failed ([`Failure::Superseded`]) so that
//!   `node send --wait` hears why. Complete versions are kept (retention decides).
//! * `received/<name>` points at the newest *complete* version held here, whatever the order
//!   in which versions complete ([`BroadcastAction::Link`]).
//! * At the origin, a version whose source changed after a newer version of the name was
//!   published stops being seeded (expected: the source directory moved on); the newest
//!   failing so is a loud failure, as before.

use swarmcast_proto::{BroadcastId, BroadcastRecord, BroadcastState, NodeId};
use tracing::{info, warn};

use super::bcast::State;
use super::{BroadcastAction, Broadcasts, Failure, Lost, Publication, ReportDue};

/// Order of a version among its name's versions: higher is newer.
pub(super) type VersionKey = (u64, NodeId, BroadcastId);

impl Broadcasts {
    /// The order key of a broadcast this node holds (an origin not known yet counts as the
    /// lowest).
    pub(super) fn key_of(&self, id: BroadcastId) -> Option<VersionKey> {
        let b = self.broadcasts.get(&id)?;
        let origin = b
            .origin
            .or_else(|| self.records.get(&id).map(|r| r.origin))
            .unwrap_or(NodeId([0; 32]));
        Some((b.seq, origin, id))
    }

    /// Whether `id`'s place among its name's versions is known: its own, a record names it, or
    /// a `seq` came from a peer's `Have` or was persisted. A receiver restarted before the
    /// registry named a version it was fetching holds it unplaced (`seq` 0) for a while; such a
    /// version may be the newest, so it is neither superseded nor removed until placed.
    pub(super) fn placed(&self, id: BroadcastId) -> bool {
        self.broadcasts
            .get(&id)
            .is_some_and(|b| b.source.is_some() || b.seq > 0)
            || self.records.contains_key(&id)
    }

    /// The newest live version of `name` that this node knows of (a record, or its own).
    pub(super) fn newest_live(&self, name: &str) -> Option<VersionKey> {
        self.live.get(name).and_then(|s| s.last().copied())
    }

    /// Whether a newer live version of `r`'s name is known.
    pub(super) fn is_superseded(&self, r: &BroadcastRecord) -> bool {
        self.newest_live(&r.name)
            .is_some_and(|newest| newest > r.version_key())
    }

    /// The `seq` a new version of `name` published here gets: one above the highest known.
    pub(super) fn next_seq(&self, name: &str) -> u64 {
        let own = self
            .names
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|id| self.broadcasts.get(id))
            .map(|b| b.seq)
            .max()
            .unwrap_or(0);
        own.max(self.max_seq.get(name).copied().unwrap_or(0)) + 1
    }

    /// Index a broadcast held here under its name (and as live, once its key is known).
    pub(super) fn index_name(&mut self, id: BroadcastId) {
        let Some(b) = self.broadcasts.get(&id) else {
            return;
        };
        let name = b.manifest.name.clone();
        let seq = b.seq;
        self.names.entry(name.clone()).or_default().insert(id);
        let m = self.max_seq.entry(name.clone()).or_default();
        *m = (*m).max(seq);
        if b.source.is_some() && !b.failed() {
            if let Some(key) = self.key_of(id) {
                self.live.entry(name).or_default().insert(key);
            }
        }
    }

    /// Forget a broadcast held here from the name index.
    pub(super) fn unindex_name(&mut self, id: BroadcastId, name: &str) {
        if let Some(s) = self.names.get_mut(name) {
            s.remove(&id);
            if s.is_empty() {
                self.names.remove(name);
            }
        }
    }

    /// A record from the registry: the highest `seq` of its name, the live versions, and what
    /// a receiver holding it learns of its place (persisted, [`BroadcastAction::SaveVersion`]).
    pub(super) fn note_record(&mut self, r: &BroadcastRecord) {
        let m = self.max_seq.entry(r.name.clone()).or_default();
        *m = (*m).max(r.seq);
        // A version restricted to others is none of this node's business: it neither supersedes
        // what this node may receive nor is fetched.
        let mine = self.may_receive_record(r);
        let live = self.live.entry(r.name.clone()).or_default();
        if r.state == BroadcastState::Active && mine {
            live.insert(r.version_key());
        } else {
            live.remove(&r.version_key());
        }
        let Some(b) = self.broadcasts.get_mut(&r.id) else {
            return;
        };
        if b.source.is_some() || b.origin.is_some_and(|o| o != r.origin) {
            return;
        }
        if (b.seq, b.published_ms) != (r.seq, r.published_ms) {
            b.seq = r.seq;
            b.published_ms = r.published_ms;
            let publication = Publication {
                seq: r.seq,
                published_ms: r.published_ms,
            };
            self.push(BroadcastAction::SaveVersion {
                id: r.id,
                publication,
            });
            self.report_change(ReportDue::Now);
        }
    }

    /// Stop receiving every version of `name` older than its newest live one, and forget the
    /// unknown ones (never fetched).
    pub(super) fn supersede_older(&mut self, name: &str) {
        let Some(newest) = self.newest_live(name) else {
            return;
        };
        let held: Vec<BroadcastId> = self
            .names
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&id| id != newest.2)
            .collect();
        for id in held {
            let receiving = self
                .broadcasts
                .get(&id)
                .is_some_and(|b| matches!(b.state, State::Receiving) && !b.finalizing);
            if receiving && self.placed(id) && self.key_of(id).is_some_and(|k| k < newest) {
                self.supersede(id);
            }
        }
        let unknown: Vec<BroadcastId> = self
            .unknown
            .keys()
            .copied()
            .filter(|id| self.records.get(id).is_some_and(|r| self.is_superseded(r)))
            .collect();
        for id in unknown {
            self.unknown.remove(&id);
            self.haves.remove(&id);
            if self.asked.remove(&id) {
                // `node fetch` asked for it and waits: it hears why it will not come.
                let name = (self.records.get(&id))
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                info!(broadcast = %id.short(), %name, "superseded before its manifest came: not fetching it");
                let failure = Failure::Superseded { name: name.clone() };
                let lost = Lost {
                    name,
                    failure,
                    totals: None,
                    order: 0,
                };
                self.remember_lost(id, lost);
                self.report_change(ReportDue::Now);
            }
        }
    }

    /// A version being received is superseded: stop it, remove its data, remember why.
    pub(super) fn supersede(&mut self, id: BroadcastId) {
        let Some(b) = self.broadcasts.get(&id) else {
            return;
        };
        let name = b.manifest.name.clone();
        info!(broadcast = %id.short(), %name, held = b.held_chunks.count_ones(), "superseded by a newer version: stopping and removing its partial data");
        self.forget(id, Some(Failure::Superseded { name }));
    }

    /// The version `received/<name>` should point at: the newest complete version held here,
    /// or the one it points at now while that one is still being finished (a resumed node
    /// finishes its versions in any order, and received/ must never step back meanwhile).
    fn link_target(&self, name: &str) -> Option<BroadcastId> {
        let current = self.linked.get(name).copied().filter(|id| {
            self.broadcasts
                .get(id)
                .is_some_and(|b| b.source.is_none() && b.finalizing)
        });
        self.names
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| {
                self.broadcasts
                    .get(id)
                    .is_some_and(|b| b.source.is_none() && matches!(b.state, State::Complete))
            })
            .chain(current)
            .filter_map(|id| self.key_of(id))
            .max()
            .map(|k| k.2)
    }

    /// Point `received/<name>` at [`link_target`](Self::link_target) (or remove it when no
    /// version is left), if it points elsewhere. One change per name is under way at a time:
    /// while one is, this waits for its end, which decides again.
    pub(super) fn relink(&mut self, name: &str) {
        if self.linking.contains_key(name) {
            return;
        }
        let target = self.link_target(name);
        let current = self.linked.get(name).copied();
        if target == current || (target.is_some() && target == self.link_refused.get(name).copied())
        {
            return;
        }
        match (target, current) {
            (Some(id), _) => {
                self.linking.insert(name.to_owned(), Some(id));
                self.push(BroadcastAction::Link {
                    name: name.to_owned(),
                    id,
                });
            }
            (None, Some(id)) => {
                self.linking.insert(name.to_owned(), None);
                self.push(BroadcastAction::Unlink {
                    name: name.to_owned(),
                    id,
                });
            }
            (None, None) => {}
        }
    }

    /// Whether `received/<name>` is to point at `id` but does not yet (its link is under way or
    /// waits for another's), and its link did not fail.
    pub(super) fn link_pending(&self, id: BroadcastId, name: &str) -> bool {
        self.linked.get(name) != Some(&id)
            && self.link_refused.get(name) != Some(&id)
            && self.link_target(name) == Some(id)
    }

    /// At resume, before the broadcasts are added: `received/<name>` points at `id` on disk.
    pub fn note_shown(&mut self, name: &str, id: BroadcastId) {
        self.linked.insert(name.to_owned(), id);
    }

    /// A [`Link`](BroadcastAction::Link) ended: `received/<name>` points at `id` (`path`).
    pub fn handle_linked(
        &mut self,
        name: &str,
        id: BroadcastId,
        result: Result<std::path::PathBuf, crate::store::StoreError>,
    ) {
        self.linking.remove(name);
        match result {
            Ok(path) => {
                info!(broadcast = %id.short(), %name, path = %path.display(), "current version");
                self.linked.insert(name.to_owned(), id);
                self.link_refused.remove(name);
                let ids: Vec<BroadcastId> = self
                    .names
                    .get(name)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                for other in ids {
                    if let Some(b) = self.broadcasts.get_mut(&other) {
                        b.link = (other == id).then(|| path.clone());
                    }
                }
                self.report_change(ReportDue::Now);
                // Another version may have completed or gone meanwhile; the one shown before
                // may now be beyond --keep.
                self.relink(name);
                self.enforce_keep(name);
            }
            Err(e) => {
                warn!(broadcast = %id.short(), %name, error = %e, "cannot point received/ at the newest version");
                self.link_refused.insert(name.to_owned(), id);
                // What the link shows is unknown now: nothing counts as shown. Tried again
                // for a different target only (the same one would fail the same way).
                if self.linked.get(name) == Some(&id) {
                    self.linked.remove(name);
                }
                self.report_change(ReportDue::Now);
                if self.link_target(name) != Some(id) {
                    self.relink(name);
                }
            }
        }
    }

    /// An [`Unlink`](BroadcastAction::Unlink) ended.
    pub fn handle_unlinked(
        &mut self,
        name: &str,
        id: BroadcastId,
        result: Result<bool, crate::store::StoreError>,
    ) {
        self.linking.remove(name);
        match result {
            Ok(_) => {
                if self.linked.get(name) == Some(&id) {
                    self.linked.remove(name);
                }
                self.relink(name);
            }
            Err(e) => {
                warn!(broadcast = %id.short(), %name, error = %e, "cannot remove received link");
                if self.link_target(name).is_some() {
                    self.relink(name);
                }
            }
        }
        self.report_change(ReportDue::Now);
    }

    /// Whether `received/<name>` points at `id` or at a newer version of its name.
    pub(super) fn received_shows(&self, id: BroadcastId) -> bool {
        let Some(name) = self.broadcasts.get(&id).map(|b| &b.manifest.name) else {
            return false;
        };
        match (self.linked.get(name), self.key_of(id)) {
            (Some(&l), Some(key)) => l == id || self.key_of(l).is_some_and(|k| k > key),
            _ => false,
        }
    }

    /// The newest version of `name` this node sent (whose file stamps a new build compares
    /// with, to reuse the hashes of unchanged files).
    pub fn previous_own_version(&self, name: &str) -> Option<BroadcastId> {
        self.names
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| self.broadcasts.get(id).is_some_and(|b| b.source.is_some()))
            .filter_map(|id| self.key_of(id))
            .max()
            .map(|k| k.2)
    }

    /// Whether `id` is the version `received/<name>` points at.
    pub(super) fn is_current(&self, id: BroadcastId, name: &str) -> bool {
        self.linked.get(name) == Some(&id)
    }
}
