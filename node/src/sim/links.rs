//! The links: which connections send, their max-min fair rates, and the bytes they move on
//! the virtual clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::engine::{Conn, Ev, Fault, Life, Sim};

/// A resource's fair share of what is left of its capacity, ordered by share, then resource.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Share(f64, usize);

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

impl Sim {
    pub(super) fn sending(&self, up: usize, down: usize, c: &Conn) -> bool {
        c.open
            && !c.queue.is_empty()
            && !(self.fault == Fault::Stalled && up == self.faulty)
            && self.nodes[up].life == Life::Up
            && self.nodes[down].life == Life::Up
    }

    /// Max-min fair rates of the sending connections (progressive filling).
    pub(super) fn recompute_rates(&mut self) {
        self.rates_dirty = false;
        let n = self.nodes.len();
        for (u, d) in std::mem::take(&mut self.active) {
            self.settle(u, d);
            let c = &mut self.conns[u * n + d];
            c.rate = 0.0;
            c.finish = u64::MAX;
        }
        self.finishing.clear();
        let flows: Vec<(usize, usize)> = self
            .links
            .iter()
            .copied()
            .filter(|&(u, d)| self.sending(u, d, &self.conns[u * n + d]))
            .collect();
        // Resources 0..n are uploads, n..2n downloads.
        let mut cap: Vec<f64> = (0..2 * n)
            .map(|r| {
                if r < n {
                    self.nodes[r].up
                } else {
                    self.nodes[r - n].down
                }
            })
            .collect();
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); 2 * n];
        for (f, &(u, d)) in flows.iter().enumerate() {
            users[u].push(f);
            users[n + d].push(f);
        }
        let mut count: Vec<usize> = users.iter().map(Vec::len).collect();
        // The resource with the least fair share first: a heap of (share, resource), an
        // entry made stale when its resource's share changes (a fresh one is pushed then).
        // Progressive filling reaches the one max-min fair allocation whatever the order of
        // ties, in O((flows + resources) log resources).
        let mut heap: BinaryHeap<Reverse<Share>> = (0..2 * n)
            .filter(|&r| count[r] > 0)
            .map(|r| Reverse(Share(cap[r] / count[r] as f64, r)))
            .collect();
        let mut rate = vec![f64::NAN; flows.len()];
        while let Some(Reverse(Share(share, r))) = heap.pop() {
            if count[r] == 0 || share != cap[r] / count[r] as f64 {
                continue;
            }
            for &f in &users[r] {
                if !rate[f].is_nan() {
                    continue;
                }
                rate[f] = share;
                let (u, d) = flows[f];
                for res in [u, n + d] {
                    cap[res] -= share;
                    count[res] -= 1;
                    if res != r && count[res] > 0 {
                        heap.push(Reverse(Share(cap[res] / count[res] as f64, res)));
                    }
                }
            }
        }
        let mut used = vec![0.0; 2 * n];
        for (f, &(u, d)) in flows.iter().enumerate() {
            let r = rate[f].max(0.0);
            let c = &mut self.conns[u * n + d];
            c.rate = r;
            c.since = self.now;
            self.schedule_finish(u, d);
            used[u] += r;
            used[n + d] += r;
        }
        for (r, used) in used.iter().enumerate() {
            let cap = if r < n {
                self.nodes[r].up
            } else {
                self.nodes[r - n].down
            };
            self.saturated[r] = *used >= 0.98 * cap;
        }
        self.active = flows;
    }

    /// Bring `up → down`'s bytes sent and left up to date, at its current rate.
    pub(super) fn settle(&mut self, up: usize, down: usize) {
        let n = self.nodes.len();
        let now = self.now;
        let c = &mut self.conns[up * n + down];
        let dt = now.saturating_sub(c.since) as f64 / 1e9;
        c.since = now;
        if c.queue.is_empty() || c.rate <= 0.0 || dt == 0.0 {
            return;
        }
        let sent = (c.rate * dt).min(c.remaining.max(0.0));
        c.sent += sent;
        c.remaining -= c.rate * dt;
        self.nodes[up].uploaded += sent;
        if up == 0 && sent > 0.0 {
            self.origin_last = now;
            self.origin_to[down] += sent;
        }
    }

    /// When `up → down`'s head piece ends at its rate: recorded, and pushed on the heap.
    pub(super) fn schedule_finish(&mut self, up: usize, down: usize) {
        let n = self.nodes.len();
        let now = self.now;
        let c = &mut self.conns[up * n + down];
        if c.rate > 0.0 && !c.queue.is_empty() {
            c.finish = now + (c.remaining.max(0.0) / c.rate * 1e9).ceil() as u64;
            self.finishing.push(Reverse((c.finish, up, down)));
        } else {
            c.finish = u64::MAX;
        }
    }

    /// The next end of a piece on a connection, dropping stale entries.
    pub(super) fn next_completion(&mut self) -> Option<u64> {
        let n = self.nodes.len();
        while let Some(&Reverse((t, u, d))) = self.finishing.peek() {
            if self.conns[u * n + d].finish == t {
                return Some(t);
            }
            self.finishing.pop();
        }
        None
    }

    pub(super) fn advance(&mut self, to: u64) {
        let n = self.nodes.len();
        self.now = to;
        while let Some(&Reverse((t, up, down))) = self.finishing.peek() {
            if t > to {
                break;
            }
            self.finishing.pop();
            if self.conns[up * n + down].finish != t {
                continue;
            }
            self.settle(up, down);
            let c = self.conn(up, down);
            let Some(piece) = c.queue.pop_front() else {
                continue; // a finish is scheduled only for a connection with a queue
            };
            if up == 0 {
                let now = self.instant();
                let id = self.id;
                self.nodes[0]
                    .core
                    .handle_served(now, id, piece, piece + 1, true);
            }
            let piece_bytes = self.net.piece_bytes as f64;
            let c = self.conn(up, down);
            c.remaining = if c.queue.is_empty() { 0.0 } else { piece_bytes };
            if c.queue.is_empty() {
                self.rates_dirty = true;
            }
            self.schedule_finish(up, down);
            let delay = self.delay(up, down);
            self.push(delay, Ev::Data { up, down, piece });
        }
    }
}
