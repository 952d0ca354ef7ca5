//! Incremental transfer, the shell's side: copying the chunks the broadcast core found in
//! another broadcast kept on this node into a new workspace, instead of fetching them.

use std::collections::HashMap;

use swarmcast_proto::BroadcastId;
use tracing::{debug, info};

use super::broadcast::{LocalCopy, LocalLink};
use super::serve::Reader;
use crate::store::Workspace;

/// Takes into `ws` what is held here already: hard-links the files of `links`, copies the
/// chunks of `copies` (each read back, verified against the hash the new manifest expects, and
/// written), then makes them durable in one commit. Anything that fails (a source that
/// changed, a version removed meanwhile, another filesystem) is left to be fetched. Returns
/// the bytes taken.
pub(super) fn take_local(
    ws: &Workspace,
    links: &[LocalLink],
    copies: &[LocalCopy],
    sources: &HashMap<BroadcastId, Reader>,
) -> u64 {
    if links.is_empty() && copies.is_empty() {
        return 0;
    }
    let mut linked = 0usize;
    let mut bytes = 0u64;
    for l in links {
        let Some(Reader::Workspace(from)) = sources.get(&l.from) else {
            continue;
        };
        match ws.link_file(l.entry, from, l.from_entry) {
            Ok(()) => {
                linked += 1;
                bytes += match &ws.manifest().entries[l.entry as usize].kind {
                    crate::manifest::EntryKind::File { size, .. } => *size,
                    crate::manifest::EntryKind::Dir { .. } => 0,
                };
            }
            Err(e) => {
                debug!(entry = l.entry, from = %l.from.short(), error = %e, "local link failed; its chunks will be fetched")
            }
        }
    }
    let mut buf = Vec::new();
    let mut copied = 0usize;
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
    info!(
        files = linked,
        chunks = copied,
        bytes,
        "taken from broadcasts kept here"
    );
    bytes
}

/// The readers of the broadcasts `froms`.
pub(super) fn sources_of(
    froms: impl IntoIterator<Item = BroadcastId>,
    reader_of: impl Fn(BroadcastId) -> Option<Reader>,
) -> HashMap<BroadcastId, Reader> {
    let mut out = HashMap::new();
    for from in froms {
        if let std::collections::hash_map::Entry::Vacant(e) = out.entry(from) {
            if let Some(r) = reader_of(from) {
                e.insert(r);
            }
        }
    }
    out
}
