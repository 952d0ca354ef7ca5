//! `Manifest::decode` on untrusted bytes: the id first, then the msgpack, then every rule.

#![allow(clippy::unwrap_used)]

use std::fs;

use serde::Serialize;
use swarmcast_node::manifest::{
    ChunkHash, Entry, EntryKind, MANIFEST_VERSION, Manifest, ManifestError, ManifestLimits,
    manifest_id,
};
use swarmcast_proto::{BroadcastId, DecodeError};

const CS: u32 = 4096;

fn file(path: &str, size: u64) -> Entry {
    let n = size.div_ceil(u64::from(CS)) as usize;
    Entry {
        path: path.into(),
        kind: EntryKind::File {
            size,
            mode: 0o644,
            chunks: (0..n).map(|i| ChunkHash([i as u8; 32])).collect(),
        },
    }
}

fn dir(path: &str) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::Dir { mode: 0o755 },
    }
}

fn manifest(entries: Vec<Entry>) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        name: "snap".into(),
        chunk_size: CS,
        root_mode: Some(0o755),
        entries,
        audience: None,
        priority: swarmcast_proto::Priority::Normal,
    }
}

fn decode(bytes: &[u8], limits: &ManifestLimits) -> Result<Manifest, ManifestError> {
    Manifest::decode(bytes, &manifest_id(bytes), limits)
}

/// Encode `m` (bypassing every check), give it its true id, and expect `decode` to refuse it.
#[track_caller]
fn rejected_with(m: &Manifest, limits: &ManifestLimits) -> ManifestError {
    match decode(&m.to_bytes(), limits) {
        Err(e) => {
            // Every refusal names what it refuses.
            assert!(!e.to_string().is_empty());
            e
        }
        Ok(_) => panic!("accepted {m:?}"),
    }
}

#[track_caller]
fn rejected(m: &Manifest) -> ManifestError {
    rejected_with(m, &ManifestLimits::default())
}

#[track_caller]
fn rejected_path(path: &str) -> ManifestError {
    rejected(&manifest(vec![file(path, 1)]))
}

#[test]
fn built_manifests_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("snap");
    fs::create_dir_all(root.join("x/y")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("x/y/z.bin"), vec![9u8; 3 * CS as usize + 1]).unwrap();
    fs::write(root.join("ünï.txt"), b"abc").unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    let limits = ManifestLimits::default();
    let m = Manifest::from_dir(&root, CS, &limits).unwrap();
    let bytes = m.to_bytes();
    let back = Manifest::decode(&bytes, &m.id(), &limits).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_bytes(), bytes);
}

#[test]
fn hand_made_manifest_round_trips() {
    let m = manifest(vec![dir("a"), file("b/c", 0), file("b/d", 10_000)]);
    assert_eq!(
        decode(&m.to_bytes(), &ManifestLimits::default()).unwrap(),
        m
    );
}

#[test]
fn wrong_id_is_refused_before_parsing() {
    let limits = ManifestLimits::default();
    let garbage = b"\xc1 definitely not msgpack";
    // Given its own hash, garbage gets as far as the parser...
    let err = decode(garbage, &limits);
    assert!(
        matches!(
            err,
            Err(ManifestError::Malformed(DecodeError::Malformed(_)))
        ),
        "{err:?}"
    );
    // ...and well-formed msgpack that is no manifest as far as serde.
    let err = decode(b"\x93\x01\x02\x03", &limits);
    assert!(matches!(err, Err(ManifestError::Invalid(_))), "{err:?}");
    // Under any other id it is refused by the hash alone.
    let other = BroadcastId([1; 32]);
    let err = Manifest::decode(garbage, &other, &limits);
    assert!(
        matches!(err, Err(ManifestError::IdMismatch { expected, actual }) if expected == other && actual == manifest_id(garbage)),
        "{err:?}"
    );
    // And so are valid bytes under the wrong id.
    let m = manifest(vec![file("a", 1)]);
    let err = Manifest::decode(&m.to_bytes(), &other, &limits);
    assert!(
        matches!(err, Err(ManifestError::IdMismatch { .. })),
        "{err:?}"
    );
}

#[test]
fn oversized_bytes_are_refused_before_hashing() {
    let limits = ManifestLimits {
        max_manifest_bytes: 10,
        ..ManifestLimits::default()
    };
    let bytes = [0u8; 11];
    let err = Manifest::decode(&bytes, &BroadcastId([0; 32]), &limits);
    assert!(
        matches!(err, Err(ManifestError::TooLarge { len: 11, max: 10 })),
        "{err:?}"
    );
}

#[test]
fn absolute_path() {
    let e = rejected_path("/etc/passwd");
    assert!(
        matches!(&e, ManifestError::AbsolutePath { path } if path == "/etc/passwd"),
        "{e:?}"
    );
}

