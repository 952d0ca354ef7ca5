//! Receiver workspaces: durability, crash recovery, verification, symlink safety, publishing.
#![allow(clippy::unwrap_used)]

#[path = "store_fixture.rs"]
mod fixture;

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fixture::{Built, CS, bytes, chunk, sample_tree, snapshot, tree, write_file};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use swarmcast_node::manifest::Layout;
use swarmcast_node::store::{BufPool, StoreError, Workspace};
use tempfile::TempDir;

/// A data dir and a source tree built in one temp dir.
fn setup(name: &str, seed: &str) -> (TempDir, std::path::PathBuf, Built) {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("node");
    let src = sample_tree(&tmp.path().join("src"), name, seed);
    let built = snapshot(&src);
    (tmp, data_dir, built)
}

fn create(data_dir: &Path, b: &Built) -> Workspace {
    Workspace::create(
        data_dir,
        b.id,
        &b.bytes,
        Arc::clone(&b.manifest),
        Arc::clone(&b.layout),
    )
    .unwrap()
}

fn write_all(ws: &Workspace, b: &Built, order: &[u32]) {
    for &i in order {
        ws.write_chunk(i, &chunk(b, i)).unwrap();
    }
}

/// Index of the first chunk of the entry at `path`.
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

#[test]
fn random_order_round_trip_preserves_bytes_and_modes() {
    let (_tmp, data_dir, b) = setup("dataset", "a");
    let ws = create(&data_dir, &b);
    assert_eq!(ws.held().count_ones(), 0);
    let seed = 0x5eed_u64;
    let mut order: Vec<u32> = (0..b.layout.chunk_count()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    // Commit in a few batches along the way, as the shell does.
    for (n, i) in order.iter().enumerate() {
        ws.write_chunk(*i, &chunk(&b, *i)).unwrap();
        if n % 5 == 4 {
            ws.commit().unwrap();
        }
    }
    ws.commit().unwrap();
    assert!(ws.is_complete(), "seed {seed}");
    let published = ws.finalize().unwrap();
    assert_eq!(published, data_dir.join("received").join("dataset"));
    let link = fs::read_link(&published).unwrap();
    assert_eq!(
        link,
        Path::new("..")
            .join("broadcasts")
            .join(b.id.to_hex())
            .join("data")
    );
    assert_eq!(tree(&published), tree(&b.source), "seed {seed}");
    assert!(
        data_dir
            .join("broadcasts")
            .join(b.id.to_hex())
            .join("complete")
            .exists()
    );
    // Every chunk can be served after finalizing, even from a read-only file.
    for i in 0..b.layout.chunk_count() {
        assert_eq!(ws.read_chunk(i).unwrap(), chunk(&b, i));
    }
}

#[test]
fn uncommitted_chunks_are_lost_on_crash_and_torn_journal_is_tolerated() {
    let (_tmp, data_dir, b) = setup("crash", "b");
    let (a, c) = (1, 4);
    {
        let ws = create(&data_dir, &b);
        ws.write_chunk(a, &chunk(&b, a)).unwrap();
        assert!(!ws.is_held(a), "held before commit");
        // Servable before it is durable: verified and in the page cache.
        assert!(ws.is_written(a));
        assert_eq!(ws.read_chunk(a).unwrap(), chunk(&b, a));
        assert!(matches!(ws.read_chunk(c), Err(StoreError::NotHeld { index }) if index == c));
        assert_eq!(ws.commit().unwrap(), vec![a]);
        ws.write_chunk(c, &chunk(&b, c)).unwrap();
        // Dropped without commit: a SIGKILL.
    }
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert_eq!(ws.held().iter_ones().collect::<Vec<_>>(), vec![a]);
    assert_eq!(ws.read_chunk(a).unwrap(), chunk(&b, a));
    // What was written but not durable is neither held nor served after the crash.
    assert!(!ws.is_written(c));
    assert!(matches!(ws.read_chunk(c), Err(StoreError::NotHeld { index }) if index == c));
    drop(ws);

    // A torn trailing record (a crash mid-append).
    let journal = data_dir.join("broadcasts").join(b.id.to_hex()).join("held");
    fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(&[0xff, 0x07])
        .unwrap();
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert_eq!(ws.held().iter_ones().collect::<Vec<_>>(), vec![a]);
    assert_eq!(
        fs::metadata(&journal).unwrap().len(),
        4,
        "torn tail truncated"
    );
    // Appends after the truncation stay aligned.
    ws.write_chunk(c, &chunk(&b, c)).unwrap();
    assert_eq!(ws.commit().unwrap(), vec![c]);
    drop(ws);
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert_eq!(ws.held().iter_ones().collect::<Vec<_>>(), vec![a, c]);
}

#[test]
fn bad_chunks_are_rejected_and_not_written() {
    let (_tmp, data_dir, b) = setup("bad", "c");
    let ws = create(&data_dir, &b);
    let i = first_chunk_of(&b, "big.bin");
    let good = chunk(&b, i);
    let mut flipped = good.clone();
    flipped[100] ^= 1;
    assert!(matches!(
        ws.write_chunk(i, &flipped),
        Err(StoreError::HashMismatch { index }) if index == i
    ));
    assert!(matches!(
        ws.write_chunk(i, &good[..good.len() - 1]),
        Err(StoreError::WrongLength { index, expected, got })
            if index == i && expected == CS && got == good.len() - 1
    ));
    let n = b.layout.chunk_count();
    assert!(matches!(
        ws.write_chunk(n, &good),
        Err(StoreError::NoSuchChunk { index, count }) if index == n && count == n
    ));
    assert_eq!(ws.commit().unwrap(), Vec::<u32>::new());
    let on_disk = fs::read(ws.data_path().join("big.bin")).unwrap();
    assert_eq!(on_disk.len(), 5 * CS as usize, "sparse file at full size");
    assert!(on_disk.iter().all(|&x| x == 0), "nothing written");
}

#[test]
fn planted_directory_symlink_is_not_followed() {
    let (tmp, data_dir, b) = setup("plant", "d");
    let ws = create(&data_dir, &b);
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("b/c")).unwrap();
    fs::write(outside.join("b/c/deep.bin"), b"precious").unwrap();
    // Replace data/a by a symlink to a directory outside the workspace.
    fs::remove_dir_all(ws.data_path().join("a")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.data_path().join("a")).unwrap();

    let i = first_chunk_of(&b, "a/b/c/deep.bin");
    let err = ws.write_chunk(i, &chunk(&b, i)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unsafe { path, .. } if path == &ws.data_path().join("a")),
        "{err:?}"
    );
    assert_eq!(fs::read(outside.join("b/c/deep.bin")).unwrap(), b"precious");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing created outside"
    );
    // Resuming does not follow it either.
    drop(ws);
    let err = Workspace::open(&data_dir, b.id).unwrap_err();
    assert!(matches!(err, StoreError::Unsafe { .. }), "{err:?}");
    assert_eq!(fs::read(outside.join("b/c/deep.bin")).unwrap(), b"precious");
}

