//! The incarnation counter: persisted in the data dir, higher at every start.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// File name of the counter inside a data dir.
pub const FILE: &str = "incarnation";

/// The next incarnation for a process whose data dir is `dir` (`None`: no persistence).
///
/// It is `max(stored + 1, unix time in ms)`, so it rises at every start, and also after the data
/// dir was wiped (as long as the clock does not jump back by more than the downtime). The new
/// value is written (temp file, fsync, rename) before it is returned.
pub fn next(dir: Option<&Path>) -> std::io::Result<u64> {
    let floor = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let Some(dir) = dir else {
        return Ok(floor);
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    let stored = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let value = stored.map_or(floor, |s| s.saturating_add(1).max(floor));
    write_atomic(&path, format!("{value}\n").as_bytes())?;
    Ok(value)
}

/// Write `bytes` to `path` atomically: temp file in the same dir (created 0600, whatever the
/// umask), fsync, rename, fsync the dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("tmp");
    // A temp file left by a crash may be more open than 0600: start afresh.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_at_every_start_and_after_a_wipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = next(Some(dir.path())).expect("first");
        let b = next(Some(dir.path())).expect("second");
        assert!(b > a, "{b} > {a}");
        std::fs::remove_file(dir.path().join(FILE)).expect("wipe");
        let c = next(Some(dir.path())).expect("after wipe");
        assert!(
            c >= a,
            "{c} >= {a}: the clock floor keeps it from going back far"
        );
        std::fs::write(dir.path().join(FILE), format!("{}\n", u64::MAX - 1)).expect("write");
        assert_eq!(next(Some(dir.path())).expect("big"), u64::MAX);
        assert_eq!(next(Some(dir.path())).expect("saturates"), u64::MAX);
    }

    #[test]
    fn garbage_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), "not a number").expect("write");
        assert!(next(Some(dir.path())).expect("next") > 0);
    }
}