#[test]
fn dot_dot_component() {
    let e = rejected_path("a/../../etc");
    assert!(
        matches!(&e, ManifestError::DotDotComponent { path } if path == "a/../../etc"),
        "{e:?}"
    );
}

#[test]
fn empty_component() {
    for p in ["a//b", "a/", "//a"] {
        let e = rejected_path(p);
        let ok = match &e {
            ManifestError::EmptyComponent { path } => path == p,
            // A leading '/' is reported as absolute first.
            ManifestError::AbsolutePath { path } => path == p && p.starts_with('/'),
            _ => false,
        };
        assert!(ok, "{p:?}: {e:?}");
    }
}

#[test]
fn empty_path() {
    let e = rejected_path("");
    assert!(matches!(e, ManifestError::EmptyPath { index: 0 }), "{e:?}");
}

#[test]
fn dot_component() {
    let e = rejected_path("a/./b");
    assert!(
        matches!(&e, ManifestError::DotComponent { path } if path == "a/./b"),
        "{e:?}"
    );
}

#[test]
fn nul_in_path() {
    let e = rejected_path("a\0b");
    assert!(
        matches!(&e, ManifestError::NulInPath { path } if path == "a\0b"),
        "{e:?}"
    );
}

#[test]
fn backslash_in_path() {
    let e = rejected_path("..\\windows");
    assert!(
        matches!(&e, ManifestError::BackslashInPath { path } if path == "..\\windows"),
        "{e:?}"
    );
}

#[test]
fn over_long_component() {
    let p = format!("a/{}", "x".repeat(256));
    let e = rejected_path(&p);
    assert!(
        matches!(&e, ManifestError::ComponentTooLong { path, len: 256, max: 255 } if *path == p),
        "{e:?}"
    );
    // 255 bytes is fine, multi-byte characters counted in bytes.
    let ok = manifest(vec![file(&"x".repeat(255), 1)]);
    assert!(decode(&ok.to_bytes(), &ManifestLimits::default()).is_ok());
    let e = rejected_path(&"é".repeat(128));
    assert!(
        matches!(e, ManifestError::ComponentTooLong { len: 256, .. }),
        "{e:?}"
    );
}

