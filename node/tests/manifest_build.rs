//! `Manifest::from_dir` on real trees: entries, modes, chunk hashes, ids, and refusals.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use swarmcast_node::manifest::{
    BuildError, ChunkHash, Entry, EntryKind, MANIFEST_VERSION, Manifest, ManifestError,
    ManifestLimits, check_free_space, free_space, manifest_id,
};

/// Smallest chunk size the default limits accept: several chunks from small files.
const CS: u32 = 4096;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    chmod(&p, mode);
}

fn big_data() -> Vec<u8> {
    (0..3 * CS as usize + 100)
        .map(|i| (i * 7 % 253) as u8)
        .collect()
}

/// A tree with nested folders, an empty file, an empty folder, unicode names, an executable and
/// a file of four chunks, in `<tmp>/snap`.
fn sample_tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("snap");
    fs::create_dir(&root).unwrap();
    write(&root, "a/b/c.txt", b"hello", 0o644);
    write(&root, "empty.txt", b"", 0o600);
    fs::create_dir(root.join("empty_dir")).unwrap();
    chmod(&root.join("empty_dir"), 0o750);
    write(&root, "données/ü.txt", "ça va".as_bytes(), 0o640);
    write(&root, "日本.bin", &[0, 1, 2, 255], 0o644);
    write(&root, "run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(&root, "big.bin", &big_data(), 0o644);
    // Directories with contents, and the root, keep their modes too (version 2).
    chmod(&root.join("a"), 0o700);
    chmod(&root.join("a/b"), 0o750);
    chmod(&root.join("données"), 0o755);
    chmod(&root, 0o710);
    (tmp, root)
}

fn dir(path: &str, mode: u32) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::Dir { mode },
    }
}

fn file(path: &str, data: &[u8], mode: u32) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::File {
            size: data.len() as u64,
            mode,
            chunks: data
                .chunks(CS as usize)
                .map(|c| ChunkHash(*blake3::hash(c).as_bytes()))
                .collect(),
        },
    }
}

fn build(root: &Path) -> Result<Manifest, BuildError> {
    Manifest::from_dir(root, CS, &ManifestLimits::default())
}

#[test]
fn builds_exact_entries() {
    let (_tmp, root) = sample_tree();
    let m = build(&root).unwrap();
    assert_eq!(m.version, MANIFEST_VERSION);
    assert_eq!(m.name, "snap");
    assert_eq!(m.chunk_size, CS);
    assert_eq!(m.root_mode, Some(0o710));
    let expected = vec![
        dir("a", 0o700),
        dir("a/b", 0o750),
        file("a/b/c.txt", b"hello", 0o644),
        file("big.bin", &big_data(), 0o644),
        dir("données", 0o755),
        file("données/ü.txt", "ça va".as_bytes(), 0o640),
        file("empty.txt", b"", 0o600),
        dir("empty_dir", 0o750),
        file("run.sh", b"#!/bin/sh\necho hi\n", 0o755),
        file("日本.bin", &[0, 1, 2, 255], 0o644),
    ];
    assert_eq!(m.entries, expected);
    // The slices really were hashed one by one: four chunks, the last one 100 bytes.
    let EntryKind::File { chunks, .. } = &m.entries[3].kind else {
        panic!("big.bin is not a file");
    };
    assert_eq!(chunks.len(), 4);
    let data = big_data();
    assert_eq!(
        chunks[3].0,
        *blake3::hash(&data[3 * CS as usize..]).as_bytes()
    );
    assert!(m.validate(&ManifestLimits::default()).is_ok());
}

#[test]
fn relative_and_dotted_paths_name_the_same_directory() {
    let (_tmp, root) = sample_tree();
    let dotted = root.join("a").join("..");
    assert_eq!(build(&dotted).unwrap(), build(&root).unwrap());
}

#[test]
fn empty_root_has_no_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("nothing");
    fs::create_dir(&root).unwrap();
    let m = build(&root).unwrap();
    assert_eq!(m.name, "nothing");
    assert!(m.entries.is_empty());
}

