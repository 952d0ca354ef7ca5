//! `D/received/<name>`: the symlink to the version of a name that the broadcast core chose, and
//! the crash-safe removal of a broadcast's directory.

use std::io;
use std::path::{Path, PathBuf};

use swarmcast_proto::BroadcastId;
use tracing::{info, warn};

use super::{BROADCASTS_DIR, DATA_DIR, StoreError, broadcast_dir, fsx};

/// Prefix of a broadcast directory being removed: renamed to it first (one atomic step), then
/// deleted, so that a removal interrupted by a crash leaves nothing that is served, listed or
/// resumed (every name not a broadcast id is skipped by [`super::list`], and swept at start).
pub(super) const DEAD_PREFIX: &str = ".dead-";

/// Refuses a broadcast name that is not one path component.
pub(super) fn check_name(received: &Path, name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(StoreError::Unsafe {
            path: received.join(name),
            reason: "the broadcast name is not a single path component",
        });
    }
    Ok(())
}

/// Points `received/<name>` (under the `received` directory `received`) at
/// `../broadcasts/<id>/data`, atomically: a fresh symlink renamed over the old one. Refuses
/// ([`StoreError::NotASymlink`]) to replace anything there that is not a symlink.
pub fn link_received(received: &Path, name: &str, id: BroadcastId) -> Result<PathBuf, StoreError> {
    check_name(received, name)?;
    fsx::ensure_real_dir(received)?;
    let dst = received.join(name);
    let refuse_non_symlink = || -> Result<(), StoreError> {
        match std::fs::symlink_metadata(&dst) {
            Ok(m) if !m.file_type().is_symlink() => {
                Err(StoreError::NotASymlink { path: dst.clone() })
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&dst, e)),
        }
    };
    refuse_non_symlink()?;
    let target = link_target(id);
    let tmp = received.join(fsx::temp_name("swarmcast-link"));
    std::os::unix::fs::symlink(&target, &tmp).map_err(|e| StoreError::io(&tmp, e))?;
    if let Err(e) = std::fs::rename(&tmp, &dst) {
        let _ = std::fs::remove_file(&tmp);
        // Something that is not a symlink appeared meanwhile (rename refuses directories).
        refuse_non_symlink()?;
        return Err(StoreError::io(&dst, e));
    }
    fsx::sync_dir(received)?;
    Ok(dst)
}

/// Removes `received/<name>` if it is a symlink to `id`'s data; whether it did. Anything else
/// there (another version's link, user data) is left alone.
pub fn unlink_received(received: &Path, name: &str, id: BroadcastId) -> Result<bool, StoreError> {
    check_name(received, name)?;
    let dst = received.join(name);
    match std::fs::read_link(&dst) {
        Ok(t) if t == link_target(id) => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        // Not a symlink (EINVAL): not ours.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(false),
        Err(e) => return Err(StoreError::io(&dst, e)),
    }
    std::fs::remove_file(&dst).map_err(|e| StoreError::io(&dst, e))?;
    fsx::sync_dir(received)?;
    Ok(true)
}

/// The version `received/<name>` points at, if it is one of our links.
pub fn linked_version(received: &Path, name: &str) -> Option<BroadcastId> {
    let t = std::fs::read_link(received.join(name)).ok()?;
    let mut parts = t.components().map(|c| c.as_os_str().to_str());
    match (parts.next()?, parts.next()?, parts.next()?, parts.next()?) {
        (Some(".."), Some(BROADCASTS_DIR), Some(hex), Some(DATA_DIR)) if parts.next().is_none() => {
            hex.parse()
                .ok()
                .filter(|id: &BroadcastId| id.to_hex() == hex)
        }
        _ => None,
    }
}

fn link_target(id: BroadcastId) -> PathBuf {
    Path::new("..")
        .join(BROADCASTS_DIR)
        .join(id.to_hex())
        .join(DATA_DIR)
}

/// Removes the directory of `id` (a receiver's workspace, or an origin's manifest and source
/// path; never the origin's source itself), crash-safe: it is first renamed to a dead name (and
/// the rename made durable), so that from then on nothing of it is served, listed or resumed,
/// then deleted. Missing is fine.
pub fn remove(data_dir: &Path, id: BroadcastId) -> Result<(), StoreError> {
    let dir = broadcast_dir(data_dir, id);
    let parent = data_dir.join(BROADCASTS_DIR);
    let dead = parent.join(format!("{DEAD_PREFIX}{}", id.to_hex()));
    match std::fs::symlink_metadata(&dir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    }
    // A dead copy left by an earlier crash goes first (rename cannot replace a directory
    // that is not empty).
    remove_tree(&dead)?;
    std::fs::rename(&dir, &dead).map_err(|e| StoreError::io(&dir, e))?;
    fsx::sync_dir(&parent)?;
    remove_tree(&dead)?;
    info!(id = %id.short(), "broadcast removed from disk");
    Ok(())
}

/// Deletes what removals interrupted by a crash left (directories named `.dead-*`).
pub fn sweep_dead(data_dir: &Path) {
    let parent = data_dir.join(BROADCASTS_DIR);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(DEAD_PREFIX)) {
            let path = entry.path();
            match remove_tree(&path) {
                Ok(()) => info!(path = %path.display(), "finished an interrupted removal"),
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot finish an interrupted removal")
                }
            }
        }
    }
}

/// `rm -rf` of a tree we own (symlinks inside are removed, never followed). A directory whose
/// received mode took away the owner's write bit (a `0o555` one) is made writable first.
fn remove_tree(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path);
            std::fs::remove_dir_all(path).map_err(|e| StoreError::io(path, e))
        }
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Adds the owner's `rwx` to every directory of a tree, never following a symlink.
fn make_dirs_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![path.to_owned()];
    while let Some(dir) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode() | 0o700;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        if let Ok(children) = std::fs::read_dir(&dir) {
            todo.extend(children.flatten().map(|c| c.path()));
        }
    }
}
