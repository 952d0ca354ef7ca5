//! One known broadcast as the core sees it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use swarmcast_proto::{BroadcastId, BroadcastRecord, BroadcastState, Have, Message, NodeId};

use super::error::Failure;
use super::superseed::SuperSeed;
use super::types::BroadcastInfo;
use crate::bitfield::Bitfield;
use crate::listing::BroadcastPhase;
use crate::manifest::{Layout, Manifest};
use crate::swarm::Transfer;

#[derive(Debug, Clone)]
pub(super) enum State {
    Seeding,
    Receiving,
    Complete,
    Failed(Failure),
    /// At the origin: an older version whose source changed once a newer one was out; no
    /// longer seeded.
    Superseded,
    /// At the origin: cancelled (`node cancel`); no longer seeded.
    Cancelled,
}

#[derive(Debug)]
pub(super) struct Bcast {
    pub(super) manifest: Arc<Manifest>,
    pub(super) layout: Arc<Layout>,
    pub(super) state: State,
    pub(super) origin: Option<NodeId>,
    /// The origin's source directory (only at the origin).
    pub(super) source: Option<PathBuf>,
    /// The workspace's data directory once complete.
    pub(super) path: Option<PathBuf>,
    /// `received/<name>`, while it points at this version.
    pub(super) link: Option<PathBuf>,
    pub(super) transfer: Option<Transfer>,
    /// Durable chunks (what a restart keeps). Set through [`Bcast::hold`], which keeps
    /// `bytes_held` in step.
    pub(super) held_chunks: Bitfield,
    /// Bytes of the chunks in `held_chunks`, kept as they are added (not recounted per event).
    bytes_held: u64,
    /// Chunks advertised: verified and written, durable or not.
    pub(super) advertised: Bitfield,
    /// Pieces received and not yet in a commit.
    pub(super) commit_waiting: bool,
    pub(super) commit_running: bool,
    /// The next commit starts no earlier than this (see [`BroadcastConfig::commit_interval`]).
    pub(super) commit_not_before: Option<Instant>,
    pub(super) finalizing: bool,
    pub(super) fetched_bytes: u64,
    pub(super) uploaded_bytes: u64,
    pub(super) resumed_chunks: u64,
    pub(super) version: u64,
    /// Publication sequence of this version of its name (see [`BroadcastRecord::seq`]): set
    /// at the origin, learnt from the registry record at a receiver (0 until then).
    pub(super) seq: u64,
    /// When the origin published it (ms since the Unix epoch, origin's clock; 0: unknown).
    pub(super) published_ms: u64,
    /// While receiving: when to check for a stall (progress pushes it back; `None` once one
    /// was reported, until the next progress).
    pub(super) stall_check: Option<Instant>,
    /// Receiving: when to take a connected origin that has not announced itself as holding
    /// every piece (see `Broadcasts::assume_origins`).
    pub(super) assume_origin_at: Option<Instant>,
    /// The last stall check found holders: the next one (after `stall_confirm`) reports it if
    /// they still hold what this node lacks and nothing arrived meanwhile.
    pub(super) stall_suspect: bool,
    /// Served by the origin with super-seeding: which chunks have left it (see [`SuperSeed`]).
    pub(super) first_round: Option<SuperSeed>,
}

impl Bcast {
    pub(super) fn new(
        manifest: Arc<Manifest>,
        layout: Arc<Layout>,
        state: State,
        held: Bitfield,
    ) -> Self {
        let bytes_held = if held.is_complete() {
            layout.total_bytes
        } else {
            held.iter_ones()
                .map(|c| u64::from(layout.chunks[c as usize].len))
                .sum()
        };
        Self {
            bytes_held,
            manifest,
            layout,
            state,
            origin: None,
            source: None,
            path: None,
            link: None,
            transfer: None,
            advertised: held.clone(),
            held_chunks: held,
            commit_waiting: false,
            commit_running: false,
            commit_not_before: None,
            finalizing: false,
            fetched_bytes: 0,
            uploaded_bytes: 0,
            resumed_chunks: 0,
            version: 0,
            seq: 0,
            published_ms: 0,
            stall_check: None,
            assume_origin_at: None,
            stall_suspect: false,
            first_round: None,
        }
    }

    pub(super) fn failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Bytes durably held: O(1).
    pub(super) fn bytes_held(&self) -> u64 {
        self.bytes_held
    }

    /// Chunk `c` is durable; true if it was not held before.
    pub(super) fn hold(&mut self, c: u32) -> bool {
        if !self.held_chunks.set(c) {
            return false;
        }
        self.bytes_held += u64::from(self.layout.chunks[c as usize].len);
        true
    }

    pub(super) fn piece_bitfield(&self, chunks: &Bitfield) -> Bitfield {
        let mut p = Bitfield::new(self.layout.piece_count());
        crate::work::tick(u64::from(self.layout.piece_count()));
        for piece in 0..self.layout.piece_count() {
            if self.layout.chunks_of(piece).all(|c| chunks.get(c)) {
                p.set(piece);
            }
        }
        p
    }

    pub(super) fn have(&self, id: BroadcastId) -> Message {
        Message::Have(Have {
            broadcast: id,
            chunks: self.layout.chunk_count(),
            bits: self.advertised.as_bytes().to_vec(),
            from_origin: self.source.is_some(),
            seq: self.seq,
            audience: self.manifest.audience.clone(),
        })
    }

    pub(super) fn info(&self, id: BroadcastId) -> BroadcastInfo {
        crate::work::tick(1);
        let (state, error) = match &self.state {
            State::Seeding => (BroadcastPhase::Seeding, None),
            State::Receiving => (BroadcastPhase::Receiving, None),
            State::Complete => (BroadcastPhase::Complete, None),
            State::Failed(e) => (BroadcastPhase::Failed, Some(e.to_string())),
            State::Superseded => (BroadcastPhase::Superseded, None),
            State::Cancelled => (BroadcastPhase::Cancelled, None),
        };
        let path = self
            .link
            .as_ref()
            .or(self.path.as_ref())
            .or(self.source.as_ref())
            .map(|p| p.display().to_string());
        BroadcastInfo {
            id: id.to_hex(),
            name: self.manifest.name.clone(),
            state,
            seq: self.seq,
            published_ms: self.published_ms,
            current: false,
            chunks_held: u64::from(self.held_chunks.count_ones()),
            chunks_total: u64::from(self.layout.chunk_count()),
            bytes_held: self.bytes_held(),
            bytes_total: self.layout.total_bytes,
            path,
            error,
            fetched_bytes: self.fetched_bytes,
            resumed_chunks: self.resumed_chunks,
            uploaded_bytes: self.uploaded_bytes,
            audience: self.manifest.audience.clone(),
            priority: self.manifest.priority,
        }
    }

    pub(super) fn record(&self, id: BroadcastId, me: NodeId) -> Option<BroadcastRecord> {
        self.source.as_ref()?;
        Some(BroadcastRecord {
            id,
            name: self.manifest.name.clone(),
            origin: me,
            size: self.layout.total_bytes,
            chunks: u64::from(self.layout.chunk_count()),
            state: match self.state {
                State::Failed(_) => BroadcastState::Failed,
                State::Cancelled => BroadcastState::Cancelled,
                _ => BroadcastState::Active,
            },
            version: self.version,
            seq: self.seq,
            published_ms: self.published_ms,
            audience: self.manifest.audience.clone(),
        })
    }
}
