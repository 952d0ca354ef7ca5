//! Caps on what a manifest may describe.

use super::error::ManifestError;

/// Chunk size `node send` uses unless told otherwise: 256 KiB. On shaped 25–50 Mbit/s links
/// 1 MiB chunks (one piece each) made a transfer take 1.7–1.9 × T* against 1.15–1.2 × T* with
/// 256 KiB (a receiver forwards a piece only once all of it arrived), and on loopback the two
/// cost the same (`bench pair` 0.356 against 0.361); see BENCHMARKS.md.
pub const DEFAULT_CHUNK_SIZE: u32 = 256 << 10;

/// Caps a manifest must respect, whether built from a directory or received from a peer.
///
/// Every count is additionally capped at `u32::MAX`, because chunk and entry indices are `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Most entries (files plus empty directories).
    pub max_entries: u64,
    /// Most file bytes in total.
    pub max_total_bytes: u64,
    /// Most chunks in total.
    pub max_chunks: u64,
    /// Longest path, in bytes.
    pub max_path_bytes: usize,
    /// Longest path component (and broadcast name), in bytes.
    pub max_component_bytes: usize,
    /// Smallest chunk size accepted.
    pub min_chunk_size: u32,
    /// Largest chunk size accepted.
    pub max_chunk_size: u32,
    /// Largest encoded manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
}

impl Default for ManifestLimits {
    /// One million entries, 16 TiB, 16 Mi chunks (4 TiB at the default 256 KiB chunk size);
    /// paths of 4096 bytes and components of 255 (Linux's `PATH_MAX` and `NAME_MAX`); chunks of
    /// 4 KiB to 16 MiB (the wire's largest chunk payload); encoded manifests up to 256 MiB (the
    /// wire's largest manifest payload).
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_total_bytes: 16 << 40,
            max_chunks: 16_777_216,
            max_path_bytes: 4096,
            max_component_bytes: 255,
            min_chunk_size: 4096,
            max_chunk_size: 16 << 20,
            max_manifest_bytes: 256 << 20,
        }
    }
}

impl ManifestLimits {
    /// Limits for tests: the default path and chunk-size caps, except that any non-zero chunk
    /// size is accepted (so tiny files can span several chunks); 10 000 entries, 100 000 chunks,
    /// 1 GiB in total and 16 MiB manifests.
    pub fn for_test() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 1 << 30,
            max_chunks: 100_000,
            min_chunk_size: 1,
            max_manifest_bytes: 16 << 20,
            ..Self::default()
        }
    }

    /// Whether `chunk_size` is accepted (never zero, whatever the limits say): what
    /// `node send --chunk-size` is checked against before the daemon is asked.
    pub fn check_chunk_size(&self, chunk_size: u32) -> Result<(), ManifestError> {
        let min = self.min_chunk_size.max(1);
        if chunk_size < min || chunk_size > self.max_chunk_size {
            return Err(ManifestError::ChunkSize {
                chunk_size,
                min,
                max: self.max_chunk_size,
            });
        }
        Ok(())
    }

    /// `max_entries`, capped at `u32::MAX`.
    pub(crate) fn entry_cap(&self) -> u64 {
        self.max_entries.min(u64::from(u32::MAX))
    }

    /// `max_chunks`, capped at `u32::MAX`.
    pub(crate) fn chunk_cap(&self) -> u64 {
        self.max_chunks.min(u64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_outside_the_limits_are_refused() {
        let l = ManifestLimits::default();
        assert!(l.check_chunk_size(DEFAULT_CHUNK_SIZE).is_ok());
        assert!(l.check_chunk_size(4096).is_ok());
        assert!(l.check_chunk_size(16 << 20).is_ok());
        for bad in [0, 4095, (16 << 20) + 1] {
            assert!(l.check_chunk_size(bad).is_err(), "{bad} accepted");
        }
        assert!(ManifestLimits::for_test().check_chunk_size(0).is_err());
    }
}
