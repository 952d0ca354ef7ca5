//! Storage: receiver workspaces (durable, resumable) and origin sources.
//!
//! Everything here is synchronous; the tokio shell calls it from `spawn_blocking`, one call per
//! piece (`write_run`, `read_run`). Every type is `Send + Sync` and the hot methods take `&self`,
//! so one `Arc<Workspace>` serves many tasks. Chunk bytes move through [`BufPool`] buffers, so
//! moving a chunk allocates nothing.
//!
//! # Layout on disk, under a node's data dir `D`
//! ```text
//! D/broadcasts/<id hex>/manifest   canonical manifest bytes (BLAKE3 == id)
//! D/broadcasts/<id hex>/data/...   the files, at their manifest paths
//! D/broadcasts/<id hex>/held       append-only journal of durable chunk indices (u32 LE each)
//! D/broadcasts/<id hex>/complete   marker written once finalized
//! D/broadcasts/<id hex>/origin     (origin only) the source directory's absolute path
//! D/received/<name>                symlink -> ../broadcasts/<id hex>/data, swapped atomically
//! D/broadcasts/.dead-<id hex>/      a removal in progress (renamed first, then deleted)
//! ```
//!
//! # Durability
//! A receiver writes a verified chunk in place ([`Workspace::write_chunk`]); it is then
//! *pending*. [`Workspace::commit`] makes every pending chunk durable as a group: it `fdatasync`s
//! the files written, then appends the indices to the `held` journal and `fdatasync`s that. Only
//! then is a chunk *held*, and only held chunks may be served or advertised. A process killed
//! at any point therefore restarts ([`Workspace::open`]) with every held chunk intact and loses
//! at most the pending ones. A torn journal record (a crash mid-append) is dropped on open.
//!
//! # Safety against planted symlinks
//! Files under `data/` are reached from a handle on `data/` itself, one component at a time
//! with `openat(O_NOFOLLOW)`: a symlink or non-directory where a directory should be, or a
//! symlink or special file where a file should be, is [`StoreError::Unsafe`]. Writes can never
//! leave the workspace, even if the tree is changed while we run.

mod fsx;
mod journal;
mod pool;
mod received;
mod source;
mod workspace;

use std::io;
use std::path::{Path, PathBuf};

use swarmcast_proto::BroadcastId;
use tracing::warn;

use crate::manifest::{Manifest, ManifestError, ManifestLimits, free_space, manifest_id};

pub use pool::{BufPool, PooledBuf};
pub use received::{link_received, linked_version, remove, sweep_dead, unlink_received};
pub use source::{Source, save_origin};
pub use workspace::Workspace;

/// Directory under the data dir holding one directory per broadcast.
pub const BROADCASTS_DIR: &str = "broadcasts";
/// Directory under the data dir where finished broadcasts appear by name.
pub const RECEIVED_DIR: &str = "received";

const MANIFEST_FILE: &str = "manifest";
const DATA_DIR: &str = "data";
const JOURNAL_FILE: &str = "held";
const COMPLETE_FILE: &str = "complete";
const ORIGIN_FILE: &str = "origin";
const VERSION_FILE: &str = "version";
const STAMPS_FILE: &str = "stamps";

