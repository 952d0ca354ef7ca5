//! What a run measured.

use std::collections::{BTreeMap, BTreeSet};

use super::engine::Sim;

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Completion of the last receiver that must complete, seconds.
    pub t: f64,
    /// The lower bound, seconds: `max(F/u_origin, F/d_min, N·F/(u_origin + Σ u_i))`.
    pub t_star: f64,
    /// What the origin uploaded, in copies of the file.
    pub origin_copies: f64,
    /// The same, without what the origin sent the faulty receiver itself.
    pub origin_copies_to_others: f64,
    /// Receivers that must complete but did not.
    pub incomplete: usize,
    /// The faulty receiver of a stalled or corrupt run (drawn per seed), and whether it
    /// completed.
    pub faulty: usize,
    pub faulty_done: bool,
    /// (banning node, banned node), as the cores' `Ban` actions said.
    pub bans: BTreeSet<(usize, usize)>,
    /// Bad pieces delivered, per (downloader, uploader).
    pub bad_delivered: BTreeMap<(usize, usize), u32>,
    /// Requests sent to a peer after banning it.
    pub requests_after_ban: u32,
    /// (banning node, banned node), as the transfers' peer lists say at the end.
    pub banned_in_cores: BTreeSet<(usize, usize)>,
    /// Pieces received that were held or pending already.
    pub duplicates: u32,
    /// Requests the origin declined (super-seeding).
    pub declines: u32,
    /// Stall reports (`BroadcastAction::Stalled`): a transfer with no progress for 5 s while
    /// connected peers held what it lacked.
    pub stalls: u32,
    /// The file's bytes.
    pub bytes: f64,
    /// Each receiver's completion (`done_at[i - 1]` for receiver `i`), virtual seconds from
    /// the origin's first announcement; `None`: it did not complete.
    pub done_at: Vec<Option<f64>>,
    /// Payload bytes sent over each connection that carried any, as (uploader, downloader,
    /// bytes), in that order.
    pub edges: Vec<(usize, usize, f64)>,
}

impl Sim {
    /// The connections that carried payload, as (uploader, downloader, bytes).
    fn edges(&self) -> Vec<(usize, usize, f64)> {
        let n = self.nodes.len();
        let mut edges: Vec<(usize, usize, f64)> = self
            .links
            .iter()
            .map(|&(u, d)| (u, d, self.conns[u * n + d].sent))
            .filter(|e| e.2 > 0.0)
            .collect();
        edges.sort_by_key(|e| (e.0, e.1));
        edges.dedup_by_key(|e| (e.0, e.1));
        edges
    }

    /// What the run measured so far (after [`Sim::run`]: all of it).
    pub fn outcome(&self) -> Outcome {
        let f = self.net.bytes();
        let (origin_up, rates): (f64, Vec<(f64, f64)>) = match &self.net.bound {
            Some((origin, rates)) => (*origin, rates.clone()),
            None => (
                self.net.origin_up,
                self.nodes[1..].iter().map(|n| (n.up, n.down)).collect(),
            ),
        };
        let d_min = rates.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        let sum_up: f64 = rates.iter().map(|r| r.0).sum();
        let t_star = (f / origin_up)
            .max(f / d_min)
            .max(rates.len() as f64 * f / (origin_up + sum_up));
        let must = |i: &usize| self.must_complete(*i);
        let t = (1..self.nodes.len())
            .filter(must)
            .filter_map(|i| self.nodes[i].done_at)
            .max()
            .map_or(0, |t| self.net.before + t + self.net.after) as f64
            / 1e9;
        let incomplete = (1..self.nodes.len())
            .filter(must)
            .filter(|&i| self.nodes[i].done_at.is_none())
            .count();
        let mut banned_in_cores = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate().skip(1) {
            let Some(transfer) = n.core.transfer(&self.id) else {
                continue;
            };
            for s in transfer.peers() {
                if s.banned {
                    banned_in_cores.insert((i, self.index(s.id)));
                }
            }
        }
        Outcome {
            t,
            t_star,
            origin_copies: self.nodes[0].uploaded / f,
            origin_copies_to_others: (self.nodes[0].uploaded - self.origin_to[self.faulty]) / f,
            incomplete,
            faulty: self.faulty,
            faulty_done: self.nodes[self.faulty].done_at.is_some(),
            bans: self.bans.clone(),
            bad_delivered: self.bad_delivered.clone(),
            requests_after_ban: self.requests_after_ban,
            banned_in_cores,
            duplicates: self.duplicates,
            declines: self.declines,
            stalls: self.stalls,
            bytes: f,
            done_at: self.nodes[1..]
                .iter()
                .map(|n| n.done_at.map(|t| t as f64 / 1e9))
                .collect(),
            edges: self.edges(),
        }
    }
}
