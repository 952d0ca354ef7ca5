//! The pool: pieces still missing that no live request covers, ordered rarest first.
//!
//! The layout is the one of libtorrent's piece picker. `order` holds the pooled pieces grouped
//! by availability, ascending; `start[a]` is where availability `a` begins. Moving a piece one
//! availability up or down is one swap across a group boundary, and inserting or removing one
//! shifts one element per higher group, so no event costs more than O(availability levels).
//! Within a group the order is random: the initial order is shuffled, and every piece that lands
//! in a group is swapped with a random member of it. Scanning `order` from the front therefore
//! yields rarest first, ties broken at random, deterministic for a given RNG.

use rand::Rng;
use rand::rngs::StdRng;

/// Not in the pool.
const NONE: u32 = u32::MAX;

/// Missing pieces without a live request, by availability. See the [module docs](self).
#[derive(Clone, Debug)]
pub(super) struct Pool {
    /// Pooled pieces, grouped by availability ascending, random within a group.
    order: Vec<u32>,
    /// Index of each piece in `order`, or [`NONE`].
    pos: Vec<u32>,
    /// Availability of every piece, pooled or not.
    avail: Vec<u32>,
    /// `start[a]` is the first index of availability `a` in `order`; the last element is
    /// `order.len()`. There are `start.len() - 1` levels, always more than any availability.
    start: Vec<u32>,
}

impl Pool {
    /// An empty pool of `n` pieces, each of availability 0.
    pub(super) fn new(n: u32) -> Self {
        Self {
            order: Vec::new(),
            pos: vec![NONE; n as usize],
            avail: vec![0; n as usize],
            start: vec![0, 0],
        }
    }

    /// A pool holding `pieces` (availability 0), in random order.
    pub(super) fn with_pieces(n: u32, pieces: impl Iterator<Item = u32>, rng: &mut StdRng) -> Self {
        use rand::seq::SliceRandom;
        let mut pool = Self::new(n);
        pool.order = pieces.collect();
        pool.order.shuffle(rng);
        for (i, &p) in pool.order.iter().enumerate() {
            pool.pos[p as usize] = i as u32;
        }
        pool.start = vec![0, pool.order.len() as u32];
        pool
    }

    /// Pieces in the pool.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether `p` is in the pool.
    pub(super) fn contains(&self, p: u32) -> bool {
        self.pos[p as usize] != NONE
    }

    /// How many counted peers have `p`.
    pub(super) fn avail(&self, p: u32) -> u32 {
        self.avail[p as usize]
    }

    /// Pooled pieces of availability exactly `a`, in pick order.
    pub(super) fn level(&self, a: u32) -> &[u32] {
        let a = a as usize;
        if a + 1 >= self.start.len() {
            return &[];
        }
        &self.order[self.start[a] as usize..self.start[a + 1] as usize]
    }

    /// Pooled pieces of availability `a` or more, rarest first.
    pub(super) fn at_least(&self, a: u32) -> &[u32] {
        let a = (a as usize).min(self.start.len() - 1);
        &self.order[self.start[a] as usize..]
    }

    /// Put `p` in the pool (no-op if it is there).
    pub(super) fn insert(&mut self, p: u32, rng: &mut StdRng) {
        if self.contains(p) {
            return;
        }
        let a = self.avail[p as usize] as usize;
        let levels = self.start.len() - 1;
        self.order.push(p);
        let mut hole = self.order.len() - 1;
        self.start[levels] += 1;
        // Shift each higher level right by one: its first element moves to the hole after it.
        for b in (a + 1..levels).rev() {
            let first = self.start[b] as usize;
            if first != hole {
                self.put(hole, self.order[first]);
            }
            hole = first;
            self.start[b] += 1;
        }
        self.put(hole, p);
        self.mix_with(p, a, rng);
    }

    /// Take `p` out of the pool (no-op if it is not there).
    pub(super) fn remove(&mut self, p: u32) {
        if !self.contains(p) {
            return;
        }
        let a = self.avail[p as usize] as usize;
        let levels = self.start.len() - 1;
        let mut hole = self.pos[p as usize] as usize;
        // Shift each level from `a` up left by one: its last element fills the hole before it.
        for b in a..levels {
            let last = self.start[b + 1] as usize - 1;
            if last != hole {
                self.put(hole, self.order[last]);
            }
            hole = last;
            self.start[b + 1] -= 1;
        }
        self.order.pop();
        self.pos[p as usize] = NONE;
    }

    /// One more counted peer has `p`.
    pub(super) fn inc(&mut self, p: u32, rng: &mut StdRng) {
        let a = self.avail[p as usize] as usize;
        if a + 2 >= self.start.len() {
            self.start.push(self.order.len() as u32);
        }
        self.avail[p as usize] += 1;
        if self.contains(p) {
            // Swap to the end of level `a`, then move the boundary: first of level `a + 1`.
            let last = self.start[a + 1] as usize - 1;
            self.swap(self.pos[p as usize] as usize, last);
            self.start[a + 1] -= 1;
            self.mix_with(p, a + 1, rng);
        }
    }

