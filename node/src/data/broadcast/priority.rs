//! Broadcasts that compete for a node's links (`node send --priority high|normal|low`).
//!
//! One rule, on both sides of a link: **strict priority with a floor, equal shares among
//! equals.**
//!
//! * **Downloads** ([`shares`]): among the transfers this node is receiving (not complete),
//!   those of the highest priority present split the request budget
//!   ([`SwarmConfig::max_in_flight_bytes`](crate::swarm::SwarmConfig::max_in_flight_bytes))
//!   equally, with no other limit. A transfer of a lower priority gets
//!   [`LOWER_BUDGET_DIVISOR`]th of the budget (split equally within its priority), and at every
//!   peer where a transfer of a higher priority has requests outstanding it may keep at most
//!   [`FLOOR_REQUESTS`] requests: the higher one's pieces are asked of that peer first, the
//!   lower one keeps a trickle (it is never starved), and peers the higher one does not use
//!   (they hold nothing it lacks) serve the lower one at full speed.
//! * **Uploads** ([`UploadSlots`]): the serving side's node-wide upload slots
//!   ([`MAX_CONCURRENT_UPLOADS`](crate::data::serve::MAX_CONCURRENT_UPLOADS)) go to waiting
//!   chunk requests highest priority first, first come first served within a priority; and a
//!   request may take a slot while a request of a higher priority is being served or waits
//!   only if its own priority holds fewer than [`FLOOR_SLOTS`] slots. So a higher priority's
//!   requests get nearly every slot, and with it (a bandwidth cap's token bucket lets the
//!   streams through in turn) nearly all the bandwidth, while a lower one keeps one.
//!
//! Both are pure: the broadcast core hands each transfer its [`Share`] after every event, and
//! the serving shell keeps one [`UploadSlots`] behind a mutex and only wakes the requests it
//! names.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use swarmcast_proto::{BroadcastId, NodeId, Priority};

use crate::swarm::Share;

/// Requests a lower-priority transfer may keep at a peer where a higher one fetches.
pub const FLOOR_REQUESTS: u32 = 1;

/// A lower-priority transfer's request budget is this fraction of the node's.
pub const LOWER_BUDGET_DIVISOR: u64 = 8;

/// Upload slots a lower priority may hold while a higher one is served or waits.
pub const FLOOR_SLOTS: usize = 1;

/// A priority that asked for or gave back a slot this recently still counts as served: its
/// requester's next request is on its way (a round trip), and a lower one that took every
/// free slot meanwhile would keep them for a whole piece each.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// One transfer being received, as [`shares`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Competitor {
    /// The broadcast.
    pub id: BroadcastId,
    /// Its priority (its manifest's).
    pub priority: Priority,
    /// Peers it has requests outstanding at.
    pub busy_at: BTreeSet<NodeId>,
}

/// Each competing transfer's [`Share`] of a node-wide request budget of `budget` bytes (see
/// the [module docs](self)).
pub fn shares(competitors: &[Competitor], budget: u64) -> BTreeMap<BroadcastId, Share> {
    let Some(top) = competitors.iter().map(|c| c.priority).max() else {
        return BTreeMap::new();
    };
    // O(competitors × peers): counted and gathered once per priority, not per competitor.
    let mut count: BTreeMap<Priority, u64> = BTreeMap::new();
    let mut busy: BTreeMap<Priority, BTreeSet<NodeId>> = BTreeMap::new();
    for c in competitors {
        *count.entry(c.priority).or_default() += 1;
        busy.entry(c.priority).or_default().extend(&c.busy_at);
    }
    // Per priority, the peers a higher one fetches from.
    let above = |p: Priority| -> BTreeMap<NodeId, u32> {
        (busy.range(p..).filter(|(q, _)| **q > p))
            .flat_map(|(_, peers)| peers.iter().map(|peer| (*peer, FLOOR_REQUESTS)))
            .collect()
    };
    let capped: BTreeMap<Priority, BTreeMap<NodeId, u32>> = (count.keys())
        .filter(|p| **p < top)
        .map(|p| (*p, above(*p)))
        .collect();
    competitors
        .iter()
        .map(|c| {
            let n = count.get(&c.priority).copied().unwrap_or(1).max(1);
            let share = if c.priority == top {
                Share {
                    max_in_flight_bytes: Some((budget / n).max(1)),
                    capped: BTreeMap::new(),
                }
            } else {
                Share {
                    max_in_flight_bytes: Some((budget / LOWER_BUDGET_DIVISOR / n).max(1)),
                    capped: capped.get(&c.priority).cloned().unwrap_or_default(),
                }
            };
            (c.id, share)
        })
        .collect()
}