#[test]
fn id_is_deterministic_and_follows_every_byte() {
    let (_tmp, root) = sample_tree();
    let first = build(&root).unwrap();
    let second = build(&root).unwrap();
    assert_eq!(first.to_bytes(), second.to_bytes());
    assert_eq!(first.id(), second.id());
    assert_eq!(first.id(), manifest_id(&first.to_bytes()));

    // One byte in the third chunk of big.bin: only that chunk's hash moves, and the id with it.
    let mut data = big_data();
    data[2 * CS as usize + 5] ^= 1;
    fs::write(root.join("big.bin"), &data).unwrap();
    let changed = build(&root).unwrap();
    assert_ne!(changed.id(), first.id());
    let hashes = |m: &Manifest| match &m.entries[3].kind {
        EntryKind::File { chunks, .. } => chunks.clone(),
        EntryKind::Dir { .. } => panic!("big.bin is not a file"),
    };
    let (old, new) = (hashes(&first), hashes(&changed));
    let differing: Vec<usize> = (0..4).filter(|&i| old[i] != new[i]).collect();
    assert_eq!(differing, vec![2]);

    // A mode change alone changes the id too.
    data[2 * CS as usize + 5] ^= 1;
    fs::write(root.join("big.bin"), &data).unwrap();
    assert_eq!(build(&root).unwrap().id(), first.id());
    chmod(&root.join("run.sh"), 0o644);
    assert_ne!(build(&root).unwrap().id(), first.id());
    // And so does a directory's, the root's included.
    chmod(&root.join("run.sh"), 0o755);
    chmod(&root.join("a"), 0o750);
    assert_ne!(build(&root).unwrap().id(), first.id());
    chmod(&root.join("a"), 0o700);
    assert_eq!(build(&root).unwrap().id(), first.id());
    chmod(&root, 0o755);
    assert_ne!(build(&root).unwrap().id(), first.id());
}

