//! [`Manifest::from_dir`]: snapshot a directory into a manifest, hashing every chunk.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};

use super::access::{self, R, ReadAs, X, nix_io};

use super::error::MAX_REPORTED;
use super::validate::{check_name, check_path};
use super::{
    BuildError, ChunkHash, Entry, EntryKind, MANIFEST_VERSION, Manifest, ManifestError,
    ManifestLimits,
};

/// Bytes read from a file at a time while hashing.
const READ_BUF: usize = 1 << 20;

/// BLAKE3 of one chunk.
pub fn hash_chunk(data: &[u8]) -> ChunkHash {
    ChunkHash(*blake3::hash(data).as_bytes())
}

/// What `stat` said of a file when it was hashed: if all of it is the same at the next build,
/// the file is taken as unchanged and its hashes are reused (as rsync's quick check, stricter:
/// the inode and the ctime, which no user can set back, must match too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i128,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

impl FileStamp {
    fn of(st: &nix::sys::stat::FileStat) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// The hashes of an earlier build, to reuse for files whose [`FileStamp`] did not change
/// (`node send` again without `--rehash`).
#[derive(Clone, Debug, Default)]
pub struct HashReuse {
    /// The chunk size they were computed with (others cannot be reused).
    pub chunk_size: u32,
    /// Manifest path to the stamp and the chunk hashes of that build.
    pub files: std::collections::HashMap<String, (FileStamp, Vec<ChunkHash>)>,
}

impl HashReuse {
    /// From an earlier manifest and the stamps of its files (entry order does not matter).
    pub fn new(earlier: &Manifest, stamps: &[(String, FileStamp)]) -> Self {
        let by_path: std::collections::HashMap<&str, &Vec<ChunkHash>> = earlier
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::File { chunks, .. } => Some((e.path.as_str(), chunks)),
                EntryKind::Dir { .. } => None,
            })
            .collect();
        let files = stamps
            .iter()
            .filter_map(|(path, stamp)| {
                let hashes = by_path.get(path.as_str())?;
                Some((path.clone(), (*stamp, (*hashes).clone())))
            })
            .collect();
        Self {
            chunk_size: earlier.chunk_size,
            files,
        }
    }

    /// The hashes to reuse for `path` if its stamp is `now` and the chunk size `chunk_size`.
    fn lookup(&self, path: &str, now: &FileStamp, chunk_size: u32) -> Option<&Vec<ChunkHash>> {
        if self.chunk_size != chunk_size {
            return None;
        }
        self.files
            .get(path)
            .filter(|(stamp, _)| stamp == now)
            .map(|(_, h)| h)
    }
}

/// A build's result: the manifest, the stamp of each file (manifest order), and how many of
/// the file bytes were hashed (the rest reused).
#[derive(Debug)]
pub struct Built {
    /// The manifest.
    pub manifest: Manifest,
    /// Each regular file's path and stamp, in manifest order.
    pub stamps: Vec<(String, FileStamp)>,
    /// File bytes read and hashed.
    pub hashed_bytes: u64,
}

impl Manifest {
    /// Snapshot `dir` (canonicalized; its base name becomes the broadcast name), with the
    /// daemon's own rights: [`Manifest::from_dir_as`] with [`ReadAs::Daemon`].
    pub fn from_dir(
        dir: &Path,
        chunk_size: u32,
        limits: &ManifestLimits,
    ) -> Result<Manifest, BuildError> {
        Self::from_dir_as(dir, chunk_size, limits, &ReadAs::Daemon)
    }

    /// Snapshot `dir` (canonicalized; its base name becomes the broadcast name), reading it with
    /// the permissions of `who` (see [`ReadAs`]): a directory or file they may not read fails
    /// the build with [`BuildError::Denied`].
    ///
    /// Regular files (size, permission bits, one BLAKE3 per `chunk_size` slice) and every
    /// directory (permission bits) become entries, and the mode of `dir` itself is the
    /// manifest's `root_mode` ([`MANIFEST_VERSION`] 2). Nothing is
    /// followed inside the tree: a symlink, FIFO, socket or device anywhere in it fails the
    /// build with [`BuildError::Unsupported`], and a name that is not UTF-8 with
    /// [`BuildError::NonUtf8`]. Every directory and file is opened without following symlinks
    /// and must be the inode the walk listed, or the build fails with [`BuildError::Changed`].
    ///
    /// The tree is walked first and checked against `limits` (chunk size, name, paths, counts,
    /// total size) before a byte is hashed; files are then read through one 1 MiB buffer. The
    /// result passes [`Manifest::validate`], and its encoding fits `max_manifest_bytes`.
    pub fn from_dir_as(
        dir: &Path,
        chunk_size: u32,
        limits: &ManifestLimits,
        who: &ReadAs,
    ) -> Result<Manifest, BuildError> {
        Self::build(dir, chunk_size, limits, who, None).map(|b| b.manifest)
    }

