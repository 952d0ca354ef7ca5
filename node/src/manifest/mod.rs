//! Manifests: what a broadcast contains, in a canonical form whose BLAKE3 is the broadcast id.
//!
//! A manifest lists regular files (size, mode, one BLAKE3 hash per file-aligned chunk) and
//! directories with their modes, sorted by path (version 2: every directory, and the sent
//! directory's own mode in `root_mode`; version 1, still read: only empty directories, and no
//! directory mode kept otherwise). Chunks are numbered globally: file after file in manifest order,
//! chunk after chunk within a file; empty files have none. Chunks are grouped into *pieces*, the
//! unit the swarm schedules and the unit of one request: runs of consecutive chunks (of one
//! file or of several small ones) are packed into one piece of up to
//! `max(chunk_size, PIECE_BYTES)` bytes (at most [`MAX_CHUNKS_PER_PIECE`] chunks). A chunk is
//! the unit of verification, a piece the unit of transfer: small chunks (or many small files)
//! move in few requests, and a large chunk is a piece alone.
//!
//! * [`Manifest::from_dir`] snapshots a directory (regular files and empty directories only);
//!   [`Manifest::from_dir_as`] does so with the permissions of a local user ([`ReadAs`]).
//! * [`Manifest::to_bytes`] is the canonical encoding and [`manifest_id`] its BLAKE3, the
//!   broadcast id.
//! * [`Manifest::decode`] takes untrusted bytes: it checks the id first, then the msgpack shape,
//!   then [`Manifest::validate`], all before anything touches the filesystem.
//! * [`ManifestLimits`] caps what a manifest may describe; [`check_free_space`] checks that a
//!   broadcast fits on disk.

use serde::{Deserialize, Serialize};

mod access;
mod build;
mod codec;
mod error;
mod limits;
mod space;
mod validate;

pub use access::{Credentials, ReadAs};
pub use build::{Built, FileStamp, HashReuse, hash_chunk};
pub use codec::{MANIFEST_MAX_DEPTH, manifest_id};
pub use error::{BuildError, MAX_REPORTED, ManifestError};
pub use limits::{DEFAULT_CHUNK_SIZE, ManifestLimits};
pub use space::{check_free_space, free_space};
pub use validate::{MAX_AUDIENCE, check_audience, check_name};

/// Version of the manifest format that is built: 2 lists every directory with its mode (a
/// `Dir` entry may have entries beneath it) and the sent directory's mode (`root_mode`).
pub const MANIFEST_VERSION: u32 = 2;
/// The oldest version still read: 1, where a `Dir` entry is an empty directory and directories
/// with content get the receiver's default mode.
pub const MANIFEST_VERSION_V1: u32 = 1;
/// Most chunks packed into one piece (and so asked for in one request).
pub const MAX_CHUNKS_PER_PIECE: u32 = 256;
/// Bytes a piece packs consecutive chunks up to when chunks are smaller than this: with 4 KiB
/// chunks a request carries 64 of them, so the per-request cost (a stream, a task, a round
/// trip) does not grow with the chunk count. It is also a piece size that forwards well on
/// shaped links: a receiver passes a piece on only once all of it arrived.
pub const PIECE_BYTES: u32 = 256 << 10;

/// A BLAKE3 hash of one chunk.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkHash(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl std::fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A directory snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// Base name of the sent directory (the name under `received/`).
    pub name: String,
    /// Bytes per chunk (the last chunk of a file may be shorter).
    pub chunk_size: u32,
    /// Permission bits of the sent directory itself (version 2; absent, and omitted from the
    /// bytes, in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_mode: Option<u32>,
    /// Files and directories, sorted by path (bytewise).
    pub entries: Vec<Entry>,
    /// A restricted broadcast's audience (`node send --to`): only these nodes and groups (and
    /// the origin) may fetch it, and every node holding it serves only them. Part of the
    /// canonical bytes, so the id binds it: a node holding the manifest knows whom it may
    /// serve without trusting whoever gave it. Absent, and omitted from the bytes (so ids of
    /// unrestricted broadcasts are unchanged): anyone. A node that predates audiences refuses
    /// such a manifest as non-canonical, so it never serves one to the wrong peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<swarmcast_proto::Audience>,
    /// How the broadcast competes with others for the links of the nodes it crosses
    /// (`node send --priority`). Part of the canonical bytes when not normal (so the id binds
    /// it, as the audience); absent, and omitted from the bytes (so ids of normal broadcasts
    /// are unchanged): [`Priority::Normal`](swarmcast_proto::Priority::Normal). A node that
    /// predates priorities refuses a high or low one as non-canonical.
    #[serde(default, skip_serializing_if = "swarmcast_proto::Priority::is_normal")]
    pub priority: swarmcast_proto::Priority,
}