#[test]
fn planted_file_symlink_is_not_followed() {
    let (tmp, data_dir, b) = setup("plantfile", "e");
    let ws = create(&data_dir, &b);
    let target = tmp.path().join("victim");
    fs::write(&target, b"precious").unwrap();
    let file = ws.data_path().join("big.bin");
    fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();

    let i = first_chunk_of(&b, "big.bin");
    let err = ws.write_chunk(i, &chunk(&b, i)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unsafe { path, .. } if path == &file),
        "{err:?}"
    );
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    // Resuming neither truncates nor extends the target through the link.
    drop(ws);
    assert!(matches!(
        Workspace::open(&data_dir, b.id),
        Err(StoreError::Unsafe { .. })
    ));
    assert_eq!(fs::read(&target).unwrap(), b"precious");
}

#[test]
fn symlink_swapped_in_after_open_never_redirects_writes() {
    let (tmp, data_dir, b) = setup("swap", "f");
    let ws = create(&data_dir, &b);
    let i = first_chunk_of(&b, "big.bin");
    ws.write_chunk(i, &chunk(&b, i)).unwrap();
    // Swap the file for a symlink: a cached handle keeps pointing at the original inode.
    let target = tmp.path().join("victim");
    fs::write(&target, b"precious").unwrap();
    let file = ws.data_path().join("big.bin");
    fs::rename(&file, tmp.path().join("moved-away")).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let _ = ws.write_chunk(i + 1, &chunk(&b, i + 1));
    assert_eq!(fs::read(&target).unwrap(), b"precious");
}

