//! Filesystem helpers: symlink-safe traversal below a directory handle, atomic replacement of
//! small files, and bounded handle caching.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};

use super::StoreError;

/// Whether a missing directory is created on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Create {
    /// Missing is an error.
    No,
    /// Missing directories are made (mode 0o755 before the umask).
    Yes,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// Read-only.
    Read,
    /// Read-write.
    Write,
    /// Read-write with `O_DIRECT`: every offset, length and buffer address must be a multiple
    /// of the filesystem's logical block size.
    Direct,
}

/// Locks a mutex, ignoring poisoning: every critical section in the store leaves its data
/// consistent at each point where it could panic.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether anything (even a dangling symlink) is at `path`.
pub(super) fn exists(path: &Path) -> Result<bool, StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Reads one of the store's own small files (never following a symlink); `None` if missing.
pub(super) fn read_small(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(Some(bytes))
}

/// A path stored as raw bytes.
pub(super) fn path_from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// Makes `path` a real directory (creating it and its parents if missing) and refuses a
/// symlink or non-directory there.
pub(super) fn ensure_real_dir(path: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(StoreError::Unsafe {
                path: path.to_owned(),
                reason: "a symlink or non-directory where a directory should be",
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io(path, e)),
    }
    std::fs::create_dir_all(path).map_err(|e| StoreError::io(path, e))?;
    // Re-check: `create_dir_all` follows a symlink planted meanwhile.
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StoreError::Unsafe {
            path: path.to_owned(),
            reason: "a symlink or non-directory where a directory should be",
        }),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Opens a directory by path; with `Follow::No` its last component must not be a symlink.
pub(super) fn open_dir_path(path: &Path, follow: Follow) -> Result<OwnedFd, StoreError> {
    let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    if follow == Follow::No {
        flags |= OFlag::O_NOFOLLOW;
    }
    nix::fcntl::open(path, flags, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => StoreError::Unsafe {
            path: path.to_owned(),
            reason: "a symlink or non-directory where a directory should be",
        },
        e => StoreError::io(path, e),
    })
}

/// Whether the last component of a path may be a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Follow {
    /// Refuse a symlink.
    No,
    /// Follow one (the user's own source directory may be reached through a symlink).
    Yes,
}

/// Splits a manifest path into its components, refusing any that could leave the root.
pub(super) fn split<'a>(root: &Path, rel: &'a str) -> Result<Vec<&'a str>, StoreError> {
    let bad = |reason| StoreError::Unsafe {
        path: root.join(rel),
        reason,
    };
    if rel.starts_with('/') {
        return Err(bad("absolute path"));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." {
            return Err(bad("empty, `.` or `..` path component"));
        }
        if p.contains('\0') {
            return Err(bad("NUL in path"));
        }
    }
    Ok(parts)
}

/// Opens the directory `parts` below `root` (whose path is `root_path`, for errors), one
/// component at a time, never following a symlink.
pub(super) fn open_dir_at(
    root: &OwnedFd,
    root_path: &Path,
    parts: &[&str],
    create: Create,
) -> Result<OwnedFd, StoreError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut cur = root.try_clone().map_err(|e| StoreError::io(root_path, e))?;
    for (i, part) in parts.iter().enumerate() {
        let here = || root_path.join(parts[..=i].join("/"));
        let opened = match openat(&cur, *part, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create == Create::Yes => {
                match mkdirat(&cur, *part, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(StoreError::io(here(), e)),
                }
                openat(&cur, *part, flags, Mode::empty())
            }
            other => other,
        };
        cur = opened.map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => StoreError::Unsafe {
                path: here(),
                reason: "a symlink or non-directory where a directory should be",
            },
            e => StoreError::io(here(), e),
        })?;
    }
    Ok(cur)
}

/// Opens the regular file `rel` below `root` without following any symlink on the way, and
/// never creating it. A symlink, a special file or a non-directory on the way is `Unsafe`.
pub(super) fn open_file_at(
    root: &OwnedFd,
    root_path: &Path,
    rel: &str,
    access: Access,
) -> Result<File, StoreError> {
    let parts = split(root_path, rel)?;
    let (name, dirs) = split_last(root_path, &parts)?;
    let dir = open_dir_at(root, root_path, dirs, Create::No)?;
    open_file_in(&dir, name, &root_path.join(rel), access)
}

