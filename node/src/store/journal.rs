//! The `held` journal: an append-only file of durable chunk indices, `u32` little-endian each.
//!
//! A record is appended only after the chunk's data was `fdatasync`ed, and the journal is
//! `fdatasync`ed before the chunk counts as held. A crash mid-append leaves a torn record
//! (fewer than 4 bytes) at the end; [`Journal::open`] truncates it. Out-of-range and duplicate
//! indices are ignored.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::{StoreError, fsx};
use crate::bitfield::Bitfield;

const RECORD: u64 = 4;
/// Bytes read per step while loading, so loading is bounded in memory.
const READ_BLOCK: usize = 64 * 1024;

/// An open journal, positioned for appends.
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes known to be whole records.
    len: u64,
}

impl Journal {
    /// Opens (creating it if missing) the journal at `path` for a broadcast of `chunks` chunks,
    /// and returns the indices it records as held.
    pub(super) fn open(path: &Path, chunks: u32) -> Result<(Journal, Bitfield), StoreError> {
        let io_err = |e: io::Error| StoreError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(StoreError::Unsafe {
                path: path.to_owned(),
                reason: "not a regular file",
            });
        }
        let total = meta.len();
        let len = total - total % RECORD;
        if len != total {
            warn!(path = %path.display(), torn = total - len, "truncating a torn journal record");
            file.set_len(len).map_err(io_err)?;
            file.sync_data().map_err(io_err)?;
        }
        let mut held = Bitfield::new(chunks);
        let (mut out_of_range, mut duplicate) = (0u64, 0u64);
        let mut buf = vec![0u8; READ_BLOCK];
        let mut pos = 0u64;
        while pos < len {
            let n = usize::try_from((len - pos).min(READ_BLOCK as u64)).unwrap_or(READ_BLOCK);
            file.read_exact_at(&mut buf[..n], pos).map_err(io_err)?;
            for rec in buf[..n].chunks_exact(RECORD as usize) {
                let index = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
                if index >= chunks {
                    out_of_range += 1;
                } else if !held.set(index) {
                    duplicate += 1;
                }
            }
            pos += n as u64;
        }
        if out_of_range + duplicate > 0 {
            warn!(path = %path.display(), out_of_range, duplicate, "ignored journal records");
        }
        let journal = Journal {
            file,
            path: path.to_owned(),
            len,
        };
        Ok((journal, held))
    }

    /// Appends `indices` and makes them durable. On failure the journal is cut back to its
    /// previous length (best effort) and nothing counts as appended.
    pub(super) fn append(&mut self, indices: &[u32]) -> Result<(), StoreError> {
        let bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let result = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(StoreError::io(&self.path, e))
            }
        }
    }

    /// Replaces the journal with exactly the indices of `held` (atomically), e.g. after chunks
    /// were found lost on open.
    pub(super) fn rewrite(&mut self, held: &Bitfield) -> Result<(), StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("held");
        let bytes: Vec<u8> = held.iter_ones().flat_map(|i| i.to_le_bytes()).collect();
        fsx::write_atomic(dir, name, &bytes)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.file = file;
        self.len = bytes.len() as u64;
        Ok(())
    }
}