/// A request for an upload slot, named by the serving shell.
pub type Ticket = u64;

/// The node-wide upload slots, given out by priority (see the [module docs](self)).
///
/// Call order: [`handle_request`](Self::handle_request) when a chunk request wants a slot,
/// [`handle_abandoned`](Self::handle_abandoned) when one stops waiting (its requester reset
/// the stream), [`handle_released`](Self::handle_released) when a granted slot is given back.
/// Each returns the tickets granted a slot by it, which the shell wakes.
#[derive(Debug)]
pub struct UploadSlots {
    capacity: usize,
    /// Slots held, per priority ([`index`]).
    in_use: [usize; 3],
    /// Requests waiting, per priority, oldest first.
    waiting: [VecDeque<Ticket>; 3],
    /// When each priority last asked for or gave back a slot.
    seen: [Option<Instant>; 3],
    /// The latest `now` given.
    now: Option<Instant>,
}

/// `Low` 0, `Normal` 1, `High` 2.
fn index(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

impl UploadSlots {
    /// `capacity` slots (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            in_use: [0; 3],
            waiting: Default::default(),
            seen: [None; 3],
            now: None,
        }
    }

    /// `ticket`, of a broadcast of priority `p`, wants a slot.
    pub fn handle_request(&mut self, now: Instant, ticket: Ticket, p: Priority) -> Vec<Ticket> {
        self.touch(now, p);
        self.waiting[index(p)].push_back(ticket);
        self.grant()
    }

    /// `ticket` (priority `p`) stops waiting. Whether it was still waiting: `false` means it
    /// was granted already, and its slot must be released.
    pub fn handle_abandoned(
        &mut self,
        now: Instant,
        ticket: Ticket,
        p: Priority,
    ) -> (bool, Vec<Ticket>) {
        self.now = Some(now);
        let q = &mut self.waiting[index(p)];
        let Some(at) = q.iter().position(|t| *t == ticket) else {
            return (false, Vec::new());
        };
        q.remove(at);
        // A higher priority that stopped waiting may let a lower one in.
        (true, self.grant())
    }

    /// A slot held by priority `p` is given back.
    pub fn handle_released(&mut self, now: Instant, p: Priority) -> Vec<Ticket> {
        self.touch(now, p);
        let n = &mut self.in_use[index(p)];
        *n = n.saturating_sub(1);
        self.grant()
    }

    /// Slots held by priority `p`.
    pub fn in_use(&self, p: Priority) -> usize {
        self.in_use[index(p)]
    }

    /// Requests of priority `p` waiting.
    pub fn waiting(&self, p: Priority) -> usize {
        self.waiting[index(p)].len()
    }

    fn touch(&mut self, now: Instant, p: Priority) {
        self.now = Some(now);
        self.seen[index(p)] = Some(now);
    }

    /// Whether a request of priority `p` may take a free slot now.
    fn admits(&self, p: Priority) -> bool {
        let i = index(p);
        let recent =
            |j: usize| (self.seen[j].zip(self.now)).is_some_and(|(seen, now)| now < seen + LINGER);
        let higher = (i + 1..3).any(|j| self.in_use[j] + self.waiting[j].len() > 0 || recent(j));
        self.in_use.iter().sum::<usize>() < self.capacity
            && (!higher || self.in_use[i] < FLOOR_SLOTS)
    }

    /// Grant free slots: first to a priority below its floor, then highest priority first;
    /// oldest first within one.
    fn grant(&mut self) -> Vec<Ticket> {
        let mut granted = Vec::new();
        'more: loop {
            let free = self.in_use.iter().sum::<usize>() < self.capacity;
            let floors = Priority::ALL
                .into_iter()
                .filter(|p| free && self.in_use[index(*p)] < FLOOR_SLOTS);
            for p in floors.chain(Priority::ALL) {
                if !self.waiting[index(p)].is_empty() && self.admits(p) {
                    if let Some(t) = self.waiting[index(p)].pop_front() {
                        self.in_use[index(p)] += 1;
                        granted.push(t);
                        continue 'more;
                    }
                }
            }
            return granted;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    fn competitor(i: u8, priority: Priority, busy_at: &[u8]) -> Competitor {
        Competitor {
            id: BroadcastId([i; 32]),
            priority,
            busy_at: busy_at.iter().map(|&b| node(b)).collect(),
        }
    }

    /// Download budget: the highest priority present splits the budget equally and is not
    /// capped; a lower one gets an eighth, split within its priority, and one request at the
    /// peers a higher one uses, none elsewhere.
    #[test]
    fn the_highest_priority_gets_the_budget_and_lower_ones_a_floor_where_it_fetches() {
        let budget = 32 << 20;
        let c = [
            competitor(1, Priority::High, &[1, 2]),
            competitor(2, Priority::High, &[2]),
            competitor(3, Priority::Normal, &[1, 3]),
            competitor(4, Priority::Low, &[1, 2, 3, 4]),
        ];
        let s = shares(&c, budget);
        let high = &s[&c[0].id];
        assert_eq!(high.max_in_flight_bytes, Some(budget / 2));
        assert!(high.capped.is_empty());
        assert_eq!(s[&c[1].id], *high, "equal priorities, equal shares");
        let normal = &s[&c[2].id];
        assert_eq!(normal.max_in_flight_bytes, Some(budget / 8));
        let capped: Vec<_> = normal.capped.iter().map(|(p, n)| (*p, *n)).collect();
        assert_eq!(
            capped,
            [(node(1), 1), (node(2), 1)],
            "peer 3 is free of high"
        );
        let low = &s[&c[3].id];
        let capped: Vec<_> = low.capped.keys().copied().collect();
        assert_eq!(capped, [node(1), node(2), node(3)], "below high and normal");
        assert!(!low.capped.contains_key(&node(4)));
    }

    /// Equal priorities alone share the budget equally, with no caps; alone, a transfer
    /// gets all of it.
    #[test]
    fn equal_priorities_split_the_budget_equally() {
        let c = [
            competitor(1, Priority::Low, &[1]),
            competitor(2, Priority::Low, &[1]),
        ];
        let s = shares(&c, 1000);
        for x in &c {
            assert_eq!(s[&x.id].max_in_flight_bytes, Some(500));
            assert!(s[&x.id].capped.is_empty());
        }
        let alone = shares(&c[..1], 1000);
        assert_eq!(alone[&c[0].id].max_in_flight_bytes, Some(1000));
    }

    mod core {
        use std::sync::Arc;
        use std::time::Instant;

        use swarmcast_proto::{BroadcastId, BroadcastState, NodeId, Priority};

        use super::super::super::tests::{
            ORIGIN, actions, have, manifest, node, origin_entry, record,
        };
        use super::super::super::{BroadcastAction, BroadcastConfig, Broadcasts};
        use crate::bitfield::Bitfield;
        use crate::manifest::Layout;

        /// A broadcast named `name` of `chunks` chunks (one piece each) at `priority`.
        fn broadcast(
            name: &str,
            chunks: u32,
            priority: Priority,
        ) -> (Arc<crate::manifest::Manifest>, Arc<Layout>, BroadcastId) {
            let (m, _, _, _) = manifest(chunks);
            let mut m = (*m).clone();
            m.name = name.into();
            m.priority = priority;
            let id = m.id();
            let layout = Arc::new(Layout::new(&m));
            (Arc::new(m), layout, id)
        }

        /// Requests outstanding at the origin, per broadcast, as the actions asked for them and
        /// the test answered them.
        fn asked(a: &[BroadcastAction], id: BroadcastId) -> Vec<u32> {
            (a.iter())
                .filter_map(|a| match a {
                    BroadcastAction::Request {
                        id: i, peer, piece, ..
                    } if *i == id && *peer == node(ORIGIN) => Some(*piece),
                    _ => None,
                })
                .collect()
        }

        /// Answer `piece` of `id` and make it durable.
        fn answer(
            c: &mut Broadcasts,
            now: Instant,
            id: BroadcastId,
            piece: u32,
        ) -> Vec<BroadcastAction> {
            let origin: NodeId = node(ORIGIN);
            c.handle_piece_received(now, id, origin, piece, 1);
            c.handle_durable(now, id, Ok(vec![piece]));
            actions(c)
        }

        /// Two broadcasts received at once from the same peer (their origin): the high one gets
        /// its window there, the low one a single request (the floor), which it keeps; once the
        /// high one is complete the low one gets its window back.
        #[test]
        fn a_higher_priority_transfer_gets_the_window_at_a_shared_peer() {
            let now = Instant::now();
            let mut c = Broadcasts::new(BroadcastConfig::default(), node(1), 7);
            let (hm, hl, high) = broadcast("high", 6, Priority::High);
            let (lm, ll, low) = broadcast("low", 64, Priority::Low);
            let mut rh = record(high, 6, BroadcastState::Active);
            rh.name = "high".into();
            let mut rl = record(low, 64, BroadcastState::Active);
            rl.name = "low".into();
            c.handle_registry(now, vec![origin_entry()], vec![rh, rl]);
            c.handle_peer_up(now, node(ORIGIN));
            let _ = actions(&mut c);
            c.add_receiver(now, high, hm, hl, Bitfield::new(6), false, None);
            let all: Vec<u32> = (0..64).collect();
            c.handle_peer_message(now, node(ORIGIN), have(high, 6, &all[..6]));
            let a = actions(&mut c);
            let mut high_out = asked(&a, high);
            assert_eq!(high_out.len(), 4, "the initial window: {a:?}");
            c.add_receiver(now, low, lm, ll, Bitfield::new(64), false, None);
            c.handle_peer_message(now, node(ORIGIN), have(low, 64, &all));
            let a = actions(&mut c);
            let mut low_out = asked(&a, low);
            assert_eq!(low_out.len(), 1, "low keeps the floor beside high: {a:?}");
            // Low's answer is followed by one more request, never more, while high fetches.
            for _ in 0..3 {
                let p = low_out.remove(0);
                let a = answer(&mut c, now, low, p);
                low_out.extend(asked(&a, low));
                high_out.extend(asked(&a, high));
                assert_eq!(low_out.len(), 1, "{a:?}");
            }
            // High completes: low's cap goes.
            while let Some(p) = high_out.pop() {
                let a = answer(&mut c, now, high, p);
                high_out.extend(asked(&a, high));
                low_out.extend(asked(&a, low));
            }
            assert!(c.transfer(&high).is_none_or(|t| t.is_complete()));
            assert!(low_out.len() >= 4, "low gets its window back: {low_out:?}");
        }
    }

    #[track_caller]
    fn held(s: &UploadSlots) -> [usize; 3] {
        [
            s.in_use(Priority::High),
            s.in_use(Priority::Normal),
            s.in_use(Priority::Low),
        ]
    }

    /// Uploads: with low holding every slot, each slot freed goes to a waiting high request
    /// until low is down to its floor of one, which it keeps; low waits while high is served.
    #[test]
    fn upload_slots_go_to_the_higher_priority_and_leave_low_its_floor() {
        let t0 = Instant::now();
        let mut s = UploadSlots::new(4);
        let low: Vec<Ticket> = (0..6).collect();
        let mut granted = Vec::new();
        for &t in &low {
            granted.extend(s.handle_request(t0, t, Priority::Low));
        }
        assert_eq!(
            granted,
            [0, 1, 2, 3],
            "alone, low takes every slot, in order"
        );
        for t in 10..16 {
            assert!(
                s.handle_request(t0, t, Priority::High).is_empty(),
                "no slot free"
            );
        }
        assert_eq!(s.handle_released(t0, Priority::Low), [10]);
        assert_eq!(s.handle_released(t0, Priority::Low), [11]);
        assert_eq!(s.handle_released(t0, Priority::Low), [12]);
        assert_eq!(held(&s), [3, 0, 1]);
        // Low keeps its floor: the last low slot is not taken from it, but high's next waiting
        // request gets the slot high frees, before the low ones that waited longer.
        assert_eq!(s.handle_released(t0, Priority::High), [13]);
        // Low's floor: when low's slot frees, the oldest waiting low request gets it back,
        // although high requests wait too.
        assert_eq!(s.handle_released(t0, Priority::Low), [4]);
        assert_eq!(held(&s), [3, 0, 1]);
        assert_eq!(s.handle_released(t0, Priority::High), [14]);
        assert_eq!(s.handle_released(t0, Priority::High), [15]);
        // Nothing of high waits, but high is still served: low stays at its floor.
        assert!(s.handle_released(t0, Priority::High).is_empty());
        assert!(s.handle_released(t0, Priority::High).is_empty());
        assert_eq!(held(&s), [1, 0, 1]);
        // High's last slot given back: for LINGER its next request may be on its way, and low
        // still waits; after that, low takes the slots again.
        assert!(s.handle_released(t0, Priority::High).is_empty());
        assert_eq!(s.handle_request(t0 + LINGER, 6, Priority::Low), [5, 6]);
        assert_eq!(s.waiting(Priority::Low) + s.waiting(Priority::High), 0);
    }

    /// Equal priorities are first come, first served; an abandoned request gives up its
    /// place (and, when it was a higher one, may let a lower one in).
    #[test]
    fn equal_priorities_are_served_in_order_and_abandoning_frees_the_place() {
        let t0 = Instant::now();
        let mut s = UploadSlots::new(1);
        assert_eq!(s.handle_request(t0, 1, Priority::Normal), [1]);
        assert!(s.handle_request(t0, 2, Priority::Normal).is_empty());
        assert!(s.handle_request(t0, 3, Priority::Normal).is_empty());
        assert_eq!(s.handle_abandoned(t0, 2, Priority::Normal), (true, vec![]));
        assert_eq!(s.handle_released(t0, Priority::Normal), [3]);
        assert_eq!(s.handle_abandoned(t0, 3, Priority::Normal), (false, vec![]));
        assert!(s.handle_released(t0, Priority::Normal).is_empty());
        // Low holds its floor while high is served: another low request waits, with a slot
        // free, until high is done.
        let mut s = UploadSlots::new(3);
        assert_eq!(s.handle_request(t0, 1, Priority::Low), [1]);
        assert_eq!(s.handle_request(t0, 2, Priority::High), [2]);
        assert!(
            s.handle_request(t0, 3, Priority::Low).is_empty(),
            "low at its floor"
        );
        assert!(
            s.handle_released(t0, Priority::High).is_empty(),
            "high lingers"
        );
        assert_eq!(
            s.handle_released(t0 + LINGER, Priority::Low),
            [3],
            "high gone: low again (its floor slot given back and taken)"
        );
        assert_eq!(
            s.handle_request(t0 + LINGER, 4, Priority::Low),
            [4],
            "and more"
        );
    }
}
