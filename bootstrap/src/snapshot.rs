//! The registry snapshot on disk: written atomically, reloaded at start.
//!
//! Ages are stored with the wall-clock time of the save; at load the time since then is added, so
//! a bootstrap down for longer than the dead timeout does not revive anyone. (Wall clock is only
//! compared with itself, on the same machine.)

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use swarmcast_net::incarnation::write_atomic;
use swarmcast_proto::{BroadcastRecord, EntryUpdate};

/// File name inside the data dir.
pub const FILE: &str = "registry.snapshot";
/// Largest snapshot file read back.
pub const MAX_BYTES: u64 = 256 << 20;

/// A registry snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unix ms at save time.
    pub saved_unix_ms: u64,
    /// Node entries with their ages at save time (adjusted to load time by [`load`]).
    pub nodes: Vec<EntryUpdate>,
    /// Broadcast records.
    pub broadcasts: Vec<BroadcastRecord>,
}

/// Errors reading or writing a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_BYTES`].
    #[error("{path}: {len} bytes is over the limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file does not decode.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Save atomically (temp file, fsync, rename, fsync dir).
pub fn save(
    dir: &Path,
    nodes: Vec<EntryUpdate>,
    broadcasts: Vec<BroadcastRecord>,
) -> Result<(), SnapshotError> {
    let path = dir.join(FILE);
    let snap = Snapshot {
        saved_unix_ms: unix_ms(),
        nodes,
        broadcasts,
    };
    let bytes = rmp_serde::to_vec_named(&snap).map_err(|e| SnapshotError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::fs::create_dir_all(dir)
        .and_then(|()| write_atomic(&path, &bytes))
        .map_err(|source| SnapshotError::Io { path, source })
}

/// Load the snapshot, if there is one, with ages advanced by the time since it was saved.
pub fn load(dir: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let path = dir.join(FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SnapshotError::Io { path, source }),
    };
    if meta.len() > MAX_BYTES {
        return Err(SnapshotError::TooLarge {
            path,
            len: meta.len(),
        });
    }
    let bytes = std::fs::read(&path).map_err(|source| SnapshotError::Io {
        path: path.clone(),
        source,
    })?;
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.clone(),
        reason,
    };
    swarmcast_proto::scan_msgpack(&bytes, 16).map_err(|e| corrupt(e.to_string()))?;
    let mut snap: Snapshot = rmp_serde::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let elapsed = unix_ms().saturating_sub(snap.saved_unix_ms);
    for u in &mut snap.nodes {
        u.age_ms = u.age_ms.saturating_add(elapsed);
    }
    Ok(Some(snap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcast_proto::{NodeId, NodeRecord, Role, Version};

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("empty").is_none());
        let u = EntryUpdate {
            record: NodeRecord {
                progress_seq: 0,
                id: NodeId([7; 32]),
                name: "n1".into(),
                role: Role::Node,
                addrs: vec!["127.0.0.1:9".parse().expect("addr")],
                version: Version::new(3, 4),
                progress: vec![],
                pull: false,
                groups: Vec::new(),
            },
            age_ms: 100,
        };
        save(dir.path(), vec![u.clone()], vec![]).expect("save");
        let snap = load(dir.path()).expect("load").expect("some");
        assert_eq!(snap.nodes.len(), 1);
        assert_eq!(snap.nodes[0].record, u.record);
        assert!(snap.nodes[0].age_ms >= 100);
        std::fs::write(dir.path().join(FILE), b"\x91\x91\x91garbage").expect("write");
        assert!(matches!(
            load(dir.path()),
            Err(SnapshotError::Corrupt { .. })
        ));
    }
}