/// What went wrong in the store. Every variant names the path or chunk involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A system call failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A chunk index past the end of the broadcast.
    #[error("chunk {index} does not exist (the broadcast has {count} chunks)")]
    NoSuchChunk {
        /// The index asked for.
        index: u32,
        /// Chunks in the broadcast.
        count: u32,
    },
    /// Chunk data of the wrong length; nothing was written.
    #[error("chunk {index} is {got} bytes, expected {expected}")]
    WrongLength {
        /// The chunk.
        index: u32,
        /// Bytes the layout says.
        expected: u32,
        /// Bytes given.
        got: usize,
    },
    /// Chunk data that does not match its BLAKE3 hash; nothing was written.
    #[error("chunk {index} does not match its hash")]
    HashMismatch {
        /// The chunk.
        index: u32,
    },
    /// A read of a chunk that is not (yet) durably held.
    #[error("chunk {index} is not held")]
    NotHeld {
        /// The chunk.
        index: u32,
    },
    /// A held chunk whose bytes on disk no longer match its hash (or whose file is gone).
    #[error("chunk {index} is corrupt on disk")]
    Corrupt {
        /// The chunk.
        index: u32,
    },
    /// The origin's source file no longer matches the manifest: the broadcast must fail.
    #[error("source file {} changed: chunk {index} no longer matches the manifest", path.display())]
    SourceChanged {
        /// The source file.
        path: PathBuf,
        /// The chunk that failed.
        index: u32,
    },
    /// A path that would leave the workspace: a planted symlink, a non-directory where a
    /// directory should be, a special file, or a bad path component.
    #[error("refusing unsafe path {}: {reason}", path.display())]
    Unsafe {
        /// The offending path.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Not enough free disk space.
    #[error("not enough space at {}: need {needed} bytes, {available} available", path.display())]
    NoSpace {
        /// The directory checked.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes available to us.
        available: u64,
    },
    /// Manifest bytes that do not hash to the broadcast id.
    #[error("manifest {} does not hash to broadcast id {id}", path.display())]
    ManifestMismatch {
        /// The manifest file (or where it was to be written).
        path: PathBuf,
        /// The id expected.
        id: BroadcastId,
    },
    /// A stored manifest that cannot be decoded.
    #[error("manifest {} cannot be decoded: {reason}", path.display())]
    ManifestDecode {
        /// The manifest file.
        path: PathBuf,
        /// The decoder's complaint.
        reason: String,
    },
    /// [`Workspace::finalize`] before every chunk is held.
    #[error("broadcast {id} is incomplete: {missing} chunks missing")]
    Incomplete {
        /// The broadcast.
        id: BroadcastId,
        /// Chunks not yet held.
        missing: u32,
    },
    /// `received/<name>` exists and is not a symlink: refusing to replace user data.
    #[error("{} exists and is not a symlink; refusing to replace it", path.display())]
    NotASymlink {
        /// The path under `received/`.
        path: PathBuf,
    },
    /// The broadcast directory belongs to an origin (it has an `origin` file), not a receiver.
    #[error("broadcast {id} is stored as an origin, not a receiver workspace")]
    IsOrigin {
        /// The broadcast.
        id: BroadcastId,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        StoreError::Io {
            path: path.into(),
            source: source.into(),
        }
    }
}

/// One broadcast found under `D/broadcasts/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The broadcast.
    pub id: BroadcastId,
    /// Whether this node is its origin or a receiver.
    pub kind: StoredKind,
}

/// The role this node plays for a stored broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredKind {
    /// This node sent it; it seeds from `source` in place.
    Origin {
        /// The source directory.
        source: PathBuf,
    },
    /// This node receives it into a workspace.
    Receiver {
        /// Whether it was finalized (the `complete` marker exists).
        complete: bool,
    },
}

/// `D/broadcasts/<id hex>`.
pub fn broadcast_dir(data_dir: &Path, id: BroadcastId) -> PathBuf {
    data_dir.join(BROADCASTS_DIR).join(id.to_hex())
}

/// Every broadcast stored under `data_dir`, sorted by id.
///
/// Directories whose name is not a lower-case 64-hex id, and directories without a manifest
/// (a `create` interrupted before it wrote one), are skipped with a warning.
pub fn list(data_dir: &Path) -> Result<Vec<Stored>, StoreError> {
    let dir = data_dir.join(BROADCASTS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let path = entry.path();
        let id = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<BroadcastId>().ok().filter(|id| id.to_hex() == s));
        let Some(id) = id else {
            warn!(path = %path.display(), "ignoring a non-broadcast entry in the store");
            continue;
        };
        let is_dir = entry
            .file_type()
            .map_err(|e| StoreError::io(&path, e))?
            .is_dir();
        if !is_dir {
            warn!(path = %path.display(), "ignoring a broadcast entry that is not a directory");
            continue;
        }
        if !fsx::exists(&path.join(MANIFEST_FILE))? {
            warn!(path = %path.display(), "ignoring a broadcast directory without a manifest");
            continue;
        }
        let kind = match fsx::read_small(&path.join(ORIGIN_FILE))? {
            Some(bytes) => StoredKind::Origin {
                source: fsx::path_from_bytes(bytes),
            },
            None => StoredKind::Receiver {
                complete: fsx::exists(&path.join(COMPLETE_FILE))?,
            },
        };
        out.push(Stored { id, kind });
    }
    out.sort_by_key(|s| s.id);
    Ok(out)
}