/// One file or empty directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, `/`-separated, no empty, `.` or `..` components.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A regular file.
    File {
        /// Bytes.
        size: u64,
        /// Permission bits (`0o777` mask; the executable bits survive).
        mode: u32,
        /// One hash per chunk: `ceil(size / chunk_size)` of them.
        chunks: Vec<ChunkHash>,
    },
    /// A directory: in version 2 every directory, in version 1 only empty ones.
    Dir {
        /// Permission bits.
        mode: u32,
    },
}

/// Where a chunk lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Index into [`Manifest::entries`].
    pub entry: u32,
    /// Byte offset in that file.
    pub offset: u64,
    /// Bytes.
    pub len: u32,
}

impl Manifest {
    /// The expected BLAKE3 of chunk `c` of this manifest's [`Layout`] (the hashes live only
    /// here, not in the layout: 32 bytes a chunk, 32 MB at a million chunks). `None` only for a
    /// `ChunkInfo` of another manifest.
    pub fn chunk_hash(&self, c: &ChunkInfo) -> Option<&ChunkHash> {
        let k = usize::try_from(c.offset / u64::from(self.chunk_size.max(1))).ok()?;
        match &self.entries.get(c.entry as usize)?.kind {
            EntryKind::File { chunks, .. } => chunks.get(k),
            EntryKind::Dir { .. } => None,
        }
    }
}

/// A run of consecutive chunks scheduled and requested as one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// First chunk.
    pub first: u32,
    /// Number of chunks (at least 1).
    pub count: u32,
    /// Total bytes.
    pub bytes: u64,
}

/// The chunk and piece tables of a manifest, computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Every chunk, in global order.
    pub chunks: Vec<ChunkInfo>,
    /// Every piece, in order; pieces partition the chunks.
    pub pieces: Vec<Piece>,
    /// Piece of each chunk.
    pub piece_of: Vec<u32>,
    /// Total file bytes.
    pub total_bytes: u64,
}

