//! Canonical bytes, the broadcast id, and decoding untrusted bytes.
//!
//! The canonical form is named msgpack (`rmp_serde::to_vec_named`): a struct is a map from field
//! name to value in declaration order, an [`EntryKind`](super::EntryKind) is a one-entry map
//! `{"File": {..}}` or `{"Dir": {..}}`, a chunk hash is a bin of 32 bytes, and every integer
//! takes its smallest form. Named, so that the format can gain fields under a new
//! [`MANIFEST_VERSION`](super::MANIFEST_VERSION) while old nodes still read the version field and
//! refuse clearly. The encoding of a given value is deterministic, and [`Manifest::decode`] only
//! accepts bytes in exactly this form, so one snapshot has exactly one id.

use swarmcast_proto::{BroadcastId, scan_msgpack};

use super::error::quote;
use super::{Manifest, ManifestError, ManifestLimits};

/// Deepest msgpack nesting a manifest may use (a valid one uses 6).
pub const MANIFEST_MAX_DEPTH: usize = 16;

/// The broadcast id of canonical manifest bytes: their BLAKE3.
pub fn manifest_id(bytes: &[u8]) -> BroadcastId {
    BroadcastId(*blake3::hash(bytes).as_bytes())
}

impl Manifest {
    /// The canonical bytes, whose BLAKE3 is the broadcast id.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Cannot fail: structs, strings, integers, byte strings and sequences of known length,
        // written to a Vec.
        rmp_serde::to_vec_named(self).expect("a manifest always serializes")
    }

    /// The broadcast id: BLAKE3 of [`Self::to_bytes`].
    pub fn id(&self) -> BroadcastId {
        manifest_id(&self.to_bytes())
    }

    /// Decode bytes fetched from a peer for broadcast `expected`.
    ///
    /// In order, each before the next: the length against `max_manifest_bytes`; the BLAKE3
    /// against `expected` (so bytes nobody asked for are never parsed); the msgpack structure and
    /// nesting ([`MANIFEST_MAX_DEPTH`]); the manifest schema (an entry kind other than `File` or
    /// `Dir` is [`ManifestError::UnsupportedKind`]); [`Manifest::validate`]; and last, that the
    /// bytes are the canonical encoding of what they decode to. No filesystem call is made.
    pub fn decode(
        bytes: &[u8],
        expected: &BroadcastId,
        limits: &ManifestLimits,
    ) -> Result<Manifest, ManifestError> {
        let len = bytes.len() as u64;
        if len > limits.max_manifest_bytes {
            return Err(ManifestError::TooLarge {
                len,
                max: limits.max_manifest_bytes,
            });
        }
        let actual = manifest_id(bytes);
        if actual != *expected {
            return Err(ManifestError::IdMismatch {
                expected: *expected,
                actual,
            });
        }
        scan_msgpack(bytes, MANIFEST_MAX_DEPTH).map_err(ManifestError::Malformed)?;
        let manifest: Manifest = rmp_serde::from_slice(bytes).map_err(classify)?;
        manifest.validate(limits)?;
        if manifest.to_bytes() != bytes {
            return Err(ManifestError::NonCanonical);
        }
        Ok(manifest)
    }
}