/// The stored canonical manifest bytes of a broadcast, checked against its id; `None` if
/// there are none. This is what a node serves to peers that ask for the manifest.
pub fn read_manifest(data_dir: &Path, id: BroadcastId) -> Result<Option<Vec<u8>>, StoreError> {
    let path = broadcast_dir(data_dir, id).join(MANIFEST_FILE);
    let Some(bytes) = fsx::read_small(&path)? else {
        return Ok(None);
    };
    if manifest_id(&bytes) != id {
        return Err(StoreError::ManifestMismatch { path, id });
    }
    Ok(Some(bytes))
}

/// Persists where a broadcast stands among its name's versions (`seq`, and when it was
/// published, ms since the Unix epoch) in `D/broadcasts/<id>/version`, atomically. Missing
/// directory (the broadcast was removed meanwhile): nothing is written.
pub fn save_version(
    data_dir: &Path,
    id: BroadcastId,
    seq: u64,
    published_ms: u64,
) -> Result<(), StoreError> {
    let dir = broadcast_dir(data_dir, id);
    if !fsx::exists(&dir)? {
        return Ok(());
    }
    fsx::write_atomic(
        &dir,
        VERSION_FILE,
        format!("{seq} {published_ms}\n").as_bytes(),
    )
}

/// Persists the stamps of the files an origin hashed for `id`, so that the next version of the
/// name reuses the hashes of the files that did not change.
pub fn save_stamps(
    data_dir: &Path,
    id: BroadcastId,
    stamps: &[(String, crate::manifest::FileStamp)],
) -> Result<(), StoreError> {
    let dir = broadcast_dir(data_dir, id);
    let path = dir.join(STAMPS_FILE);
    let bytes =
        rmp_serde::to_vec(stamps).map_err(|e| StoreError::io(&path, io::Error::other(e)))?;
    fsx::write_atomic(&dir, STAMPS_FILE, &bytes)
}

/// The hashes of origin broadcast `id` with the stamps of its files, for a new build to reuse;
/// `None` if either is missing or unreadable (then everything is hashed).
pub fn hash_reuse(data_dir: &Path, id: BroadcastId) -> Option<crate::manifest::HashReuse> {
    let bytes = read_manifest(data_dir, id).ok()??;
    let path = broadcast_dir(data_dir, id).join(MANIFEST_FILE);
    let manifest = decode_manifest(&path, id, &bytes).ok()?;
    let stamps = fsx::read_small(&broadcast_dir(data_dir, id).join(STAMPS_FILE)).ok()??;
    let stamps: Vec<(String, crate::manifest::FileStamp)> = rmp_serde::from_slice(&stamps).ok()?;
    Some(crate::manifest::HashReuse::new(&manifest, &stamps))
}

/// What [`save_version`] wrote (`None`: nothing, or unreadable).
pub fn read_version(data_dir: &Path, id: BroadcastId) -> Option<(u64, u64)> {
    let bytes = fsx::read_small(&broadcast_dir(data_dir, id).join(VERSION_FILE)).ok()??;
    let text = std::str::from_utf8(&bytes).ok()?;
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(seq)), Some(Ok(published_ms)), None) => Some((seq, published_ms)),
        _ => None,
    }
}

/// Fails with [`StoreError::NoSpace`] unless `needed` bytes fit in `available`.
///
/// Split from the `statvfs` call so that it can be tested.
pub(crate) fn check_space(path: &Path, needed: u64, available: u64) -> Result<(), StoreError> {
    if needed > available {
        return Err(StoreError::NoSpace {
            path: path.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Bytes available to an unprivileged user on the filesystem holding `path` (or its nearest
/// existing ancestor).
pub(crate) fn available_space(path: &Path) -> Result<u64, StoreError> {
    let existing = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("."));
    free_space(existing).map_err(|e| StoreError::io(existing, e))
}

/// Decodes a stored manifest (bytes this node accepted earlier, under whatever caps it was
/// configured with): the id, the shape, the canonical form and the paths are checked again,
/// but not the size caps.
pub(crate) fn decode_manifest(
    path: &Path,
    id: BroadcastId,
    bytes: &[u8],
) -> Result<Manifest, StoreError> {
    let limits = ManifestLimits {
        max_entries: u64::MAX,
        max_total_bytes: u64::MAX,
        max_chunks: u64::MAX,
        min_chunk_size: 1,
        max_chunk_size: u32::MAX,
        max_manifest_bytes: u64::MAX,
        ..ManifestLimits::default()
    };
    Manifest::decode(bytes, &id, &limits).map_err(|e| match e {
        ManifestError::IdMismatch { .. } => StoreError::ManifestMismatch {
            path: path.to_owned(),
            id,
        },
        e => StoreError::ManifestDecode {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests;
