//! The origin's source, origin persistence, and listing what a data dir holds.
#![allow(clippy::unwrap_used)]

#[path = "store_fixture.rs"]
mod fixture;

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use fixture::{Built, chunk, sample_tree, snapshot};
use swarmcast_node::store::{
    Source, StoreError, Stored, StoredKind, Workspace, list, read_manifest, save_origin,
};
use tempfile::TempDir;

fn source(b: &Built) -> Source {
    Source::new(
        b.source.clone(),
        Arc::clone(&b.manifest),
        Arc::clone(&b.layout),
    )
}

fn first_chunk_of(b: &Built, path: &str) -> u32 {
    let entry = b
        .manifest
        .entries
        .iter()
        .position(|e| e.path == path)
        .unwrap() as u32;
    b.layout
        .chunks
        .iter()
        .position(|c| c.entry == entry)
        .unwrap() as u32
}

#[track_caller]
fn assert_changed(r: Result<Vec<u8>, StoreError>, b: &Built, rel: &str, i: u32) {
    match r {
        Err(StoreError::SourceChanged { path, index }) => {
            assert_eq!(path, b.source.join(rel));
            assert_eq!(index, i);
        }
        other => panic!("expected SourceChanged for {rel} chunk {i}, got {other:?}"),
    }
}

#[test]
fn source_serves_every_chunk_verified() {
    let tmp = TempDir::new().unwrap();
    let b = snapshot(&sample_tree(tmp.path(), "src", "s"));
    let s = source(&b);
    for i in 0..b.layout.chunk_count() {
        assert_eq!(s.read_chunk(i).unwrap(), chunk(&b, i));
    }
    let n = b.layout.chunk_count();
    assert!(matches!(
        s.read_chunk(n),
        Err(StoreError::NoSuchChunk { .. })
    ));
}

#[test]
fn a_changed_source_is_source_changed_naming_path_and_index() {
    let tmp = TempDir::new().unwrap();
    let b = snapshot(&sample_tree(tmp.path(), "src", "t"));
    let s = source(&b);

    // Modified in place, after a first read cached the handle.
    let big = first_chunk_of(&b, "big.bin");
    s.read_chunk(big + 2).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(b.source.join("big.bin"))
        .unwrap()
        .write_all_at(b"!", 2 * 4096 + 5)
        .unwrap();
    assert_changed(s.read_chunk(big + 2), &b, "big.bin", big + 2);
    assert_eq!(
        s.read_chunk(big).unwrap(),
        chunk(&b, big),
        "other chunks still serve"
    );

    // Truncated.
    let deep = first_chunk_of(&b, "a/b/c/deep.bin");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(b.source.join("a/b/c/deep.bin"))
        .unwrap();
    f.set_len(3 * 4096).unwrap();
    assert_changed(s.read_chunk(deep + 3), &b, "a/b/c/deep.bin", deep + 3);

    // Deleted.
    let run = first_chunk_of(&b, "run.sh");
    fs::remove_file(b.source.join("run.sh")).unwrap();
    assert_changed(s.read_chunk(run), &b, "run.sh", run);

    // Replaced by a symlink to an identical copy elsewhere: not followed.
    let x = first_chunk_of(&b, "a/x.txt");
    let copy = tmp.path().join("copy");
    fs::copy(b.source.join("a/x.txt"), &copy).unwrap();
    fs::remove_file(b.source.join("a/x.txt")).unwrap();
    std::os::unix::fs::symlink(&copy, b.source.join("a/x.txt")).unwrap();
    assert_changed(s.read_chunk(x), &b, "a/x.txt", x);
}

#[test]
fn a_saved_origin_resumes_and_is_listed_beside_receivers() {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("node");
    let sent = snapshot(&sample_tree(&tmp.path().join("o"), "sent", "u"));
    let partial = snapshot(&sample_tree(&tmp.path().join("p"), "partial", "v"));
    let done = snapshot(&sample_tree(&tmp.path().join("d"), "done", "w"));

    save_origin(&data_dir, sent.id, &sent.bytes, &sent.source).unwrap();
    // Saving twice is fine.
    save_origin(&data_dir, sent.id, &sent.bytes, &sent.source).unwrap();
    let _p = Workspace::create(
        &data_dir,
        partial.id,
        &partial.bytes,
        partial.manifest.clone(),
        partial.layout.clone(),
    )
    .unwrap();
    let d = Workspace::create(
        &data_dir,
        done.id,
        &done.bytes,
        done.manifest.clone(),
        done.layout.clone(),
    )
    .unwrap();
    for i in 0..done.layout.chunk_count() {
        d.write_chunk(i, &chunk(&done, i)).unwrap();
    }
    d.commit().unwrap();
    d.finalize().unwrap();
    // Junk is ignored.
    fs::create_dir_all(data_dir.join("broadcasts").join("not-an-id")).unwrap();
    fs::create_dir_all(data_dir.join("broadcasts").join("AB".repeat(32))).unwrap();
    fs::write(data_dir.join("broadcasts").join("ab".repeat(32)), b"").unwrap();
    fs::create_dir_all(data_dir.join("broadcasts").join("cd".repeat(32))).unwrap();

    let mut want = vec![
        Stored {
            id: sent.id,
            kind: StoredKind::Origin {
                source: sent.source.clone(),
            },
        },
        Stored {
            id: partial.id,
            kind: StoredKind::Receiver { complete: false },
        },
        Stored {
            id: done.id,
            kind: StoredKind::Receiver { complete: true },
        },
    ];
    want.sort_by_key(|s| s.id);
    assert_eq!(list(&data_dir).unwrap(), want);
    assert!(list(&tmp.path().join("nothing")).unwrap().is_empty());

    // The origin resumes from the stored manifest and path.
    let s = Source::resume(&data_dir, sent.id).unwrap().unwrap();
    assert_eq!(s.dir(), sent.source);
    assert_eq!(**s.manifest(), *sent.manifest);
    assert_eq!(s.read_chunk(0).unwrap(), chunk(&sent, 0));
    assert!(Source::resume(&data_dir, partial.id).unwrap().is_none());
    assert_eq!(
        read_manifest(&data_dir, sent.id).unwrap().unwrap(),
        sent.bytes
    );
    // An origin's directory is not a receiver workspace.
    assert!(matches!(
        Workspace::open(&data_dir, sent.id),
        Err(StoreError::IsOrigin { .. })
    ));
    // A manifest that does not hash to the id is refused.
    assert!(matches!(
        save_origin(&data_dir, partial.id, &sent.bytes, &sent.source),
        Err(StoreError::ManifestMismatch { .. })
    ));
}
