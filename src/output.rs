//! Human and JSON renderings of query results. The JSON shapes are documented in the README.
//!
//! Everything is written with `writeln!` to a locked stdout, so that a closed pipe
//! (`node ls | head -1`) is an I/O error the caller turns into a quiet exit, not a panic.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Result;
use swarmcast_certs::PeerInfo;
use swarmcast_node::control::NodeStatus;
use swarmcast_proto::{RegistryView, Status};

pub fn node_status(s: &NodeStatus, as_json: bool) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(s)?)?;
        return Ok(());
    }
    writeln!(out, "node        {} ({})", s.name, s.id)?;
    writeln!(out, "incarnation {}", s.incarnation)?;
    writeln!(out, "listen      {} (advertised {})", s.listen, s.advertise)?;
    match s.bootstrap {
        Some(b) => writeln!(out, "bootstrap   {b}")?,
        None => writeln!(
            out,
            "bootstrap   none reachable (registered before: {})",
            s.registered
        )?,
    }
    for seed in &s.seeds {
        let state = if seed.reachable {
            "reachable"
        } else {
            "unreachable"
        };
        match &seed.last_error {
            Some(e) if !seed.reachable => writeln!(out, "  seed {} {state} ({e})", seed.addr)?,
            _ => writeln!(out, "  seed {} {state}", seed.addr)?,
        }
    }
    writeln!(
        out,
        "registry    {} entries, {} alive",
        s.registry_size, s.registry_alive
    )?;
    writeln!(out, "neighbours  {}", s.neighbours.len())?;
    for n in &s.neighbours {
        let rtt = n
            .rtt_ms
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2} ms"));
        let banned = if n.banned {
            "  banned (serve-only)"
        } else {
            ""
        };
        writeln!(
            out,
            "  {:<16} {:<21} {:<9} {:<9} rtt {rtt}{banned}",
            n.name.as_deref().unwrap_or(&n.id[..8]),
            n.addr,
            n.direction,
            n.state
        )?;
    }
    Ok(())
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Alive => "alive",
        Status::Suspect => "suspect",
        Status::Dead => "dead",
    }
}

pub fn registry(
    addr: SocketAddr,
    peer: &PeerInfo,
    view: &RegistryView,
    as_json: bool,
) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    if as_json {
        let listing = swarmcast_bootstrap::listing::RegistryListing::new(addr, peer, view);
        writeln!(out, "{}", serde_json::to_string_pretty(&listing)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "registry of {} ({addr}): {} entries",
        peer.name,
        view.nodes.len()
    )?;
    writeln!(
        out,
        "{:<16} {:<9} {:<7} {:>8} {:>14} {:>9}  {:<21} ID",
        "NAME", "ROLE", "STATUS", "AGE", "INCARNATION", "HEARTBEAT", "ADDRESS"
    )?;
    for e in &view.nodes {
        let r = &e.record;
        let addr = r
            .addrs
            .first()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        writeln!(
            out,
            "{:<16} {:<9} {:<7} {:>6}ms {:>14} {:>9}  {:<21} {}",
            r.name,
            r.role.as_str(),
            status_str(e.status),
            e.age_ms,
            r.version.incarnation,
            r.version.heartbeat,
            addr,
            r.id.short()
        )?;
    }
    for b in &view.broadcasts {
        writeln!(
            out,
            "broadcast {} {} ({} bytes)",
            b.id.short(),
            b.name,
            b.size
        )?;
    }
    Ok(())
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn broadcasts(list: &[swarmcast_node::data::BroadcastInfo], as_json: bool) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(list)?)?;
        return Ok(());
    }
    if list.is_empty() {
        writeln!(out, "no broadcasts")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<10} {:<20} {:<10} {:>15} {:>21}  PATH",
        "ID", "NAME", "STATE", "CHUNKS", "BYTES"
    )?;
    for b in list {
        writeln!(
            out,
            "{:<10} {:<20} {:<10} {:>15} {:>21}  {}",
            &b.id[..8.min(b.id.len())],
            b.name,
            b.state,
            format!("{}/{}", b.chunks_held, b.chunks_total),
            format!(
                "{}/{}",
                human_bytes(b.bytes_held),
                human_bytes(b.bytes_total)
            ),
            b.path.as_deref().unwrap_or("-")
        )?;
        if let Some(e) = &b.error {
            writeln!(out, "           error: {e}")?;
        }
    }
    Ok(())
}