#[test]
fn finalize_is_idempotent_and_a_newer_broadcast_replaces_the_link() {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("node");
    let old = snapshot(&sample_tree(&tmp.path().join("v1"), "weights", "old"));
    let new = snapshot(&sample_tree(&tmp.path().join("v2"), "weights", "new"));
    assert_ne!(old.id, new.id);

    let ws = create(&data_dir, &old);
    write_all(
        &ws,
        &old,
        &(0..old.layout.chunk_count()).collect::<Vec<_>>(),
    );
    ws.commit().unwrap();
    let p1 = ws.finalize().unwrap();
    let p2 = ws.finalize().unwrap();
    assert_eq!(p1, p2);
    drop(ws);
    // After a restart: already finalized, re-publishes.
    let ws = Workspace::open(&data_dir, old.id).unwrap().unwrap();
    assert!(ws.is_finalized());
    assert_eq!(ws.finalize().unwrap(), p1);
    assert_eq!(tree(&p1), tree(&old.source));

    let ws2 = create(&data_dir, &new);
    write_all(
        &ws2,
        &new,
        &(0..new.layout.chunk_count()).collect::<Vec<_>>(),
    );
    ws2.commit().unwrap();
    assert_eq!(ws2.finalize().unwrap(), p1);
    assert_eq!(tree(&p1), tree(&new.source));
    assert!(
        fs::read_link(&p1)
            .unwrap()
            .ends_with(format!("{}/data", new.id.to_hex()))
    );
    // The old broadcast is still on disk.
    assert_eq!(tree(ws.data_path()), tree(&old.source));
    // No temporary links left behind.
    let names: Vec<_> = fs::read_dir(data_dir.join("received"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["weights"]);
}

#[test]
fn finalize_refuses_to_replace_a_real_directory_or_an_incomplete_broadcast() {
    let (_tmp, data_dir, b) = setup("mine", "g");
    let ws = create(&data_dir, &b);
    assert!(matches!(
        ws.finalize(),
        Err(StoreError::Incomplete { missing, .. }) if missing == b.layout.chunk_count()
    ));
    write_all(&ws, &b, &(0..b.layout.chunk_count()).collect::<Vec<_>>());
    assert!(
        matches!(ws.finalize(), Err(StoreError::Incomplete { .. })),
        "pending chunks are not held"
    );
    ws.commit().unwrap();
    let user = data_dir.join("received").join("mine");
    fs::create_dir_all(&user).unwrap();
    fs::write(user.join("notes.txt"), b"user data").unwrap();
    let err = ws.finalize().unwrap_err();
    assert!(
        matches!(&err, StoreError::NotASymlink { path } if path == &user),
        "{err:?}"
    );
    assert_eq!(fs::read(user.join("notes.txt")).unwrap(), b"user data");
    // A regular file is not replaced either.
    fs::remove_dir_all(&user).unwrap();
    fs::write(&user, b"a file").unwrap();
    assert!(matches!(ws.finalize(), Err(StoreError::NotASymlink { .. })));
    assert_eq!(fs::read(&user).unwrap(), b"a file");
}

#[test]
fn create_refuses_when_free_space_is_insufficient() {
    let (_tmp, data_dir, b) = setup("huge", "h");
    let mut layout = Layout::clone(&b.layout);
    layout.total_bytes = u64::MAX / 2;
    let err = Workspace::create(
        &data_dir,
        b.id,
        &b.bytes,
        Arc::clone(&b.manifest),
        Arc::new(layout),
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::NoSpace { needed, .. } if needed == u64::MAX / 2),
        "{err:?}"
    );
    assert!(!data_dir.join("broadcasts").join(b.id.to_hex()).exists());
}

