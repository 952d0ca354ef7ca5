//! Incremental transfer, the shell's side: copying the chunks the broadcast core found in
//! another broadcast kept on this node into a new workspace, instead of fetching them.

use std::collections::HashMap;

use swarmcast_proto::BroadcastId;
use tracing::{debug, info};

use super::broadcast::LocalCopy;
use super::serve::Reader;
use crate::store::Workspace;

/// Copies `copies` into `ws` from `sources`, each chunk read back, verified against the hash
/// the new manifest expects and written, then makes them durable in one commit. A chunk that
/// cannot be read or does not match (a source that changed, a version removed meanwhile) is
/// left to be fetched. Returns the chunks copied.
pub(super) fn copy_local(
    ws: &Workspace,
    copies: &[LocalCopy],
    sources: &HashMap<BroadcastId, Reader>,
) -> usize {
    if copies.is_empty() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut copied = 0usize;
    let mut bytes = 0u64;
    for c in copies {
        let (Some(src), Some(info)) = (sources.get(&c.from), ws.layout().chunk(c.chunk)) else {
            continue;
        };
        buf.resize(info.len as usize, 0);
        let result = src
            .read_run(c.from_chunk, &mut buf)
            .and_then(|()| ws.write_run(c.chunk, &buf));
        match result {
            Ok(()) => {
                copied += 1;
                bytes += u64::from(info.len);
            }
            Err(e) => {
                debug!(chunk = c.chunk, from = %c.from.short(), error = %e, "local copy failed; it will be fetched")
            }
        }
    }
    if let Err(e) = ws.commit() {
        debug!(error = %e, "commit of local copies failed; they will be fetched");
        return 0;
    }
    info!(chunks = copied, bytes, "copied from broadcasts kept here");
    copied
}

/// The readers of the broadcasts `copies` read from.
pub(super) fn sources_of(
    copies: &[LocalCopy],
    reader_of: impl Fn(BroadcastId) -> Option<Reader>,
) -> HashMap<BroadcastId, Reader> {
    let mut out = HashMap::new();
    for c in copies {
        if let std::collections::hash_map::Entry::Vacant(e) = out.entry(c.from) {
            if let Some(r) = reader_of(c.from) {
                e.insert(r);
            }
        }
    }
    out
}
