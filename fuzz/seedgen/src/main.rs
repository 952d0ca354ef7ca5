//! Writes valid inputs for the fuzz targets `manifest`, `control`, `bootstrap` and `chunk` into
//! `seeds/<target>/` (run from `fuzz/`: `cargo run --manifest-path seedgen/Cargo.toml`).
//! Every file is a well-formed input the target accepts; libFuzzer mutates from there.

use std::path::Path;

use swarmcast_node::control::{ControlRequest, ControlResponse, FleetProgress};
use swarmcast_node::manifest::{
    Entry, EntryKind, Layout, MANIFEST_VERSION, Manifest, ManifestLimits, hash_chunk,
};
use swarmcast_proto::{
    Announce, BroadcastId, BroadcastRecord, BroadcastState, ChunkHeader, ChunkIndex, Delta, Digest,
    EntryUpdate, ErrorCode, Have, Heartbeat, Limits, Lookup, Message, NodeId, NodeRecord, Ping,
    Progress, Register, RegistryCursor, Role, Version, encode, encode_chunk, encode_value,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("seed dir");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn frame(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &Limits::default(), &mut out).expect("encode");
    out
}

fn file(path: &str, bytes: &[u8], cs: u32, mode: u32) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::File {
            size: bytes.len() as u64,
            mode,
            chunks: bytes.chunks(cs as usize).map(hash_chunk).collect(),
        },
    }
}

fn dir(path: &str, mode: u32) -> Entry {
    Entry {
        path: path.into(),
        kind: EntryKind::Dir { mode },
    }
}

fn manifest(name: &str, cs: u32, entries: Vec<Entry>) -> Manifest {
    let m = Manifest {
        version: MANIFEST_VERSION,
        name: name.into(),
        chunk_size: cs,
        root_mode: Some(0o755),
        entries,
        audience: None,
        priority: swarmcast_proto::Priority::Normal,
    };
    m.validate(&ManifestLimits::for_test())
        .expect("seed manifest is valid");
    m
}

fn manifests() {
    let seeds = [
        ("empty", manifest("e", 4096, vec![])),
        ("one_dir", manifest("d", 4096, vec![dir("x", 0o700)])),
        (
            "dir_and_file",
            manifest(
                "n",
                4096,
                vec![dir("d", 0o755), file("f", b"hello", 4096, 0o644)],
            ),
        ),
        (
            "multi_chunk",
            manifest("m", 4, vec![file("big", &[7u8; 10], 4, 0o755)]),
        ),
        (
            "nested_packed",
            manifest(
                "p",
                8,
                vec![
                    file("a/b/c", b"abc", 8, 0o600),
                    file("a/b/d", b"", 8, 0o644),
                    file("a/e", b"0123456789", 8, 0o644),
                    dir("z", 0o777),
                ],
            ),
        ),
        (
            "default_chunk",
            manifest(
                "big",
                1 << 20,
                vec![file("data.bin", &[1u8; 100], 1 << 20, 0o644)],
            ),
        ),
    ];
    for (name, m) in &seeds {
        write("manifest", name, &m.to_bytes());
    }
}

fn control() {
    let limits = Limits::default();
    let requests = [
        ("status", ControlRequest::Status),
        ("list", ControlRequest::List),
        (
            "send",
            ControlRequest::Send {
                dir: "/srv/data".into(),
                chunk_size: 1 << 20,
                rehash: false,
                keepalive: true,
                audience: None,
                priority: Default::default(),
            },
        ),
        (
            "fleet",
            ControlRequest::Fleet {
                id: BroadcastId([0xab; 32]).to_string(),
            },
        ),
        ("fleet_bad_id", ControlRequest::Fleet { id: "zz".into() }),
    ];
    for (name, r) in &requests {
        let mut out = Vec::new();
        encode_value(r, &limits, &mut out).expect("encode");
        write("control", name, &out);
    }
    let responses = [
        (
            "answer_error",
            ControlResponse::Error("bad broadcast id".into()),
        ),
        (
            "answer_fleet",
            ControlResponse::Fleet(FleetProgress {
                id: BroadcastId([1; 32]).to_string(),
                bytes: 10,
                chunks: 2,
                nodes_alive: 2,
                nodes_complete: 1,
                nodes_failed: Vec::new(),
                chunks_held: 3,
                failed: None,
                nodes: vec![("n1".into(), 2), ("n2".into(), 1)],
            }),
        ),
        ("answer_list", ControlResponse::List(vec![])),
    ];
    for (name, r) in &responses {
        let mut out = Vec::new();
        encode_value(r, &limits, &mut out).expect("encode");
        write("control", name, &out);
    }
}

/// One step of the `bootstrap` target: who (0-3 nodes, 4-6 fellows, 7 a fellow's answer), the
/// clock advance in 50 ms, and the frame.
fn step(out: &mut Vec<u8>, who: u8, advance: u8, msg: &Message) {
    let f = frame(msg);
    out.push(who | (advance << 3));
    out.extend_from_slice(&(f.len() as u16).to_le_bytes());
    out.extend_from_slice(&f);
}

fn node_id(i: u8) -> NodeId {
    NodeId([i + 1; 32])
}

fn record(i: u8, hb: u64) -> NodeRecord {
    NodeRecord {
        progress_seq: 0,
        id: node_id(i),
        name: format!("node{i}"),
        role: Role::Node,
        addrs: vec![format!("127.0.0.{}:7100", i + 1).parse().expect("addr")],
        version: Version::new(1, hb),
        progress: vec![],
        pull: false,
        groups: Vec::new(),
    }
}