#[test]
fn create_is_idempotent_with_open_and_checks_the_id() {
    let (_tmp, data_dir, b) = setup("again", "i");
    assert!(Workspace::open(&data_dir, b.id).unwrap().is_none());
    let ws = create(&data_dir, &b);
    ws.write_chunk(0, &chunk(&b, 0)).unwrap();
    ws.commit().unwrap();
    drop(ws);
    let ws = create(&data_dir, &b);
    assert_eq!(ws.held().iter_ones().collect::<Vec<_>>(), vec![0]);
    drop(ws);
    let mut wrong = b.bytes.clone();
    wrong.push(0);
    assert!(matches!(
        Workspace::create(
            &data_dir,
            b.id,
            &wrong,
            b.manifest.clone(),
            b.layout.clone()
        ),
        Err(StoreError::ManifestMismatch { .. })
    ));
    // A damaged manifest file is detected on open.
    let path = data_dir
        .join("broadcasts")
        .join(b.id.to_hex())
        .join("manifest");
    fs::write(&path, &wrong).unwrap();
    assert!(matches!(
        Workspace::open(&data_dir, b.id),
        Err(StoreError::ManifestMismatch { .. })
    ));
    // ...and repaired by create.
    let ws = create(&data_dir, &b);
    assert_eq!(ws.held().count_ones(), 1);
}

#[test]
fn on_disk_corruption_is_detected_and_lost_files_are_refetched() {
    let (_tmp, data_dir, b) = setup("rot", "j");
    let ws = create(&data_dir, &b);
    let all: Vec<u32> = (0..b.layout.chunk_count()).collect();
    write_all(&ws, &b, &all);
    ws.commit().unwrap();
    let i = first_chunk_of(&b, "big.bin");
    let file = ws.data_path().join("big.bin");
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .write_all_at(b"rot", 10)
        .unwrap();
    assert!(matches!(ws.read_chunk(i), Err(StoreError::Corrupt { index }) if index == i));
    assert_eq!(ws.read_chunk(i + 1).unwrap(), chunk(&b, i + 1));
    // A file deleted behind our back: its chunks are corrupt now, and dropped on open.
    let deep = first_chunk_of(&b, "a/b/c/deep.bin");
    fs::remove_file(ws.data_path().join("a/b/c/deep.bin")).unwrap();
    // And one truncated: its chunks are dropped too, and it gets its size back.
    let run = first_chunk_of(&b, "run.sh");
    fs::OpenOptions::new()
        .write(true)
        .open(ws.data_path().join("run.sh"))
        .unwrap()
        .set_len(100)
        .unwrap();
    drop(ws);
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert!(!ws.is_held(deep));
    assert!(!ws.is_held(deep + 3));
    assert!(!ws.is_held(run));
    assert!(!ws.is_held(run + 2));
    assert!(ws.is_held(i), "other files keep their chunks");
    assert_eq!(ws.held().count_ones(), b.layout.chunk_count() - 4 - 3);
    let len = |rel: &str| fs::metadata(ws.data_path().join(rel)).unwrap().len();
    assert_eq!(len("a/b/c/deep.bin"), 3 * u64::from(CS) + 17);
    assert_eq!(len("run.sh"), 10_000);
    // The journal was rewritten: the drop survives another restart.
    drop(ws);
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert_eq!(ws.held().count_ones(), b.layout.chunk_count() - 4 - 3);
    // Refetching completes it.
    for k in (deep..deep + 4).chain(run..run + 3) {
        ws.write_chunk(k, &chunk(&b, k)).unwrap();
    }
    ws.commit().unwrap();
    assert!(ws.is_complete());
}

