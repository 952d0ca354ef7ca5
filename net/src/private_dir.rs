//! A daemon's data dir, private whatever the umask it was started with.
//!
//! Nodes and bootstraps both call [`prepare`] before they write anything there: the process
//! umask becomes 077, the dir is created 0700 (0710 and group-owned when a control group may
//! reach a node's socket), and an existing one that is open to others is tightened. Files
//! written afterwards (the incarnation, a bootstrap's `registry.snapshot`, a node's
//! workspaces) are then 0600 at most; [`crate::incarnation::write_atomic`] also creates its
//! files 0600 itself.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use tracing::warn;

/// Why a data dir could not be made private.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The path exists and is not a directory (a symlink counts as not one).
    #[error("data dir {dir}: not a directory (or a symlink)")]
    NotADirectory {
        /// The data dir.
        dir: PathBuf,
    },
    /// The directory belongs to another user.
    #[error("data dir {dir}: owned by uid {uid}, not by this daemon's user")]
    NotOwned {
        /// The data dir.
        dir: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Creating, inspecting or changing it failed.
    #[error("data dir {dir}: {source}")]
    Io {
        /// The data dir.
        dir: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Make `data_dir` private: set the process umask to 077, create it (and its parents) if
/// missing, refuse a symlink, a non-directory or another user's directory, and give it mode
/// 0700, or 0710 with group `group`. Logs a warning when an existing dir was open to others.
pub fn prepare(data_dir: &Path, group: Option<u32>) -> Result<(), DataDirError> {
    nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    let io = |source: std::io::Error| DataDirError::Io {
        dir: data_dir.to_owned(),
        source,
    };
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::symlink_metadata(data_dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(DataDirError::NotADirectory {
            dir: data_dir.to_owned(),
        });
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(DataDirError::NotOwned {
            dir: data_dir.to_owned(),
            uid: meta.uid(),
        });
    }
    let want = match group {
        Some(g) => {
            nix::unistd::chown(data_dir, None, Some(nix::unistd::Gid::from_raw(g)))
                .map_err(|e| io(e.into()))?;
            0o710
        }
        None => 0o700,
    };
    let mode = meta.mode() & 0o7777;
    if mode != want {
        if mode & 0o077 & !want != 0 {
            warn!(dir = %data_dir.display(), mode = format!("{mode:o}"), "data dir was open to others; making it private");
        }
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(want)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777
    }

    #[test]
    fn private_whatever_the_umask_and_tightened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        nix::sys::stat::umask(Mode::empty());
        let fresh = tmp.path().join("a/b");
        prepare(&fresh, None).expect("prepare");
        assert_eq!(mode(&fresh), 0o700);
        // The umask is 077 from now on: a file written there is private.
        std::fs::write(fresh.join("f"), b"x").expect("write");
        assert_eq!(mode(&fresh.join("f")), 0o600);
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        prepare(&open, None).expect("prepare");
        assert_eq!(mode(&open), 0o700);
        std::os::unix::fs::symlink(&open, tmp.path().join("link")).expect("symlink");
        assert!(matches!(
            prepare(&tmp.path().join("link"), None),
            Err(DataDirError::NotADirectory { .. })
        ));
        std::fs::write(tmp.path().join("file"), b"").expect("write");
        assert!(matches!(
            prepare(&tmp.path().join("file"), None),
            Err(DataDirError::NotADirectory { .. })
        ));
    }
}
