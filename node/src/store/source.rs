//! The origin's side: serving chunks from the source directory in place, and remembering what
//! it seeds across restarts.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use swarmcast_proto::BroadcastId;
use tracing::{error, info};

use super::fsx::{self, Access, Create, DirCache, Follow, Handles};
use super::{
    BROADCASTS_DIR, MANIFEST_FILE, ORIGIN_FILE, StoreError, broadcast_dir, decode_manifest,
    read_manifest,
};
use crate::manifest::{ChunkInfo, EntryKind, Layout, Manifest, hash_chunk, manifest_id};

/// The origin's view of a broadcast: chunks read from the source directory, verified.
///
/// Files inside the source directory are opened without following symlinks (the directory
/// itself may be reached through one). Any chunk that no longer matches the manifest, or whose
/// file is short, missing or replaced by a symlink, is [`StoreError::SourceChanged`]: the
/// broadcast must then fail loudly.
pub struct Source {
    dir: PathBuf,
    manifest: Arc<Manifest>,
    layout: Arc<Layout>,
    handles: Handles,
}

impl Source {
    /// Serves the broadcast of `manifest` from `dir`.
    pub fn new(dir: PathBuf, manifest: Arc<Manifest>, layout: Arc<Layout>) -> Source {
        Source {
            dir,
            manifest,
            layout,
            handles: Handles::default(),
        }
    }

    /// The source of a broadcast saved with [`save_origin`]; `None` if `id` is not stored as an
    /// origin under `data_dir`.
    pub fn resume(data_dir: &Path, id: BroadcastId) -> Result<Option<Source>, StoreError> {
        let dir = broadcast_dir(data_dir, id);
        let Some(origin) = fsx::read_small(&dir.join(ORIGIN_FILE))? else {
            return Ok(None);
        };
        let Some(bytes) = read_manifest(data_dir, id)? else {
            return Ok(None);
        };
        let manifest = decode_manifest(&dir.join(MANIFEST_FILE), id, &bytes)?;
        let layout = Layout::new(&manifest);
        let source = fsx::path_from_bytes(origin);
        info!(id = %id.short(), source = %source.display(), "resuming as origin");
        Ok(Some(Source::new(
            source,
            Arc::new(manifest),
            Arc::new(layout),
        )))
    }

    /// The source directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Its chunk and piece tables.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Reads chunk `index` from its source file and verifies it against the manifest.
    pub fn read_chunk(&self, index: u32) -> Result<Vec<u8>, StoreError> {
        let info = self.info(index)?;
        let mut buf = vec![0u8; info.len as usize];
        self.read_run(index, &mut buf)?;
        Ok(buf)
    }

    /// Reads chunks `first..` into `buf`, one after the other, until `buf` is full (it must end
    /// on a chunk boundary), verifying every one against the manifest: the source may have
    /// changed since it was hashed. The directory of the last small file stays open between
    /// files.
    pub fn read_run(&self, first: u32, buf: &mut [u8]) -> Result<(), StoreError> {
        let mut root: Option<OwnedFd> = None;
        let mut dirs = DirCache::default();
        let mut at = 0usize;
        let mut index = first;
        while at < buf.len() {
            let info = self.info(index)?;
            let len = info.len as usize;
            let got = buf.len() - at;
            let Some(out) = buf.get_mut(at..at + len) else {
                return Err(StoreError::WrongLength {
                    index,
                    expected: info.len,
                    got,
                });
            };
            self.read_one(&mut root, &mut dirs, index, info, out)?;
            at += len;
            index += 1;
        }
        Ok(())
    }

    fn info(&self, index: u32) -> Result<ChunkInfo, StoreError> {
        self.layout.chunk(index).ok_or(StoreError::NoSuchChunk {
            index,
            count: self.layout.chunk_count(),
        })
    }

    fn read_one(
        &self,
        root: &mut Option<OwnedFd>,
        dirs: &mut DirCache,
        index: u32,
        info: ChunkInfo,
        out: &mut [u8],
    ) -> Result<(), StoreError> {
        // The layout's entries index the manifest it was computed from.
        let entry = &self.manifest.entries[info.entry as usize];
        let rel = &entry.path;
        let changed = |what: &str| {
            let path = self.dir.join(rel);
            error!(index, path = %path.display(), what, "source changed");
            self.handles.forget(info.entry);
            StoreError::SourceChanged { path, index }
        };
        let single = matches!(&entry.kind, EntryKind::File { chunks, .. } if chunks.len() == 1);
        let opened = if single {
            // Files of one chunk are read once per request: not worth a cached handle.
            (|| {
                let root = match root {
                    Some(fd) => &*fd,
                    None => &*root.insert(fsx::open_dir_path(&self.dir, Follow::Yes)?),
                };
                let parts = fsx::split(&self.dir, rel)?;
                let (name, parents) = fsx::split_last(&self.dir, &parts)?;
                let dir = dirs.open(root, &self.dir, parents, Create::No)?;
                fsx::open_file_in(dir, name, &self.dir.join(rel), Access::Read).map(Arc::new)
            })()
        } else {
            self.handles.get_or_open(info.entry, Access::Read, || {
                let root = fsx::open_dir_path(&self.dir, Follow::Yes)?;
                fsx::open_file_at(&root, &self.dir, rel, Access::Read)
            })
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if fsx::is_not_found(&e) => return Err(changed("missing")),
            Err(StoreError::Unsafe { .. }) => return Err(changed("not a regular file")),
            Err(e) => return Err(e),
        };
        match file.read_exact_at(out, info.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(changed("short")),
            Err(e) => return Err(StoreError::io(self.dir.join(rel), e)),
        }
        if self.manifest.chunk_hash(&info) != Some(&hash_chunk(out)) {
            return Err(changed("hash mismatch"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("dir", &self.dir)
            .field("name", &self.manifest.name)
            .field("chunks", &self.layout.chunk_count())
            .finish_non_exhaustive()
    }
}

/// Records that this node is the origin of `id`, seeding from `source_dir`: writes
/// `broadcasts/<id>/manifest` and `broadcasts/<id>/origin` (the absolute path), each
/// atomically, so that a restarted origin resumes seeding the same id ([`Source::resume`]).
pub fn save_origin(
    data_dir: &Path,
    id: BroadcastId,
    manifest_bytes: &[u8],
    source_dir: &Path,
) -> Result<(), StoreError> {
    let dir = broadcast_dir(data_dir, id);
    let manifest_path = dir.join(MANIFEST_FILE);
    if manifest_id(manifest_bytes) != id {
        return Err(StoreError::ManifestMismatch {
            path: manifest_path,
            id,
        });
    }
    let source = std::path::absolute(source_dir).map_err(|e| StoreError::io(source_dir, e))?;
    fsx::ensure_real_dir(&data_dir.join(BROADCASTS_DIR))?;
    fsx::ensure_real_dir(&dir)?;
    if fsx::read_small(&manifest_path)?.as_deref() != Some(manifest_bytes) {
        fsx::write_atomic(&dir, MANIFEST_FILE, manifest_bytes)?;
    }
    fsx::write_atomic(&dir, ORIGIN_FILE, source.as_os_str().as_bytes())?;
    info!(id = %id.short(), source = %source.display(), "origin saved");
    Ok(())
}
