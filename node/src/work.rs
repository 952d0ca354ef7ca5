//! A deterministic count of the work the cores do, for tests that bound the cost of one event
//! by counting, not timing.
//!
//! Loops whose length grows with the data (bitfield words, broadcasts visited) call [`tick`].
//! In the unit tests of this crate it adds to a per-thread counter read by [`count`]; in any
//! other build it is an empty inline function.

/// Count `n` units of work.
#[inline(always)]
pub(crate) fn tick(n: u64) {
    #[cfg(test)]
    COUNTER.with(|c| c.set(c.get() + n));
    #[cfg(not(test))]
    let _ = n;
}

#[cfg(test)]
thread_local! {
    static COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Run `f` and return its result with the units of work it counted on this thread.
#[cfg(test)]
pub(crate) fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = COUNTER.with(std::cell::Cell::get);
    let out = f();
    (out, COUNTER.with(std::cell::Cell::get) - before)
}
