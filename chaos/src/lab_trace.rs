//! The lab side of `bench swarm --trace DIR`: a summary of the nodes' wire traces (JSON lines
//! written by daemons started with `SWARMCAST_WIRE_TRACE`, see `swarmcast_node::wiretrace`)
//! beside the lab's link counters and the times of `node send --wait`.
//!
//! Per host: bytes from the origin and from peers, duplicates, cancels, failures and declines,
//! arrival → advert and advert → first ask latencies, request → answer latency, queue depth per
//! peer, unused upload seconds (from the link counters), and for the fleet how late
//! `node send --wait` returned after the last completion.
//!
//! What counts as a duplicate, from the trace: a chunk received and verified that this host had
//! already received, and every payload byte of a request that failed or was cancelled (its
//! partial stream). Nodes report the payload bytes a cancelled request had read when it was
//! cancelled (nodes before issue 20 reported `bytes: 0`). The wire figure beside it is an upper
//! bound: the bytes a host received on its link beyond the payload it needed, which include
//! those partial streams, bytes still in flight when a stream was reset, headers,
//! acknowledgements and control messages. Both are reported.
//!
//! Pure: [`summarise`] takes parsed events and samples and returns the summary; the lab does the
//! reading and writing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::netns::Counters;

/// One line of a wire trace. Unknown fields are ignored and missing ones are `None`, so traces
/// of older or newer nodes still parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// Microseconds since the Unix epoch.
    pub t: u64,
    /// The kind: `start`, `req`, `got`, `adv`, `done`, `serve`.
    pub ev: String,
    /// The short broadcast id.
    pub b: Option<String>,
    /// `start`: this node's short id.
    pub node: Option<String>,
    /// `req`, `got`, `serve`: the other node's short id.
    pub peer: Option<String>,
    /// `req`, `got`: the piece.
    pub piece: Option<u32>,
    /// `req`, `serve`: the first chunk.
    pub first: Option<u32>,
    /// `req`, `serve`: chunks.
    pub count: Option<u32>,
    /// `req`: requests outstanding at that peer, this one included.
    pub depth: Option<u32>,
    /// `got`: `ok`, `failed`, `cancelled`; `serve`: `answered`, `error`.
    pub outcome: Option<String>,
    /// `got`: payload bytes received.
    pub bytes: Option<u64>,
    /// `got`: why it failed.
    pub why: Option<String>,
    /// `adv`: the chunks advertised.
    pub chunks: Option<Vec<u32>>,
}

/// Parse a trace file's text: its events, and how many lines were not events (a torn last
/// line of a killed daemon, say).
pub fn parse(text: &str) -> (Vec<Event>, usize) {
    let mut events = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) => bad += 1,
        }
    }
    (events, bad)
}

/// Every host's link counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkSample {
    /// Microseconds since the Unix epoch.
    pub t_us: u64,
    /// Per host.
    pub hosts: BTreeMap<String, Counters>,
}

/// What [`summarise`] needs.
#[derive(Debug, Clone, Default)]
pub struct TraceInput {
    /// F: the broadcast's bytes.
    pub bytes: u64,
    /// The origin's host name.
    pub origin: String,
    /// Only events of this short broadcast id (and those naming none) are counted.
    pub broadcast: Option<String>,
    /// Every host's events, by host name.
    pub hosts: BTreeMap<String, Vec<Event>>,
    /// When `node send` started, µs since the epoch.
    pub send_start_us: u64,
    /// When `node send --wait` returned.
    pub send_return_us: Option<u64>,
    /// Every host's upload rate, Mbit/s.
    pub upload_mbit: BTreeMap<String, f64>,
    /// Link counter samples, in time order.
    pub links: Vec<LinkSample>,
    /// Lines of the trace files that were not events.
    pub unparsed_lines: usize,
}

/// A latency distribution in milliseconds (nearest-rank percentiles).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dist {
    /// Samples.
    pub n: usize,
    /// Median.
    pub median_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

impl Dist {
    /// From samples in milliseconds.
    pub fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self {
            n: v.len(),
            median_ms: percentile(&v, 0.5),
            p90_ms: percentile(&v, 0.9),
            max_ms: v.last().copied(),
        }
    }

    fn text(&self) -> String {
        match (self.median_ms, self.p90_ms) {
            (Some(m), Some(p)) => format!("{m:.0}/{p:.0}"),
            _ => "-".into(),
        }
    }
}

