//! The data plane's receiving path: bytes a peer sends back on a piece request, read frame by
//! frame (length prefix checked first, then the body, then `len` payload bytes, as
//! `wire::read_frame` reads a stream), every chunk frame's header and payload handed to a real
//! on-disk `Workspace` (`write_chunk`: range, length, then BLAKE3), and every `Have` bitfield
//! parsed as the data plane parses one.
//!
//! The workspace is a fixed small broadcast (three files, 16-byte chunks) created once per
//! process in a temporary directory.
//!
//! Properties: nothing panics; reading the prefix, body and payload separately agrees with the
//! one-shot decoder; a chunk is accepted exactly when its index is in range, its length is the
//! chunk's and its hash matches; a bitfield accepted has exactly its declared length and no
//! set bit beyond it.

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use swarmcast_node::bitfield::Bitfield;
use swarmcast_node::manifest::{
    ChunkHash, Entry, EntryKind, Layout, MANIFEST_VERSION, Manifest, ManifestLimits, hash_chunk,
};
use swarmcast_node::store::{StoreError, Workspace};
use swarmcast_proto::{
    Frame, Limits, Message, PREFIX_LEN, check_prefix, decode, decode_body, payload_len,
};

/// Small enough that the payload limit is reachable by short inputs.
const TINY: Limits = Limits {
    max_frame: 96,
    max_chunk: 16,
    max_manifest: 32,
    max_depth: 3,
};

/// The bytes of the fixed broadcast's files: chunk `k` of a file is 16 bytes of one value.
fn file_bytes(seed: u8, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| seed.wrapping_add((i / 16) as u8))
        .collect()
}

fn workspace() -> &'static Workspace {
    static WS: OnceLock<Workspace> = OnceLock::new();
    WS.get_or_init(|| {
        let cs = 16u32;
        let files: [(&str, u8, usize); 3] = [("a", 1, 40), ("b/c", 100, 16), ("d", 200, 5)];
        let entries = files
            .iter()
            .map(|(path, seed, size)| {
                let bytes = file_bytes(*seed, *size);
                Entry {
                    path: (*path).into(),
                    kind: EntryKind::File {
                        size: *size as u64,
                        mode: 0o644,
                        chunks: bytes
                            .chunks(cs as usize)
                            .map(|c| -> ChunkHash { hash_chunk(c) })
                            .collect(),
                    },
                }
            })
            .collect();
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            name: "fuzz".into(),
            chunk_size: cs,
            root_mode: Some(0o755),
            entries,
            audience: None,
            priority: Default::default(),
        };
        manifest
            .validate(&ManifestLimits::for_test())
            .expect("the fixed manifest is valid");
        let bytes = manifest.to_bytes();
        let layout = Arc::new(Layout::new(&manifest));
        let dir = std::env::temp_dir().join(format!("swarmcast-fuzz-chunk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Workspace::create(&dir, manifest.id(), &bytes, Arc::new(manifest), layout)
            .expect("workspace")
    })
}

fuzz_target!(|data: &[u8]| {
    let ws = workspace();
    for limits in [Limits::default(), TINY] {
        let mut rest = data;
        while let Ok(Some((frame, used))) = decode(rest, &limits) {
            assert!(used > PREFIX_LEN && used <= rest.len());
            assert_eq!(stepwise(&rest[..used], &limits).as_ref(), Some(&frame));
            rest = &rest[used..];
            match frame {
                Frame::Chunk { header, data } => chunk(ws, header.index.0, &data),
                Frame::Message(Message::Have(h)) => {
                    have(h.chunks, &h.bits);
                    have(ws.layout().chunk_count(), &h.bits);
                }
                _ => {}
            }
        }
    }
});

/// The frame read the way `wire::read_frame` reads a stream: prefix, then body, then payload.
fn stepwise(bytes: &[u8], limits: &Limits) -> Option<Frame> {
    let prefix = *bytes.first_chunk::<PREFIX_LEN>()?;
    let len = check_prefix(prefix, limits).ok()?;
    let body = bytes.get(PREFIX_LEN..PREFIX_LEN + len)?;
    let msg: Message = decode_body(body, limits).ok()?;
    let Some(plen) = payload_len(&msg, limits).ok()? else {
        return Some(Frame::Message(msg));
    };
    let data = bytes.get(PREFIX_LEN + len..)?.get(..plen)?.to_vec();
    Some(match msg {
        Message::ChunkData(header) => Frame::Chunk { header, data },
        Message::ManifestData(header) => Frame::Manifest { header, data },
        other => Frame::Message(other),
    })
}

fn chunk(ws: &Workspace, index: u32, data: &[u8]) {
    let expected = ws.layout().chunk(index);
    let result = ws.write_chunk(index, data);
    match expected {
        None => assert!(result.is_err(), "chunk {index} is out of range"),
        Some(c) if c.len as usize != data.len() => {
            assert!(
                matches!(result, Err(StoreError::WrongLength { .. })),
                "{result:?}"
            );
        }
        Some(c) if Some(&hash_chunk(data)) != ws.manifest().chunk_hash(&c) => {
            assert!(
                matches!(result, Err(StoreError::HashMismatch { .. })),
                "{result:?}"
            );
        }
        Some(_) => {
            assert!(result.is_ok(), "a good chunk was refused: {result:?}");
            // Held from now on, so later writes of it do not queue it again.
            ws.commit().expect("commit");
        }
    }
}

fn have(len: u32, bits: &[u8]) {
    if let Ok(b) = Bitfield::from_bytes(len, bits) {
        assert_eq!(b.len(), len);
        assert_eq!(b.as_bytes().len(), Bitfield::byte_len(len));
        assert!(b.count_ones() <= len);
        assert!(b.iter_ones().all(|i| i < len));
        assert_eq!(b.iter_ones().count() as u32, b.count_ones());
    }
}