#[test]
fn many_threads_write_and_read_one_workspace() {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("node");
    let src = tmp.path().join("src").join("many");
    for f in 0..16 {
        write_file(
            &src,
            &format!("d{}/f{f}", f % 3),
            &bytes(&format!("m{f}"), 7 * CS as usize + 11 * f),
            0o644,
        );
    }
    let b = Arc::new(snapshot(&src));
    let ws = Arc::new(create(&data_dir, &b));
    let n = b.layout.chunk_count();
    let threads = 8;
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ws, b) = (Arc::clone(&ws), Arc::clone(&b));
            s.spawn(move || {
                // Each thread writes its share, plus its neighbour's (duplicates, as in
                // endgame), and reads back whatever is held.
                for i in (0..n).filter(|i| i % threads == t || i % threads == (t + 1) % threads) {
                    ws.write_chunk(i, &chunk(&b, i)).unwrap();
                    for k in ws.held().iter_ones().take(4) {
                        assert_eq!(ws.read_chunk(k).unwrap(), chunk(&b, k));
                    }
                }
            });
        }
        let ws = Arc::clone(&ws);
        s.spawn(move || {
            for _ in 0..50 {
                ws.commit().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
    });
    ws.commit().unwrap();
    assert!(ws.is_complete());
    for i in 0..n {
        assert_eq!(ws.read_chunk(i).unwrap(), chunk(&b, i));
    }
    let journal = data_dir.join("broadcasts").join(b.id.to_hex()).join("held");
    assert_eq!(
        fs::metadata(journal).unwrap().len(),
        4 * u64::from(n),
        "each chunk journaled once"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Write(u32),
    Commit,
    Crash,
}

fn op(n: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..n).prop_map(Op::Write),
        2 => Just(Op::Commit),
        1 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the interleaving of writes, commits and crashes, the held set after a reopen
    /// is exactly what was committed.
    #[test]
    fn held_after_crash_is_exactly_what_was_committed(ops in prop::collection::vec(op(12), 1..40)) {
        let tmp = TempDir::new().unwrap();
        let data_dir = tmp.path().join("node");
        let src = tmp.path().join("src").join("p");
        write_file(&src, "x", &bytes("px", 5 * CS as usize + 3), 0o644);
        write_file(&src, "y/z", &bytes("pz", 6 * CS as usize), 0o644);
        let b = snapshot(&src);
        prop_assert_eq!(b.layout.chunk_count(), 12);
        let mut ws = Some(create(&data_dir, &b));
        let mut committed = std::collections::BTreeSet::new();
        for op in ops {
            match op {
                Op::Write(i) => ws.as_ref().unwrap().write_chunk(i, &chunk(&b, i)).unwrap(),
                Op::Commit => committed.extend(ws.as_ref().unwrap().commit().unwrap()),
                Op::Crash => {
                    drop(ws.take());
                    ws = Some(Workspace::open(&data_dir, b.id).unwrap().unwrap());
                }
            }
            let held: Vec<u32> = ws.as_ref().unwrap().held().iter_ones().collect();
            prop_assert_eq!(held, committed.iter().copied().collect::<Vec<_>>());
        }
        drop(ws);
        let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
        prop_assert_eq!(
            ws.held().iter_ones().collect::<Vec<_>>(),
            committed.iter().copied().collect::<Vec<_>>()
        );
        for i in committed {
            prop_assert_eq!(ws.read_chunk(i).unwrap(), chunk(&b, i));
        }
    }
}

/// How long a group commit of 64 × 1 MiB chunks takes on this machine. A benchmark, not a
/// test: `cargo test -p swarmcast-node --test store_workspace -- --ignored --nocapture`.
#[test]
#[ignore]
fn commit_timing_64_chunks_of_1_mib() {
    use swarmcast_node::manifest::{
        ChunkHash, Entry, EntryKind, MANIFEST_VERSION, Manifest, manifest_id,
    };
    const MIB: usize = 1 << 20;
    let tmp = TempDir::new_in(std::env::var_os("STORE_BENCH_DIR").unwrap_or(".".into())).unwrap();
    let data: Vec<Vec<u8>> = (0..64).map(|i| bytes(&format!("bench{i}"), MIB)).collect();
    for (label, files) in [("one 64 MiB file", 1usize), ("16 files of 4 MiB", 16)] {
        let per_file = 64 / files;
        let entries = (0..files)
            .map(|f| Entry {
                path: format!("f{f:02}"),
                kind: EntryKind::File {
                    size: (per_file * MIB) as u64,
                    mode: 0o644,
                    chunks: (0..per_file)
                        .map(|k| ChunkHash(*blake3::hash(&data[f * per_file + k]).as_bytes()))
                        .collect(),
                },
            })
            .collect();
        let m = Manifest {
            version: MANIFEST_VERSION,
            name: format!("bench{files}"),
            chunk_size: MIB as u32,
            root_mode: Some(0o755),
            entries,
            audience: None,
            priority: swarmcast_proto::Priority::Normal,
        };
        let bytes = m.to_bytes();
        let id = manifest_id(&bytes);
        let layout = Arc::new(Layout::new(&m));
        let data_dir = tmp.path().join(format!("node{files}"));
        let ws = Workspace::create(&data_dir, id, &bytes, Arc::new(m), layout).unwrap();
        let t0 = Instant::now();
        for (i, d) in data.iter().enumerate() {
            ws.write_chunk(i as u32, d).unwrap();
        }
        let t1 = Instant::now();
        let held = ws.commit().unwrap();
        let t2 = Instant::now();
        assert_eq!(held.len(), 64);
        println!(
            "{label}: write_chunk x64 (verify + pwrite) {:?}, commit {:?} ({:.0} MiB/s end to end)",
            t1 - t0,
            t2 - t1,
            64.0 / (t2 - t0).as_secs_f64()
        );
    }
}