    /// One counted peer fewer has `p`.
    pub(super) fn dec(&mut self, p: u32, rng: &mut StdRng) {
        let a = self.avail[p as usize] as usize;
        if a == 0 {
            debug_assert!(false, "availability of piece {p} below zero");
            return;
        }
        self.avail[p as usize] -= 1;
        if self.contains(p) {
            // Swap to the front of level `a`, then move the boundary: last of level `a - 1`.
            let first = self.start[a] as usize;
            self.swap(self.pos[p as usize] as usize, first);
            self.start[a] += 1;
            self.mix_with(p, a - 1, rng);
        }
    }

    fn put(&mut self, i: usize, p: u32) {
        self.order[i] = p;
        self.pos[p as usize] = i as u32;
    }

    fn swap(&mut self, i: usize, j: usize) {
        if i != j {
            let (pi, pj) = (self.order[i], self.order[j]);
            self.put(i, pj);
            self.put(j, pi);
        }
    }

    /// Swap `p` with a random member of its level `level`.
    fn mix_with(&mut self, p: u32, level: usize, rng: &mut StdRng) {
        let (s, e) = (self.start[level] as usize, self.start[level + 1] as usize);
        if e - s > 1 {
            let j = rng.random_range(s..e);
            self.swap(self.pos[p as usize] as usize, j);
        }
    }

    /// Check every invariant (tests only).
    #[cfg(test)]
    pub(super) fn check(&self) {
        let levels = self.start.len() - 1;
        assert_eq!(self.start[levels] as usize, self.order.len());
        assert_eq!(self.start[0], 0);
        for a in 0..levels {
            assert!(self.start[a] <= self.start[a + 1]);
            for &p in self.level(a as u32) {
                assert_eq!(
                    self.avail[p as usize] as usize, a,
                    "piece {p} in wrong level"
                );
            }
        }
        for (i, &p) in self.order.iter().enumerate() {
            assert_eq!(self.pos[p as usize] as usize, i);
        }
        let pooled = self.pos.iter().filter(|&&x| x != NONE).count();
        assert_eq!(pooled, self.order.len());
        assert!(self.avail.iter().all(|&a| (a as usize) < levels));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use rand::SeedableRng;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Inc(u32),
        Dec(u32),
    }

    fn op(n: u32) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..n).prop_map(Op::Insert),
            (0..n).prop_map(Op::Remove),
            (0..n).prop_map(Op::Inc),
            (0..n).prop_map(Op::Dec),
        ]
    }

    proptest! {
        /// Against a model: the pool holds exactly the inserted pieces, each level exactly the
        /// pieces of that availability, so the scan order is sorted by availability.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec(op(24), 0..400), seed: u64) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut pool = Pool::new(24);
            let mut in_pool = [false; 24];
            let mut avail = [0u32; 24];
            for op in ops {
                match op {
                    Op::Insert(p) => { pool.insert(p, &mut rng); in_pool[p as usize] = true; }
                    Op::Remove(p) => { pool.remove(p); in_pool[p as usize] = false; }
                    Op::Inc(p) => { pool.inc(p, &mut rng); avail[p as usize] += 1; }
                    Op::Dec(p) => {
                        if avail[p as usize] > 0 {
                            pool.dec(p, &mut rng);
                            avail[p as usize] -= 1;
                        }
                    }
                }
                pool.check();
            }
            for p in 0..24u32 {
                prop_assert_eq!(pool.contains(p), in_pool[p as usize]);
                prop_assert_eq!(pool.avail(p), avail[p as usize]);
            }
            let scan: Vec<u32> = pool.at_least(0).iter().map(|&p| avail[p as usize]).collect();
            prop_assert!(scan.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    /// Once found by `matches_a_model`: inserting below an empty level that sits below a
    /// non-empty one moved a stale element.
    #[test]
    fn insert_below_an_empty_level() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut pool = Pool::new(8);
        pool.insert(0, &mut rng);
        pool.inc(5, &mut rng);
        pool.inc(5, &mut rng);
        pool.insert(5, &mut rng);
        pool.insert(1, &mut rng);
        pool.check();
        assert_eq!(pool.level(1), &[] as &[u32]);
        assert_eq!(pool.level(2), &[5]);
        pool.remove(1);
        pool.check();
        assert_eq!(pool.at_least(0), &[0, 5]);
    }

    #[test]
    fn levels_slice_the_order() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pool = Pool::with_pieces(6, 0..6, &mut rng);
        pool.inc(2, &mut rng);
        pool.inc(2, &mut rng);
        pool.inc(4, &mut rng);
        pool.check();
        assert_eq!(pool.level(2), &[2]);
        assert_eq!(pool.level(1), &[4]);
        assert_eq!(pool.level(0).len(), 4);
        assert_eq!(pool.at_least(1).len(), 2);
        assert_eq!(pool.level(9), &[] as &[u32]);
        pool.remove(4);
        pool.check();
        assert_eq!(pool.at_least(1), &[2]);
    }
}
