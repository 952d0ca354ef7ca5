//! Scheduled faults: a receiver killed, restarted, paused or resumed at a virtual time or when
//! the fleet's progress reaches a fraction.
//!
//! * **Kill** (SIGKILL): its links go down at once (its neighbours' cores get `PeerDown`), what
//!   it received but had not committed is lost, what it held durably stays on its disk. A node
//!   killed and never restarted need not complete.
//! * **Restart**: a fresh core (seeded from the run's seed and the restart's number) learns of
//!   the broadcast from the registry, connects again to those of its first neighbours that are
//!   up, fetches the manifest from one and resumes its workspace with the pieces it held. A
//!   restart of a running node kills it first.
//! * **Pause** (SIGSTOP) and **resume** (SIGCONT): a paused node handles nothing and sends and
//!   reads nothing; its connections stay up and what reaches it waits until it resumes. (The
//!   neighbour core, which would drop its links after three missed pings, is not simulated:
//!   the transfers' own deadlines deal with the silence.)
//!
//! The origin (node 0) is not faulted: a restarted origin is a new publication, which this
//! model does not cover.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::engine::{Ev, Life, Sim};
use super::schedule::{FaultAction, ScheduleError, ScheduledFault, When};
use crate::data::{BroadcastConfig, Broadcasts};

impl Sim {
    /// Add `faults` to the run's schedule (before [`Sim::run`]). Nothing is added if one of
    /// them is refused.
    pub fn schedule(&mut self, faults: &[ScheduledFault]) -> Result<(), ScheduleError> {
        let last = self.nodes.len() - 1;
        for f in faults {
            if f.node > last {
                return Err(ScheduleError::NoSuchNode { node: f.node, last });
            }
            if f.node == 0 {
                return Err(ScheduleError::Origin);
            }
            if let When::Progress(p) = f.when
                && !(0.0..=1.0).contains(&p)
            {
                return Err(ScheduleError::Fraction(p));
            }
        }
        for &f in faults {
            let index = self.faults.len();
            self.faults.push(f);
            self.fired.push(None);
            if f.action == FaultAction::Restart {
                self.nodes[f.node].restarts_due += 1;
            }
            match f.when {
                When::At(t) => {
                    let at = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
                    self.push(at.saturating_sub(self.now), Ev::Fault { index });
                }
                When::Progress(_) => self.by_progress.push(index),
            }
        }
        let fraction = |i: &usize| match self.faults[*i].when {
            When::Progress(p) => p,
            When::At(_) => 0.0,
        };
        let mut order = std::mem::take(&mut self.by_progress);
        // Descending, ties in the order given (the next one is popped from the end).
        order.sort_by(|a, b| fraction(b).total_cmp(&fraction(a)).then(b.cmp(a)));
        self.by_progress = order;
        Ok(())
    }

    /// The schedule, and when each fault was carried out (virtual seconds; `None`: never).
    pub fn fault_times(&self) -> Vec<(ScheduledFault, Option<f64>)> {
        self.faults
            .iter()
            .zip(&self.fired)
            .map(|(f, t)| (*f, t.map(|t| t as f64 / 1e9)))
            .collect()
    }

    /// Carry out the faults whose progress fraction the fleet has reached.
    pub(super) fn progress_faults(&mut self) {
        while let Some(&index) = self.by_progress.last() {
            let When::Progress(p) = self.faults[index].when else {
                self.by_progress.pop();
                continue;
            };
            if self.fleet_progress() < p {
                return;
            }
            self.by_progress.pop();
            self.apply_fault(index);
        }
    }

    pub(super) fn apply_fault(&mut self, index: usize) {
        let f = self.faults[index];
        self.fired[index] = Some(self.now);
        match f.action {
            FaultAction::Kill => self.kill(f.node),
            FaultAction::Restart => {
                self.nodes[f.node].restarts_due -= 1;
                self.restart(f.node);
            }
            FaultAction::Pause => {
                if self.nodes[f.node].life == Life::Up {
                    self.nodes[f.node].life = Life::Paused;
                    self.rates_dirty = true;
                }
            }
            FaultAction::Resume => self.resume(f.node),
        }
        self.check_done = true;
    }

    fn kill(&mut self, node: usize) {
        if self.nodes[node].life == Life::Down {
            return;
        }
        let now = self.instant();
        let id = self.id;
        let node_id = self.nodes[node].id;
        let n = &mut self.nodes[node];
        n.life = Life::Down;
        n.pending.clear();
        n.stash.clear();
        n.timer = None;
        n.serving = false;
        let peers = std::mem::take(&mut n.neighbours);
        let len = self.nodes.len();
        for b in peers {
            self.nodes[b].neighbours.remove(&node);
            for (up, down) in [(node, b), (b, node)] {
                self.settle(up, down);
                let c = &mut self.conns[up * len + down];
                c.open = false;
                let queued: Vec<u32> = c.queue.drain(..).collect();
                c.remaining = 0.0;
                if up == 0 {
                    for piece in queued {
                        self.nodes[0]
                            .core
                            .handle_served(now, id, piece, piece + 1, false);
                    }
                }
            }
            if self.nodes[b].life != Life::Down {
                self.nodes[b].core.handle_peer_down(now, node_id);
                if self.nodes[b].life == Life::Up {
                    self.drain(b);
                }
            }
        }
        self.rates_dirty = true;
    }

    fn restart(&mut self, node: usize) {
        self.kill(node);
        let now = self.instant();
        let n = &mut self.nodes[node];
        n.restarts += 1;
        n.life = Life::Up;
        let config = BroadcastConfig {
            swarm: self.net.swarm.clone(),
            ..BroadcastConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(
            self.seed ^ ((node as u64) << 32) ^ u64::from(n.restarts).rotate_left(48),
        );
        n.core = Broadcasts::new(config, n.id, rand::Rng::random(&mut rng));
        n.core
            .handle_registry(now, Vec::new(), vec![self.record.clone()]);
        self.reconnect(node, now);
    }

    fn resume(&mut self, node: usize) {
        if self.nodes[node].life != Life::Paused {
            return;
        }
        let n = &mut self.nodes[node];
        n.life = Life::Up;
        n.timer = None;
        for ev in std::mem::take(&mut n.stash) {
            self.push(0, ev);
        }
        self.rates_dirty = true;
        let now = self.instant();
        self.reconnect(node, now);
    }

    /// Connect `node` again to those of its first neighbours that are up and not linked to it,
    /// then carry out its actions.
    fn reconnect(&mut self, node: usize, now: Instant) {
        let len = self.nodes.len();
        let node_id = self.nodes[node].id;
        for b in self.nodes[node].links.clone() {
            if self.nodes[b].life != Life::Up || self.nodes[node].neighbours.contains(&b) {
                continue;
            }
            self.nodes[node].neighbours.insert(b);
            self.nodes[b].neighbours.insert(node);
            for (u, d) in [(node, b), (b, node)] {
                self.conns[u * len + d].open = true;
                if !self.links.contains(&(u, d)) {
                    self.links.push((u, d));
                }
            }
            let b_id = self.nodes[b].id;
            self.nodes[node].core.handle_peer_up(now, b_id);
            self.nodes[b].core.handle_peer_up(now, node_id);
            self.drain(b);
        }
        self.drain(node);
    }
}