#[test]
fn a_broadcast_of_only_empty_files_and_dirs_finalizes_at_once() {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("node");
    let src = tmp.path().join("src").join("hollow");
    write_file(&src, "e", b"", 0o755);
    fixture::make_dir(&src, "d/inner", 0o711);
    let b = snapshot(&src);
    assert_eq!(b.layout.chunk_count(), 0);
    let ws = create(&data_dir, &b);
    assert!(ws.is_complete());
    assert_eq!(ws.commit().unwrap(), Vec::<u32>::new());
    let p = ws.finalize().unwrap();
    assert_eq!(tree(&p), tree(&src));
}

#[test]
fn one_chunk_files_appear_when_their_chunk_is_written() {
    let (tmp, data_dir, b) = setup("lazy", "l");
    let ws = create(&data_dir, &b);
    let small = ws.data_path().join("a/x.txt");
    assert!(
        !small.exists(),
        "a file of one chunk is not created up front"
    );
    assert_eq!(
        fs::metadata(ws.data_path().join("run.sh")).unwrap().len(),
        10_000,
        "files of several chunks are, at their size"
    );
    assert!(
        ws.data_path().join("empty.txt").exists(),
        "and so are empty files"
    );
    let i = first_chunk_of(&b, "a/x.txt");
    ws.write_chunk(i, &chunk(&b, i)).unwrap();
    assert_eq!(fs::read(&small).unwrap(), chunk(&b, i));
    ws.commit().unwrap();
    assert!(ws.is_held(i));
    // Lost while the node is down: dropped on open, and not recreated until written again.
    drop(ws);
    fs::remove_file(&small).unwrap();
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert!(!ws.is_held(i));
    assert!(!small.exists());
    // A leftover of the wrong size is cut to the manifest's size when rewritten.
    fs::write(&small, vec![1u8; 5000]).unwrap();
    ws.write_chunk(i, &chunk(&b, i)).unwrap();
    assert_eq!(fs::read(&small).unwrap(), chunk(&b, i));
    // A symlink planted there is refused, and its target left alone.
    let target = tmp.path().join("victim");
    fs::write(&target, b"precious").unwrap();
    fs::remove_file(&small).unwrap();
    std::os::unix::fs::symlink(&target, &small).unwrap();
    let err = ws.write_chunk(i, &chunk(&b, i)).unwrap_err();
    assert!(matches!(err, StoreError::Unsafe { .. }), "{err:?}");
    assert_eq!(fs::read(&target).unwrap(), b"precious");
}

#[test]
fn serving_reads_hash_only_what_this_process_has_not_verified() {
    let (_tmp, data_dir, b) = setup("trust", "t");
    let ws = create(&data_dir, &b);
    let all: Vec<u32> = (0..b.layout.chunk_count()).collect();
    write_all(&ws, &b, &all);
    ws.commit().unwrap();
    let i = first_chunk_of(&b, "big.bin");
    let len = chunk(&b, i).len();
    // A run of two chunks comes back as written.
    let mut two = vec![0u8; len + chunk(&b, i + 1).len()];
    ws.read_run(i, &mut two).unwrap();
    assert_eq!(two, [chunk(&b, i), chunk(&b, i + 1)].concat());
    // Rot after writing: the serving read trusts what it verified (the receiver checks it
    // again), the checked read does not.
    fs::OpenOptions::new()
        .write(true)
        .open(ws.data_path().join("big.bin"))
        .unwrap()
        .write_all_at(b"rot", 10)
        .unwrap();
    let mut buf = vec![0u8; len];
    ws.read_run(i, &mut buf).unwrap();
    assert_ne!(buf, chunk(&b, i));
    assert!(matches!(ws.read_chunk(i), Err(StoreError::Corrupt { .. })));
    // A new process has verified nothing: its first serving read hashes and refuses.
    drop(ws);
    let ws = Workspace::open(&data_dir, b.id).unwrap().unwrap();
    assert!(matches!(ws.read_run(i, &mut buf), Err(StoreError::Corrupt { index }) if index == i));
    ws.read_run(i + 1, &mut buf[..chunk(&b, i + 1).len()])
        .unwrap();
    // A buffer that cuts a chunk is refused.
    let mut short = vec![0u8; len - 1];
    assert!(matches!(
        ws.read_run(i + 1, &mut short),
        Err(StoreError::WrongLength { .. })
    ));
}

