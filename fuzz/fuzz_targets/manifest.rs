//! Untrusted manifest bytes through `Manifest::decode` (length, id, msgpack shape, schema,
//! validation, canonical form) under three sets of limits, and `Manifest::validate` on whatever
//! serde accepts even when it is not canonical.
//!
//! Properties: nothing panics; what decodes is exactly its canonical bytes; a manifest that
//! validates has a consistent chunk and piece layout (`Layout::new` relies on validation), and
//! its canonical bytes decode under the same limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmcast_node::manifest::{
    EntryKind, Layout, MANIFEST_MAX_DEPTH, MAX_CHUNKS_PER_PIECE, Manifest, ManifestError,
    ManifestLimits, PIECE_BYTES, manifest_id,
};
use swarmcast_proto::{BroadcastId, scan_msgpack};

/// Small enough that every cap is reachable by short inputs.
const TINY: ManifestLimits = ManifestLimits {
    max_entries: 4,
    max_total_bytes: 1000,
    max_chunks: 8,
    max_path_bytes: 16,
    max_component_bytes: 8,
    min_chunk_size: 1,
    max_chunk_size: 64,
    max_manifest_bytes: 512,
};

fuzz_target!(|data: &[u8]| {
    let id = manifest_id(data);
    for limits in [ManifestLimits::default(), ManifestLimits::for_test(), TINY] {
        if let Ok(m) = Manifest::decode(data, &id, &limits) {
            assert_eq!(m.to_bytes(), data, "decode accepts only canonical bytes");
            assert_eq!(m.id(), id);
            check_layout(&m);
        }
        // Bytes nobody asked for are refused before they are parsed.
        let other = BroadcastId([!id.0[0]; 32]);
        assert!(matches!(
            Manifest::decode(data, &other, &limits),
            Err(ManifestError::IdMismatch { .. } | ManifestError::TooLarge { .. })
        ));
    }

    // Validation on its own, on whatever serde makes of the bytes (a struct as an array, a
    // variant by index, integers in a wider form than needed...).
    if scan_msgpack(data, MANIFEST_MAX_DEPTH).is_err() {
        return;
    }
    let Ok(m) = rmp_serde::from_slice::<Manifest>(data) else {
        return;
    };
    for limits in [ManifestLimits::default(), ManifestLimits::for_test(), TINY] {
        if m.validate(&limits).is_err() {
            continue;
        }
        check_layout(&m);
        let bytes = m.to_bytes();
        if bytes.len() as u64 <= limits.max_manifest_bytes {
            let back = Manifest::decode(&bytes, &manifest_id(&bytes), &limits)
                .expect("the canonical bytes of a valid manifest decode");
            assert_eq!(back, m);
        }
    }
});

/// The layout of a validated manifest: chunks tile each file exactly, pieces partition the
/// chunks in order and respect their caps.
fn check_layout(m: &Manifest) {
    let layout = Layout::new(m);
    let cs = u64::from(m.chunk_size);
    let mut next = 0usize;
    let mut total = 0u64;
    for (i, e) in m.entries.iter().enumerate() {
        let EntryKind::File { size, chunks, .. } = &e.kind else {
            continue;
        };
        total += size;
        let mut offset = 0u64;
        for (k, hash) in chunks.iter().enumerate() {
            let c = layout.chunks[next];
            assert_eq!(c.entry as usize, i);
            assert_eq!(c.offset, offset);
            assert_eq!(m.chunk_hash(&c), Some(hash));
            assert!(
                c.len > 0 && u64::from(c.len) <= cs,
                "chunk {k} of {}",
                e.path
            );
            offset += u64::from(c.len);
            next += 1;
        }
        assert_eq!(offset, *size);
    }
    assert_eq!(next, layout.chunks.len());
    assert_eq!(layout.total_bytes, total);
    assert_eq!(layout.piece_of.len(), layout.chunks.len());
    let mut first = 0u32;
    for (p, piece) in layout.pieces.iter().enumerate() {
        assert_eq!(piece.first, first);
        assert!(piece.count >= 1 && piece.count <= MAX_CHUNKS_PER_PIECE);
        let range = layout.chunks_of(p as u32);
        let bytes: u64 = range
            .clone()
            .map(|c| u64::from(layout.chunks[c as usize].len))
            .sum();
        assert_eq!(bytes, piece.bytes);
        // Small chunks pack into pieces of up to max(chunk size, PIECE_BYTES).
        assert!(piece.count == 1 || piece.bytes <= cs.max(u64::from(PIECE_BYTES)));
        for c in range {
            assert_eq!(layout.piece_of[c as usize] as usize, p);
        }
        first += piece.count;
    }
    assert_eq!(first as usize, layout.chunks.len());
}