    /// [`Manifest::from_dir_as`], reusing the hashes of `reuse` for every file whose
    /// [`FileStamp`] is the same as when they were computed (with the same chunk size). The
    /// file is still opened and checked readable by `who`; it is just not read. Returns the
    /// stamps of this build, for the next one.
    pub fn build(
        dir: &Path,
        chunk_size: u32,
        limits: &ManifestLimits,
        who: &ReadAs,
        reuse: Option<&HashReuse>,
    ) -> Result<Built, BuildError> {
        let abs = if dir.is_absolute() {
            dir.to_owned()
        } else {
            std::env::current_dir().map_err(io_error(dir))?.join(dir)
        };
        let (root, root_fd) = access::resolve(&abs, who)?;
        let Some(base) = root.file_name() else {
            return Err(BuildError::NoName { path: root });
        };
        let Some(name) = base.to_str() else {
            return Err(BuildError::NonUtf8 { paths: vec![root] });
        };
        check_name(name, limits)?;
        limits.check_chunk_size(chunk_size)?;
        let name = name.to_owned();
        let root_mode = fstat(&root_fd).map_err(nix_io(&root))?.st_mode & 0o777;

        let mut found = walk(&root, root_fd, limits, who)?;
        found.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        check_before_hashing(&found, chunk_size, limits)?;

        let mut buf = vec![0u8; READ_BUF];
        let mut entries = Vec::with_capacity(found.len());
        let mut stamps = Vec::new();
        let mut hashed_bytes = 0u64;
        for f in found {
            let kind = match f.kind {
                Found::Dir => EntryKind::Dir { mode: f.mode },
                Found::File { size, stamp } => {
                    let file = open_regular(&f.abs, Some(f.inode), who)?;
                    // The stamp of the file opened, so that a change since the walk is seen.
                    let now = fstat(&file).map(|st| FileStamp::of(&st)).ok();
                    let reused = now
                        .filter(|n| *n == stamp)
                        .and_then(|n| reuse?.lookup(&f.path, &n, chunk_size))
                        .filter(|h| h.len() as u64 == size.div_ceil(u64::from(chunk_size)));
                    let chunks = match reused {
                        Some(h) => h.clone(),
                        None => {
                            hashed_bytes += size;
                            hash_file(file, &f.abs, size, chunk_size, &mut buf)?
                        }
                    };
                    stamps.push((f.path.clone(), stamp));
                    EntryKind::File {
                        size,
                        mode: f.mode,
                        chunks,
                    }
                }
            };
            entries.push(Entry { path: f.path, kind });
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            name,
            chunk_size,
            root_mode: Some(root_mode),
            entries,
            audience: None,
            priority: swarmcast_proto::Priority::Normal,
        };
        manifest.validate(limits)?;
        // Receivers refuse longer encodings: better to fail here than to publish it.
        let len = manifest.to_bytes().len() as u64;
        if len > limits.max_manifest_bytes {
            return Err(ManifestError::TooLarge {
                len,
                max: limits.max_manifest_bytes,
            }
            .into());
        }
        tracing::debug!(
            name = %manifest.name,
            entries = manifest.entries.len(),
            hashed_bytes,
            "manifest built"
        );
        Ok(Built {
            manifest,
            stamps,
            hashed_bytes,
        })
    }
}

/// What the walk found at one path.
#[derive(Debug)]
struct FoundEntry {
    /// Where it is on disk.
    abs: PathBuf,
    /// Its manifest path.
    path: String,
    /// Permission bits.
    mode: u32,
    /// (device, inode) as listed: what opening `abs` must find.
    inode: (u64, u64),
    kind: Found,
}