#[test]
fn complete_does_not_touch_received_and_links_follow_the_caller() {
    let (tmp, data_dir, _) = setup("unused", "x");
    let old = snapshot(&sample_tree(&tmp.path().join("v1"), "ds", "old"));
    let new = snapshot(&sample_tree(&tmp.path().join("v2"), "ds", "new"));
    let received = data_dir.join("received");
    for b in [&old, &new] {
        let ws = create(&data_dir, b);
        write_all(&ws, b, &(0..b.layout.chunk_count()).collect::<Vec<_>>());
        ws.commit().unwrap();
        assert_eq!(ws.complete().unwrap(), ws.data_path());
    }
    assert!(!received.join("ds").exists(), "complete() links nothing");
    let link = swarmcast_node::store::link_received(&received, "ds", new.id).unwrap();
    assert_eq!(tree(&link), tree(&new.source));
    assert_eq!(
        swarmcast_node::store::linked_version(&received, "ds"),
        Some(new.id)
    );
    // Unlinking another version leaves the link alone; unlinking the linked one removes it.
    assert!(!swarmcast_node::store::unlink_received(&received, "ds", old.id).unwrap());
    assert_eq!(
        swarmcast_node::store::linked_version(&received, "ds"),
        Some(new.id)
    );
    swarmcast_node::store::link_received(&received, "ds", old.id).unwrap();
    assert_eq!(tree(&link), tree(&old.source));
    assert!(swarmcast_node::store::unlink_received(&received, "ds", old.id).unwrap());
    assert!(!link.exists());
    assert_eq!(swarmcast_node::store::linked_version(&received, "ds"), None);
}

#[test]
fn a_removal_interrupted_after_its_rename_leaves_nothing_listed_or_resumed() {
    let (_tmp, data_dir, b) = setup("gone", "r");
    let ws = create(&data_dir, &b);
    write_all(&ws, &b, &[0]);
    ws.commit().unwrap();
    drop(ws);
    let dir = data_dir.join("broadcasts").join(b.id.to_hex());
    assert!(dir.exists());
    // What a SIGKILL right after the first step of `remove` leaves: the renamed directory.
    let dead = data_dir
        .join("broadcasts")
        .join(format!(".dead-{}", b.id.to_hex()));
    fs::rename(&dir, &dead).unwrap();
    assert!(swarmcast_node::store::list(&data_dir).unwrap().is_empty());
    assert!(Workspace::open(&data_dir, b.id).unwrap().is_none());
    swarmcast_node::store::sweep_dead(&data_dir);
    assert!(!dead.exists());

    // A whole removal, with a dead copy of an earlier crash in the way.
    let ws = create(&data_dir, &b);
    write_all(&ws, &b, &[0]);
    ws.commit().unwrap();
    drop(ws);
    fs::create_dir_all(dead.join("leftover")).unwrap();
    swarmcast_node::store::remove(&data_dir, b.id).unwrap();
    assert!(!dir.exists() && !dead.exists());
    assert!(swarmcast_node::store::list(&data_dir).unwrap().is_empty());
    // Removing what is not there is fine.
    swarmcast_node::store::remove(&data_dir, b.id).unwrap();
}

