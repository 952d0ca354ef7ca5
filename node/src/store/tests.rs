//! Unit tests of the store's internals; behaviour tests live in `node/tests/store_*.rs`.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::path::Path;

use super::fsx::{self, Access, Follow};
use super::journal::Journal;
use super::*;

#[test]
fn store_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Workspace>();
    check::<Source>();
    check::<StoreError>();
}

#[test]
fn check_space_refuses_when_short() {
    let p = Path::new("/x");
    assert!(check_space(p, 10, 10).is_ok());
    assert!(check_space(p, 0, 0).is_ok());
    match check_space(p, 11, 10) {
        Err(StoreError::NoSpace {
            needed, available, ..
        }) => assert_eq!((needed, available), (11, 10)),
        other => panic!("expected NoSpace, got {other:?}"),
    }
}

#[test]
fn available_space_looks_at_the_nearest_existing_ancestor() {
    let tmp = tempfile::tempdir().unwrap();
    let avail = available_space(&tmp.path().join("not/yet/there")).unwrap();
    assert!(avail > 0);
}

#[test]
fn split_refuses_components_that_could_escape() {
    let root = Path::new("/r");
    assert_eq!(fsx::split(root, "a/b.c/d").unwrap(), vec!["a", "b.c", "d"]);
    for bad in [
        "",
        "/etc/passwd",
        "a/../b",
        "..",
        ".",
        "a/./b",
        "a//b",
        "a/",
        "a\0b",
    ] {
        assert!(
            matches!(fsx::split(root, bad), Err(StoreError::Unsafe { .. })),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn journal_drops_torn_tail_out_of_range_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("held");
    let mut raw = Vec::new();
    for i in [3u32, 1, 3, 99, 0] {
        raw.extend_from_slice(&i.to_le_bytes());
    }
    raw.extend_from_slice(&[7, 7, 7]);
    fs::write(&path, &raw).unwrap();
    let (mut j, held) = Journal::open(&path, 10).unwrap();
    assert_eq!(held.iter_ones().collect::<Vec<_>>(), vec![0, 1, 3]);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        20,
        "torn record truncated"
    );
    j.append(&[5, 6]).unwrap();
    drop(j);
    let (_, held) = Journal::open(&path, 10).unwrap();
    assert_eq!(held.iter_ones().collect::<Vec<_>>(), vec![0, 1, 3, 5, 6]);
}

#[test]
fn journal_rewrite_keeps_exactly_the_given_set() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("held");
    let (mut j, _) = Journal::open(&path, 100).unwrap();
    j.append(&[1, 2, 3, 2]).unwrap();
    let mut keep = crate::bitfield::Bitfield::new(100);
    keep.set(2);
    keep.set(77);
    j.rewrite(&keep).unwrap();
    j.append(&[9]).unwrap();
    drop(j);
    let (_, held) = Journal::open(&path, 100).unwrap();
    assert_eq!(held.iter_ones().collect::<Vec<_>>(), vec![2, 9, 77]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 12);
}

#[test]
fn journal_loads_more_than_one_read_block() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("held");
    let n = 40_000u32; // 160 000 bytes: several 64 KiB blocks.
    let mut f = fs::File::create(&path).unwrap();
    for i in (0..n).rev() {
        f.write_all(&i.to_le_bytes()).unwrap();
    }
    drop(f);
    let (_, held) = Journal::open(&path, n).unwrap();
    assert!(held.is_complete());
}

#[test]
fn special_files_and_symlinks_are_not_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let root_path = tmp.path();
    fs::create_dir(root_path.join("d")).unwrap();
    fs::write(root_path.join("d/f"), b"x").unwrap();
    std::os::unix::fs::symlink("f", root_path.join("d/link")).unwrap();
    std::os::unix::fs::symlink("d", root_path.join("dlink")).unwrap();
    nix::unistd::mkfifo(
        &root_path.join("d/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let root = fsx::open_dir_path(root_path, Follow::No).unwrap();
    assert!(fsx::open_file_at(&root, root_path, "d/f", Access::Write).is_ok());
    for bad in ["d/link", "dlink/f", "d/fifo", "d/f/g", "d"] {
        let r = fsx::open_file_at(&root, root_path, bad, Access::Read);
        assert!(matches!(r, Err(StoreError::Unsafe { .. })), "{bad}: {r:?}");
    }
    assert!(fsx::is_not_found(
        &fsx::open_file_at(&root, root_path, "d/missing", Access::Read).unwrap_err()
    ));
}

#[test]
fn stale_temp_files_of_other_processes_are_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mine = fsx::temp_name("manifest");
    fs::write(d.join(&mine), b"").unwrap();
    fs::write(d.join(".manifest.tmp.1.0"), b"").unwrap();
    fs::write(d.join("manifest"), b"").unwrap();
    fs::write(d.join(".hidden"), b"").unwrap();
    fsx::remove_stale_temps(d);
    let mut left: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut want = vec![".hidden".to_owned(), "manifest".to_owned(), mine];
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn write_atomic_replaces_and_leaves_no_temp() {
    let tmp = tempfile::tempdir().unwrap();
    fsx::write_atomic(tmp.path(), "complete", b"one").unwrap();
    fsx::write_atomic(tmp.path(), "complete", b"two").unwrap();
    assert_eq!(fs::read(tmp.path().join("complete")).unwrap(), b"two");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn a_filesystem_refusing_o_direct_gets_buffered_writes() {
    use crate::manifest::{Layout, Manifest, ManifestLimits, manifest_id};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    const CS: u32 = 4096;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("ds");
    fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..4 * CS + 9).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("f"), &data).unwrap();
    let manifest = Manifest::from_dir(&src, CS, &ManifestLimits::default()).unwrap();
    let bytes = manifest.to_bytes();
    let id = manifest_id(&bytes);
    let layout = Arc::new(Layout::new(&manifest));
    let ws = Workspace::create(
        &tmp.path().join("node"),
        id,
        &bytes,
        Arc::new(manifest),
        Arc::clone(&layout),
    )
    .unwrap();
    ws.refuse_direct.store(true, Ordering::Relaxed);
    let pool = BufPool::new(1 << 20);
    for i in 0..layout.chunk_count() {
        let c = layout.chunk(i).unwrap();
        let (at, len) = (c.offset as usize, c.len as usize);
        let mut buf = pool.take(len);
        buf.as_mut_slice().copy_from_slice(&data[at..at + len]);
        ws.write_run(i, buf.as_slice()).unwrap();
    }
    assert!(
        ws.no_direct.load(Ordering::Relaxed),
        "the refusal is remembered"
    );
    ws.commit().unwrap();
    assert!(ws.is_complete());
    for i in 0..layout.chunk_count() {
        let c = layout.chunk(i).unwrap();
        let (at, len) = (c.offset as usize, c.len as usize);
        assert_eq!(ws.read_chunk(i).unwrap(), &data[at..at + len]);
    }
}