#[track_caller]
fn unsupported(root: &Path) -> Vec<PathBuf> {
    match build(root) {
        Err(BuildError::Unsupported { paths }) => paths,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn refuses_symlinks_anywhere_naming_them() {
    let (_tmp, root) = sample_tree();
    std::os::unix::fs::symlink("c.txt", root.join("a/b/link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink(root.join("a"), root.join("dirlink")).unwrap();
    let canonical = fs::canonicalize(&root).unwrap();
    let mut paths = unsupported(&root);
    paths.sort();
    assert_eq!(
        paths,
        vec![
            canonical.join("a/b/link"),
            canonical.join("dangling"),
            canonical.join("dirlink"),
        ]
    );
    let message = BuildError::Unsupported { paths }.to_string();
    assert!(message.contains("dangling"), "{message}");
}

#[test]
fn refuses_fifo_naming_it() {
    let (_tmp, root) = sample_tree();
    let fifo = root.join("a/pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let paths = unsupported(&root);
    assert_eq!(paths, vec![fs::canonicalize(&fifo).unwrap()]);
}

#[test]
fn refuses_socket_naming_it() {
    let (_tmp, root) = sample_tree();
    let sock = root.join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_eq!(unsupported(&root), vec![fs::canonicalize(&sock).unwrap()]);
}

#[test]
fn refuses_non_utf8_names_naming_them() {
    let (_tmp, root) = sample_tree();
    let bad = root
        .join("a")
        .join(std::ffi::OsStr::from_bytes(b"bad\xff.txt"));
    fs::write(&bad, b"x").unwrap();
    match build(&root) {
        Err(BuildError::NonUtf8 { paths }) => {
            assert_eq!(paths, vec![fs::canonicalize(&bad).unwrap()]);
        }
        other => panic!("expected NonUtf8, got {other:?}"),
    }
}

#[test]
fn refuses_names_the_manifest_cannot_carry() {
    let (_tmp, root) = sample_tree();
    write(&root, "a/back\\slash", b"x", 0o644);
    let err = build(&root);
    assert!(
        matches!(&err, Err(BuildError::Invalid(ManifestError::BackslashInPath { path })) if path == "a/back\\slash"),
        "{err:?}"
    );
}

#[test]
fn refuses_a_root_without_name_or_not_a_directory() {
    assert!(matches!(
        build(Path::new("/")),
        Err(BuildError::NoName { .. })
    ));
    let (_tmp, root) = sample_tree();
    assert!(matches!(
        build(&root.join("run.sh")),
        Err(BuildError::NotADirectory { .. })
    ));
    assert!(matches!(
        build(&root.join("missing")),
        Err(BuildError::Io { .. })
    ));
}

#[test]
fn refuses_chunk_sizes_out_of_range() {
    let (_tmp, root) = sample_tree();
    for cs in [0, 1, CS - 1, (16 << 20) + 1, u32::MAX] {
        let err = Manifest::from_dir(&root, cs, &ManifestLimits::default());
        assert!(
            matches!(
                err,
                Err(BuildError::Invalid(ManifestError::ChunkSize { .. }))
            ),
            "chunk size {cs}: {err:?}"
        );
    }
}

#[test]
fn limits_are_enforced_while_building() {
    let (_tmp, root) = sample_tree();
    let limits = ManifestLimits {
        max_entries: 9,
        ..ManifestLimits::default()
    };
    let err = Manifest::from_dir(&root, CS, &limits);
    // Seven files and empty directories, and three directories with contents.
    assert!(
        matches!(
            err,
            Err(BuildError::Invalid(ManifestError::TooManyEntries {
                count: 10,
                max: 9
            }))
        ),
        "{err:?}"
    );
    let limits = ManifestLimits {
        max_total_bytes: 1000,
        ..ManifestLimits::default()
    };
    let err = Manifest::from_dir(&root, CS, &limits);
    assert!(
        matches!(&err, Err(BuildError::Invalid(ManifestError::TotalTooLarge { path, max: 1000 })) if path == "big.bin"),
        "{err:?}"
    );
    let limits = ManifestLimits {
        max_chunks: 6,
        ..ManifestLimits::default()
    };
    let err = Manifest::from_dir(&root, CS, &limits);
    assert!(
        matches!(
            err,
            Err(BuildError::Invalid(ManifestError::TooManyChunks {
                count: 8,
                max: 6
            }))
        ),
        "{err:?}"
    );
    let limits = ManifestLimits {
        max_manifest_bytes: 100,
        ..ManifestLimits::default()
    };
    let err = Manifest::from_dir(&root, CS, &limits);
    assert!(
        matches!(
            err,
            Err(BuildError::Invalid(ManifestError::TooLarge {
                max: 100,
                ..
            }))
        ),
        "{err:?}"
    );
}

#[test]
fn free_space_check() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(free_space(tmp.path()).unwrap() > 0);
    check_free_space(tmp.path(), 1).unwrap();
    let err = check_free_space(tmp.path(), u64::MAX / 2);
    assert!(
        matches!(err, Err(ManifestError::InsufficientSpace { needed, available }) if needed == u64::MAX / 2 && available < needed),
        "{err:?}"
    );
    assert!(matches!(
        check_free_space(&tmp.path().join("missing"), 1),
        Err(ManifestError::FreeSpaceUnknown { .. })
    ));
}

fn build_reusing(
    root: &Path,
    cs: u32,
    reuse: Option<&swarmcast_node::manifest::HashReuse>,
) -> swarmcast_node::manifest::Built {
    Manifest::build(
        root,
        cs,
        &ManifestLimits::default(),
        &swarmcast_node::manifest::ReadAs::Daemon,
        reuse,
    )
    .unwrap()
}

/// A second build reuses the hashes of every file whose stamp (size, mtime, ctime, inode) did
/// not change, and rehashes the rest: a rewritten file, even one of the same size with its
/// mtime set back; another chunk size reuses nothing.
#[test]
fn a_rebuild_hashes_only_what_changed() {
    let (_tmp, root) = sample_tree();
    let first = build_reusing(&root, CS, None);
    let total: u64 = first
        .manifest
        .entries
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { size, .. } => size,
            EntryKind::Dir { .. } => 0,
        })
        .sum();
    assert_eq!(first.hashed_bytes, total);
    let reuse = swarmcast_node::manifest::HashReuse::new(&first.manifest, &first.stamps);
    let again = build_reusing(&root, CS, Some(&reuse));
    assert_eq!(again.hashed_bytes, 0);
    assert_eq!(again.manifest, first.manifest);

    // Rewrite the big file in place with other bytes of the same size, and set its mtime back.
    let big = root.join("big.bin");
    let old_mtime = fs::metadata(&big).unwrap().modified().unwrap();
    let mut other = big_data();
    other[0] ^= 0xff;
    fs::write(&big, &other).unwrap();
    fs::File::options()
        .write(true)
        .open(&big)
        .unwrap()
        .set_modified(old_mtime)
        .unwrap();
    let third = build_reusing(&root, CS, Some(&reuse));
    assert_eq!(
        third.hashed_bytes,
        other.len() as u64,
        "only the rewritten file"
    );
    assert_ne!(third.manifest, first.manifest);
    let rehashed = Manifest::from_dir(&root, CS, &ManifestLimits::default()).unwrap();
    assert_eq!(
        third.manifest, rehashed,
        "reuse never gives other hashes than a full build"
    );
    // Another chunk size: everything again.
    let reuse = swarmcast_node::manifest::HashReuse::new(&third.manifest, &third.stamps);
    assert_eq!(
        build_reusing(&root, 2 * CS, Some(&reuse)).hashed_bytes,
        total
    );
}
