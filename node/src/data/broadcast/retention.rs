//! What a node keeps: `--keep N` versions per name, a `--max-disk` budget, `node rm`, and
//! `node cancel` at the origin.
//!
//! * **Keep.** Once a version of a name completes here (or is published here), the complete
//!   versions of that name beyond the newest [`keep`](super::BroadcastConfig::keep) are removed,
//!   oldest first. Never removed automatically: the version `received/<name>` points at, and one
//!   still being received (unless superseded, see `versions`). At the origin, versions beyond
//!   `keep` stop being seeded and are forgotten; the source directory is never touched.
//! * **Budget.** Before a new version's workspace is created, the bytes of every workspace kept
//!   plus the new one must fit in [`max_disk`](super::BroadcastConfig::max_disk); removable
//!   versions (complete, not current) go first, oldest first across names, and if that is not
//!   enough the new broadcast fails with [`Failure::NoDiskBudget`].
//! * **`node rm`** removes one version (by id or a unique id prefix) or every version of a name;
//!   removing the current version points `received/<name>` at the newest one left, or removes
//!   the link. A version removed is not fetched again.
//! * **`node cancel`** at the origin marks its versions cancelled in the registry; receivers stop
//!   and free the space when they see it, and `--wait` ends with the reason.
//! * Removal is [`BroadcastAction::Remove`]: the shell renames the directory to a dead name
//!   before deleting it, so a crash midway leaves nothing served, listed or resumed.

use swarmcast_proto::BroadcastId;
use tracing::info;

use super::bcast::State;
use super::{BroadcastAction, Broadcasts, Failure, Lost, ReportDue};

/// Why `node rm`, `node cancel` or `node fetch` cannot act on what it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// No broadcast here has that id, id prefix or name.
    #[error("no broadcast {0:?} here (node ls lists them)")]
    Unknown(String),
    /// An id prefix that more than one broadcast starts with.
    #[error("{0:?} is the start of more than one broadcast id; give more of it")]
    Ambiguous(String),
    /// `node cancel` of a broadcast this node did not send.
    #[error("{target:?} was not sent from this node: only its origin may cancel it")]
    NotOrigin {
        /// What was asked.
        target: String,
    },
    /// `node fetch` of a name (or id) that neither the registry nor this node knows.
    #[error("no broadcast named {0:?} (nor with that id) in the registry or on this node")]
    NoSuchName(String),
    /// `node fetch` of a version a newer version of its name supersedes.
    #[error("{target:?} is an older version of {name:?}: a newer one is out (fetch {name:?})")]
    Superseded {
        /// What was asked.
        target: String,
        /// Its name.
        name: String,
    },
    /// `node fetch` of a broadcast its origin failed or cancelled (with a name: every
    /// version of it).
    #[error("{0:?} failed or was cancelled at its origin: there is nothing to fetch")]
    Ended(String),
    /// `node fetch` of a restricted broadcast whose audience this node is not in.
    #[error("{target:?} is restricted to {audience}: this node is not in the audience")]
    NotInAudience {
        /// What was asked.
        target: String,
        /// Who may receive it.
        audience: String,
    },
}