fn broadcast(i: u8, version: u64) -> BroadcastRecord {
    BroadcastRecord {
        id: BroadcastId([0x40 + i; 32]),
        name: format!("b{i}"),
        origin: node_id(i),
        size: 1000,
        chunks: 4,
        state: BroadcastState::Active,
        version,
        seq: 0,
        published_ms: 0,
        audience: None,
    }
}

fn bootstrap() {
    let register = |i: u8| {
        Message::Register(Register {
            id: node_id(i),
            incarnation: 1,
            addrs: record(i, 0).addrs,
            pull: false,
        })
    };
    let heartbeat = |i: u8, hb: u64| {
        Message::Heartbeat(Heartbeat {
            progress_span: None,
            progress_removed: Vec::new(),
            id: node_id(i),
            version: Version::new(1, hb),
            addrs: record(i, 0).addrs,
            changes_since: (hb % 2 == 0).then(RegistryCursor::default),
            progress: vec![Progress {
                broadcast: BroadcastId([0x40; 32]),
                held: hb,
                total: 4,
                complete: false,
                failed: None,
            }],
            pull: false,
        })
    };
    let delta = Message::Delta(Delta {
        nodes: vec![
            EntryUpdate {
                record: record(2, 5),
                age_ms: 100,
            },
            EntryUpdate {
                record: record(3, 1),
                age_ms: 5000,
            },
        ],
        broadcasts: vec![broadcast(2, 1)],
        want_nodes: vec![node_id(0)],
        want_broadcasts: vec![BroadcastId([0x40; 32])],
    });
    let digest = Message::Digest(Digest {
        nodes: vec![
            (node_id(0), Version::new(1, 9)),
            (node_id(5), Version::new(2, 0)),
        ],
        broadcasts: vec![(BroadcastId([0x40; 32]), 3)],
    });
    let announce = Message::Announce(Announce {
        record: broadcast(0, 1),
    });

    let mut s = Vec::new();
    step(&mut s, 0, 0, &register(0));
    write("bootstrap", "register", &s);

    let mut s = Vec::new();
    step(&mut s, 0, 0, &register(0));
    step(&mut s, 0, 2, &heartbeat(0, 1));
    step(&mut s, 0, 2, &heartbeat(0, 2));
    step(&mut s, 1, 0, &Message::Lookup(Lookup {}));
    write("bootstrap", "register_heartbeat_lookup", &s);

    let mut s = Vec::new();
    step(&mut s, 0, 0, &register(0));
    step(&mut s, 0, 1, &announce);
    step(&mut s, 4, 1, &digest);
    write("bootstrap", "announce_digest", &s);

    let mut s = Vec::new();
    step(&mut s, 4, 0, &delta);
    step(&mut s, 1, 0, &register(1));
    step(&mut s, 5, 8, &digest);
    write("bootstrap", "fellow_delta", &s);

    let mut s = Vec::new();
    step(&mut s, 0, 0, &register(0));
    step(&mut s, 7, 0, &delta);
    step(&mut s, 0, 31, &Message::Lookup(Lookup {}));
    write("bootstrap", "fellow_answer_then_expiry", &s);

    let mut s = Vec::new();
    step(&mut s, 2, 0, &digest);
    step(&mut s, 3, 0, &delta);
    step(&mut s, 2, 0, &heartbeat(1, 1));
    step(&mut s, 6, 0, &Message::Ping(Ping { nonce: 7 }));
    write("bootstrap", "refusals_and_ping", &s);
}

/// The `chunk` target's fixed broadcast; keep in step with `fuzz_targets/chunk.rs`.
fn file_bytes(seed: u8, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| seed.wrapping_add((i / 16) as u8))
        .collect()
}

fn chunks() {
    let cs = 16u32;
    let files: [(&str, u8, usize); 3] = [("a", 1, 40), ("b/c", 100, 16), ("d", 200, 5)];
    let m = manifest(
        "fuzz",
        cs,
        files
            .iter()
            .map(|(p, seed, size)| file(p, &file_bytes(*seed, *size), cs, 0o644))
            .collect(),
    );
    let layout = Layout::new(&m);
    let id = m.id();
    let mut all: Vec<Vec<u8>> = Vec::new();
    for (_, seed, size) in files {
        let bytes = file_bytes(seed, size);
        all.extend(bytes.chunks(cs as usize).map(<[u8]>::to_vec));
    }
    assert_eq!(all.len() as u32, layout.chunk_count());
    let limits = Limits::default();
    let chunk_frame = |index: u32, data: &[u8]| {
        let mut out = Vec::new();
        encode_chunk(
            ChunkHeader {
                broadcast: id,
                index: ChunkIndex(index),
                len: data.len() as u32,
            },
            data,
            &limits,
            &mut out,
        )
        .expect("encode");
        out
    };
    for (i, data) in all.iter().enumerate() {
        write("chunk", &format!("chunk_{i}"), &chunk_frame(i as u32, data));
    }
    // A whole piece answered in one stream.
    let mut piece = Vec::new();
    for (i, data) in all.iter().enumerate().take(3) {
        piece.extend(chunk_frame(i as u32, data));
    }
    write("chunk", "piece_0_3", &piece);
    let mut bad = all[0].clone();
    bad[0] ^= 0xff;
    write("chunk", "bad_hash", &chunk_frame(0, &bad));
    write("chunk", "short", &chunk_frame(4, &all[4][..3]));
    let n = layout.chunk_count();
    write(
        "chunk",
        "have",
        &frame(&Message::Have(Have {
            broadcast: id,
            chunks: n,
            bits: vec![0b1010_0000],
            from_origin: false,
            seq: 0,
            audience: None,
        })),
    );
    write(
        "chunk",
        "refused",
        &frame(&Message::error(
            ErrorCode::Elsewhere,
            "fetch it from a peer",
        )),
    );
}

fn main() {
    manifests();
    control();
    bootstrap();
    chunks();
}
