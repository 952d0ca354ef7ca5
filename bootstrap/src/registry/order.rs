//! Deterministic tie-breaks for records of equal version, so that merge is a function of the
//! set of updates whatever order they arrive in.

use std::cmp::Ordering;

use swarmcast_proto::{BroadcastId, BroadcastRecord, BroadcastState, NodeRecord};

/// A total order on the contents of two node records of the same id and version.
///
/// Compares every field other than id and version, so `Equal` means the records are equal.
pub(super) fn content_cmp(a: &NodeRecord, b: &NodeRecord) -> Ordering {
    a.name
        .cmp(&b.name)
        .then_with(|| a.role.cmp(&b.role))
        .then_with(|| a.addrs.cmp(&b.addrs))
        .then_with(|| {
            fn key(p: &swarmcast_proto::Progress) -> (BroadcastId, u64, u64, bool, Option<&str>) {
                (
                    p.broadcast,
                    p.held,
                    p.total,
                    p.complete,
                    p.failed.as_deref(),
                )
            }
            a.progress.iter().map(key).cmp(b.progress.iter().map(key))
        })
        .then_with(|| a.progress_seq.cmp(&b.progress_seq))
        .then_with(|| a.pull.cmp(&b.pull))
        .then_with(|| a.groups.cmp(&b.groups))
}

/// A total order on two broadcast records of the same id: version first, then `Failed` over
/// `Active`, then the remaining fields. `Equal` means the records are equal.
pub(super) fn broadcast_cmp(a: &BroadcastRecord, b: &BroadcastRecord) -> Ordering {
    fn rank(state: BroadcastState) -> u8 {
        match state {
            BroadcastState::Active => 0,
            BroadcastState::Failed => 1,
            BroadcastState::Cancelled => 2,
        }
    }
    a.version
        .cmp(&b.version)
        .then_with(|| rank(a.state).cmp(&rank(b.state)))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.origin.cmp(&b.origin))
        .then_with(|| a.size.cmp(&b.size))
        .then_with(|| a.chunks.cmp(&b.chunks))
        .then_with(|| a.seq.cmp(&b.seq))
        .then_with(|| a.id.cmp(&b.id))
        .then_with(|| a.audience.cmp(&b.audience))
}