/// The nearest-rank `q` percentile of sorted `v` (the smallest value with at least `q` of the
/// samples at or below it).
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Requests one host sent to one peer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Depth {
    /// Requests sent.
    pub requests: u64,
    /// Mean of the queue depth at that peer when each was sent (this one included).
    pub mean: f64,
    /// The deepest.
    pub max: u32,
}

/// One host's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSummary {
    /// Host name.
    pub name: String,
    /// Its short node id (from its trace's `start`).
    pub node: Option<String>,
    /// Seconds from the start of `node send` to its first request.
    pub first_request_s: Option<f64>,
    /// Seconds from the start of `node send` to its copy published (`done`).
    pub done_s: Option<f64>,
    /// Payload bytes of requests answered in full by the origin.
    pub from_origin_bytes: u64,
    /// Payload bytes of requests answered in full by other peers.
    pub from_peers_bytes: u64,
    /// Payload bytes received, whatever the outcome: answered, failed and cancelled requests.
    pub received_bytes: u64,
    /// Chunks received and verified again after a first copy.
    pub duplicate_chunks: u64,
    /// Duplicate payload bytes: chunks received again, plus every byte of failed and cancelled
    /// requests (as the trace gives them).
    pub duplicate_bytes: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered in full.
    pub ok: u64,
    /// Requests that failed (declines included).
    pub failed: u64,
    /// Payload bytes of failed requests.
    pub failed_bytes: u64,
    /// Requests declined (super-seeding's "already in the swarm").
    pub declines: u64,
    /// Of which by the origin.
    pub declines_by_origin: u64,
    /// Requests cancelled (asked elsewhere, or not needed any more).
    pub cancelled: u64,
    /// Payload bytes of cancelled requests as the trace gives them (what each had read when it
    /// was cancelled; always 0 from nodes built before issue 20).
    pub cancelled_bytes: u64,
    /// Requests with no end in the trace.
    pub unanswered: u64,
    /// A chunk's arrival (its request answered) to its first advert.
    pub arrival_to_advert: Dist,
    /// Chunks received but never advertised.
    pub never_advertised: u64,
    /// This host's advert of a chunk to the first request for it from another host.
    pub advert_to_first_ask: Dist,
    /// Chunks it advertised that no other host asked it for.
    pub adverts_never_asked: u64,
    /// A request sent to its answer in full.
    pub request_to_answer: Dist,
    /// Queue depth at each peer it asked, by host name.
    pub depth: BTreeMap<String, Depth>,
    /// Chunk requests it served.
    pub served: u64,
    /// Of which ended by a broken stream (reset by the requester, usually: a cancel).
    pub served_errors: u64,
    /// Bytes it sent on its link over the samples (headers included).
    pub wire_up_bytes: u64,
    /// Bytes it received on its link over the samples.
    pub wire_down_bytes: u64,
    /// Seconds of upload capacity it left unused in the window (link counters).
    pub unused_upload_s: Option<f64>,
}

/// The whole fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetSummary {
    /// Receivers.
    pub receivers: usize,
    /// Payload received by all receivers, whatever the outcome.
    pub received_bytes: u64,
    /// Duplicates among them (trace).
    pub duplicate_bytes: u64,
    /// `duplicate_bytes / received_bytes`.
    pub duplicate_fraction: f64,
    /// Requests cancelled, all receivers.
    pub cancelled: u64,
    /// Requests declined, all receivers.
    pub declines: u64,
    /// Bytes all receivers received on their links.
    pub wire_down_bytes: u64,
    /// `(wire_down_bytes − N·F) / wire_down_bytes`: what the receivers' links carried beyond
    /// one copy each; an upper bound on duplicates that includes the partial streams of
    /// cancelled requests, headers, acknowledgements and control messages.
    pub wire_excess_fraction: Option<f64>,
}

/// The summary of one traced run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TraceSummary {
    /// F.
    pub bytes: u64,
    /// The origin's host name.
    pub origin: String,
    /// Seconds from the start of `node send` to the first request of any receiver.
    pub first_request_s: Option<f64>,
    /// Seconds from the start of `node send` to the last receiver's `done`.
    pub last_done_s: Option<f64>,
    /// Seconds from the start of `node send` to the return of `--wait`.
    pub wait_return_s: Option<f64>,
    /// `wait_return_s − last_done_s`: how late `--wait` returned after the last completion.
    pub wait_lag_s: Option<f64>,
    /// The window of `unused_upload_s`: from the first request to the last completion,
    /// seconds (the part the link samples cover).
    pub window_s: f64,
    /// Per host, the origin first.
    pub hosts: Vec<HostSummary>,
    /// Totals.
    pub fleet: FleetSummary,
    /// Trace lines that were not events.
    pub unparsed_lines: usize,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    t: u64,
    first: u32,
    count: u32,
}

