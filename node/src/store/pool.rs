//! Reusable chunk buffers, so that moving a chunk allocates and zeroes nothing.
//!
//! A [`PooledBuf`] is a buffer taken from a [`BufPool`]; dropping it gives its memory back. Its
//! bytes are initialised once, when the pool first allocates it, and stay initialised for every
//! later use, so reading a chunk into it (`read_exact_at`, `read_exact`) needs no zeroing and no
//! `unsafe`. [`PooledBuf::freeze`] turns it into a [`Bytes`] that can be handed to quinn without a
//! copy; the memory returns to the pool when quinn (and everyone else) drops the last handle, which
//! for a sent chunk is when the peer has acknowledged it.
//!
//! The pool keeps at most [`BufPool::new`]'s `max_idle_bytes` of idle buffers; beyond that a
//! returned buffer is freed. Memory in use is bounded by the callers (upload permits, the
//! download budget), not here.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::sync::lock;

/// A shared pool of byte buffers. Cloning it is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct BufPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    idle: Mutex<Idle>,
    max_idle_bytes: usize,
}

#[derive(Debug, Default)]
struct Idle {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

impl BufPool {
    /// A pool that keeps up to `max_idle_bytes` of idle buffers for reuse.
    pub fn new(max_idle_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                idle: Mutex::new(Idle::default()),
                max_idle_bytes,
            }),
        }
    }

    /// A buffer of `len` bytes (their contents are whatever was there before: overwrite them).
    ///
    /// Reuses an idle buffer of at least `len` bytes if there is one, else allocates.
    pub fn take(&self, len: usize) -> PooledBuf {
        let reused = {
            let mut idle = lock(&self.inner.idle);
            // Best fit: the smallest idle buffer that is large enough.
            let pick = idle
                .bufs
                .iter()
                .enumerate()
                .filter(|(_, b)| usable(b) >= len)
                .min_by_key(|(_, b)| b.len())
                .map(|(i, _)| i);
            pick.map(|i| {
                let b = idle.bufs.swap_remove(i);
                idle.bytes -= b.len();
                b
            })
        };
        let data = reused.unwrap_or_else(|| vec![0u8; len + ALIGN]);
        let start = start_of(&data);
        PooledBuf {
            data,
            start,
            len,
            pool: Some(Arc::clone(&self.inner)),
        }
    }

    /// Bytes held by idle buffers.
    pub fn idle_bytes(&self) -> usize {
        lock(&self.inner.idle).bytes
    }
}

/// Every buffer's content starts at a multiple of this many bytes in memory, so that it can be
/// written with `O_DIRECT` (which wants the logical block size; 4096 covers every common one).
pub const ALIGN: usize = 4096;

/// Where the aligned content of `data` starts.
fn start_of(data: &[u8]) -> usize {
    data.as_ptr().align_offset(ALIGN).min(data.len())
}

/// Bytes of `data` usable from its aligned start.
fn usable(data: &[u8]) -> usize {
    data.len() - start_of(data)
}

impl Inner {
    fn give_back(&self, data: Vec<u8>) {
        let mut idle = lock(&self.idle);
        if idle.bytes + data.len() <= self.max_idle_bytes {
            idle.bytes += data.len();
            idle.bufs.push(data);
        }
    }
}

/// A buffer from a [`BufPool`]: `len` initialised bytes, given back to the pool on drop.
#[derive(Debug)]
pub struct PooledBuf {
    /// Fully initialised; only `..len` is the content.
    data: Vec<u8>,
    /// Where the content starts: the first [`ALIGN`]ed byte of `data`.
    start: usize,
    len: usize,
    pool: Option<Arc<Inner>>,
}

impl PooledBuf {
    /// The content, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.start + self.len]
    }

    /// The content.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.start..self.start + self.len]
    }

    /// Bytes of content.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no content.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cheap, cloneable handle on the content; the memory goes back to the pool when the last
    /// handle is dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a buffer taken for `len` bytes occupies (its alignment slack included).
    const fn held(len: usize) -> usize {
        len + ALIGN
    }

    #[test]
    fn buffers_are_reused_and_not_zeroed_again() {
        let pool = BufPool::new(1 << 20);
        let mut a = pool.take(1000);
        a.as_mut_slice().fill(7);
        let ptr = a.as_slice().as_ptr();
        drop(a);
        assert_eq!(pool.idle_bytes(), held(1000));
        // A smaller request reuses the same memory, with its old bytes still there.
        let b = pool.take(10);
        assert_eq!(b.as_slice().as_ptr(), ptr);
        assert_eq!(b.as_slice(), &[7u8; 10]);
        assert_eq!(pool.idle_bytes(), 0);
        // A larger one cannot.
        drop(b);
        let c = pool.take(held(1000) + 1);
        assert_ne!(c.as_slice().as_ptr(), ptr);
        assert_eq!(c.len(), held(1000) + 1);
    }

    #[test]
    fn contents_start_aligned_for_direct_io() {
        let pool = BufPool::new(1 << 22);
        for len in [1, 4096, 5000, 256 << 10, 1 << 20] {
            let a = pool.take(len);
            assert_eq!(
                a.as_slice().as_ptr() as usize % ALIGN,
                0,
                "fresh, {len} bytes"
            );
            assert_eq!(a.len(), len);
            drop(a);
            let b = pool.take(len);
            assert_eq!(
                b.as_slice().as_ptr() as usize % ALIGN,
                0,
                "reused, {len} bytes"
            );
            assert_eq!(b.len(), len);
        }
    }

    #[test]
    fn frozen_bytes_return_when_the_last_handle_drops() {
        let pool = BufPool::new(1 << 20);
        let mut a = pool.take(64);
        a.as_mut_slice().copy_from_slice(&[3u8; 64]);
        let bytes = a.freeze();
        let clone = bytes.slice(8..16);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a handle is still alive");
        assert_eq!(&clone[..], &[3u8; 8]);
        drop(clone);
        assert_eq!(pool.idle_bytes(), held(64));
    }

    #[test]
    fn idle_memory_is_capped() {
        let pool = BufPool::new(held(1000) * 3 / 2);
        let bufs: Vec<PooledBuf> = (0..3).map(|_| pool.take(1000)).collect();
        drop(bufs);
        assert_eq!(
            pool.idle_bytes(),
            held(1000),
            "only what fits under the cap is kept"
        );
    }
}
