//! Properties of manifest encoding: valid manifests round-trip, and no mutation of an encoding
//! (with its id recomputed) makes `decode` panic or accept something invalid.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use swarmcast_node::manifest::{
    ChunkHash, Entry, EntryKind, MANIFEST_VERSION, Manifest, ManifestLimits, manifest_id,
};

/// One path component: never `.` or `..`, never `/`, NUL or backslash.
fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.é日ü -]{1,12}".prop_filter("not . or ..", |c| c != "." && c != "..")
}

fn kind(chunk_size: u32) -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        // Up to 8 chunks a file, so that tiny chunk sizes stay within the chunk cap.
        (0..=8 * u64::from(chunk_size), 0u32..=0o777, any::<u8>()).prop_map(
            move |(size, mode, seed)| {
                let n = size.div_ceil(u64::from(chunk_size));
                EntryKind::File {
                    size,
                    mode,
                    chunks: (0..n)
                        .map(|i| ChunkHash(*blake3::hash(&[seed, i as u8]).as_bytes()))
                        .collect(),
                }
            }
        ),
        (0u32..=0o777).prop_map(|mode| EntryKind::Dir { mode }),
    ]
}

/// Valid manifests under [`ManifestLimits::for_test`]: sorted, unique, no entry beneath another.
fn valid_manifest() -> impl Strategy<Value = Manifest> {
    (1u32..=5000, component()).prop_flat_map(|(chunk_size, name)| {
        let entry = (
            proptest::collection::vec(component(), 1..4),
            kind(chunk_size),
        );
        proptest::collection::vec(entry, 0..24).prop_map(move |raw| {
            let by_path: BTreeMap<String, EntryKind> =
                raw.into_iter().map(|(cs, k)| (cs.join("/"), k)).collect();
            let paths: Vec<String> = by_path.keys().cloned().collect();
            let entries = by_path
                .into_iter()
                .filter(|(p, _)| {
                    let below = format!("{p}/");
                    !paths.iter().any(|q| q.starts_with(&below))
                })
                .map(|(path, kind)| Entry { path, kind })
                .collect();
            Manifest {
                version: MANIFEST_VERSION,
                name: name.clone(),
                chunk_size,
                root_mode: Some(0o755),
                entries,
                audience: None,
                priority: swarmcast_proto::Priority::Normal,
            }
        })
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    if len == 0 {
        return;
    }
    match *m {
        Mutation::Set(i, b) => bytes[i % len] = b,
        Mutation::Flip(i, bit) => bytes[i % len] ^= 1 << bit,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % len),
    }
}

proptest! {
    #[test]
    fn valid_manifests_round_trip(m in valid_manifest()) {
        let limits = ManifestLimits::for_test();
        prop_assert!(m.validate(&limits).is_ok(), "{:?}", m.validate(&limits));
        let bytes = m.to_bytes();
        prop_assert_eq!(&m.to_bytes(), &bytes, "encoding is deterministic");
        let back = Manifest::decode(&bytes, &manifest_id(&bytes), &limits).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn mutated_encodings_never_panic(
        m in valid_manifest(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let limits = ManifestLimits::for_test();
        let mut bytes = m.to_bytes();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        // Whatever decode says, it says it without panicking; and what it accepts is valid and
        // canonical.
        if let Ok(decoded) = Manifest::decode(&bytes, &manifest_id(&bytes), &limits) {
            prop_assert!(decoded.validate(&limits).is_ok());
            prop_assert_eq!(decoded.to_bytes(), bytes);
        }
    }
}
