//! Free disk space, checked before a broadcast is accepted.

use std::io;
use std::path::Path;

use super::ManifestError;

/// Bytes available to an unprivileged user on the filesystem holding `path`.
pub fn free_space(path: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    // The field types differ between platforms; they are u64 on 64-bit Linux.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Ok(blocks.saturating_mul(block_size))
}

/// Whether `needed` bytes fit on the filesystem holding `path`.
pub fn check_free_space(path: &Path, needed: u64) -> Result<(), ManifestError> {
    let available = free_space(path).map_err(|source| ManifestError::FreeSpaceUnknown {
        path: path.to_owned(),
        source,
    })?;
    if needed > available {
        return Err(ManifestError::InsufficientSpace { needed, available });
    }
    Ok(())
}
