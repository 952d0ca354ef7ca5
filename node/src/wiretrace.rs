//! The wire trace: what the data plane did and when, as JSON lines, for `bench swarm --trace`.
//!
//! Off unless the environment variable [`ENV`] names a file when the daemon starts; then every
//! event below is appended to it as one JSON object per line, with `t` the wall-clock time in
//! microseconds since the Unix epoch (comparable between the processes of one machine), `ev`
//! the kind and `b` the short broadcast id. Peers are named by their short node id; the first
//! line (`start`) gives this node's.
//!
//! | `ev` | where | fields |
//! |---|---|---|
//! | `start` | daemon start | `node` |
//! | `req` | requester, a request sent | `peer`, `piece`, `first` (chunk), `count`, `depth` (requests now outstanding at that peer) |
//! | `got` | requester, a request ended | `peer`, `piece`, `outcome` (`ok`, `failed`, `cancelled`), `bytes` (payload read, a cancelled request's too), `why` (a failure's reason: a decline, a bad chunk, a stream error) |
//! | `adv` | a `HaveUpdate` flooded to the neighbours | `chunks` |
//! | `done` | a receiver published its copy | |
//! | `serve` | server, a chunk request ended | `peer`, `first`, `count`, `start` (µs), `outcome` (`answered`: sent or refused with a code; `error`: the stream broke) |
//!
//! Each event is one `write` to a file opened for appending, so lines from the serving tasks
//! and the data plane never interleave. Writing errors turn the trace off; they never touch the
//! data plane.

use std::fs::File;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use swarmcast_proto::NodeId;

/// The variable naming the trace file.
pub const ENV: &str = "SWARMCAST_WIRE_TRACE";

/// Where events go; cheap to clone, a no-op when off.
#[derive(Clone, Debug, Default)]
pub struct WireTrace(Option<Arc<Mutex<File>>>);

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl WireTrace {
    /// A trace into the file named by [`ENV`], or off.
    pub fn from_env(me: NodeId) -> Self {
        let Some(path) = std::env::var_os(ENV) else {
            return Self(None);
        };
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(f) => {
                let t = Self(Some(Arc::new(Mutex::new(f))));
                t.emit("start", None, &serde_json::json!({ "node": me.short() }));
                t
            }
            Err(e) => {
                tracing::warn!(path = %std::path::Path::new(&path).display(), error = %e, "cannot open the wire trace; tracing off");
                Self(None)
            }
        }
    }

    /// Whether events are written.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Append one event: `fields` (a JSON object) with `t`, `ev` and `b` added.
    pub fn emit(&self, ev: &str, broadcast: Option<&str>, fields: &serde_json::Value) {
        let Some(file) = &self.0 else { return };
        let mut obj = match fields {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        obj.insert("t".into(), now_us().into());
        obj.insert("ev".into(), ev.into());
        if let Some(b) = broadcast {
            obj.insert("b".into(), b.into());
        }
        let mut line = serde_json::Value::Object(obj).to_string();
        line.push('\n');
        let mut f = crate::sync::lock(file);
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "wire trace write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_lines_with_time_and_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.jsonl");
        let f = std::fs::File::create(&path).expect("create");
        let t = WireTrace(Some(Arc::new(Mutex::new(f))));
        assert!(t.enabled());
        t.emit("req", Some("ab"), &serde_json::json!({ "first": 3 }));
        WireTrace::default().emit("req", None, &serde_json::json!({}));
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["ev"], "req");
        assert_eq!(lines[0]["b"], "ab");
        assert_eq!(lines[0]["first"], 3);
        assert!(lines[0]["t"].as_u64().expect("t") > 1_600_000_000_000_000);
    }
}