#[derive(Debug)]
enum Found {
    File { size: u64, stamp: FileStamp },
    Dir,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Walk the tree from the open `root` without following anything, collecting regular files
/// and directories (all but the root); every directory is listed from a descriptor checked as `who`.
///
/// The whole tree is walked so that every unsupported file is found, but entries past the cap
/// are only counted, not kept.
fn walk(
    root: &Path,
    root_fd: OwnedFd,
    limits: &ManifestLimits,
    who: &ReadAs,
) -> Result<Vec<FoundEntry>, BuildError> {
    let mut found = Vec::new();
    let mut count = 0u64;
    let mut unsupported = Vec::new();
    let mut non_utf8 = Vec::new();
    // Directories still to read: on disk, manifest path, permission bits, (device, inode), and
    // for the root the descriptor `resolve` opened and checked.
    let mut pending = vec![(root.to_owned(), String::new(), 0, (0, 0), Some(root_fd))];
    while let Some((dir, rel, mode, inode, fd)) = pending.pop() {
        let fd = match fd {
            Some(fd) => fd,
            None => open_dir(&dir, inode, who)?,
        };
        // `Dir` iterates through its own borrow; names are looked up through a duplicate.
        let at = fd.try_clone().map_err(io_error(&dir))?;
        let mut listing = nix::dir::Dir::from_fd(fd).map_err(nix_io(&dir))?;
        for child in listing.iter() {
            let child = child.map_err(nix_io(&dir))?;
            let raw = OsStr::from_bytes(child.file_name().to_bytes());
            if raw == "." || raw == ".." {
                continue;
            }
            let abs = dir.join(raw);
            let Some(name) = raw.to_str().map(str::to_owned) else {
                if non_utf8.len() < MAX_REPORTED {
                    non_utf8.push(abs);
                }
                continue;
            };
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let st = fstatat(&at, raw, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(nix_io(&abs))?;
            let mode = st.st_mode & 0o777;
            let inode = (st.st_dev, st.st_ino);
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR {
                pending.push((abs, path, mode, inode, None));
            } else if kind == SFlag::S_IFREG {
                count += 1;
                if count <= limits.entry_cap() {
                    // Non-negative for a regular file.
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    found.push(FoundEntry {
                        abs,
                        path,
                        mode,
                        inode,
                        kind: Found::File {
                            size,
                            stamp: FileStamp::of(&st),
                        },
                    });
                }
            } else if unsupported.len() < MAX_REPORTED {
                unsupported.push(abs);
            }
        }
        if !rel.is_empty() {
            count += 1;
            if count <= limits.entry_cap() {
                found.push(FoundEntry {
                    abs: dir,
                    path: rel,
                    mode,
                    inode,
                    kind: Found::Dir,
                });
            }
        }
    }
    if !unsupported.is_empty() {
        unsupported.sort();
        return Err(BuildError::Unsupported { paths: unsupported });
    }
    if !non_utf8.is_empty() {
        non_utf8.sort();
        return Err(BuildError::NonUtf8 { paths: non_utf8 });
    }
    if count > limits.entry_cap() {
        return Err(ManifestError::TooManyEntries {
            count,
            max: limits.entry_cap(),
        }
        .into());
    }
    Ok(found)
}

/// Paths, total size and chunk count, checked from the walk alone so that nothing is hashed
/// for a tree that will be refused anyway.
fn check_before_hashing(
    found: &[FoundEntry],
    chunk_size: u32,
    limits: &ManifestLimits,
) -> Result<(), ManifestError> {
    let mut bytes = 0u64;
    let mut chunks = 0u64;
    for (index, f) in found.iter().enumerate() {
        check_path(index, &f.path, limits)?;
        if let Found::File { size, .. } = f.kind {
            bytes = bytes
                .checked_add(size)
                .filter(|total| *total <= limits.max_total_bytes)
                .ok_or_else(|| ManifestError::TotalTooLarge {
                    path: super::error::quote(&f.path),
                    max: limits.max_total_bytes,
                })?;
            chunks = chunks.saturating_add(size.div_ceil(u64::from(chunk_size)));
        }
    }
    if chunks > limits.chunk_cap() {
        return Err(ManifestError::TooManyChunks {
            count: chunks,
            max: limits.chunk_cap(),
        });
    }
    Ok(())
}

/// Hash the `size` bytes of a regular file in `chunk_size` slices, through `buf`.
fn hash_file(
    mut file: File,
    path: &Path,
    size: u64,
    chunk_size: u32,
    buf: &mut [u8],
) -> Result<Vec<ChunkHash>, BuildError> {
    let chunk_size = u64::from(chunk_size);
    // Bounded by the chunk cap, checked before hashing.
    let mut hashes = Vec::with_capacity(usize::try_from(size.div_ceil(chunk_size)).unwrap_or(0));
    let mut hasher = blake3::Hasher::new();
    let mut in_chunk = 0u64;
    let mut remaining = size;
    while remaining > 0 {
        // At most `buf.len()`, so it fits in usize.
        let want = remaining.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                BuildError::Changed {
                    path: path.to_owned(),
                }
            } else {
                io_error(path)(e)
            }
        })?;
        remaining -= want as u64;
        let mut data = &buf[..want];
        while !data.is_empty() {
            // At most `data.len()`, so it fits in usize.
            let take = (chunk_size - in_chunk).min(data.len() as u64) as usize;
            hasher.update(&data[..take]);
            in_chunk += take as u64;
            data = &data[take..];
            if in_chunk == chunk_size {
                hashes.push(ChunkHash(*hasher.finalize().as_bytes()));
                hasher.reset();
                in_chunk = 0;
            }
        }
    }
    if in_chunk > 0 {
        hashes.push(ChunkHash(*hasher.finalize().as_bytes()));
    }
    // A file that grew since it was listed would be sent truncated: refuse it.
    if file.read(&mut buf[..1]).map_err(io_error(path))? != 0 {
        return Err(BuildError::Changed {
            path: path.to_owned(),
        });
    }
    Ok(hashes)
}