impl Layout {
    /// Compute the tables. The manifest must have been validated (counts fit in `u32`).
    pub fn new(m: &Manifest) -> Self {
        let mut chunks = Vec::new();
        let mut total_bytes = 0u64;
        for (i, e) in m.entries.iter().enumerate() {
            if let EntryKind::File {
                size, chunks: hs, ..
            } = &e.kind
            {
                total_bytes += size;
                let cs = u64::from(m.chunk_size.max(1));
                for k in 0..hs.len() {
                    let offset = k as u64 * cs;
                    let len = (size.saturating_sub(offset)).min(cs) as u32;
                    chunks.push(ChunkInfo {
                        entry: i as u32,
                        offset,
                        len,
                    });
                }
            }
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut piece_of = Vec::with_capacity(chunks.len());
        let limit = u64::from(m.chunk_size.max(PIECE_BYTES));
        for (i, c) in chunks.iter().enumerate() {
            let fits = pieces.last().is_some_and(|p| {
                p.count < MAX_CHUNKS_PER_PIECE && p.bytes + u64::from(c.len) <= limit
            });
            if fits {
                if let Some(p) = pieces.last_mut() {
                    p.count += 1;
                    p.bytes += u64::from(c.len);
                }
            } else {
                pieces.push(Piece {
                    first: i as u32,
                    count: 1,
                    bytes: u64::from(c.len),
                });
            }
            piece_of.push((pieces.len() - 1) as u32);
        }
        Self {
            chunks,
            pieces,
            piece_of,
            total_bytes,
        }
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// The chunk at `index`, if there is one.
    pub fn chunk(&self, index: u32) -> Option<ChunkInfo> {
        self.chunks.get(index as usize).copied()
    }

    /// Chunk indices of a piece.
    pub fn chunks_of(&self, piece: u32) -> std::ops::Range<u32> {
        let p = self.pieces[piece as usize];
        p.first..p.first + p.count
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    fn file(path: &str, size: u64, cs: u32) -> Entry {
        let n = size.div_ceil(u64::from(cs)) as usize;
        Entry {
            path: path.into(),
            kind: EntryKind::File {
                size,
                mode: 0o644,
                chunks: vec![ChunkHash([0; 32]); n],
            },
        }
    }

    fn manifest(cs: u32, entries: Vec<Entry>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            name: "x".into(),
            chunk_size: cs,
            root_mode: Some(0o755),
            entries,
            audience: None,
            priority: swarmcast_proto::Priority::Normal,
        }
    }

    fn pieces(l: &Layout) -> Vec<(u32, u32, u64)> {
        l.pieces
            .iter()
            .map(|p| (p.first, p.count, p.bytes))
            .collect()
    }

    #[test]
    fn chunks_are_file_aligned_and_small_ones_packed() {
        let cs = PIECE_BYTES;
        let k = u64::from(cs) / 10;
        let m = manifest(
            cs,
            vec![
                file("a", 25 * k, cs),
                file("b", 0, cs),
                file("c", 3 * k, cs),
                file("d", 3 * k, cs),
                file("e", 5 * k, cs),
                Entry {
                    path: "z".into(),
                    kind: EntryKind::Dir { mode: 0o755 },
                },
            ],
        );
        let l = Layout::new(&m);
        let lens: Vec<u64> = l.chunks.iter().map(|c| u64::from(c.len)).collect();
        let rest = 25 * k - 2 * u64::from(cs);
        let c = u64::from(cs);
        assert_eq!(lens, vec![c, c, rest, 3 * k, 3 * k, 5 * k]);
        assert_eq!(l.chunks[2].offset, 2 * c);
        assert_eq!(l.chunks[3].entry, 2);
        // c | c | rest+3k | 3k+5k: packing never exceeds max(chunk_size, PIECE_BYTES).
        assert_eq!(
            pieces(&l),
            vec![(0, 1, c), (1, 1, c), (2, 2, rest + 3 * k), (4, 2, 8 * k)]
        );
        assert_eq!(l.piece_of, vec![0, 1, 2, 2, 3, 3]);
        assert_eq!(l.total_bytes, 25 * k + 11 * k);
        assert_eq!(l.chunks_of(2), 2..4);
    }

    #[test]
    fn small_chunks_of_a_large_file_pack_into_pieces_of_piece_bytes() {
        let cs = 4096;
        let per_piece = PIECE_BYTES / cs;
        // A file of 4.5 pieces' worth of chunks, then 300 one-byte files.
        let big = u64::from(PIECE_BYTES) * 9 / 2;
        let mut entries = vec![file("big", big, cs)];
        entries.extend((0..300).map(|i| file(&format!("s{i:03}"), 1, cs)));
        let l = Layout::new(&manifest(cs, entries));
        let big_chunks = (big / u64::from(cs)) as u32;
        let p = pieces(&l);
        assert_eq!(p[0], (0, per_piece, u64::from(PIECE_BYTES)));
        assert_eq!(p[3], (3 * per_piece, per_piece, u64::from(PIECE_BYTES)));
        // The half piece left of the file is packed with the first small files, up to
        // MAX_CHUNKS_PER_PIECE chunks.
        assert_eq!(p[4].0, 4 * per_piece);
        assert_eq!(p[4].1, MAX_CHUNKS_PER_PIECE);
        let total: u32 = p.iter().map(|x| x.1).sum();
        assert_eq!(total, big_chunks + 300);
        assert!(p.iter().all(|x| x.2 <= u64::from(PIECE_BYTES)), "{p:?}");
        assert!(p.iter().all(|x| x.1 <= MAX_CHUNKS_PER_PIECE), "{p:?}");
    }
}