/// Name the entry kind when serde refused one (a `Symlink`, a `Device`...), else pass the error
/// on.
fn classify(err: rmp_serde::decode::Error) -> ManifestError {
    if let rmp_serde::decode::Error::Syntax(msg) = &err {
        // serde's wording: "unknown variant `Symlink`, expected `File` or `Dir`".
        // (The priority is the other enum: its unknown variants stay `Invalid`.)
        let kinds = msg.contains("expected `File` or `Dir`");
        if let Some(rest) = msg.strip_prefix("unknown variant `").filter(|_| kinds) {
            let kind = rest.rfind("`, expected").map_or(rest, |end| &rest[..end]);
            return ManifestError::UnsupportedKind { kind: quote(kind) };
        }
        // And for a variant given by index: "invalid value: integer `2`, expected variant index
        // 0 <= i < 2".
        if msg.ends_with("expected variant index 0 <= i < 2") {
            let index = msg
                .strip_prefix("invalid value: integer `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("?");
            return ManifestError::UnsupportedKind {
                kind: format!("#{index}"),
            };
        }
    }
    ManifestError::Invalid(err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::{ChunkHash, Entry, EntryKind, MANIFEST_VERSION, MANIFEST_VERSION_V1};

    fn sample() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            name: "n".into(),
            chunk_size: 4096,
            root_mode: Some(0o755),
            entries: vec![
                Entry {
                    path: "d".into(),
                    kind: EntryKind::Dir { mode: 0o755 },
                },
                Entry {
                    path: "f".into(),
                    kind: EntryKind::File {
                        size: 5,
                        mode: 0o644,
                        chunks: vec![ChunkHash([7; 32])],
                    },
                },
            ],
            audience: None,
            priority: swarmcast_proto::Priority::Normal,
        }
    }

    #[test]
    fn golden_shape() {
        let bytes = sample().to_bytes();
        // {"version": 2, "name": "n", "chunk_size": 4096, "root_mode": 0o755, "entries": [..]}
        assert_eq!(&bytes[..10], b"\x85\xa7version\x02");
        assert!(bytes.windows(13).any(|w| w == b"\xa9root_mode\xcd\x01\xed"));
        assert!(bytes.windows(5).any(|w| w == b"\x81\xa3Dir"));
        assert!(bytes.windows(6).any(|w| w == b"\x81\xa4File"));
        // A chunk hash is bin8 of 32 bytes.
        assert!(bytes.windows(3).any(|w| w == [0xc4, 32, 7]));
    }

    /// An audience is part of the canonical bytes (so of the id) only when set, and must be
    /// valid certificate names and groups, sorted, unique and naming someone.
    #[test]
    fn an_audience_is_in_the_bytes_when_set_and_checked() {
        use swarmcast_proto::Audience;
        let plain = sample();
        assert!(!plain.to_bytes().windows(8).any(|w| w == b"audience"));
        let mut m = sample();
        m.audience = Some(Audience {
            names: vec!["n3".into()],
            groups: vec!["a".into(), "gpu".into()],
        });
        let bytes = m.to_bytes();
        assert_ne!(m.id(), plain.id());
        assert_eq!(
            Manifest::decode(&bytes, &m.id(), &ManifestLimits::default()).unwrap(),
            m
        );
        for bad in [
            Audience::default(),
            Audience {
                names: vec!["b".into(), "a".into()],
                groups: vec![],
            },
            Audience {
                names: vec!["a".into(), "a".into()],
                groups: vec![],
            },
            Audience {
                names: vec!["Not_A_Name".into()],
                groups: vec![],
            },
            Audience {
                names: vec![],
                groups: vec!["GPU".into()],
            },
        ] {
            let mut m = sample();
            m.audience = Some(bad.clone());
            let bytes = m.to_bytes();
            let err = Manifest::decode(&bytes, &m.id(), &ManifestLimits::default()).unwrap_err();
            assert!(
                matches!(err, ManifestError::BadAudience { .. }),
                "{bad:?}: {err}"
            );
        }
    }

    /// A priority is part of the canonical bytes (so of the id) only when not normal; a
    /// normal one written out is not canonical, and an unknown one is refused (not as a kind).
    #[test]
    fn a_priority_is_in_the_bytes_when_not_normal() {
        use swarmcast_proto::Priority;
        let limits = ManifestLimits::default();
        let plain = sample();
        assert!(!plain.to_bytes().windows(8).any(|w| w == b"priority"));
        for p in [Priority::High, Priority::Low] {
            let mut m = sample();
            m.priority = p;
            let bytes = m.to_bytes();
            assert!(bytes.windows(8).any(|w| w == b"priority"));
            assert_ne!(m.id(), plain.id());
            assert_eq!(Manifest::decode(&bytes, &m.id(), &limits).unwrap(), m);
        }
        #[derive(serde::Serialize)]
        struct Spelled<'a> {
            version: u32,
            name: &'a str,
            chunk_size: u32,
            root_mode: Option<u32>,
            entries: &'a [Entry],
            priority: &'a str,
        }
        let m = sample();
        for (word, canonical_err) in [("normal", true), ("urgent", false)] {
            let bytes = rmp_serde::to_vec_named(&Spelled {
                version: m.version,
                name: &m.name,
                chunk_size: m.chunk_size,
                root_mode: m.root_mode,
                entries: &m.entries,
                priority: word,
            })
            .unwrap();
            let err = Manifest::decode(&bytes, &manifest_id(&bytes), &limits).unwrap_err();
            if canonical_err {
                assert!(matches!(err, ManifestError::NonCanonical), "{word}: {err}");
            } else {
                assert!(matches!(err, ManifestError::Invalid(_)), "{word}: {err}");
            }
        }
    }

    /// A version-1 manifest as nodes before version 2 built it: no `root_mode`, a `Dir` entry
    /// only for an empty directory.
    fn sample_v1() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION_V1,
            root_mode: None,
            entries: vec![
                Entry {
                    path: "d".into(),
                    kind: EntryKind::Dir { mode: 0o755 },
                },
                Entry {
                    path: "e/f".into(),
                    kind: EntryKind::File {
                        size: 5,
                        mode: 0o644,
                        chunks: vec![ChunkHash([7; 32])],
                    },
                },
            ],
            ..sample()
        }
    }

    #[test]
    fn version_1_is_still_read_and_keeps_its_bytes() {
        let m = sample_v1();
        let bytes = m.to_bytes();
        // {"version": 1, "name": "n", "chunk_size": 4096, "entries": [..]}: no root_mode key.
        assert_eq!(&bytes[..10], b"\x84\xa7version\x01");
        assert!(!bytes.windows(9).any(|w| w == b"root_mode"));
        let back = Manifest::decode(&bytes, &m.id(), &ManifestLimits::default()).unwrap();
        assert_eq!(back, m);
        // In version 1 a `Dir` entry is an empty directory: one with contents is refused.
        let mut m = sample_v1();
        m.entries[0].path = "e".into();
        let err = m.validate(&ManifestLimits::default());
        assert!(
            matches!(&err, Err(ManifestError::AncestorConflict { ancestor, .. }) if ancestor == "e"),
            "{err:?}"
        );
        // A version-1 manifest with a root mode is not one any node built.
        let mut m = sample_v1();
        m.root_mode = Some(0o700);
        assert!(matches!(
            m.validate(&ManifestLimits::default()),
            Err(ManifestError::RootMode { version: 1 })
        ));
    }

    #[test]
    fn version_2_lists_directories_with_contents_and_needs_a_root_mode() {
        let mut m = sample();
        m.entries.push(Entry {
            path: "f/g".into(),
            kind: EntryKind::Dir { mode: 0o700 },
        });
        m.entries.insert(
            1,
            Entry {
                path: "d/x".into(),
                kind: EntryKind::Dir { mode: 0o700 },
            },
        );
        // "d" has "d/x" beneath it: fine in version 2. "f" is a file: nothing may be beneath.
        let err = m.validate(&ManifestLimits::default());
        assert!(
            matches!(&err, Err(ManifestError::AncestorConflict { ancestor, .. }) if ancestor == "f"),
            "{err:?}"
        );
        m.entries.pop();
        let bytes = m.to_bytes();
        assert_eq!(
            Manifest::decode(&bytes, &m.id(), &ManifestLimits::default()).unwrap(),
            m
        );
        m.root_mode = None;
        assert!(matches!(
            m.validate(&ManifestLimits::default()),
            Err(ManifestError::RootMode { version: 2 })
        ));
        m.root_mode = Some(0o4755);
        assert!(matches!(
            m.validate(&ManifestLimits::default()),
            Err(ManifestError::BadMode { mode: 0o4755, .. })
        ));
    }

    #[test]
    fn decodes_its_own_bytes() {
        let m = sample();
        let bytes = m.to_bytes();
        let back = Manifest::decode(&bytes, &m.id(), &ManifestLimits::default()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn variant_by_index_is_refused_by_name() {
        let m = sample();
        let bytes = m.to_bytes();
        // Replace {"Dir": {..}} by {2: {..}}: a variant index serde does not know.
        let at = bytes.windows(4).position(|w| w == b"\xa3Dir").unwrap();
        let mut crafted = bytes[..at].to_vec();
        crafted.push(0x02);
        crafted.extend_from_slice(&bytes[at + 4..]);
        let err = Manifest::decode(&crafted, &manifest_id(&crafted), &ManifestLimits::default());
        assert!(
            matches!(&err, Err(ManifestError::UnsupportedKind { kind }) if kind == "#2"),
            "{err:?}"
        );
    }

    #[test]
    fn non_canonical_integer_is_refused() {
        let m = sample();
        let bytes = m.to_bytes();
        // version 2 as a uint8 (0xcc 0x02) instead of a positive fixint.
        let mut crafted = bytes[..9].to_vec();
        crafted.extend_from_slice(&[0xcc, 0x02]);
        crafted.extend_from_slice(&bytes[10..]);
        let err = Manifest::decode(&crafted, &manifest_id(&crafted), &ManifestLimits::default());
        assert!(matches!(err, Err(ManifestError::NonCanonical)), "{err:?}");
    }
}