/// Open a directory the walk listed, refusing it if it is no longer that directory (a
/// component swapped for a symlink since) or `who` may not list it.
fn open_dir(path: &Path, inode: (u64, u64), who: &ReadAs) -> Result<OwnedFd, BuildError> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => BuildError::Changed {
            path: path.to_owned(),
        },
        e => nix_io(path)(e),
    })?;
    let st = fstat(&fd).map_err(nix_io(path))?;
    if (st.st_dev, st.st_ino) != inode {
        return Err(BuildError::Changed {
            path: path.to_owned(),
        });
    }
    who.check(&st, R | X, path)?;
    Ok(fd)
}

/// Open a file for reading, refusing it if it is no longer a regular file (a symlink or FIFO
/// swapped in since the walk: no following, no blocking on a FIFO), no longer the inode the walk
/// listed (when given), or `who` may not read it.
fn open_regular(path: &Path, inode: Option<(u64, u64)>, who: &ReadAs) -> Result<File, BuildError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                BuildError::Unsupported {
                    paths: vec![path.to_owned()],
                }
            } else {
                io_error(path)(e)
            }
        })?;
    let meta = file.metadata().map_err(io_error(path))?;
    if !meta.is_file() {
        return Err(BuildError::Unsupported {
            paths: vec![path.to_owned()],
        });
    }
    if inode.is_some_and(|i| i != (meta.dev(), meta.ino())) {
        return Err(BuildError::Changed {
            path: path.to_owned(),
        });
    }
    who.check_owner(meta.uid(), meta.gid(), meta.mode(), R, path)?;
    Ok(file)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_chunk_is_blake3() {
        assert_eq!(hash_chunk(b"abc").0, *blake3::hash(b"abc").as_bytes());
    }

    #[test]
    fn chunks_straddle_read_buffer() {
        // Chunk boundaries that do not divide the read buffer, and chunks larger than it.
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(READ_BUF * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        let p = dir.path().join("f");
        std::fs::write(&p, &data).unwrap();
        let mut buf = vec![0; READ_BUF];
        for cs in [4096u32, 1_000_003, (READ_BUF as u32) * 3] {
            let hashes = hash_file(
                open_regular(&p, None, &ReadAs::Daemon).unwrap(),
                &p,
                data.len() as u64,
                cs,
                &mut buf,
            )
            .unwrap();
            let expected: Vec<ChunkHash> = data.chunks(cs as usize).map(hash_chunk).collect();
            assert_eq!(hashes, expected, "chunk size {cs}");
        }
    }

    #[test]
    fn file_that_changed_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        let mut buf = vec![0; 16];
        assert!(matches!(
            hash_file(
                open_regular(&p, None, &ReadAs::Daemon).unwrap(),
                &p,
                6,
                4,
                &mut buf
            ),
            Err(BuildError::Changed { .. })
        ));
        assert!(matches!(
            hash_file(
                open_regular(&p, None, &ReadAs::Daemon).unwrap(),
                &p,
                4,
                4,
                &mut buf
            ),
            Err(BuildError::Changed { .. })
        ));
        assert_eq!(
            hash_file(
                open_regular(&p, None, &ReadAs::Daemon).unwrap(),
                &p,
                5,
                4,
                &mut buf
            )
            .unwrap()
            .len(),
            2
        );
    }
}