impl Broadcasts {
    /// The broadcasts `target` names: an id, a unique id prefix (4 hex digits or more), or a
    /// name (every version of it).
    fn resolve(&self, target: &str) -> Result<Vec<BroadcastId>, TargetError> {
        let by_name: Vec<BroadcastId> = self
            .names
            .get(target)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        if !by_name.is_empty() {
            return Ok(by_name);
        }
        let hex = target.to_ascii_lowercase();
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids: Vec<BroadcastId> = self
                .broadcasts
                .keys()
                .copied()
                .filter(|id| id.to_hex().starts_with(&hex))
                .collect();
            match ids.len() {
                0 => {}
                1 => return Ok(ids),
                _ => return Err(TargetError::Ambiguous(target.to_owned())),
            }
        }
        Err(TargetError::Unknown(target.to_owned()))
    }

    /// `node rm`: remove what `target` names from this node; the ids removed.
    pub fn remove(&mut self, target: &str) -> Result<Vec<BroadcastId>, TargetError> {
        let ids = self.resolve(target)?;
        for &id in &ids {
            self.forget(id, None);
        }
        Ok(ids)
    }

    /// `node cancel`: cancel, fleet-wide, the versions this node sent that `target` names (with
    /// a name: this origin's versions of it only); the ids cancelled.
    pub fn cancel(&mut self, target: &str) -> Result<Vec<BroadcastId>, TargetError> {
        let ids: Vec<BroadcastId> = self
            .resolve(target)?
            .into_iter()
            .filter(|id| self.broadcasts.get(id).is_some_and(|b| b.source.is_some()))
            .collect();
        if ids.is_empty() {
            return Err(TargetError::NotOrigin {
                target: target.to_owned(),
            });
        }
        for &id in &ids {
            let Some(b) = self.broadcasts.get_mut(&id) else {
                continue;
            };
            if matches!(b.state, State::Cancelled) {
                continue;
            }
            info!(broadcast = %id.short(), name = %b.manifest.name, "cancelled: receivers stop and free the space");
            b.state = State::Cancelled;
            // A new record version, so that the registry takes the new state.
            b.version += 1;
            let key = (b.seq, self.me, id);
            let name = b.manifest.name.clone();
            if let Some(l) = self.live.get_mut(&name) {
                l.remove(&key);
            }
            self.push(BroadcastAction::Unserve { id });
        }
        self.report_change(ReportDue::Now);
        Ok(ids)
    }

    /// Drop `id` from this node: stop its requests and serving, remove its directory (never an
    /// origin's source), point `received/<name>` elsewhere if it pointed here, and never fetch
    /// it again. With `failure`, it is remembered as failed for that reason (`node ls`,
    /// `--wait`); without, it is forgotten.
    pub(super) fn forget(&mut self, id: BroadcastId, failure: Option<Failure>) {
        let Some(b) = self.broadcasts.remove(&id) else {
            return;
        };
        let name = b.manifest.name.clone();
        self.active.remove(&id);
        self.haves.remove(&id);
        self.unindex_name(id, &name);
        if b.source.is_some() {
            let key = (b.seq, self.me, id);
            if let Some(l) = self.live.get_mut(&name) {
                l.remove(&key);
            }
        }
        self.removed.insert(id);
        if let Some(failure) = failure {
            self.remember_lost(
                id,
                Lost {
                    name: name.clone(),
                    failure,
                    totals: Some((u64::from(b.layout.chunk_count()), b.layout.total_bytes)),
                    order: 0,
                },
            );
        }
        self.push(BroadcastAction::AbortRequests { id });
        self.push(BroadcastAction::Unserve { id });
        self.push(BroadcastAction::Remove { id });
        self.relink(&name);
        self.report_change(ReportDue::Now);
    }

    /// The origin ended `id` (failed or cancelled it): a receiver stops, frees the space and
    /// remembers why.
    pub(super) fn origin_ended(&mut self, id: BroadcastId, failure: Failure) {
        let Some(b) = self.broadcasts.get(&id) else {
            return;
        };
        if b.source.is_some() || matches!(b.state, State::Failed(_)) {
            return;
        }
        // A copy complete here is kept when the origin merely failed (its bytes are verified);
        // a cancellation frees it too.
        if matches!(b.state, State::Complete) && !matches!(failure, Failure::Cancelled) {
            return;
        }
        info!(broadcast = %id.short(), name = %b.manifest.name, reason = %failure, "stopping and removing its data");
        self.forget(id, Some(failure));
    }

    /// Remove the complete versions of `name` beyond the newest `keep` (never the current one),
    /// and at the origin stop seeding and forget its own versions beyond `keep`.
    pub(super) fn enforce_keep(&mut self, name: &str) {
        let keep = self.config.keep.max(1);
        let mut complete = Vec::new();
        let mut own = Vec::new();
        for &id in self.names.get(name).into_iter().flatten() {
            let (Some(b), Some(key)) = (self.broadcasts.get(&id), self.key_of(id)) else {
                continue;
            };
            // A version whose place is not known yet may be the newest: never removed until
            // it is placed.
            if !self.placed(id) {
                continue;
            }
            match b.state {
                State::Complete if b.source.is_none() => complete.push(key),
                State::Seeding | State::Superseded | State::Cancelled if b.source.is_some() => {
                    own.push(key);
                }
                _ => {}
            }
        }
        for mut keys in [complete, own] {
            keys.sort_unstable_by(|a, b| b.cmp(a));
            for key in keys.into_iter().skip(keep) {
                // Neither what received/ shows nor what it is moving to.
                if self.is_current(key.2, name) || self.linking.get(name) == Some(&Some(key.2)) {
                    continue;
                }
                info!(broadcast = %key.2.short(), %name, keep, "beyond --keep: removing");
                self.forget(key.2, None);
            }
        }
    }

    /// What of a new broadcast (`manifest`, `layout`) is held here already: whole files that a
    /// receiver's workspace holds identical (same size, chunk size and chunk hashes; linked),
    /// then the other chunks that a broadcast kept here holds with the same BLAKE3 hash (a
    /// receiver's held chunks, or an origin's source, read back and verified so that a source
    /// that changed only costs a fetch; copied). O(chunks of the new broadcast + chunks held
    /// here), once per new broadcast.
    pub(super) fn local_plan(
        &self,
        manifest: &crate::manifest::Manifest,
        layout: &crate::manifest::Layout,
    ) -> (Vec<super::LocalLink>, Vec<super::LocalCopy>) {
        use crate::manifest::EntryKind;
        let candidate = |b: &super::bcast::Bcast| {
            b.held_chunks.count_ones() > 0
                && (matches!(b.state, State::Seeding)
                    || (b.source.is_none()
                        && matches!(b.state, State::Receiving | State::Complete)))
        };
        if !self.broadcasts.values().any(candidate) {
            // Nothing kept here to take from (a first send).
            return (Vec::new(), Vec::new());
        }
        // Whole files, keyed by (size, chunk size, the BLAKE3 of their chunk hashes).
        let key =
            |m: &crate::manifest::Manifest, size: u64, chunks: &[crate::manifest::ChunkHash]| {
                let mut h = blake3::Hasher::new();
                for c in chunks {
                    h.update(&c.0);
                }
                (size, m.chunk_size, *h.finalize().as_bytes())
            };
        // Ordered maps, as everywhere in the core: nothing here depends on a hasher's seed.
        let mut want_files: std::collections::BTreeMap<(u64, u32, [u8; 32]), Vec<u32>> =
            std::collections::BTreeMap::new();
        for (i, e) in manifest.entries.iter().enumerate() {
            if let EntryKind::File { size, chunks, .. } = &e.kind {
                if !chunks.is_empty() {
                    want_files
                        .entry(key(manifest, *size, chunks))
                        .or_default()
                        .push(i as u32);
                }
            }
        }
        let mut links = Vec::new();
        for (&from, b) in &self.broadcasts {
            if want_files.is_empty() {
                break;
            }
            if b.source.is_some() || !matches!(b.state, State::Receiving | State::Complete) {
                continue;
            }
            let mut first = 0u32;
            for (j, e) in b.manifest.entries.iter().enumerate() {
                let EntryKind::File { size, chunks, .. } = &e.kind else {
                    continue;
                };
                let n = chunks.len() as u32;
                let held = (first..first + n).all(|c| b.held_chunks.get(c));
                first += n;
                if n == 0 || !held {
                    continue;
                }
                if let Some(dsts) = want_files.remove(&key(&b.manifest, *size, chunks)) {
                    links.extend(dsts.into_iter().map(|entry| super::LocalLink {
                        entry,
                        from,
                        from_entry: j as u32,
                    }));
                }
            }
        }
        let linked: std::collections::BTreeSet<u32> = links.iter().map(|l| l.entry).collect();
        // The chunks still wanted, by the first 8 bytes of their hash, sorted: 16 bytes per
        // chunk (a map of full hashes took ~100 bytes, 100 MB of peak RSS at a million).
        let prefix = |h: &crate::manifest::ChunkHash| {
            u64::from_le_bytes([
                h.0[0], h.0[1], h.0[2], h.0[3], h.0[4], h.0[5], h.0[6], h.0[7],
            ])
        };
        let mut want: Vec<(u64, u32)> = layout
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| !linked.contains(&c.entry))
            .filter_map(|(i, c)| Some((prefix(manifest.chunk_hash(c)?), i as u32)))
            .collect();
        want.sort_unstable();
        let mut taken = crate::bitfield::Bitfield::new(layout.chunk_count());
        let mut out = Vec::new();
        for (&from, b) in &self.broadcasts {
            if out.len() == want.len() {
                break;
            }
            let usable = match b.state {
                State::Seeding => true,
                State::Receiving | State::Complete => b.source.is_none(),
                _ => false,
            };
            if !usable {
                continue;
            }
            for from_chunk in b.held_chunks.iter_ones() {
                let Some(hash) = b.manifest.chunk_hash(&b.layout.chunks[from_chunk as usize])
                else {
                    continue;
                };
                let p = prefix(hash);
                let start = want.partition_point(|(k, _)| *k < p);
                for &(_, chunk) in want[start..].iter().take_while(|(k, _)| *k == p) {
                    let same = manifest.chunk_hash(&layout.chunks[chunk as usize]) == Some(hash);
                    if same && taken.set(chunk) {
                        out.push(super::LocalCopy {
                            chunk,
                            from,
                            from_chunk,
                        });
                    }
                }
            }
        }
        out.sort_unstable_by_key(|c| c.chunk);
        links.sort_unstable_by_key(|l| l.entry);
        (links, out)
    }

    /// Bytes the workspaces kept here take (their files' sizes).
    fn disk_used(&self) -> u64 {
        self.broadcasts
            .values()
            .filter(|b| b.source.is_none())
            .map(|b| b.layout.total_bytes)
            .sum()
    }

    /// Make room for `needed` more bytes within `--max-disk`, removing complete versions that
    /// are not current, oldest first; the failure if it cannot.
    pub(super) fn make_room(&mut self, needed: u64) -> Result<(), Failure> {
        let Some(budget) = self.config.max_disk else {
            return Ok(());
        };
        let mut removable: Vec<(u64, BroadcastId)> = self
            .broadcasts
            .iter()
            .filter(|(id, b)| {
                b.source.is_none()
                    && matches!(b.state, State::Complete)
                    && !self.is_current(**id, &b.manifest.name)
            })
            .map(|(id, b)| (b.seq, *id))
            .collect();
        // Oldest first (lowest seq; ties by id, for a deterministic order).
        removable.sort_unstable();
        let mut used = self.disk_used();
        let mut removable = removable.into_iter();
        while used.saturating_add(needed) > budget {
            let Some((_, id)) = removable.next() else {
                return Err(Failure::NoDiskBudget {
                    needed,
                    free: budget.saturating_sub(used),
                    budget,
                });
            };
            used =
                used.saturating_sub(self.broadcasts.get(&id).map_or(0, |b| b.layout.total_bytes));
            info!(broadcast = %id.short(), "making room within --max-disk: removing");
            self.forget(id, None);
        }
        Ok(())
    }
}