#[test]
fn over_long_path() {
    let p = vec!["d"; 2049].join("/");
    let e = rejected_path(&p);
    assert!(
        matches!(
            &e,
            ManifestError::PathTooLong {
                len: 4097,
                max: 4096,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn duplicate_path() {
    let e = rejected(&manifest(vec![file("a", 1), file("b", 1), file("b", 2)]));
    assert!(
        matches!(&e, ManifestError::Duplicate { path } if path == "b"),
        "{e:?}"
    );
    // A file and an empty directory of the same name are duplicates too.
    let e = rejected(&manifest(vec![dir("b"), file("b", 2)]));
    assert!(
        matches!(&e, ManifestError::Duplicate { path } if path == "b"),
        "{e:?}"
    );
}

#[test]
fn unsorted_paths() {
    let e = rejected(&manifest(vec![file("b", 1), file("a", 1)]));
    assert!(
        matches!(&e, ManifestError::Unsorted { previous, path } if previous == "b" && path == "a"),
        "{e:?}"
    );
    // Sorted by bytes, not by characters' "natural" order: "Z" < "a" < "é".
    let ok = manifest(vec![file("Z", 1), file("a", 1), file("é", 1)]);
    assert!(decode(&ok.to_bytes(), &ManifestLimits::default()).is_ok());
}

#[test]
fn ancestor_conflict() {
    let e = rejected(&manifest(vec![file("a", 1), file("a/b", 1)]));
    assert!(
        matches!(&e, ManifestError::AncestorConflict { ancestor, path } if ancestor == "a" && path == "a/b"),
        "{e:?}"
    );
    // In version 1 a `Dir` entry is an empty directory.
    let mut v1 = manifest(vec![dir("a"), file("a.txt", 1), file("a/b/c", 1)]);
    v1.version = 1;
    v1.root_mode = None;
    let e = rejected(&v1);
    assert!(
        matches!(&e, ManifestError::AncestorConflict { ancestor, path } if ancestor == "a" && path == "a/b/c"),
        "{e:?}"
    );
    // In version 2 it carries the mode of any directory, one with contents too.
    let v2 = manifest(vec![dir("a"), file("a.txt", 1), file("a/b/c", 1)]);
    assert!(decode(&v2.to_bytes(), &ManifestLimits::default()).is_ok());
    // A common prefix that is not a parent is fine.
    let ok = manifest(vec![file("ab", 1), file("ab.d/c", 1), file("abc/d", 1)]);
    assert!(decode(&ok.to_bytes(), &ManifestLimits::default()).is_ok());
}

#[test]
fn bad_mode() {
    let mut m = manifest(vec![file("a", 1)]);
    if let EntryKind::File { mode, .. } = &mut m.entries[0].kind {
        *mode = 0o4755;
    }
    let e = rejected(&m);
    assert!(
        matches!(&e, ManifestError::BadMode { path, mode: 0o4755 } if path == "a"),
        "{e:?}"
    );
    let m = manifest(vec![Entry {
        path: "tmp".into(),
        kind: EntryKind::Dir { mode: 0o41777 },
    }]);
    let e = rejected(&m);
    assert!(
        matches!(e, ManifestError::BadMode { mode: 0o41777, .. }),
        "{e:?}"
    );
}

#[test]
fn zero_chunk_size() {
    let mut m = manifest(vec![]);
    m.chunk_size = 0;
    let e = rejected(&m);
    assert!(
        matches!(e, ManifestError::ChunkSize { chunk_size: 0, .. }),
        "{e:?}"
    );
    // Even under limits that would allow it.
    let limits = ManifestLimits {
        min_chunk_size: 0,
        ..ManifestLimits::default()
    };
    let e = rejected_with(&m, &limits);
    assert!(
        matches!(e, ManifestError::ChunkSize { chunk_size: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn absurd_chunk_size() {
    for cs in [u32::MAX, (16 << 20) + 1, 4095] {
        let mut m = manifest(vec![]);
        m.chunk_size = cs;
        let e = rejected(&m);
        assert!(
            matches!(e, ManifestError::ChunkSize { chunk_size, min: 4096, max: 16_777_216 } if chunk_size == cs),
            "{e:?}"
        );
    }
}

#[test]
fn wrong_chunk_count() {
    let mut m = manifest(vec![file("a", 2 * u64::from(CS) + 1)]);
    if let EntryKind::File { chunks, .. } = &mut m.entries[0].kind {
        chunks.pop();
    }
    let e = rejected(&m);
    assert!(
        matches!(&e, ManifestError::ChunkCount { path, actual: 2, expected: 3, .. } if path == "a"),
        "{e:?}"
    );
    // An empty file has no chunks: not even an empty one.
    let mut m = manifest(vec![file("e", 0)]);
    if let EntryKind::File { chunks, .. } = &mut m.entries[0].kind {
        chunks.push(ChunkHash([0; 32]));
    }
    let e = rejected(&m);
    assert!(
        matches!(
            e,
            ManifestError::ChunkCount {
                actual: 1,
                expected: 0,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn too_many_entries() {
    let limits = ManifestLimits {
        max_entries: 3,
        ..ManifestLimits::default()
    };
    let m = manifest(vec![file("a", 1), file("b", 1), file("c", 1), file("d", 1)]);
    let e = rejected_with(&m, &limits);
    assert!(
        matches!(e, ManifestError::TooManyEntries { count: 4, max: 3 }),
        "{e:?}"
    );
}

#[test]
fn too_many_chunks() {
    let limits = ManifestLimits {
        max_chunks: 4,
        ..ManifestLimits::default()
    };
    let m = manifest(vec![file("a", 3 * u64::from(CS)), file("b", 2)]);
    assert!(decode(&m.to_bytes(), &limits).is_ok());
    let m = manifest(vec![
        file("a", 3 * u64::from(CS)),
        file("b", u64::from(CS) + 1),
    ]);
    let e = rejected_with(&m, &limits);
    assert!(
        matches!(e, ManifestError::TooManyChunks { count: 5, max: 4 }),
        "{e:?}"
    );
}

fn sized(path: &str, size: u64) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::File {
            size,
            mode: 0o644,
            chunks: vec![],
        },
    }
}

#[test]
fn total_size_over_cap() {
    let e = rejected(&manifest(vec![sized("a", 1 << 40), sized("b", 16 << 40)]));
    assert!(
        matches!(&e, ManifestError::TotalTooLarge { path, max } if path == "b" && *max == 16 << 40),
        "{e:?}"
    );
    let e = rejected(&manifest(vec![sized("huge", u64::MAX)]));
    assert!(
        matches!(&e, ManifestError::TotalTooLarge { path, .. } if path == "huge"),
        "{e:?}"
    );
}

#[test]
fn total_size_overflow() {
    // No cap at all: the sum itself must not wrap around.
    let limits = ManifestLimits {
        max_total_bytes: u64::MAX,
        ..ManifestLimits::default()
    };
    let half = u64::MAX / 2 + 1;
    let e = rejected_with(&manifest(vec![sized("a", half), sized("b", half)]), &limits);
    assert!(
        matches!(&e, ManifestError::TotalTooLarge { path, max: u64::MAX } if path == "b"),
        "{e:?}"
    );
}

#[test]
fn wrong_version_and_bad_name() {
    let mut m = manifest(vec![]);
    m.version = 3;
    let e = rejected(&m);
    assert!(
        matches!(
            e,
            ManifestError::Version {
                found: 3,
                supported: 2
            }
        ),
        "{e:?}"
    );
    for name in ["", ".", "..", "a/b", "x\0", "a\\b"] {
        let mut m = manifest(vec![]);
        m.name = name.into();
        let e = rejected(&m);
        assert!(
            matches!(&e, ManifestError::InvalidName { name: n, .. } if n == name),
            "{name:?}: {e:?}"
        );
    }
}

/// A manifest as a malicious peer might write it, with kinds the real one cannot express.
#[derive(Serialize)]
struct FakeManifest {
    version: u32,
    name: String,
    chunk_size: u32,
    entries: Vec<FakeEntry>,
}

#[derive(Serialize)]
struct FakeEntry {
    path: String,
    kind: FakeKind,
}

#[derive(Serialize)]
enum FakeKind {
    Symlink { target: String },
    Device { major: u32, minor: u32 },
    Fifo,
}

#[test]
fn symlink_and_special_kinds_cannot_be_expressed() {
    let limits = ManifestLimits::default();
    let cases = [
        (
            FakeKind::Symlink {
                target: "/etc/shadow".into(),
            },
            "Symlink",
        ),
        (FakeKind::Device { major: 8, minor: 0 }, "Device"),
        (FakeKind::Fifo, "Fifo"),
    ];
    for (kind, name) in cases {
        let fake = FakeManifest {
            version: MANIFEST_VERSION,
            name: "snap".into(),
            chunk_size: CS,
            entries: vec![FakeEntry {
                path: "link".into(),
                kind,
            }],
        };
        let bytes = rmp_serde::to_vec_named(&fake).unwrap();
        let e = decode(&bytes, &limits);
        assert!(
            matches!(&e, Err(ManifestError::UnsupportedKind { kind }) if kind == name),
            "{name}: {e:?}"
        );
        assert!(e.unwrap_err().to_string().contains(name));
    }

    // The same by byte surgery on a real encoding: {"Dir": ..} becomes {"Sym": ..}.
    let bytes = manifest(vec![dir("d")]).to_bytes();
    let at = bytes.windows(4).position(|w| w == b"\xa3Dir").unwrap();
    let mut crafted = bytes.clone();
    crafted[at + 1..at + 4].copy_from_slice(b"Sym");
    let e = decode(&crafted, &limits);
    assert!(
        matches!(&e, Err(ManifestError::UnsupportedKind { kind }) if kind == "Sym"),
        "{e:?}"
    );
}

#[test]
fn deeply_nested_msgpack() {
    let limits = ManifestLimits::default();
    // 1000 nested one-element arrays around nil.
    let mut bytes = vec![0x91; 1000];
    bytes.push(0xc0);
    let e = decode(&bytes, &limits);
    assert!(
        matches!(
            e,
            Err(ManifestError::Malformed(DecodeError::TooDeep { max: 16 }))
        ),
        "{e:?}"
    );
    // The same nesting hidden in an unknown field of an otherwise valid manifest, which serde
    // alone would skip (recursively).
    let bytes = manifest(vec![file("a", 1)]).to_bytes();
    assert_eq!(bytes[0], 0x85, "a map of five fields");
    let mut crafted = vec![0x86];
    crafted.extend_from_slice(&bytes[1..]);
    crafted.extend_from_slice(b"\xa1x");
    crafted.extend_from_slice(&[0x91; 100]);
    crafted.push(0xc0);
    let e = decode(&crafted, &limits);
    assert!(
        matches!(
            e,
            Err(ManifestError::Malformed(DecodeError::TooDeep { .. }))
        ),
        "{e:?}"
    );
}

#[test]
fn non_canonical_encodings_are_refused() {
    let limits = ManifestLimits::default();
    let bytes = manifest(vec![file("a", 1)]).to_bytes();
    // An extra, unknown field: a second encoding (and id) for the same snapshot.
    let mut crafted = vec![0x86];
    crafted.extend_from_slice(&bytes[1..]);
    crafted.extend_from_slice(b"\xa1x\x00");
    let e = decode(&crafted, &limits);
    assert!(matches!(e, Err(ManifestError::NonCanonical)), "{e:?}");
    // Trailing bytes after the value.
    let mut crafted = bytes.clone();
    crafted.push(0xc0);
    let e = decode(&crafted, &limits);
    assert!(matches!(e, Err(ManifestError::Malformed(_))), "{e:?}");
}