/// The file name and parent components of a split path.
pub(super) fn split_last<'p, 'a>(
    root_path: &Path,
    parts: &'p [&'a str],
) -> Result<(&'a str, &'p [&'a str]), StoreError> {
    match parts.split_last() {
        Some((name, dirs)) => Ok((name, dirs)),
        None => Err(StoreError::Unsafe {
            path: root_path.to_owned(),
            reason: "empty path",
        }),
    }
}

/// Opens the regular file `name` in the directory `dir` (at `path`, for errors), refusing a
/// symlink or a special file.
pub(super) fn open_file_in(
    dir: &OwnedFd,
    name: &str,
    path: &Path,
    access: Access,
) -> Result<File, StoreError> {
    let mode = match access {
        Access::Read => OFlag::O_RDONLY,
        Access::Write => OFlag::O_RDWR,
        Access::Direct => OFlag::O_RDWR | OFlag::O_DIRECT,
    };
    // O_NONBLOCK: opening a planted FIFO must not hang (it is a no-op for regular files).
    let flags = mode | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP => StoreError::Unsafe {
            path: path.to_owned(),
            reason: "a symlink where a file should be",
        },
        e => StoreError::io(path, e),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| StoreError::io(path, e))?;
    if !meta.is_file() {
        return Err(StoreError::Unsafe {
            path: path.to_owned(),
            reason: "not a regular file",
        });
    }
    Ok(file)
}

/// The handle of the last parent directory walked, so that a pass over the manifest (sorted by
/// path) does not re-walk the same directories for every file.
#[derive(Debug, Default)]
pub(super) struct DirCache {
    last: Option<(String, OwnedFd)>,
}

impl DirCache {
    /// The directory `dirs` below `root`, from the cache when it was the last one asked for.
    pub(super) fn open(
        &mut self,
        root: &OwnedFd,
        root_path: &Path,
        dirs: &[&str],
        create: Create,
    ) -> Result<&OwnedFd, StoreError> {
        let key = dirs.join("/");
        let fd = match self.last.take() {
            Some((k, fd)) if k == key => fd,
            _ => open_dir_at(root, root_path, dirs, create)?,
        };
        Ok(&self.last.insert((key, fd)).1)
    }
}

/// Whether an error means the file is simply not there.
pub(super) fn is_not_found(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// Removes temporary files (see [`temp_name`]) left in `dir` by an earlier process.
pub(super) fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::process::id().to_string();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut fields = name.rsplit('.');
        let (_n, pid, tmp) = (fields.next(), fields.next(), fields.next());
        if name.starts_with('.') && tmp == Some("tmp") && pid.is_some_and(|p| p != me) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes `dir/name` atomically: a unique temp file, `fsync`, `rename`, `fsync` of `dir`.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(temp_name(name));
    let dst = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| StoreError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
        f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &dst).map_err(|e| StoreError::io(&dst, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

/// A name for a temporary sibling of `name`, unique within this process.
pub(super) fn temp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(".{name}.tmp.{}.{n}", std::process::id())
}

/// Makes a directory's entries durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Makes everything written to the filesystem holding `fd` durable, data and metadata: one
/// `syncfs` instead of an `fsync` per file, which matters for trees of many small files.
pub(super) fn sync_filesystem(fd: &OwnedFd, path: &Path) -> Result<(), StoreError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        nix::unistd::syncfs(fd).map_err(|e| StoreError::io(path, e))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (fd, path);
        nix::unistd::sync();
        Ok(())
    }
}

/// A bounded cache of open files, keyed by manifest entry.
///
/// Open handles refer to inodes that were inside the tree when opened, so a symlink swapped
/// in later cannot redirect them.
#[derive(Debug, Default)]
pub(super) struct Handles {
    map: Mutex<HashMap<u32, (Arc<File>, Access)>>,
}

/// Most files kept open per workspace or source.
const MAX_HANDLES: usize = 64;

impl Handles {
    /// The cached handle for `entry` if it allows `access`, else one from `open`, cached.
    pub(super) fn get_or_open(
        &self,
        entry: u32,
        access: Access,
        open: impl FnOnce() -> Result<File, StoreError>,
    ) -> Result<Arc<File>, StoreError> {
        if let Some((file, a)) = lock(&self.map).get(&entry) {
            if *a == access || (*a == Access::Write && access == Access::Read) {
                return Ok(Arc::clone(file));
            }
        }
        let file = Arc::new(open()?);
        let mut map = lock(&self.map);
        if map.len() >= MAX_HANDLES && !map.contains_key(&entry) {
            // Evict an arbitrary handle; anyone still using it keeps its Arc.
            if let Some(k) = map.keys().next().copied() {
                map.remove(&k);
            }
        }
        map.insert(entry, (Arc::clone(&file), access));
        Ok(file)
    }

    /// Forgets the handle of one entry.
    pub(super) fn forget(&self, entry: u32) {
        lock(&self.map).remove(&entry);
    }

    /// Forgets every handle.
    pub(super) fn clear(&self) {
        lock(&self.map).clear();
    }
}
