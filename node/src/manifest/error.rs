//! Why a manifest was refused or could not be built.

use std::path::PathBuf;

use swarmcast_proto::{BroadcastId, DecodeError};

/// Longest path or name quoted in an error, in bytes; longer ones are cut and end in `…`.
const QUOTE_MAX: usize = 512;

/// Why a manifest (received from a peer, or just built) is refused, or why it does not fit.
///
/// Paths and names are quoted as given, cut to 512 bytes. Every check runs on the decoded value
/// alone: none of these errors comes after a filesystem call, except [`Self::InsufficientSpace`]
/// and [`Self::FreeSpaceUnknown`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The encoded manifest is longer than [`max_manifest_bytes`](super::ManifestLimits).
    #[error("manifest of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes received.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes do not hash to the broadcast id they were fetched for.
    #[error("manifest hashes to {actual}, not to the expected id {expected}")]
    IdMismatch {
        /// The id asked for.
        expected: BroadcastId,
        /// BLAKE3 of the bytes received.
        actual: BroadcastId,
    },
    /// Not exactly one well-formed msgpack value, or nested too deeply.
    #[error("malformed manifest msgpack: {0}")]
    Malformed(#[source] DecodeError),
    /// An entry kind other than `File` or `Dir` (a symlink, a device...): not expressible.
    #[error("unsupported entry kind {kind:?}: only regular files and directories are allowed")]
    UnsupportedKind {
        /// The variant name (or `#index`) found.
        kind: String,
    },
    /// Well-formed msgpack that is not a manifest.
    #[error("invalid manifest: {0}")]
    Invalid(#[source] rmp_serde::decode::Error),
    /// A valid manifest, but not in the canonical encoding its id must be computed from.
    #[error("manifest is not canonically encoded")]
    NonCanonical,
    /// An unknown format version.
    #[error("manifest version {found} is not the supported version {supported}")]
    Version {
        /// Version in the manifest.
        found: u32,
        /// [`MANIFEST_VERSION`](super::MANIFEST_VERSION).
        supported: u32,
    },
    /// A root mode in a version-1 manifest, or none in a version-2 one.
    #[error("manifest version {version} {}", if *version == 1 { "has a root mode" } else { "lacks its root mode" })]
    RootMode {
        /// Version in the manifest.
        version: u32,
    },
    /// A restricted broadcast's audience is malformed.
    #[error("invalid audience: {reason}")]
    BadAudience {
        /// What is wrong with it (an invalid or repeated name or group, an empty or
        /// unsorted list, too many entries).
        reason: String,
    },
    /// The broadcast name is not a single path component within the limits.
    #[error("invalid broadcast name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A chunk size outside the accepted range (zero included).
    #[error("chunk size {chunk_size} is outside {min}..={max}")]
    ChunkSize {
        /// The manifest's chunk size.
        chunk_size: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// More entries than the limit.
    #[error("{count} entries exceed the limit of {max}")]
    TooManyEntries {
        /// Entries in the manifest.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// An empty path.
    #[error("entry {index} has an empty path")]
    EmptyPath {
        /// Position of the entry.
        index: usize,
    },
    /// A path starting with `/`.
    #[error("absolute path {path:?}")]
    AbsolutePath {
        /// The path.
        path: String,
    },
    /// A path with an empty component (`a//b`, or a trailing `/`).
    #[error("empty component in path {path:?}")]
    EmptyComponent {
        /// The path.
        path: String,
    },
    /// A path with a `.` component.
    #[error("`.` component in path {path:?}")]
    DotComponent {
        /// The path.
        path: String,
    },
    /// A path with a `..` component.
    #[error("`..` component in path {path:?}")]
    DotDotComponent {
        /// The path.
        path: String,
    },
    /// A path containing a NUL byte.
    #[error("NUL byte in path {path:?}")]
    NulInPath {
        /// The path.
        path: String,
    },
    /// A path containing a backslash.
    #[error("backslash in path {path:?}")]
    BackslashInPath {
        /// The path.
        path: String,
    },
    /// A path component longer than the limit.
    #[error("component of {len} bytes in path {path:?} exceeds the limit of {max}")]
    ComponentTooLong {
        /// The path.
        path: String,
        /// Bytes in the component.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A path longer than the limit.
    #[error("path {path:?} of {len} bytes exceeds the limit of {max}")]
    PathTooLong {
        /// The path.
        path: String,
        /// Bytes in the path.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Permission bits outside `0o777` (setuid, setgid, sticky or file-type bits).
    #[error("mode {mode:#o} of {path:?} has bits outside 0o777")]
    BadMode {
        /// The path.
        path: String,
        /// The mode.
        mode: u32,
    },
    /// Two entries with the same path.
    #[error("duplicate path {path:?}")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// Entries not sorted by path bytes.
    #[error("path {path:?} comes after {previous:?}: entries must be sorted by path bytes")]
    Unsorted {
        /// The entry before.
        previous: String,
        /// The entry out of order.
        path: String,
    },
    /// A file or empty directory that is also the parent of another entry.
    #[error("{ancestor:?} is a file or an empty directory, yet {path:?} lies beneath it")]
    AncestorConflict {
        /// The file or empty directory.
        ancestor: String,
        /// The entry beneath it.
        path: String,
    },
    /// File sizes whose sum overflows or exceeds the limit.
    #[error("total size exceeds the limit of {max} bytes at {path:?}")]
    TotalTooLarge {
        /// The file at which the running total passed the limit.
        path: String,
        /// The limit.
        max: u64,
    },
    /// More chunks in total than the limit.
    #[error("{count} chunks exceed the limit of {max}")]
    TooManyChunks {
        /// Chunks in the manifest.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// A file whose number of chunk hashes is not `ceil(size / chunk_size)`.
    #[error("{path:?} of {size} bytes has {actual} chunk hashes, expected {expected}")]
    ChunkCount {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// Hashes listed.
        actual: u64,
        /// Hashes its size needs.
        expected: u64,
    },
    /// Not enough free disk space.
    #[error("{needed} bytes needed but only {available} available")]
    InsufficientSpace {
        /// Bytes needed.
        needed: u64,
        /// Bytes available to an unprivileged user.
        available: u64,
    },
    /// Free space could not be determined.
    #[error("cannot determine free space at {path}: {source}")]
    FreeSpaceUnknown {
        /// The path asked about.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why [`Manifest::from_dir`](super::Manifest::from_dir) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A filesystem call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The path given is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The canonical path.
        path: PathBuf,
    },
    /// The directory has no base name to broadcast under (it is `/`).
    #[error("{path} has no base name")]
    NoName {
        /// The canonical path.
        path: PathBuf,
    },
    /// Symlinks, FIFOs, sockets or devices: only regular files and directories can be sent.
    #[error(
        "only regular files and directories can be sent; refusing: {}",
        list(paths)
    )]
    Unsupported {
        /// The offending paths (at most [`MAX_REPORTED`]).
        paths: Vec<PathBuf>,
    },
    /// Names that are not valid UTF-8.
    #[error("file names must be valid UTF-8; refusing: {}", list(paths))]
    NonUtf8 {
        /// The offending paths (at most [`MAX_REPORTED`]).
        paths: Vec<PathBuf>,
    },
    /// A file changed size while it was being hashed.
    #[error("{path} changed while it was being hashed")]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// The user the tree is read for may not read this path (see
    /// [`ReadAs`](super::ReadAs)); nothing beneath it was looked at.
    #[error("permission denied: uid {uid} may not read {path}")]
    Denied {
        /// The first path refused: one the user gave or could list, never one beneath it.
        path: PathBuf,
        /// The user.
        uid: u32,
    },
    /// The directory cannot be expressed as a valid manifest (name, paths or limits).
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

/// Most paths listed in [`BuildError::Unsupported`] and [`BuildError::NonUtf8`].
pub const MAX_REPORTED: usize = 20;

/// The paths, comma-separated, ending in `…` when the list may have been cut.
fn list(paths: &[PathBuf]) -> String {
    let mut shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if paths.len() >= MAX_REPORTED {
        shown.push("…".to_owned());
    }
    shown.join(", ")
}

/// `s`, cut at a character boundary to at most [`QUOTE_MAX`] bytes, for quoting in an error.
pub(crate) fn quote(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return s.to_owned();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
