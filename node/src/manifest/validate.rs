//! [`Manifest::validate`]: every rule a manifest obeys, checked on the value alone.

use super::error::quote;
use super::{
    EntryKind, MANIFEST_VERSION, MANIFEST_VERSION_V1, Manifest, ManifestError, ManifestLimits,
};

/// Permission bits a mode may carry.
const MODE_MASK: u32 = 0o777;

impl Manifest {
    /// Check every rule a manifest must obey before anything touches the filesystem.
    ///
    /// In order: the version (1 or 2) and the root mode (version 2 only, within `0o777`); the
    /// name (one valid path component); the chunk size (within the
    /// limits, never zero); the entry count; each path (non-empty, relative, no empty, `.` or
    /// `..` components, no NUL or backslash, components and path within the limits) and mode
    /// (within `0o777`); strictly increasing path bytes (so no duplicates); no entry beneath a
    /// file (nor, in version 1, beneath a directory, which there is an empty one); the total size (overflow included) and chunk count; and
    /// finally each file's chunk count against `ceil(size / chunk_size)`. The first rule broken
    /// is reported.
    pub fn validate(&self, limits: &ManifestLimits) -> Result<(), ManifestError> {
        match (self.version, self.root_mode) {
            (MANIFEST_VERSION, Some(mode)) if mode & !MODE_MASK != 0 => {
                return Err(ManifestError::BadMode {
                    path: ".".into(),
                    mode,
                });
            }
            (MANIFEST_VERSION, Some(_)) | (MANIFEST_VERSION_V1, None) => {}
            (MANIFEST_VERSION, None) | (MANIFEST_VERSION_V1, Some(_)) => {
                return Err(ManifestError::RootMode {
                    version: self.version,
                });
            }
            (found, _) => {
                return Err(ManifestError::Version {
                    found,
                    supported: MANIFEST_VERSION,
                });
            }
        }
        check_name(&self.name, limits)?;
        if let Some(a) = &self.audience {
            check_audience(a)?;
        }
        limits.check_chunk_size(self.chunk_size)?;
        let count = self.entries.len() as u64;
        if count > limits.entry_cap() {
            return Err(ManifestError::TooManyEntries {
                count,
                max: limits.entry_cap(),
            });
        }
        for (index, entry) in self.entries.iter().enumerate() {
            check_path(index, &entry.path, limits)?;
            let (EntryKind::File { mode, .. } | EntryKind::Dir { mode }) = entry.kind;
            if mode & !MODE_MASK != 0 {
                return Err(ManifestError::BadMode {
                    path: quote(&entry.path),
                    mode,
                });
            }
        }
        self.check_order()?;
        self.check_ancestors()?;
        self.check_totals(limits)?;
        self.check_chunk_counts()
    }

