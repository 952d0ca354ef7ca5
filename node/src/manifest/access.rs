//! Reading a tree on behalf of someone else: who a [`Manifest::from_dir_as`] build reads for,
//! and the permission checks it makes as that user.
//!
//! The daemon may run as root while `node send` comes from a user allowed on its control socket
//! (its own user, or a member of the `--control-group`). That user must not be able to send what
//! they could not read themselves, nor learn the names of files beneath a directory they could
//! not list. So a build for [`ReadAs::User`]:
//!
//! * resolves the path it is given one component at a time, following symlinks as the kernel
//!   would, and needs search (`x`) permission for the user on every directory it passes through,
//!   before it looks inside (so a symlink or name beneath an unsearchable directory is never
//!   read);
//! * needs read and search (`r-x`) on every directory it lists, checked on the open descriptor
//!   of that very directory before it reads a name from it;
//! * needs read (`r`) on every file it hashes, checked on the open descriptor it reads.
//!
//! Every directory and file is opened without following symlinks and must be the inode the walk
//! saw as a child of an already-checked directory (same device and inode), so a component
//! swapped for a symlink mid-walk cannot redirect the reads. A refusal names the first path the
//! user may not read: a path they gave or one listed in a directory they may list, never a name
//! from beneath it.
//!
//! Permission is judged from the owner, group and mode bits against the user's uid, gid and
//! supplementary groups, as the kernel does for a process without capabilities (owner class if
//! the uid owns it, else group class if any of the user's groups owns it, else other). POSIX
//! ACLs are not consulted; see [`ReadAs`].
//!
//! [`Manifest::from_dir_as`]: super::Manifest::from_dir_as

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::BuildError;

/// Permission bits, in the "other" position.
pub(crate) const R: u32 = 0o4;
/// Search (directories).
pub(crate) const X: u32 = 0o1;

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_LINKS: u32 = 40;

/// A local user's credentials, as the control socket saw them (`SO_PEERCRED`, plus the
/// supplementary groups of the calling process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Whose permissions a build reads the tree with.
///
/// `User` judges from mode bits and ownership only. A file whose POSIX ACL grants the user more
/// than its mode bits show is refused (conservative); one whose ACL names the user or one of
/// their groups to *deny* what its group or other bits grant is not seen as denied: keep ACLs
/// off trees that unprivileged users may send from a root daemon, or run the daemon as the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAs {
    /// With the daemon's own rights (the caller is root, or a library user).
    Daemon,
    /// As this user: what they may not read is refused.
    User(Credentials),
}

impl ReadAs {
    /// The rights of a local caller: root reads with the daemon's own rights.
    pub fn caller(creds: Credentials) -> Self {
        if creds.uid == 0 {
            ReadAs::Daemon
        } else {
            ReadAs::User(creds)
        }
    }

    /// Whether the user may do `want` (bits of [`R`] | [`X`]) on an inode with this owner,
    /// group and mode.
    fn allows(&self, uid: u32, gid: u32, mode: u32, want: u32) -> bool {
        let ReadAs::User(c) = self else { return true };
        let class = if c.uid == uid {
            mode >> 6
        } else if c.gid == gid || c.groups.contains(&gid) {
            mode >> 3
        } else {
            mode
        } & 0o7;
        class & want == want
    }

    /// `Ok` if the user may do `want` on `st`, else [`BuildError::Denied`] naming `path`.
    pub(crate) fn check(&self, st: &FileStat, want: u32, path: &Path) -> Result<(), BuildError> {
        self.check_owner(st.st_uid, st.st_gid, st.st_mode, want, path)
    }

    /// [`ReadAs::check`] from an owner, group and mode.
    pub(crate) fn check_owner(
        &self,
        uid: u32,
        gid: u32,
        mode: u32,
        want: u32,
        path: &Path,
    ) -> Result<(), BuildError> {
        if self.allows(uid, gid, mode, want) {
            Ok(())
        } else {
            Err(self.denied(path))
        }
    }

    fn denied(&self, path: &Path) -> BuildError {
        let uid = match self {
            ReadAs::User(c) => c.uid,
            ReadAs::Daemon => 0,
        };
        BuildError::Denied {
            path: path.to_owned(),
            uid,
        }
    }
}

pub(crate) fn nix_io(path: &Path) -> impl FnOnce(Errno) -> BuildError + '_ {
    move |e| BuildError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

fn open_dir_at<Fd: AsFd>(dir: Fd, name: &OsStr, path: &Path) -> Result<OwnedFd, BuildError> {
    nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(nix_io(path))
}

