//! `Manifest::from_dir_as` for another user: what they may not read is refused, naming only
//! what they could see, and what they may read builds the same manifest as the daemon's own.
//!
//! Ownership is whoever runs the test; the user read for is another uid (or that uid with the
//! owner's group as a supplementary group), so these run as root or not.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use swarmcast_node::manifest::{BuildError, Credentials, Manifest, ManifestLimits, ReadAs};

const CS: u32 = 4096;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Someone who owns nothing here, optionally a member of the files' group.
fn stranger(root: &Path, in_group: bool) -> ReadAs {
    let meta = fs::metadata(root).unwrap();
    ReadAs::User(Credentials {
        uid: meta.uid() + 4242,
        gid: meta.gid() + 4242,
        groups: if in_group { vec![meta.gid()] } else { vec![] },
    })
}

fn build_as(root: &Path, who: &ReadAs) -> Result<Manifest, BuildError> {
    Manifest::from_dir_as(root, CS, &ManifestLimits::default(), who)
}

/// A readable tree `<tmp>/t/snap` (dirs 0755, files 0644) with one nested folder.
fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let root = tmp.path().join("snap");
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("a.txt"), b"alpha").unwrap();
    fs::write(root.join("sub/b.txt"), b"beta").unwrap();
    for p in [&root, &root.join("sub")] {
        chmod(p, 0o755);
    }
    for p in [root.join("a.txt"), root.join("sub/b.txt")] {
        chmod(&p, 0o644);
    }
    (tmp, root)
}

#[track_caller]
fn assert_denied(r: Result<Manifest, BuildError>, path: &Path) -> String {
    match r {
        Err(BuildError::Denied { path: p, .. }) => {
            assert_eq!(p, path);
            format!("{}", BuildError::Denied { path: p, uid: 0 })
        }
        other => panic!("expected Denied for {}, got {other:?}", path.display()),
    }
}

#[test]
fn readable_tree_builds_the_same_manifest_as_the_daemon() {
    let (_tmp, root) = tree();
    let as_user = build_as(&root, &stranger(&root, false)).unwrap();
    let as_daemon = Manifest::from_dir(&root, CS, &ManifestLimits::default()).unwrap();
    assert_eq!(as_user, as_daemon);
    // a.txt, sub and sub/b.txt.
    assert_eq!(as_user.entries.len(), 3);
}

#[test]
fn unreadable_file_is_refused_by_name() {
    let (_tmp, root) = tree();
    chmod(&root.join("sub/b.txt"), 0o600);
    assert_denied(
        build_as(&root, &stranger(&root, false)),
        &root.join("sub/b.txt"),
    );
    // Group-readable and the user is in the group: allowed; not in it: refused.
    chmod(&root.join("sub/b.txt"), 0o640);
    build_as(&root, &stranger(&root, true)).unwrap();
    assert_denied(
        build_as(&root, &stranger(&root, false)),
        &root.join("sub/b.txt"),
    );
}

#[test]
fn unlistable_directory_is_refused_without_naming_what_is_inside() {
    let (_tmp, root) = tree();
    fs::write(root.join("sub/secret-name.txt"), b"x").unwrap();
    chmod(&root.join("sub"), 0o700);
    let msg = assert_denied(build_as(&root, &stranger(&root, false)), &root.join("sub"));
    assert!(!msg.contains("secret-name"), "{msg}");
    assert!(!msg.contains("b.txt"), "{msg}");
    // Searchable but not listable (--x) is refused too.
    chmod(&root.join("sub"), 0o711);
    assert_denied(build_as(&root, &stranger(&root, false)), &root.join("sub"));
    // The daemon itself reads it.
    Manifest::from_dir(&root, CS, &ManifestLimits::default()).unwrap();
}

#[test]
fn the_root_and_its_ancestors_must_be_reachable() {
    let (tmp, root) = tree();
    // The root itself unreadable.
    chmod(&root, 0o700);
    assert_denied(build_as(&root, &stranger(&root, false)), &root);
    chmod(&root, 0o755);
    // An ancestor not searchable: refused naming the ancestor, before anything beneath it is
    // looked at, even through a symlink that lives outside it.
    chmod(tmp.path(), 0o700);
    assert_denied(build_as(&root, &stranger(&root, false)), tmp.path());
    let other = tempfile::tempdir().unwrap();
    chmod(other.path(), 0o755);
    let link = other.path().join("link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    assert_denied(build_as(&link, &stranger(&root, false)), tmp.path());
    // A symlink that lives inside it, named through it.
    std::os::unix::fs::symlink(&root, tmp.path().join("inner-link")).unwrap();
    assert_denied(
        build_as(&tmp.path().join("inner-link"), &stranger(&root, false)),
        tmp.path(),
    );
    chmod(tmp.path(), 0o755);
    let m = build_as(&link, &stranger(&root, false)).unwrap();
    assert_eq!(m.name, "snap");
}
