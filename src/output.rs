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
    if !s.restricted.is_empty() {
        writeln!(out, "restricted  {}", s.restricted.len())?;
        for r in &s.restricted {
            writeln!(
                out,
                "  {:<10} {:<20} to {}",
                &r.id[..8.min(r.id.len())],
                r.name,
                r.audience
            )?;
        }
    }
    if !s.prioritized.is_empty() {
        writeln!(out, "prioritized {}", s.prioritized.len())?;
        for p in &s.prioritized {
            writeln!(
                out,
                "  {:<10} {:<20} priority {}",
                &p.id[..8.min(p.id.len())],
                p.name,
                p.priority
            )?;
        }
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
        // Only when set, after the last column: --pull, and the certificate's groups.
        let mut extra = String::new();
        if r.pull {
            extra.push_str(" pull");
        }
        if !r.groups.is_empty() {
            extra.push_str(&format!(" groups={}", r.groups.join(",")));
        }
        writeln!(
            out,
            "{:<16} {:<9} {:<7} {:>6}ms {:>14} {:>9}  {:<21} {}{extra}",
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
        let to = b
            .audience
            .as_ref()
            .map_or_else(String::new, |a| format!(" to {a}"));
        writeln!(
            out,
            "broadcast {} {} ({} bytes){to}",
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

/// `YYYY-MM-DD HH:MM:SS` (UTC) of milliseconds since the Unix epoch; `-` for 0 (unknown).
pub fn utc(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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
        "{:<10} {:<20} {:>5} {:<11} {:>15} {:>21}  {:<20}  PATH",
        "ID", "NAME", "SEQ", "STATE", "CHUNKS", "BYTES", "PUBLISHED (UTC)"
    )?;
    for b in list {
        // `*`: the version received/<name> points at.
        let seq = format!("{}{}", b.seq, if b.current { "*" } else { "" });
        writeln!(
            out,
            "{:<10} {:<20} {:>5} {:<11} {:>15} {:>21}  {:<20}  {}",
            &b.id[..8.min(b.id.len())],
            b.name,
            seq,
            b.state,
            format!("{}/{}", b.chunks_held, b.chunks_total),
            format!(
                "{}/{}",
                human_bytes(b.bytes_held),
                human_bytes(b.bytes_total)
            ),
            utc(b.published_ms),
            b.path.as_deref().unwrap_or("-")
        )?;
        if let Some(a) = &b.audience {
            writeln!(out, "           to: {a}")?;
        }
        if !b.priority.is_normal() {
            writeln!(out, "           priority: {}", b.priority)?;
        }
        if let Some(e) = &b.error {
            writeln!(out, "           error: {e}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_of_known_instants() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(1), "1970-01-01 00:00:00");
        // 2000-02-29 (a leap day) 12:34:56.
        assert_eq!(utc(951_827_696_000), "2000-02-29 12:34:56");
        assert_eq!(utc(1_796_180_919_000), "2026-12-02 03:08:39");
    }
}