/// Resolve `path` (absolute) as `who` would: every directory passed through must be searchable
/// by them before a name in it is looked at. Returns the canonical path and an open descriptor
/// of the directory it names (checked `r-x`, so it may be listed).
pub(crate) fn resolve(path: &Path, who: &ReadAs) -> Result<(PathBuf, OwnedFd), BuildError> {
    if !path.is_absolute() {
        return Err(BuildError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute path"),
        });
    }
    // The directories from `/` down to where we are, each already checked searchable.
    let root = PathBuf::from("/");
    let mut stack: Vec<(PathBuf, OwnedFd)> = Vec::new();
    let fd = nix::fcntl::open(
        "/",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(nix_io(&root))?;
    who.check(
        &nix::sys::stat::fstat(&fd).map_err(nix_io(&root))?,
        X,
        &root,
    )?;
    stack.push((root, fd));
    // Components still to walk, last first.
    let mut todo: Vec<std::ffi::OsString> = components(path);
    let mut links = 0;
    while let Some(name) = todo.pop() {
        match name.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        // Search permission on `here` was checked when it was pushed.
        let (here, fd) = stack.last().ok_or_else(|| who.denied(path))?;
        let next = here.join(&name);
        let st = nix::sys::stat::fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(nix_io(&next))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(nix_io(&next)(Errno::ELOOP));
            }
            let target = nix::fcntl::readlinkat(fd, name.as_os_str()).map_err(nix_io(&next))?;
            let target = Path::new(&target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            todo.extend(components(target));
            continue;
        }
        if kind != SFlag::S_IFDIR {
            if todo.iter().all(|c| c.is_empty() || c == ".") {
                return Err(BuildError::NotADirectory { path: next });
            }
            return Err(nix_io(&next)(Errno::ENOTDIR));
        }
        let child = open_dir_at(fd, name.as_os_str(), &next)?;
        let cst = nix::sys::stat::fstat(&child).map_err(nix_io(&next))?;
        if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino) {
            return Err(BuildError::Changed { path: next });
        }
        who.check(&cst, X, &next)?;
        stack.push((next, child));
    }
    let (canonical, fd) = stack.pop().ok_or_else(|| who.denied(path))?;
    let st = nix::sys::stat::fstat(&fd).map_err(nix_io(&canonical))?;
    who.check(&st, R | X, &canonical)?;
    Ok((canonical, fd))
}

/// The components of `p` as names, last first (so that popping walks it in order).
fn components(p: &Path) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(uid: u32, gid: u32, groups: &[u32]) -> ReadAs {
        ReadAs::User(Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
        })
    }

    #[test]
    fn classes_as_the_kernel_picks_them() {
        let u = user(1000, 100, &[200]);
        // Owner class decides for the owner, even when other bits would allow.
        assert!(!u.allows(1000, 0, 0o077, R));
        assert!(u.allows(1000, 0, 0o400, R));
        // Primary and supplementary groups.
        assert!(u.allows(0, 100, 0o040, R));
        assert!(u.allows(0, 200, 0o050, R | X));
        assert!(!u.allows(0, 200, 0o040, R | X));
        // Group class decides for a member, even when other bits would allow.
        assert!(!u.allows(0, 200, 0o004, R));
        // Other.
        assert!(u.allows(0, 0, 0o005, R | X));
        assert!(!u.allows(0, 0, 0o700, R));
        assert!(ReadAs::Daemon.allows(0, 0, 0o000, R | X));
        assert_eq!(
            ReadAs::caller(Credentials {
                uid: 0,
                gid: 5,
                groups: vec![]
            }),
            ReadAs::Daemon
        );
    }

    #[test]
    fn resolve_follows_links_and_dots() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(real.join("a/b")).unwrap();
        std::os::unix::fs::symlink("a/b", real.join("l")).unwrap();
        std::os::unix::fs::symlink(real.join("a"), real.join("abs")).unwrap();
        for (given, want) in [
            (real.join("l"), real.join("a/b")),
            (real.join("l/.."), real.join("a")),
            (real.join("abs/./b"), real.join("a/b")),
            (real.join("a/b/../../a"), real.join("a")),
        ] {
            let (got, _) = resolve(&given, &ReadAs::Daemon).unwrap();
            assert_eq!(got, want, "{}", given.display());
        }
        std::os::unix::fs::symlink("loop", real.join("loop")).unwrap();
        assert!(resolve(&real.join("loop"), &ReadAs::Daemon).is_err());
        std::fs::write(real.join("f"), b"x").unwrap();
        assert!(matches!(
            resolve(&real.join("f"), &ReadAs::Daemon),
            Err(BuildError::NotADirectory { .. })
        ));
        assert!(resolve(Path::new("relative"), &ReadAs::Daemon).is_err());
    }
}