fn secs(us: i128) -> f64 {
    us as f64 / 1e6
}

fn since(t: u64, start: u64) -> f64 {
    secs(i128::from(t) - i128::from(start))
}

fn ms(from: u64, to: u64) -> f64 {
    (i128::from(to) - i128::from(from)) as f64 / 1e3
}

/// The summary of a traced run.
pub fn summarise(input: &TraceInput) -> TraceSummary {
    // Short node ids to host names, from each trace's `start` lines.
    let mut host_of: HashMap<String, String> = HashMap::new();
    for (name, events) in &input.hosts {
        for e in events.iter().filter(|e| e.ev == "start") {
            if let Some(n) = &e.node {
                host_of.insert(n.clone(), name.clone());
            }
        }
    }
    let wanted = |e: &Event| match (&input.broadcast, &e.b) {
        (Some(want), Some(b)) => want == b,
        _ => true,
    };
    let events: BTreeMap<&str, Vec<&Event>> = input
        .hosts
        .iter()
        .map(|(name, evs)| {
            let mut v: Vec<&Event> = evs.iter().filter(|e| wanted(e)).collect();
            v.sort_by_key(|e| e.t);
            (name.as_str(), v)
        })
        .collect();
    let name_of = |peer: &Option<String>| -> String {
        peer.as_ref()
            .map(|p| host_of.get(p).cloned().unwrap_or_else(|| p.clone()))
            .unwrap_or_default()
    };

    // Requests sent to each host covering each chunk, by time: for advert → first ask.
    let mut asked: HashMap<String, HashMap<u32, Vec<u64>>> = HashMap::new();
    for (name, evs) in &events {
        for e in evs.iter().filter(|e| e.ev == "req") {
            let to = name_of(&e.peer);
            if to == *name {
                continue;
            }
            let (Some(first), Some(count)) = (e.first, e.count) else {
                continue;
            };
            let per_chunk = asked.entry(to).or_default();
            for c in first..first.saturating_add(count) {
                per_chunk.entry(c).or_default().push(e.t);
            }
        }
    }
    for per_chunk in asked.values_mut() {
        for times in per_chunk.values_mut() {
            times.sort_unstable();
        }
    }

    let mut hosts = Vec::new();
    for (&name, evs) in &events {
        let mut h = HostSummary {
            name: name.to_owned(),
            node: evs
                .iter()
                .find(|e| e.ev == "start")
                .and_then(|e| e.node.clone()),
            ..HostSummary::default()
        };
        let mut outstanding: HashMap<(String, u32), VecDeque<Req>> = HashMap::new();
        let mut have: HashSet<u32> = HashSet::new();
        let mut arrived: Vec<(u32, u64)> = Vec::new();
        let mut advertised: HashMap<u32, u64> = HashMap::new();
        let mut answer_ms = Vec::new();
        let mut depth_sum: BTreeMap<String, (u64, u64, u32)> = BTreeMap::new();
        let mut first_req: Option<u64> = None;
        for e in evs {
            match e.ev.as_str() {
                "req" => {
                    let peer = name_of(&e.peer);
                    h.requests += 1;
                    first_req = Some(first_req.map_or(e.t, |f| f.min(e.t)));
                    let d = depth_sum.entry(peer.clone()).or_default();
                    let depth = e.depth.unwrap_or(0);
                    d.0 += 1;
                    d.1 += u64::from(depth);
                    d.2 = d.2.max(depth);
                    if let (Some(piece), Some(first), Some(count)) = (e.piece, e.first, e.count) {
                        outstanding
                            .entry((peer, piece))
                            .or_default()
                            .push_back(Req {
                                t: e.t,
                                first,
                                count,
                            });
                    }
                }
                "got" => {
                    let peer = name_of(&e.peer);
                    let req = e.piece.and_then(|p| {
                        outstanding
                            .get_mut(&(peer.clone(), p))
                            .and_then(VecDeque::pop_front)
                    });
                    let bytes = e.bytes.unwrap_or(0);
                    h.received_bytes += bytes;
                    match e.outcome.as_deref() {
                        Some("ok") => {
                            h.ok += 1;
                            if peer == input.origin {
                                h.from_origin_bytes += bytes;
                            } else {
                                h.from_peers_bytes += bytes;
                            }
                            if let Some(r) = req {
                                answer_ms.push(ms(r.t, e.t));
                                let mut dup = 0u64;
                                for c in r.first..r.first.saturating_add(r.count) {
                                    if have.insert(c) {
                                        arrived.push((c, e.t));
                                    } else {
                                        dup += 1;
                                    }
                                }
                                h.duplicate_chunks += dup;
                                if r.count > 0 {
                                    h.duplicate_bytes += bytes * dup / u64::from(r.count);
                                }
                            }
                        }
                        Some("cancelled") => {
                            h.cancelled += 1;
                            h.cancelled_bytes += bytes;
                            h.duplicate_bytes += bytes;
                        }
                        _ => {
                            h.failed += 1;
                            h.failed_bytes += bytes;
                            h.duplicate_bytes += bytes;
                            // `PieceError::Declined`'s text.
                            if e.why.as_deref().is_some_and(|w| w.starts_with("declined")) {
                                h.declines += 1;
                                if peer == input.origin {
                                    h.declines_by_origin += 1;
                                }
                            }
                        }
                    }
                }
                "adv" => {
                    for &c in e.chunks.iter().flatten() {
                        advertised.entry(c).or_insert(e.t);
                    }
                }
                "done" => {
                    h.done_s = Some(since(e.t, input.send_start_us));
                }
                "serve" => {
                    h.served += 1;
                    if e.outcome.as_deref() == Some("error") {
                        h.served_errors += 1;
                    }
                }
                _ => {}
            }
        }
        h.first_request_s = first_req.map(|t| since(t, input.send_start_us));
        h.unanswered = outstanding.values().map(|q| q.len() as u64).sum();
        h.request_to_answer = Dist::of(answer_ms);
        let mut to_advert = Vec::new();
        for (c, t) in &arrived {
            match advertised.get(c) {
                Some(a) => to_advert.push(ms(*t, *a).max(0.0)),
                None => h.never_advertised += 1,
            }
        }
        h.arrival_to_advert = Dist::of(to_advert);
        let mut to_ask = Vec::new();
        let asks = asked.get(name);
        for (c, a) in &advertised {
            let next = asks.and_then(|m| m.get(c)).and_then(|times| {
                let i = times.partition_point(|t| t < a);
                times.get(i).copied()
            });
            match next {
                Some(t) => to_ask.push(ms(*a, t)),
                None => h.adverts_never_asked += 1,
            }
        }
        h.advert_to_first_ask = Dist::of(to_ask);
        h.depth = depth_sum
            .into_iter()
            .map(|(peer, (n, sum, max))| {
                (
                    peer,
                    Depth {
                        requests: n,
                        mean: sum as f64 / n.max(1) as f64,
                        max,
                    },
                )
            })
            .collect();
        hosts.push(h);
    }

    let receivers: Vec<&HostSummary> = hosts.iter().filter(|h| h.name != input.origin).collect();
    let first_request_s = receivers
        .iter()
        .filter_map(|h| h.first_request_s)
        .min_by(f64::total_cmp);
    let last_done_s = receivers
        .iter()
        .filter_map(|h| h.done_s)
        .max_by(f64::total_cmp);
    let wait_return_s = input.send_return_us.map(|t| since(t, input.send_start_us));

    // Unused upload over [first request, last completion] (or the whole send, if unknown).
    let w0 = first_request_s.unwrap_or(0.0);
    let w1 = last_done_s.or(wait_return_s).unwrap_or(w0);
    let rel = |s: &LinkSample| since(s.t_us, input.send_start_us);
    let mut window_s = 0.0;
    for pair in input.links.windows(2) {
        let (a, b) = (rel(&pair[0]), rel(&pair[1]));
        window_s += (b.min(w1) - a.max(w0)).max(0.0);
    }
    for h in &mut hosts {
        if let (Some(first), Some(last)) = (input.links.first(), input.links.last()) {
            let c = |s: &LinkSample| s.hosts.get(&h.name).copied().unwrap_or_default();
            h.wire_up_bytes = c(last).up.saturating_sub(c(first).up);
            h.wire_down_bytes = c(last).down.saturating_sub(c(first).down);
        }
        let Some(rate) = input.upload_mbit.get(&h.name).map(|m| m * 1e6 / 8.0) else {
            continue;
        };
        let mut unused = 0.0;
        for pair in input.links.windows(2) {
            let (a, b) = (rel(&pair[0]), rel(&pair[1]));
            let overlap = (b.min(w1) - a.max(w0)).max(0.0);
            if overlap <= 0.0 || b <= a {
                continue;
            }
            let up = |s: &LinkSample| s.hosts.get(&h.name).map_or(0, |c| c.up);
            let sent = up(&pair[1]).saturating_sub(up(&pair[0])) as f64 * overlap / (b - a);
            unused += (overlap - sent / rate).max(0.0);
        }
        h.unused_upload_s = Some(unused);
    }
    // The origin first, then the receivers by name.
    hosts.sort_by_key(|h| (h.name != input.origin, h.name.clone()));

    let rx: Vec<&HostSummary> = hosts.iter().filter(|h| h.name != input.origin).collect();
    let received: u64 = rx.iter().map(|h| h.received_bytes).sum();
    let dups: u64 = rx.iter().map(|h| h.duplicate_bytes).sum();
    let wire: u64 = rx.iter().map(|h| h.wire_down_bytes).sum();
    let one_copy_each = input.bytes.saturating_mul(rx.len() as u64);
    let fleet = FleetSummary {
        receivers: rx.len(),
        received_bytes: received,
        duplicate_bytes: dups,
        duplicate_fraction: dups as f64 / received.max(1) as f64,
        cancelled: rx.iter().map(|h| h.cancelled).sum(),
        declines: rx.iter().map(|h| h.declines).sum(),
        wire_down_bytes: wire,
        wire_excess_fraction: (wire > 0)
            .then(|| (wire as f64 - one_copy_each as f64).max(0.0) / wire as f64),
    };
    TraceSummary {
        bytes: input.bytes,
        origin: input.origin.clone(),
        first_request_s,
        last_done_s,
        wait_return_s,
        wait_lag_s: wait_return_s.zip(last_done_s).map(|(w, d)| w - d),
        window_s,
        hosts,
        fleet,
        unparsed_lines: input.unparsed_lines,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

impl TraceSummary {
    /// A human summary: one line per host, then the fleet.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "trace: F = {:.1} MiB, {} receivers, origin = {}",
            mib(self.bytes),
            self.fleet.receivers,
            self.origin
        );
        let _ = writeln!(
            s,
            "  from the start of node send: first request {} s, last completion {} s, --wait returned {} s ({} s after the last completion)",
            opt(self.first_request_s, 3),
            opt(self.last_done_s, 3),
            opt(self.wait_return_s, 3),
            self.wait_lag_s
                .map_or_else(|| "-".into(), |l| format!("{l:+.3}"))
        );
        let _ = writeln!(
            s,
            "  {:<8} {:>7} {:>9} {:>9} {:>13} {:>6} {:>10} {:>9} {:>9} {:>9} {:>11} {:>11} {:>7}",
            "host",
            "done s",
            "origin",
            "peers",
            "dups",
            "cancel",
            "fail(decl)",
            "arr>adv",
            "adv>ask",
            "req>ans",
            "depth@orig",
            "depth@peer",
            "idle up"
        );
        let _ = writeln!(
            s,
            "  {:<8} {:>7} {:>9} {:>9} {:>13} {:>6} {:>10} {:>9} {:>9} {:>9} {:>11} {:>11} {:>7}",
            "",
            "",
            "MiB",
            "MiB",
            "MiB (%)",
            "n",
            "n",
            "med/p90ms",
            "med/p90ms",
            "med/p90ms",
            "mean/max",
            "mean/max",
            "s"
        );
        for h in &self.hosts {
            let (at_origin, at_peers) = self.depths(h);
            let dup_pct = h.duplicate_bytes as f64 / h.received_bytes.max(1) as f64 * 100.0;
            let _ = writeln!(
                s,
                "  {:<8} {:>7} {:>9.1} {:>9.1} {:>13} {:>6} {:>10} {:>9} {:>9} {:>9} {:>11} {:>11} {:>7}",
                h.name,
                opt(h.done_s, 2),
                mib(h.from_origin_bytes),
                mib(h.from_peers_bytes),
                format!("{:.1} ({dup_pct:.1}%)", mib(h.duplicate_bytes)),
                h.cancelled,
                format!("{}({})", h.failed, h.declines),
                h.arrival_to_advert.text(),
                h.advert_to_first_ask.text(),
                h.request_to_answer.text(),
                at_origin,
                at_peers,
                opt(h.unused_upload_s, 1),
            );
        }
        let f = &self.fleet;
        let _ = writeln!(
            s,
            "  receivers: payload received {:.1} MiB, duplicates {:.1} MiB ({:.1}%: chunks received twice, failed and cancelled requests' bytes as traced), {} cancelled, {} declined",
            mib(f.received_bytes),
            mib(f.duplicate_bytes),
            f.duplicate_fraction * 100.0,
            f.cancelled,
            f.declines
        );
        let _ = writeln!(
            s,
            "  receivers' links carried {:.1} MiB, {} beyond one copy each (an upper bound on duplicates: it includes partial streams of cancelled requests, headers, acks and control)",
            mib(f.wire_down_bytes),
            f.wire_excess_fraction
                .map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
        );
        let _ = writeln!(
            s,
            "  idle up: upload seconds unused (link counters) over the {:.2} s from the first request to the last completion",
            self.window_s
        );
        if self.unparsed_lines > 0 {
            let _ = writeln!(s, "  {} trace lines were not events", self.unparsed_lines);
        }
        s
    }

    /// "mean/max" of a host's queue depth at the origin and at every other peer together.
    fn depths(&self, h: &HostSummary) -> (String, String) {
        let fmt = |ds: Vec<&Depth>| {
            let n: u64 = ds.iter().map(|d| d.requests).sum();
            if n == 0 {
                return "-".to_owned();
            }
            let mean = ds.iter().map(|d| d.mean * d.requests as f64).sum::<f64>() / n as f64;
            let max = ds.iter().map(|d| d.max).max().unwrap_or(0);
            format!("{mean:.1}/{max}")
        };
        let (o, p): (Vec<_>, Vec<_>) = h.depth.iter().partition(|(n, _)| **n == self.origin);
        (
            fmt(o.into_iter().map(|(_, d)| d).collect()),
            fmt(p.into_iter().map(|(_, d)| d).collect()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000_000;

    /// A line at `ms` milliseconds after T0.
    fn line(ms: u64, rest: &str) -> String {
        format!("{{\"t\":{},{rest}}}", T0 + ms * 1000)
    }

    fn counters(up: u64, down: u64) -> Counters {
        Counters {
            up,
            down,
            ..Counters::default()
        }
    }

    /// An origin `O` and two receivers: r1 gets chunks 0 and 1 from the origin (chunk 1 twice:
    /// once more from r2), a cancelled request with 100 partial bytes and a decline; r2 gets
    /// chunk 0 from r1 after r1's advert, and chunk 1 from the origin.
    fn input() -> TraceInput {
        let o = [
            line(0, r#""ev":"start","node":"oooo""#),
            line(
                100,
                r#""ev":"serve","b":"bb","peer":"1111","first":0,"count":1,"outcome":"answered""#,
            ),
            line(
                260,
                r#""ev":"serve","b":"bb","peer":"1111","first":2,"count":1,"outcome":"error""#,
            ),
        ];
        let r1 = [
            line(0, r#""ev":"start","node":"1111""#),
            line(
                10,
                r#""ev":"req","b":"bb","peer":"oooo","piece":0,"first":0,"count":1,"depth":1"#,
            ),
            line(
                12,
                r#""ev":"req","b":"bb","peer":"oooo","piece":1,"first":1,"count":1,"depth":2"#,
            ),
            line(
                14,
                r#""ev":"req","b":"bb","peer":"oooo","piece":2,"first":2,"count":1,"depth":3"#,
            ),
            line(
                16,
                r#""ev":"req","b":"bb","peer":"oooo","piece":3,"first":3,"count":1,"depth":4"#,
            ),
            line(
                18,
                r#""ev":"req","b":"bb","peer":"2222","piece":1,"first":1,"count":1,"depth":1"#,
            ),
            line(
                110,
                r#""ev":"got","b":"bb","peer":"oooo","piece":0,"outcome":"ok","bytes":1000,"why":"""#,
            ),
            line(115, r#""ev":"adv","b":"bb","chunks":[0]"#),
            line(
                150,
                r#""ev":"got","b":"bb","peer":"oooo","piece":1,"outcome":"ok","bytes":1000,"why":"""#,
            ),
            line(
                170,
                r#""ev":"got","b":"bb","peer":"2222","piece":1,"outcome":"ok","bytes":1000,"why":"""#,
            ),
            line(190, r#""ev":"adv","b":"bb","chunks":[1]"#),
            line(
                250,
                r#""ev":"got","b":"bb","peer":"oooo","piece":2,"outcome":"cancelled","bytes":100,"why":"""#,
            ),
            line(
                255,
                r#""ev":"got","b":"bb","peer":"oooo","piece":3,"outcome":"failed","bytes":0,"why":"declined: the piece is already in the swarm""#,
            ),
            line(400, r#""ev":"done","b":"bb""#),
            // Another broadcast: not counted.
            line(
                410,
                r#""ev":"req","b":"cc","peer":"oooo","piece":0,"first":0,"count":1,"depth":9"#,
            ),
            r#"{"t":12,"ev":"got","b":"bb","pe"#.to_owned(),
        ];
        let r2 = [
            line(0, r#""ev":"start","node":"2222""#),
            line(
                20,
                r#""ev":"req","b":"bb","peer":"oooo","piece":1,"first":1,"count":1,"depth":1"#,
            ),
            line(
                135,
                r#""ev":"req","b":"bb","peer":"1111","piece":0,"first":0,"count":1,"depth":1"#,
            ),
            line(
                140,
                r#""ev":"got","b":"bb","peer":"oooo","piece":1,"outcome":"ok","bytes":1000,"why":"""#,
            ),
            line(141, r#""ev":"adv","b":"bb","chunks":[1]"#),
            line(
                235,
                r#""ev":"got","b":"bb","peer":"1111","piece":0,"outcome":"ok","bytes":1000,"why":"""#,
            ),
            line(236, r#""ev":"adv","b":"bb","chunks":[0]"#),
            line(500, r#""ev":"done","b":"bb""#),
        ];
        let mut hosts = BTreeMap::new();
        let mut bad = 0;
        for (name, lines) in [("O", &o[..]), ("r1", &r1[..]), ("r2", &r2[..])] {
            let (events, b) = parse(&lines.join("\n"));
            bad += b;
            hosts.insert(name.to_owned(), events);
        }
        // 8 Mbit/s = 1e6 bytes/s each. Samples at 0, 0.5 s and 1 s after T0.
        let sample = |ms: u64, o: (u64, u64), r1: (u64, u64), r2: (u64, u64)| LinkSample {
            t_us: T0 + ms * 1000,
            hosts: BTreeMap::from([
                ("O".to_owned(), counters(o.0, o.1)),
                ("r1".to_owned(), counters(r1.0, r1.1)),
                ("r2".to_owned(), counters(r2.0, r2.1)),
            ]),
        };
        TraceInput {
            bytes: 2000,
            origin: "O".into(),
            broadcast: Some("bb".into()),
            hosts,
            send_start_us: T0,
            send_return_us: Some(T0 + 650_000),
            upload_mbit: ["O", "r1", "r2"]
                .into_iter()
                .map(|h| (h.to_owned(), 8.0))
                .collect(),
            links: vec![
                sample(0, (0, 0), (0, 0), (0, 0)),
                // O sends 200 KB in the first half second: 0.2 s used of 0.49 in the window.
                sample(500, (200_000, 0), (0, 3000), (0, 0)),
                sample(1000, (200_000, 0), (1000, 3500), (0, 2500)),
            ],
            unparsed_lines: bad,
        }
    }

    fn host<'a>(s: &'a TraceSummary, name: &str) -> &'a HostSummary {
        s.hosts.iter().find(|h| h.name == name).expect("host")
    }

    #[test]
    fn bytes_by_source_duplicates_cancels_and_declines() {
        let s = summarise(&input());
        let r1 = host(&s, "r1");
        assert_eq!(r1.from_origin_bytes, 2000);
        assert_eq!(r1.from_peers_bytes, 1000);
        // Chunk 1 twice (1000) and the cancelled request's 100 partial bytes.
        assert_eq!(r1.duplicate_chunks, 1);
        assert_eq!(r1.duplicate_bytes, 1100);
        assert_eq!(r1.received_bytes, 3100);
        assert_eq!((r1.cancelled, r1.cancelled_bytes), (1, 100));
        assert_eq!((r1.failed, r1.declines, r1.declines_by_origin), (1, 1, 1));
        assert_eq!((r1.requests, r1.ok, r1.unanswered), (5, 3, 0));
        let r2 = host(&s, "r2");
        assert_eq!((r2.from_origin_bytes, r2.from_peers_bytes), (1000, 1000));
        assert_eq!(r2.duplicate_bytes, 0);
        assert_eq!(s.fleet.received_bytes, 5100);
        assert_eq!(s.fleet.duplicate_bytes, 1100);
        assert!((s.fleet.duplicate_fraction - 1100.0 / 5100.0).abs() < 1e-12);
        // The other broadcast's request and the torn line are left out.
        assert_eq!(s.unparsed_lines, 1);
        assert_eq!(host(&s, "O").served, 2);
        assert_eq!(host(&s, "O").served_errors, 1);
    }

    #[test]
    fn latencies_from_arrival_to_advert_and_from_advert_to_the_first_ask() {
        let s = summarise(&input());
        let r1 = host(&s, "r1");
        // Chunk 0 arrived at 110 and was advertised at 115; chunk 1 at 150 and 190.
        assert_eq!(r1.arrival_to_advert.n, 2);
        assert_eq!(r1.arrival_to_advert.median_ms, Some(5.0));
        assert_eq!(r1.arrival_to_advert.max_ms, Some(40.0));
        // r1 advertised chunk 0 at 115, r2 asked r1 for it at 135; nobody asked r1 for chunk 1
        // after its advert at 190.
        assert_eq!(r1.advert_to_first_ask.n, 1);
        assert_eq!(r1.advert_to_first_ask.median_ms, Some(20.0));
        assert_eq!(r1.adverts_never_asked, 1);
        // r2 advertised chunk 1 at 141, but r1's request for it (at 18) came before: not an
        // answer to the advert.
        let r2 = host(&s, "r2");
        assert_eq!(r2.advert_to_first_ask.n, 0);
        assert_eq!(r2.adverts_never_asked, 2);
        // Request to answer: r1's 100, 138, 152 ms.
        assert_eq!(r1.request_to_answer.n, 3);
        assert_eq!(r1.request_to_answer.median_ms, Some(138.0));
        assert_eq!(r1.request_to_answer.p90_ms, Some(152.0));
    }

    #[test]
    fn queue_depth_per_peer() {
        let s = summarise(&input());
        let r1 = host(&s, "r1");
        assert_eq!(
            r1.depth["O"],
            Depth {
                requests: 4,
                mean: 2.5,
                max: 4
            }
        );
        assert_eq!(r1.depth["r2"].requests, 1);
        assert!(!r1.depth.contains_key("oooo"));
        assert_eq!(s.depths(r1), ("2.5/4".to_owned(), "1.0/1".to_owned()));
    }

    #[test]
    fn wait_lag_and_unused_upload_from_the_counters() {
        let s = summarise(&input());
        assert_eq!(s.first_request_s, Some(0.010));
        assert_eq!(s.last_done_s, Some(0.5));
        assert_eq!(s.wait_return_s, Some(0.65));
        assert!((s.wait_lag_s.expect("lag") - 0.15).abs() < 1e-9);
        // Window 0.01..0.5 s, within the first sample interval (0..0.5).
        assert!((s.window_s - 0.49).abs() < 1e-9, "{}", s.window_s);
        let o = host(&s, "O");
        // 200 KB over 0.5 s, 0.49 s of it in the window: 196 KB sent, 0.196 s of the
        // 1 MB/s link; 0.294 s unused.
        let unused = o.unused_upload_s.expect("unused");
        assert!((unused - 0.294).abs() < 1e-9, "{unused}");
        // r2 sent nothing: the whole window unused.
        assert!((host(&s, "r2").unused_upload_s.expect("r2") - 0.49).abs() < 1e-9);
        assert_eq!(host(&s, "r1").wire_down_bytes, 3500);
        // Receivers' links: 6000 bytes for 2 × 2000 of payload: a third beyond one copy each.
        assert_eq!(s.fleet.wire_down_bytes, 6000);
        let excess = s.fleet.wire_excess_fraction.expect("excess");
        assert!((excess - 2000.0 / 6000.0).abs() < 1e-12);
        // The origin comes first.
        assert_eq!(s.hosts[0].name, "O");
    }

    #[test]
    fn the_text_names_every_host_and_the_lag() {
        let t = summarise(&input()).to_text();
        assert!(t.contains("+0.150"), "{t}");
        for h in ["O", "r1", "r2"] {
            assert!(t.lines().any(|l| l.trim_start().starts_with(h)), "{t}");
        }
        assert!(t.contains("1 trace lines were not events"), "{t}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&v, 1.0), Some(10.0));
        assert_eq!(percentile(&v[..1], 0.9), Some(1.0));
        assert_eq!(percentile(&[], 0.5), None);
        let d = Dist::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((d.n, d.median_ms, d.max_ms), (3, Some(2.0), Some(3.0)));
    }
}