#[test]
fn a_file_held_whole_is_linked_into_a_new_workspace_and_a_mismatch_leaves_nothing() {
    let (tmp, data_dir, _) = setup("unused", "l");
    let v1 = snapshot(&sample_tree(&tmp.path().join("v1"), "ds", "one"));
    let ws1 = create(&data_dir, &v1);
    write_all(&ws1, &v1, &(0..v1.layout.chunk_count()).collect::<Vec<_>>());
    ws1.commit().unwrap();
    // Version 2: the same tree (so every file is identical).
    let same = snapshot(&sample_tree(&tmp.path().join("v2"), "ds", "one"));
    let mut m2 = (*same.manifest).clone();
    m2.name = "ds2".into();
    let b2 = m2.to_bytes();
    let id2 = swarmcast_node::manifest::manifest_id(&b2);
    let m2 = Arc::new(m2);
    let l2 = Arc::new(Layout::new(&m2));
    let ws2 = Workspace::create(&data_dir, id2, &b2, m2.clone(), l2.clone()).unwrap();
    let files: Vec<u32> = m2
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(&e.kind, swarmcast_node::manifest::EntryKind::File { chunks, .. } if !chunks.is_empty()))
        .map(|(i, _)| i as u32)
        .collect();
    assert!(!files.is_empty());
    for &e in &files {
        ws2.link_file(e, &ws1, e).unwrap();
    }
    ws2.commit().unwrap();
    assert!(ws2.is_complete());
    ws2.complete().unwrap();
    assert_eq!(tree(ws2.data_path()), tree(&same.source));
    // A source whose bytes rot on disk is not taken: the link goes, the chunks stay missing.
    let v3 = snapshot(&sample_tree(&tmp.path().join("v3"), "ds3", "one"));
    let ws3 = create(&data_dir, &v3);
    let e = files[0];
    let rel = &ws1.manifest().entries[e as usize].path;
    let on_disk = ws1.data_path().join(rel);
    let mut bytes = fs::read(&on_disk).unwrap();
    bytes[0] ^= 1;
    // Rewrite in place (the inode stays, as rot would).
    fs::OpenOptions::new()
        .write(true)
        .open(&on_disk)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    assert!(ws3.link_file(e, &ws1, e).is_err());
    ws3.commit().unwrap();
    assert_eq!(ws3.held().count_ones(), 0);
}

/// Whether this process has `path` open with `O_DIRECT` (from `/proc/self/fdinfo`).
fn open_direct(path: &Path) -> bool {
    const O_DIRECT: u32 = 0o40000;
    let want = fs::canonicalize(path).unwrap();
    fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| {
        let Ok(target) = fs::read_link(fd.path()) else {
            return false;
        };
        let info = fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .unwrap_or(0);
        target == want && flags & O_DIRECT != 0
    })
}

/// Writes every chunk of `b` through one aligned pooled buffer per chunk, as the fetching side
/// does, commits, and checks every chunk read back.
fn write_pooled_and_check(ws: &Workspace, b: &Built) {
    let pool = BufPool::new(1 << 20);
    for i in 0..b.layout.chunk_count() {
        let data = chunk(b, i);
        let mut buf = pool.take(data.len());
        buf.as_mut_slice().copy_from_slice(&data);
        ws.write_run(i, buf.as_slice()).unwrap();
    }
    ws.commit().unwrap();
    assert!(ws.is_complete());
    for i in 0..b.layout.chunk_count() {
        assert_eq!(ws.read_chunk(i).unwrap(), chunk(b, i), "chunk {i}");
    }
}

#[test]
fn aligned_chunks_are_written_with_o_direct_and_read_back() {
    let tmp = TempDir::new().unwrap();
    let data_dir = tmp.path().join("node");
    let src = tmp.path().join("src").join("big");
    // Whole chunks, then a short last one (written buffered).
    write_file(
        &src,
        "weights.bin",
        &bytes("direct", 8 * CS as usize + 100),
        0o644,
    );
    let b = snapshot(&src);
    let ws = create(&data_dir, &b);
    let pool = BufPool::new(1 << 20);
    let data = chunk(&b, 0);
    let mut buf = pool.take(data.len());
    buf.as_mut_slice().copy_from_slice(&data);
    ws.write_run(0, buf.as_slice()).unwrap();
    let file = data_dir
        .join("broadcasts")
        .join(b.id.to_hex())
        .join("data")
        .join("weights.bin");
    assert!(
        open_direct(&file),
        "an aligned chunk of a multi-chunk file goes through an O_DIRECT handle"
    );
    write_pooled_and_check(&ws, &b);
    drop(ws);
    // What a restart finds is what was written.
    let again = create(&data_dir, &b);
    assert!(again.is_complete());
    for i in 0..b.layout.chunk_count() {
        assert_eq!(again.read_chunk(i).unwrap(), chunk(&b, i));
    }
}
