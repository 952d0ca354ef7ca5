//! Shared helpers of the `store_*` tests (included with `#[path]`): build source trees, snapshot
//! them into manifests with an independent walker, and compare trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarmcast_node::manifest::{
    ChunkHash, Entry, EntryKind, Layout, MANIFEST_VERSION, Manifest, ManifestLimits, manifest_id,
};
use swarmcast_proto::BroadcastId;

/// Chunk size of every test broadcast.
pub const CS: u32 = 4096;

/// A snapshot of a source directory.
#[derive(Clone, Debug)]
pub struct Built {
    pub source: PathBuf,
    pub bytes: Vec<u8>,
    pub manifest: Arc<Manifest>,
    pub layout: Arc<Layout>,
    pub id: BroadcastId,
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

#[track_caller]
pub fn write_file(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    fs::write(&path, data).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[track_caller]
pub fn make_dir(root: &Path, rel: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(&path).expect("mkdir");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The standard tree: executable, empty file, empty dirs, nested dirs, unicode names,
/// read-only file, files of exact and inexact chunk multiples. `seed` varies the contents.
pub fn sample_tree(parent: &Path, name: &str, seed: &str) -> PathBuf {
    let root = parent.join(name);
    fs::create_dir_all(&root).expect("mkdir");
    let cs = CS as usize;
    write_file(
        &root,
        "run.sh",
        &bytes(&format!("{seed}run"), 10_000),
        0o755,
    );
    write_file(&root, "empty.txt", b"", 0o644);
    make_dir(&root, "emptydir", 0o750);
    write_file(
        &root,
        "a/b/c/deep.bin",
        &bytes(&format!("{seed}deep"), 3 * cs + 17),
        0o640,
    );
    write_file(&root, "a/x.txt", &bytes(&format!("{seed}x"), 100), 0o444);
    write_file(
        &root,
        "ünïcödé/日本語 file.txt",
        &bytes(&format!("{seed}uni"), 5000),
        0o600,
    );
    write_file(
        &root,
        "big.bin",
        &bytes(&format!("{seed}big"), 5 * cs),
        0o644,
    );
    write_file(&root, "nested/f", b"1", 0o644);
    make_dir(&root, "nested/emptyinner", 0o700);
    // Directories with contents keep their modes too (manifest version 2), the root's included.
    make_dir(&root, "a", 0o700);
    make_dir(&root, "a/b", 0o750);
    make_dir(&root, "a/b/c", 0o751);
    make_dir(&root, "", 0o710);
    root
}

/// Snapshot `source` with chunk size [`CS`] (an independent walker, not `Manifest::from_dir`).
#[track_caller]
pub fn snapshot(source: &Path) -> Built {
    let mut entries = Vec::new();
    walk(source, "", &mut entries);
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let name = source
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name")
        .to_owned();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        name,
        chunk_size: CS,
        root_mode: Some(fs::metadata(source).expect("stat").mode() & 0o777),
        entries,
        audience: None,
        priority: swarmcast_proto::Priority::Normal,
    };
    let bytes = manifest.to_bytes();
    let id = manifest_id(&bytes);
    // What `Workspace::open` will decode must pass the real decoder.
    let decoded = Manifest::decode(&bytes, &id, &ManifestLimits::for_test()).expect("valid");
    assert_eq!(decoded, manifest);
    let layout = Arc::new(Layout::new(&manifest));
    Built {
        source: source.to_owned(),
        bytes,
        manifest: Arc::new(manifest),
        layout,
        id,
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<Entry>) {
    let dir = if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    };
    let mut children: Vec<_> = fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    children.sort_by_key(|e| e.file_name());
    if !rel.is_empty() {
        let mode = fs::symlink_metadata(&dir).expect("stat").mode() & 0o777;
        out.push(Entry {
            path: rel.to_owned(),
            kind: EntryKind::Dir { mode },
        });
    }
    for child in children {
        let name = child.file_name().into_string().expect("utf-8");
        let child_rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(child.path()).expect("stat");
        if meta.is_dir() {
            walk(root, &child_rel, out);
        } else {
            assert!(meta.is_file(), "only files and dirs in test trees");
            out.push(Entry {
                path: child_rel,
                kind: EntryKind::File {
                    size: meta.len(),
                    mode: meta.mode() & 0o777,
                    chunks: hash_file(&child.path()),
                },
            });
        }
    }
}

fn hash_file(path: &Path) -> Vec<ChunkHash> {
    let mut f = fs::File::open(path).expect("open");
    let mut buf = vec![0u8; CS as usize];
    let mut out = Vec::new();
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = f.read(&mut buf[n..]).expect("read");
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        out.push(ChunkHash(*blake3::hash(&buf[..n]).as_bytes()));
        if n < buf.len() {
            break;
        }
    }
    out
}

/// The bytes of chunk `index`, read from the source directory.
pub fn chunk(b: &Built, index: u32) -> Vec<u8> {
    let info = b.layout.chunks[index as usize];
    let path = b.source.join(&b.manifest.entries[info.entry as usize].path);
    let data = fs::read(path).expect("read source");
    let start = info.offset as usize;
    data[start..start + info.len as usize].to_vec()
}

/// What a tree holds: path -> (kind, mode, contents), every directory's mode included (the
/// root's under "").
pub fn tree(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    fn go(root: &Path, rel: &str, out: &mut BTreeMap<String, (char, u32, Vec<u8>)>) {
        let dir = if rel.is_empty() {
            root.to_owned()
        } else {
            root.join(rel)
        };
        let children: Vec<_> = fs::read_dir(&dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        // Every directory's mode, the root's (under "") too.
        let mode = fs::metadata(&dir).expect("stat").mode() & 0o777;
        out.insert(rel.to_owned(), ('d', mode, Vec::new()));
        for child in children {
            let name = child.file_name().into_string().expect("utf-8");
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(child.path()).expect("stat");
            if meta.is_dir() {
                go(root, &child_rel, out);
            } else if meta.is_file() {
                let data = fs::read(child.path()).expect("read");
                out.insert(child_rel, ('f', meta.mode() & 0o777, data));
            } else {
                out.insert(child_rel, ('?', 0, Vec::new()));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, "", &mut out);
    out
}