    fn check_order(&self) -> Result<(), ManifestError> {
        for pair in self.entries.windows(2) {
            let (a, b) = (&pair[0].path, &pair[1].path);
            match a.as_bytes().cmp(b.as_bytes()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(ManifestError::Duplicate { path: quote(b) });
                }
                std::cmp::Ordering::Greater => {
                    return Err(ManifestError::Unsorted {
                        previous: quote(a),
                        path: quote(b),
                    });
                }
            }
        }
        Ok(())
    }

    /// No entry lies beneath a file, and in version 1 none beneath a `Dir` entry either (there
    /// it is an *empty* directory). Needs the entries sorted.
    fn check_ancestors(&self) -> Result<(), ManifestError> {
        // Everything beneath `p` starts with `p/`, and in sorted order such paths form one run
        // after `p`: the first path not below `p/` is the only candidate.
        let mut key = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if self.version != MANIFEST_VERSION_V1 && matches!(entry.kind, EntryKind::Dir { .. }) {
                continue;
            }
            key.clear();
            key.extend_from_slice(entry.path.as_bytes());
            key.push(b'/');
            let rest = &self.entries[i + 1..];
            let at = rest.partition_point(|e| e.path.as_bytes() < key.as_slice());
            if let Some(below) = rest.get(at).filter(|e| e.path.as_bytes().starts_with(&key)) {
                return Err(ManifestError::AncestorConflict {
                    ancestor: quote(&entry.path),
                    path: quote(&below.path),
                });
            }
        }
        Ok(())
    }

    fn check_totals(&self, limits: &ManifestLimits) -> Result<(), ManifestError> {
        let mut bytes = 0u64;
        let mut chunks = 0u64;
        for entry in &self.entries {
            if let EntryKind::File {
                size, chunks: hs, ..
            } = &entry.kind
            {
                bytes = bytes
                    .checked_add(*size)
                    .filter(|total| *total <= limits.max_total_bytes)
                    .ok_or_else(|| ManifestError::TotalTooLarge {
                        path: quote(&entry.path),
                        max: limits.max_total_bytes,
                    })?;
                chunks = chunks.saturating_add(hs.len() as u64);
            }
        }
        if chunks > limits.chunk_cap() {
            return Err(ManifestError::TooManyChunks {
                count: chunks,
                max: limits.chunk_cap(),
            });
        }
        Ok(())
    }

    fn check_chunk_counts(&self) -> Result<(), ManifestError> {
        // Checked non-zero by `ManifestLimits::check_chunk_size`.
        let chunk_size = u64::from(self.chunk_size.max(1));
        for entry in &self.entries {
            if let EntryKind::File { size, chunks, .. } = &entry.kind {
                let expected = size.div_ceil(chunk_size);
                let actual = chunks.len() as u64;
                if actual != expected {
                    return Err(ManifestError::ChunkCount {
                        path: quote(&entry.path),
                        size: *size,
                        actual,
                        expected,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Most names, and most groups, an audience may list.
pub const MAX_AUDIENCE: usize = 1024;

/// An audience names someone (an empty one would admit nobody but the origin), each name a
/// certificate name and each group a certificate group, sorted without duplicates, at most
/// [`MAX_AUDIENCE`] of each.
pub fn check_audience(a: &swarmcast_proto::Audience) -> Result<(), ManifestError> {
    let bad = |reason: String| Err(ManifestError::BadAudience { reason });
    if a.names.is_empty() && a.groups.is_empty() {
        return bad("it names nobody".into());
    }
    if a.names.len() > MAX_AUDIENCE || a.groups.len() > MAX_AUDIENCE {
        return bad(format!("more than {MAX_AUDIENCE} names or groups"));
    }
    for n in &a.names {
        if let Err(e) = swarmcast_certs::validate_name(n) {
            return bad(e.to_string());
        }
    }
    for g in &a.groups {
        if let Err(e) = swarmcast_certs::validate_group(g) {
            return bad(e.to_string());
        }
    }
    if !a.is_canonical() {
        return bad("names and groups must be sorted, without duplicates".into());
    }
    Ok(())
}

/// The broadcast name is one valid path component (also what `node fetch` checks its target
/// against before the daemon is asked).
pub fn check_name(name: &str, limits: &ManifestLimits) -> Result<(), ManifestError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it is `.` or `..`")
    } else if name.contains('/') {
        Some("it contains `/`")
    } else if name.contains('\0') {
        Some("it contains NUL")
    } else if name.contains('\\') {
        Some("it contains a backslash")
    } else if name.len() > limits.max_component_bytes {
        Some("it is longer than the component limit")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ManifestError::InvalidName {
            name: quote(name),
            reason,
        }),
        None => Ok(()),
    }
}

/// A path is relative, `/`-separated, free of empty, `.` and `..` components, NUL and
/// backslashes, and within the length limits. `index` locates an empty path.
pub(crate) fn check_path(
    index: usize,
    path: &str,
    limits: &ManifestLimits,
) -> Result<(), ManifestError> {
    if path.is_empty() {
        return Err(ManifestError::EmptyPath { index });
    }
    if path.len() > limits.max_path_bytes {
        return Err(ManifestError::PathTooLong {
            path: quote(path),
            len: path.len(),
            max: limits.max_path_bytes,
        });
    }
    if path.starts_with('/') {
        return Err(ManifestError::AbsolutePath { path: quote(path) });
    }
    if path.contains('\0') {
        return Err(ManifestError::NulInPath { path: quote(path) });
    }
    if path.contains('\\') {
        return Err(ManifestError::BackslashInPath { path: quote(path) });
    }
    for component in path.split('/') {
        match component {
            "" => return Err(ManifestError::EmptyComponent { path: quote(path) }),
            "." => return Err(ManifestError::DotComponent { path: quote(path) }),
            ".." => return Err(ManifestError::DotDotComponent { path: quote(path) }),
            c if c.len() > limits.max_component_bytes => {
                return Err(ManifestError::ComponentTooLong {
                    path: quote(path),
                    len: c.len(),
                    max: limits.max_component_bytes,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::manifest::{ChunkHash, Entry};

    #[track_caller]
    fn path_err(path: &str) -> ManifestError {
        match check_path(0, path, &ManifestLimits::default()) {
            Err(e) => e,
            Ok(()) => panic!("{path:?} was accepted"),
        }
    }

    #[test]
    fn path_rules() {
        let limits = ManifestLimits::default();
        for ok in [
            "a",
            "a/b",
            "données/ü.txt",
            "日本.bin",
            "..a",
            "a..",
            ".hidden",
            "a/.b",
        ] {
            assert!(check_path(0, ok, &limits).is_ok(), "{ok:?}");
        }
        assert!(matches!(
            path_err(""),
            ManifestError::EmptyPath { index: 0 }
        ));
        assert!(matches!(path_err("/a"), ManifestError::AbsolutePath { .. }));
        assert!(matches!(
            path_err("a//b"),
            ManifestError::EmptyComponent { .. }
        ));
        assert!(matches!(
            path_err("a/"),
            ManifestError::EmptyComponent { .. }
        ));
        assert!(matches!(
            path_err("./a"),
            ManifestError::DotComponent { .. }
        ));
        assert!(matches!(
            path_err("a/../b"),
            ManifestError::DotDotComponent { .. }
        ));
        assert!(matches!(
            path_err(".."),
            ManifestError::DotDotComponent { .. }
        ));
        assert!(matches!(path_err("a\0b"), ManifestError::NulInPath { .. }));
        assert!(matches!(
            path_err("a\\b"),
            ManifestError::BackslashInPath { .. }
        ));
        let long = "x".repeat(256);
        assert!(matches!(
            path_err(&long),
            ManifestError::ComponentTooLong {
                len: 256,
                max: 255,
                ..
            }
        ));
        let deep = vec!["y"; 3000].join("/");
        assert!(matches!(path_err(&deep), ManifestError::PathTooLong { .. }));
    }

    #[test]
    fn name_rules() {
        let limits = ManifestLimits::default();
        assert!(check_name("weights-v2", &limits).is_ok());
        for bad in ["", ".", "..", "a/b", "a\0", "a\\b", &"n".repeat(256)] {
            assert!(
                matches!(
                    check_name(bad, &limits),
                    Err(ManifestError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ancestors_found_past_siblings_that_sort_between() {
        // "a.txt" and "a-b" sort between "a" and "a/b" ('.' and '-' are below '/').
        let file = |path: &str| Entry {
            path: path.into(),
            kind: EntryKind::File {
                size: 1,
                mode: 0o644,
                chunks: vec![ChunkHash([0; 32])],
            },
        };
        let mut m = Manifest {
            version: MANIFEST_VERSION,
            name: "n".into(),
            chunk_size: 4096,
            root_mode: Some(0o755),
            entries: vec![file("a"), file("a-b"), file("a.txt"), file("a/b")],
            audience: None,
            priority: swarmcast_proto::Priority::Normal,
        };
        let err = m.validate(&ManifestLimits::default());
        assert!(
            matches!(&err, Err(ManifestError::AncestorConflict { ancestor, path }) if ancestor == "a" && path == "a/b"),
            "{err:?}"
        );
        m.entries.pop();
        assert!(m.validate(&ManifestLimits::default()).is_ok());
    }

    #[test]
    fn errors_quote_long_paths_cut() {
        let long = "é".repeat(3000);
        let ManifestError::PathTooLong { path, len, .. } = path_err(&long) else {
            panic!("wrong error");
        };
        assert_eq!(len, 6000);
        assert!(path.len() <= 512 + '…'.len_utf8());
        assert!(path.ends_with('…'));
    }
}
