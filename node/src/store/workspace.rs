//! A receiver's copy of one broadcast: durable, resumable, published atomically when done.

use std::fs::{File, Permissions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use swarmcast_proto::BroadcastId;
use tracing::{debug, info, warn};

use super::fsx::{self, Access, Create, DirCache, Follow, Handles};
use super::journal::Journal;
use super::received::{check_name, link_received};
use super::{
    BROADCASTS_DIR, COMPLETE_FILE, DATA_DIR, JOURNAL_FILE, MANIFEST_FILE, ORIGIN_FILE,
    RECEIVED_DIR, StoreError, available_space, broadcast_dir, check_space, decode_manifest,
};
use crate::bitfield::Bitfield;
use crate::manifest::{ChunkInfo, EntryKind, Layout, Manifest, hash_chunk, manifest_id};

/// Mode of files while they are being received (the manifest's modes are applied on
/// [`Workspace::finalize`]).
const RECEIVING_FILE_MODE: u32 = 0o600;

/// Bits a received directory always keeps whatever its manifest mode: the owner's (the
/// daemon's) read and search, without which it could not serve, link or remove what is inside.
const DIR_OWNER_BITS: u32 = 0o500;

/// A commit touching more files than this makes them durable with one `syncfs` rather than an
/// `fdatasync` per file.
const SYNCFS_ABOVE: usize = 32;

/// A receiver's workspace for one broadcast, `D/broadcasts/<id>/`.
///
/// # Use
/// 1. [`Workspace::open`] at start-up for each stored receiver broadcast, or
///    [`Workspace::create`] once a manifest was fetched and validated.
/// 2. [`Workspace::write_chunk`] for every chunk that arrives (verified here first), from as
///    many threads as needed.
/// 3. [`Workspace::commit`] every ~50–100 ms: only then are the written chunks *held*
///    ([`Workspace::held`]), which decides what survives a crash (resume). A chunk is servable
///    ([`Workspace::read_chunk`]) as soon as it is verified and written, before it is durable:
///    its bytes are correct, so peers lose nothing by getting it early.
/// 4. [`Workspace::finalize`] once [`Workspace::is_complete`].
pub struct Workspace {
    id: BroadcastId,
    /// `D/broadcasts/<id>`.
    dir: PathBuf,
    /// `D/broadcasts/<id>/data`.
    data_path: PathBuf,
    /// `D/received`.
    received: PathBuf,
    manifest: Arc<Manifest>,
    layout: Arc<Layout>,
    /// A handle on `data/`: every file is reached from it without following symlinks.
    data: OwnedFd,
    state: Mutex<State>,
    /// Also serialises [`Workspace::commit`] and [`Workspace::finalize`].
    journal: Mutex<Journal>,
    handles: Handles,
    /// `O_DIRECT` handles for chunk writes that are aligned.
    direct: Handles,
    /// This filesystem refused `O_DIRECT`: every write is buffered.
    pub(super) no_direct: AtomicBool,
    /// Unit tests: opening with `O_DIRECT` fails with `EINVAL`, as on a filesystem without it.
    #[cfg(test)]
    pub(super) refuse_direct: AtomicBool,
}

#[derive(Debug)]
struct State {
    /// Durable chunks.
    held: Bitfield,
    /// Chunks whose bytes this process checked against their hash (written after verifying, or
    /// read back and hashed once): serving them again needs no hashing.
    verified: Bitfield,
    /// Chunks written since the last commit (maybe with duplicates).
    pending: Vec<u32>,
    /// A file was created since the last commit: its directory entry must be made durable too.
    created: bool,
    /// Chunks verified and written, durable or not: what may be served.
    written: Bitfield,
    /// The `complete` marker exists.
    finalized: bool,
}

impl Workspace {
    /// Creates the workspace of a validated manifest (or resumes it if it exists: this is
    /// idempotent with [`Workspace::open`]).
    ///
    /// Checks that the bytes not yet present fit on disk, then writes the manifest file
    /// (atomically), creates every directory, every empty file and every file of more than one
    /// chunk (sparse, at its final size, mode 0o600), and an empty journal. A file of exactly
    /// one chunk is created when that chunk is written ([`Workspace::write_run`]): a dataset of
    /// many small files then costs one file creation per file, not a creation and a reopen.
    pub fn create(
        data_dir: &Path,
        id: BroadcastId,
        manifest_bytes: &[u8],
        manifest: Arc<Manifest>,
        layout: Arc<Layout>,
    ) -> Result<Workspace, StoreError> {
        let dir = broadcast_dir(data_dir, id);
        let manifest_path = dir.join(MANIFEST_FILE);
        if manifest_id(manifest_bytes) != id {
            return Err(StoreError::ManifestMismatch {
                path: manifest_path,
                id,
            });
        }
        let fresh = !fsx::exists(&dir)?;
        if fresh {
            check_space(&dir, layout.total_bytes, available_space(&dir)?)?;
        }
        fsx::ensure_real_dir(&data_dir.join(BROADCASTS_DIR))?;
        fsx::ensure_real_dir(&dir)?;
        if fsx::exists(&dir.join(ORIGIN_FILE))? {
            return Err(StoreError::IsOrigin { id });
        }
        if fsx::read_small(&manifest_path)?.as_deref() != Some(manifest_bytes) {
            fsx::write_atomic(&dir, MANIFEST_FILE, manifest_bytes)?;
        }
        let ws = Self::load(data_dir, id, manifest, layout)?;
        if !fresh {
            check_space(&dir, ws.missing_bytes(), available_space(&dir)?)?;
        }
        info!(id = %id.short(), fresh, "workspace ready");
        Ok(ws)
    }

    /// Reopens a workspace after a restart or a crash; `None` if there is none for `id` (no
    /// directory, or one left before its manifest was written).
    ///
    /// Checks the manifest file against `id`, loads the journal (dropping a torn trailing
    /// record, out-of-range and duplicate indices) and, unless finalized, recreates missing
    /// directories and files. A file that had to be recreated or resized loses its held chunks.
    pub fn open(data_dir: &Path, id: BroadcastId) -> Result<Option<Workspace>, StoreError> {
        let dir = broadcast_dir(data_dir, id);
        if !fsx::exists(&dir)? {
            return Ok(None);
        }
        fsx::ensure_real_dir(&dir)?;
        if fsx::exists(&dir.join(ORIGIN_FILE))? {
            return Err(StoreError::IsOrigin { id });
        }
        let path = dir.join(MANIFEST_FILE);
        let Some(bytes) = fsx::read_small(&path)? else {
            return Ok(None);
        };
        let manifest = decode_manifest(&path, id, &bytes)?;
        let layout = Layout::new(&manifest);
        Self::load(data_dir, id, Arc::new(manifest), Arc::new(layout)).map(Some)
    }

    /// Opens the parts of a workspace whose manifest file is in place.
    fn load(
        data_dir: &Path,
        id: BroadcastId,
        manifest: Arc<Manifest>,
        layout: Arc<Layout>,
    ) -> Result<Workspace, StoreError> {
        let dir = broadcast_dir(data_dir, id);
        fsx::remove_stale_temps(&dir);
        let data_path = dir.join(DATA_DIR);
        fsx::ensure_real_dir(&data_path)?;
        let data = fsx::open_dir_path(&data_path, Follow::No)?;
        let (mut journal, mut held) = Journal::open(&dir.join(JOURNAL_FILE), layout.chunk_count())?;
        let complete_path = dir.join(COMPLETE_FILE);
        let mut finalized = fsx::exists(&complete_path)?;
        if finalized && !held.is_complete() {
            warn!(id = %id.short(), "complete marker on an incomplete workspace; resuming");
            std::fs::remove_file(&complete_path).map_err(|e| StoreError::io(&complete_path, e))?;
            fsx::sync_dir(&dir)?;
            finalized = false;
        }
        if !finalized {
            let lost = repair(&data, &data_path, &manifest)?;
            if !lost.is_empty() {
                let before = held.count_ones();
                held = without_entries(&held, &layout, &lost);
                if held.count_ones() != before {
                    warn!(
                        id = %id.short(),
                        files = lost.len(),
                        chunks = before - held.count_ones(),
                        "files were missing or resized; their chunks must be fetched again"
                    );
                    journal.rewrite(&held)?;
                }
            }
            // Make the directory entries of every file durable before any chunk written into
            // them can count as held.
            fsx::sync_filesystem(&data, &data_path)?;
        }
        debug!(id = %id.short(), held = held.count_ones(), finalized, "workspace loaded");
        Ok(Workspace {
            id,
            dir,
            data_path,
            received: data_dir.join(RECEIVED_DIR),
            manifest,
            layout,
            data,
            state: Mutex::new(State {
                verified: Bitfield::new(held.len()),
                written: held.clone(),
                held,
                pending: Vec::new(),
                created: false,
                finalized,
            }),
            journal: Mutex::new(journal),
            handles: Handles::default(),
            direct: Handles::default(),
            no_direct: AtomicBool::new(false),
            #[cfg(test)]
            refuse_direct: AtomicBool::new(false),
        })
    }

    /// The broadcast.
    pub fn id(&self) -> BroadcastId {
        self.id
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// Its chunk and piece tables.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// `D/broadcasts/<id>/data`, where the files are.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The chunks durably held (a copy).
    pub fn held(&self) -> Bitfield {
        fsx::lock(&self.state).held.clone()
    }

    /// Whether one chunk is durably held.
    pub fn is_held(&self, index: u32) -> bool {
        fsx::lock(&self.state).held.get(index)
    }

    /// Whether every chunk is durably held (then [`Workspace::finalize`] may be called).
    pub fn is_complete(&self) -> bool {
        fsx::lock(&self.state).held.is_complete()
    }

    /// Whether [`Workspace::finalize`] has completed (the `complete` marker exists).
    pub fn is_finalized(&self) -> bool {
        fsx::lock(&self.state).finalized
    }

    /// Verifies a chunk against the layout (length, then BLAKE3) and writes it in place.
    ///
    /// The chunk is then *pending*: it is held only after the next [`Workspace::commit`].
    /// Rejected data ([`StoreError::WrongLength`], [`StoreError::HashMismatch`]) is never
    /// written. Writing a chunk already held does nothing.
    pub fn write_chunk(&self, index: u32, data: &[u8]) -> Result<(), StoreError> {
        let info = self.chunk(index)?;
        if data.len() != info.len as usize {
            return Err(StoreError::WrongLength {
                index,
                expected: info.len,
                got: data.len(),
            });
        }
        self.write_run(index, data)
    }

    /// [`Workspace::write_chunk`] for consecutive chunks `first..` whose bytes are `data`, one
    /// after the other (a piece as it arrived), in one call: one blocking task per piece, and
    /// the directory of the last file kept open between files.
    ///
    /// Chunks are verified and written in order; the first that fails verification stops the
    /// run with its error, and the chunks before it stay written (pending). `data` must end on
    /// a chunk boundary ([`StoreError::WrongLength`] for the chunk it cuts).
    pub fn write_run(&self, first: u32, data: &[u8]) -> Result<(), StoreError> {
        let mut dirs = DirCache::default();
        let mut at = 0usize;
        let mut index = first;
        while at < data.len() {
            let info = self.chunk(index)?;
            let len = info.len as usize;
            let Some(bytes) = data.get(at..at + len) else {
                return Err(StoreError::WrongLength {
                    index,
                    expected: info.len,
                    got: data.len() - at,
                });
            };
            if self.manifest.chunk_hash(&info) != Some(&hash_chunk(bytes)) {
                return Err(StoreError::HashMismatch { index });
            }
            if !self.is_held(index) {
                let created = self.write_verified(&mut dirs, info, bytes)?;
                let mut st = fsx::lock(&self.state);
                st.pending.push(index);
                st.verified.set(index);
                st.written.set(index);
                st.created |= created;
            }
            at += len;
            index += 1;
        }
        Ok(())
    }

    /// Takes file `entry` whole from workspace `from` (its entry `from_entry`, every chunk of
    /// which `from` holds) by hard-linking it, instead of writing its chunks: incremental
    /// transfer of a file that did not change between versions. The link is read back and every
    /// chunk checked against this manifest's hashes before it counts; on any error (the source
    /// gone, a different filesystem, a mismatch) nothing is left and the chunks are simply
    /// fetched. The chunks are then pending, as if written, until the next [`commit`](Self::commit)
    /// (Self::commit).
    ///
    /// The versions share the inode from then on: nothing writes a complete file again, and
    /// removing one version unlinks only its name. (Applying this manifest's modes changes the
    /// other version's too, where they differ.)
    pub fn link_file(
        &self,
        entry: u32,
        from: &Workspace,
        from_entry: u32,
    ) -> Result<(), StoreError> {
        let chunks: Vec<ChunkInfo> = self
            .layout
            .chunks
            .iter()
            .copied()
            .filter(|c| c.entry == entry)
            .collect();
        let (Some(dst_rel), Some(src_rel)) = (
            self.manifest.entries.get(entry as usize).map(|e| &e.path),
            from.manifest
                .entries
                .get(from_entry as usize)
                .map(|e| &e.path),
        ) else {
            return Err(StoreError::NoSuchChunk {
                index: entry,
                count: self.layout.chunk_count(),
            });
        };
        {
            let st = fsx::lock(&from.state);
            let first = from
                .layout
                .chunks
                .iter()
                .position(|c| c.entry == from_entry);
            let held = first.is_some_and(|f| {
                (f..from.layout.chunks.len())
                    .take_while(|&i| from.layout.chunks[i].entry == from_entry)
                    .all(|i| st.held.get(i as u32))
            });
            if !held {
                return Err(StoreError::NotHeld { index: from_entry });
            }
        }
        let src_parts = fsx::split(&from.data_path, src_rel)?;
        let (src_name, src_dirs) = fsx::split_last(&from.data_path, &src_parts)?;
        let src_dir = fsx::open_dir_at(&from.data, &from.data_path, src_dirs, Create::No)?;
        let dst_parts = fsx::split(&self.data_path, dst_rel)?;
        let (dst_name, dst_dirs) = fsx::split_last(&self.data_path, &dst_parts)?;
        let dst_dir = fsx::open_dir_at(&self.data, &self.data_path, dst_dirs, Create::Yes)?;
        let dst_path = || self.data_path.join(dst_rel);
        let tmp = fsx::temp_name("swarmcast-link");
        nix::unistd::linkat(&src_dir, src_name, &dst_dir, tmp.as_str(), AtFlags::empty())
            .map_err(|e| StoreError::io(from.data_path.join(src_rel), e))?;
        let placed = nix::fcntl::renameat(&dst_dir, tmp.as_str(), &dst_dir, dst_name)
            .map_err(|e| StoreError::io(dst_path(), e));
        if let Err(e) = placed {
            let _ = nix::unistd::unlinkat(
                &dst_dir,
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(e);
        }
        // A handle opened on the file this replaced must not be used again.
        {
            self.handles.forget(entry);
            self.direct.forget(entry);
        }
        let file = fsx::open_file_in(&dst_dir, dst_name, &dst_path(), Access::Read)?;
        let mut buf = Vec::new();
        for c in &chunks {
            buf.resize(c.len as usize, 0);
            let ok = file.read_exact_at(&mut buf, c.offset).is_ok()
                && self.manifest.chunk_hash(c) == Some(&hash_chunk(&buf));
            if !ok {
                // Leave an empty file of the right size to be written chunk by chunk.
                let _ = nix::unistd::unlinkat(
                    &dst_dir,
                    dst_name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                let size = chunks.iter().map(|c| u64::from(c.len)).sum();
                let _ = open_or_create(&dst_dir, dst_name, &dst_path()).and_then(|_| {
                    fsx::open_file_in(&dst_dir, dst_name, &dst_path(), Access::Write)?
                        .set_len(size)
                        .map_err(|e| StoreError::io(dst_path(), e))
                });
                return Err(StoreError::HashMismatch { index: c.entry });
            }
        }
        let first = self.layout.chunks.iter().position(|c| c.entry == entry);
        let mut st = fsx::lock(&self.state);
        if let Some(first) = first {
            for i in first..first + chunks.len() {
                let i = i as u32;
                if !st.held.get(i) {
                    st.pending.push(i);
                    st.verified.set(i);
                    st.written.set(i);
                }
            }
        }
        st.created = true;
        Ok(())
    }

    /// Writes verified bytes of one chunk in place; whether its file had to be created.
    fn write_verified(
        &self,
        dirs: &mut DirCache,
        info: ChunkInfo,
        bytes: &[u8],
    ) -> Result<bool, StoreError> {
        let Some(size) = self.single_chunk_size(info.entry) else {
            if self.write_direct(info, bytes)? {
                return Ok(false);
            }
            let file = self.file(info.entry, Access::Write)?;
            file.write_all_at(bytes, info.offset)
                .map_err(|e| StoreError::io(self.path_of(info.entry), e))?;
            return Ok(false);
        };
        // A file of one chunk: created here, written whole, and closed (it is done).
        let rel = &self.manifest.entries[info.entry as usize].path;
        let parts = fsx::split(&self.data_path, rel)?;
        let (name, parents) = fsx::split_last(&self.data_path, &parts)?;
        let dir = dirs.open(&self.data, &self.data_path, parents, Create::Yes)?;
        let path = || self.data_path.join(rel);
        let (file, created) = open_or_create(dir, name, &path())?;
        file.write_all_at(bytes, 0)
            .map_err(|e| StoreError::io(path(), e))?;
        if !created {
            // Left by an earlier process at another size: cut it to the manifest's.
            let len = file
                .metadata()
                .map_err(|e| StoreError::io(path(), e))?
                .len();
            if len != size {
                file.set_len(size).map_err(|e| StoreError::io(path(), e))?;
            }
        }
        Ok(created)
    }

    /// Writes a chunk of a multi-chunk file with `O_DIRECT`, if it is aligned
    /// ([`direct_ok`]) and this filesystem takes it; `false` when it must be written buffered.
    ///
    /// Received bytes go from the pooled buffer to the disk without a copy into the page
    /// cache. The commit's `fdatasync` still makes them (and the file's extents) durable. On
    /// this project's 2-core VM the page-cache copy of a buffered write cost 0.3-3 CPU-s per
    /// GiB, depending on whether the hypervisor still backed the free pages it landed on
    /// (BENCHMARKS.md, "The receiver's writes"). A filesystem that refuses `O_DIRECT` (tmpfs,
    /// some FUSE and network filesystems) refuses it at `open` or at the first write with
    /// `EINVAL`; this workspace then writes buffered from then on.
    fn write_direct(&self, info: ChunkInfo, bytes: &[u8]) -> Result<bool, StoreError> {
        if self.no_direct.load(Ordering::Relaxed) || !direct_ok(info.offset, bytes) {
            return Ok(false);
        }
        let refused = |e: &StoreError| matches!(e, StoreError::Io { source, .. } if source.raw_os_error() == Some(Errno::EINVAL as i32));
        let opened = self.direct.get_or_open(info.entry, Access::Direct, || {
            let rel = &self.manifest.entries[info.entry as usize].path;
            #[cfg(test)]
            if self.refuse_direct.load(Ordering::Relaxed) {
                return Err(StoreError::io(self.data_path.join(rel), Errno::EINVAL));
            }
            fsx::open_file_at(&self.data, &self.data_path, rel, Access::Direct)
        });
        let written = opened.and_then(|file| {
            file.write_all_at(bytes, info.offset)
                .map_err(|e| StoreError::io(self.path_of(info.entry), e))
        });
        match written {
            Ok(()) => Ok(true),
            Err(e) if refused(&e) => {
                debug!(id = %self.id.short(), error = %e, "O_DIRECT refused here: writing buffered");
                self.no_direct.store(true, Ordering::Relaxed);
                self.direct.clear();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// The size of a file made of exactly one chunk (created when that chunk is written).
    fn single_chunk_size(&self, entry: u32) -> Option<u64> {
        // The layout's entries index the manifest it was computed from.
        single_chunk_size(&self.manifest.entries[entry as usize].kind)
    }

    /// Group commit: makes every chunk written since the last commit durable and held, and
    /// returns them (ascending).
    ///
    /// `fdatasync`s every file written to, then appends the indices to the journal and
    /// `fdatasync`s it. If a file cannot be synced, its pages may have been dropped by the
    /// kernel, so the whole batch is discarded (not held; fetch it again) and the error
    /// returned. If only the journal fails, the batch stays pending for the next commit.
    pub fn commit(&self) -> Result<Vec<u32>, StoreError> {
        let mut journal = fsx::lock(&self.journal);
        let (mut batch, created) = {
            let mut st = fsx::lock(&self.state);
            let mut batch = std::mem::take(&mut st.pending);
            batch.retain(|i| !st.held.get(*i));
            (batch, std::mem::take(&mut st.created))
        };
        batch.sort_unstable();
        batch.dedup();
        if batch.is_empty() {
            return Ok(batch);
        }
        let mut entries: Vec<u32> = batch.iter().map(|i| self.info(*i).entry).collect();
        entries.sort_unstable();
        entries.dedup();
        if entries.len() > SYNCFS_ABOVE || created {
            // Many small files: one syncfs beats reopening and fsyncing each of them. New files
            // also need their directory entries durable, which syncfs covers.
            if let Err(e) = fsx::sync_filesystem(&self.data, &self.data_path) {
                warn!(id = %self.id.short(), chunks = batch.len(), error = %e,
                    "sync failed; dropping the chunks of this commit");
                fsx::lock(&self.state).created |= created;
                self.unwrite(&batch);
                return Err(e);
            }
        } else {
            for entry in entries {
                let synced = self.file(entry, Access::Write).and_then(|f| {
                    f.sync_data()
                        .map_err(|e| StoreError::io(self.path_of(entry), e))
                });
                if let Err(e) = synced {
                    warn!(id = %self.id.short(), chunks = batch.len(), error = %e,
                        "sync failed; dropping the chunks of this commit");
                    {
                        self.handles.forget(entry);
                        self.direct.forget(entry);
                    }
                    self.unwrite(&batch);
                    return Err(e);
                }
            }
        }
        if let Err(e) = journal.append(&batch) {
            let mut st = fsx::lock(&self.state);
            st.pending.extend_from_slice(&batch);
            st.created |= created;
            return Err(e);
        }
        let mut st = fsx::lock(&self.state);
        for i in &batch {
            st.held.set(*i);
        }
        debug!(id = %self.id.short(), chunks = batch.len(), held = st.held.count_ones(), "committed");
        Ok(batch)
    }

    /// The pages of `batch` may be gone: serve none of them again before they are rewritten.
    fn unwrite(&self, batch: &[u32]) {
        let mut st = fsx::lock(&self.state);
        for &i in batch {
            if !st.held.get(i) {
                st.written.clear(i);
            }
        }
    }

    /// Whether one chunk was verified and written (durable or not): it may be served.
    pub fn is_written(&self, index: u32) -> bool {
        fsx::lock(&self.state).written.get(index)
    }

    /// Reads a written chunk (durable or not, see [`Workspace::is_written`]) and verifies it:
    /// [`StoreError::NotHeld`] if it was not written, [`StoreError::Corrupt`] if the bytes on
    /// disk no longer match (or the file is gone).
    pub fn read_chunk(&self, index: u32) -> Result<Vec<u8>, StoreError> {
        let info = self.chunk(index)?;
        let mut buf = vec![0u8; info.len as usize];
        self.read_one(
            &mut DirCache::default(),
            index,
            info,
            &mut buf,
            Check::Always,
        )?;
        Ok(buf)
    }

    /// Reads held chunks `first..` into `buf`, one after the other, until `buf` is full (it must
    /// end on a chunk boundary): what the serving side sends.
    ///
    /// A chunk this process verified (it wrote it after checking its hash, or read it back and
    /// hashed it before) is not hashed again: the receiver verifies every chunk anyway, and
    /// the page cache gives back what was written. A chunk held from an earlier process is
    /// hashed the first time it is read. Errors as [`Workspace::read_chunk`].
    pub fn read_run(&self, first: u32, buf: &mut [u8]) -> Result<(), StoreError> {
        let mut dirs = DirCache::default();
        let mut at = 0usize;
        let mut index = first;
        while at < buf.len() {
            let info = self.chunk(index)?;
            let len = info.len as usize;
            let got = buf.len() - at;
            let Some(out) = buf.get_mut(at..at + len) else {
                return Err(StoreError::WrongLength {
                    index,
                    expected: info.len,
                    got,
                });
            };
            self.read_one(&mut dirs, index, info, out, Check::Once)?;
            at += len;
            index += 1;
        }
        Ok(())
    }

    fn read_one(
        &self,
        dirs: &mut DirCache,
        index: u32,
        info: ChunkInfo,
        out: &mut [u8],
        check: Check,
    ) -> Result<(), StoreError> {
        let verified = {
            let st = fsx::lock(&self.state);
            if !st.written.get(index) {
                return Err(StoreError::NotHeld { index });
            }
            st.verified.get(index)
        };
        let single = self.single_chunk_size(info.entry).is_some();
        let opened = if single {
            // Files of one chunk are read once per request: not worth a cached handle.
            let rel = &self.manifest.entries[info.entry as usize].path;
            fsx::split(&self.data_path, rel).and_then(|parts| {
                let (name, parents) = fsx::split_last(&self.data_path, &parts)?;
                let dir = dirs.open(&self.data, &self.data_path, parents, Create::No)?;
                fsx::open_file_in(dir, name, &self.data_path.join(rel), Access::Read).map(Arc::new)
            })
        } else {
            self.file(info.entry, Access::Read)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if fsx::is_not_found(&e) => {
                warn!(id = %self.id.short(), index, "file of a held chunk is gone");
                return Err(StoreError::Corrupt { index });
            }
            Err(e) => return Err(e),
        };
        match file.read_exact_at(out, info.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                {
                    self.handles.forget(info.entry);
                    self.direct.forget(info.entry);
                }
                warn!(id = %self.id.short(), index, "file of a held chunk is short");
                return Err(StoreError::Corrupt { index });
            }
            Err(e) => return Err(StoreError::io(self.path_of(info.entry), e)),
        }
        if check == Check::Always || !verified {
            if self.manifest.chunk_hash(&info) != Some(&hash_chunk(out)) {
                {
                    self.handles.forget(info.entry);
                    self.direct.forget(info.entry);
                }
                warn!(id = %self.id.short(), index, "held chunk is corrupt on disk");
                return Err(StoreError::Corrupt { index });
            }
            fsx::lock(&self.state).verified.set(index);
        }
        Ok(())
    }

    /// Publishes a complete broadcast and returns `D/received/<name>`: [`complete`](Self::complete)
    /// (Self::complete) then [`link_received`] to this workspace. Calling it again after a
    /// restart is fine. Refuses ([`StoreError::NotASymlink`]) to replace anything at
    /// `received/<name>` that is not a symlink.
    pub fn finalize(&self) -> Result<PathBuf, StoreError> {
        self.complete()?;
        let published = link_received(&self.received, &self.manifest.name, self.id)?;
        info!(id = %self.id.short(), path = %published.display(), "broadcast published");
        Ok(published)
    }

    /// Finishes a complete workspace and returns its data directory (`D/broadcasts/<id>/data`),
    /// without touching `received/` (which version a name points at is the broadcast core's
    /// decision: [`link_received`]).
    ///
    /// The first time: applies the manifest's modes to every file and empty directory, makes
    /// the tree durable, and writes the `complete` marker. Again (after a restart): nothing.
    pub fn complete(&self) -> Result<PathBuf, StoreError> {
        let _serial = fsx::lock(&self.journal);
        let finalized = {
            let st = fsx::lock(&self.state);
            if !st.held.is_complete() {
                return Err(StoreError::Incomplete {
                    id: self.id,
                    missing: st.held.len() - st.held.count_ones(),
                });
            }
            st.finalized
        };
        check_name(&self.received, &self.manifest.name)?;
        if !finalized {
            self.apply_modes()?;
            fsx::sync_filesystem(&self.data, &self.data_path)?;
            fsx::write_atomic(&self.dir, COMPLETE_FILE, b"")?;
            fsx::lock(&self.state).finalized = true;
            // Handles opened for writing are no longer needed.
            self.handles.clear();
            self.direct.clear();
        }
        Ok(self.data_path.clone())
    }

    /// Sets every file's and directory's mode from the manifest, and the root's (version 2).
    /// Files first, then directories deepest first, the root last, so that no mode set takes
    /// away a right a later step needs. A directory always keeps its owner's `r-x`
    /// ([`DIR_OWNER_BITS`]): the daemon serves and links from beneath it.
    fn apply_modes(&self) -> Result<(), StoreError> {
        let mut dirs = DirCache::default();
        let set = |file: &File, mode: u32, path: &Path| {
            file.set_permissions(Permissions::from_mode(mode & 0o777))
                .map_err(|e| StoreError::io(path, e))
        };
        for e in &self.manifest.entries {
            if let EntryKind::File { mode, .. } = e.kind {
                let path = self.data_path.join(&e.path);
                let parts = fsx::split(&self.data_path, &e.path)?;
                let (name, parents) = fsx::split_last(&self.data_path, &parts)?;
                let dir = dirs.open(&self.data, &self.data_path, parents, Create::No)?;
                set(
                    &fsx::open_file_in(dir, name, &path, Access::Read)?,
                    mode,
                    &path,
                )?;
            }
        }
        drop(dirs);
        for e in self.manifest.entries.iter().rev() {
            if let EntryKind::Dir { mode } = e.kind {
                let path = self.data_path.join(&e.path);
                let parts = fsx::split(&self.data_path, &e.path)?;
                let fd = fsx::open_dir_at(&self.data, &self.data_path, &parts, Create::Yes)?;
                set(&File::from(fd), mode | DIR_OWNER_BITS, &path)?;
            }
        }
        if let Some(mode) = self.manifest.root_mode {
            let fd = self
                .data
                .try_clone()
                .map_err(|e| StoreError::io(&self.data_path, e))?;
            set(&File::from(fd), mode | DIR_OWNER_BITS, &self.data_path)?;
        }
        Ok(())
    }

    /// Bytes of the chunks not held.
    fn missing_bytes(&self) -> u64 {
        let st = fsx::lock(&self.state);
        st.held
            .iter_zeros()
            .map(|i| u64::from(self.info(i).len))
            .sum()
    }

    fn chunk(&self, index: u32) -> Result<ChunkInfo, StoreError> {
        self.layout.chunk(index).ok_or(StoreError::NoSuchChunk {
            index,
            count: self.layout.chunk_count(),
        })
    }

    /// A chunk known to exist.
    fn info(&self, index: u32) -> ChunkInfo {
        // Only called with indices already checked against (or taken from) the layout.
        self.layout.chunks[index as usize]
    }

    fn path_of(&self, entry: u32) -> PathBuf {
        // The layout's entries index the manifest it was computed from.
        self.data_path
            .join(&self.manifest.entries[entry as usize].path)
    }

    /// An open handle on the file of a manifest entry.
    fn file(&self, entry: u32, access: Access) -> Result<Arc<File>, StoreError> {
        self.handles.get_or_open(entry, access, || {
            // The layout's entries index the manifest it was computed from.
            let rel = &self.manifest.entries[entry as usize].path;
            fsx::open_file_at(&self.data, &self.data_path, rel, access)
        })
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = fsx::lock(&self.state);
        f.debug_struct("Workspace")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("held", &st.held.count_ones())
            .field("chunks", &st.held.len())
            .field("pending", &st.pending.len())
            .field("finalized", &st.finalized)
            .finish_non_exhaustive()
    }
}

/// Whether a chunk at `offset` can be written from `bytes` with `O_DIRECT`.
fn direct_ok(offset: u64, bytes: &[u8]) -> bool {
    const BLOCK: usize = super::pool::ALIGN;
    offset % BLOCK as u64 == 0
        && bytes.len() % BLOCK == 0
        && !bytes.is_empty()
        && (bytes.as_ptr() as usize) % BLOCK == 0
}

/// What [`ensure_file`] and [`check_single`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileState {
    /// There, at its size.
    Intact,
    /// Missing (now created, or left to be created when its chunk is written) or of the wrong
    /// size: whatever chunk it held is lost.
    Remade,
}

/// Whether a read must hash the bytes whatever this process knows of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Always.
    Always,
    /// Only chunks this process has not verified yet.
    Once,
}

/// The size of a file entry made of exactly one chunk.
fn single_chunk_size(kind: &EntryKind) -> Option<u64> {
    match kind {
        EntryKind::File { size, chunks, .. } if chunks.len() == 1 => Some(*size),
        _ => None,
    }
}

/// A file of one chunk, created when its chunk is written: `Remade` if it is missing or of
/// the wrong size (its chunk, if held, is lost and will be written again, at the right size),
/// `Unsafe` if something else than a regular file is there.
fn check_single(
    dir: &OwnedFd,
    name: &str,
    size: u64,
    path: &Path,
) -> Result<FileState, StoreError> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return Err(StoreError::Unsafe {
                    path: path.to_owned(),
                    reason: "a symlink or special file where a file should be",
                });
            }
            if u64::try_from(st.st_size).ok() == Some(size) {
                Ok(FileState::Intact)
            } else {
                Ok(FileState::Remade)
            }
        }
        Err(Errno::ENOENT) => Ok(FileState::Remade),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Opens `name` in `dir` for writing, creating it (mode 0o600, within the daemon's umask of
/// 077) if missing; whether it was created. A symlink or special file there is `Unsafe`.
///
/// No mode is set after the create: two writers of one single-chunk file may race (an end-game
/// duplicate), and a `chmod` by the one that created it, landing after the other's copy was
/// committed and the workspace finished, would undo the manifest's mode (seen: a 0644 file
/// left 0600 in the demo).
fn open_or_create(dir: &OwnedFd, name: &str, path: &Path) -> Result<(File, bool), StoreError> {
    let flags =
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(
        dir,
        name,
        flags,
        Mode::from_bits_truncate(RECEIVING_FILE_MODE),
    ) {
        Ok(fd) => Ok((File::from(fd), true)),
        // O_EXCL fails on anything there, a symlink included: open it as an existing file,
        // which refuses symlinks and special files.
        Err(Errno::EEXIST) => Ok((fsx::open_file_in(dir, name, path, Access::Write)?, false)),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Creates every directory and file of the manifest that is missing, and resizes files of the
/// wrong size. Returns the entries whose files were remade.
fn repair(data: &OwnedFd, data_path: &Path, manifest: &Manifest) -> Result<Vec<u32>, StoreError> {
    let mut remade = Vec::new();
    let mut dirs = DirCache::default();
    for (i, e) in manifest.entries.iter().enumerate() {
        let parts = fsx::split(data_path, &e.path)?;
        match e.kind {
            EntryKind::Dir { .. } => {
                fsx::open_dir_at(data, data_path, &parts, Create::Yes)?;
            }
            EntryKind::File { size, .. } => {
                let (name, parents) = fsx::split_last(data_path, &parts)?;
                let dir = dirs.open(data, data_path, parents, Create::Yes)?;
                let path = data_path.join(&e.path);
                let state = if single_chunk_size(&e.kind).is_some() {
                    check_single(dir, name, size, &path)?
                } else {
                    ensure_file(dir, name, size, &path)?
                };
                if state == FileState::Remade {
                    remade.push(i as u32);
                }
            }
        }
    }
    Ok(remade)
}

/// Makes `name` in `dir` a regular file of `size` bytes (sparse if created).
fn ensure_file(dir: &OwnedFd, name: &str, size: u64, path: &Path) -> Result<FileState, StoreError> {
    let file = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
                return Err(StoreError::Unsafe {
                    path: path.to_owned(),
                    reason: "a symlink or special file where a file should be",
                });
            }
            if u64::try_from(st.st_size).ok() == Some(size) {
                return Ok(FileState::Intact);
            }
            fsx::open_file_in(dir, name, path, Access::Write)?
        }
        Err(Errno::ENOENT) => {
            let flags = OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))
                .map_err(|e| StoreError::io(path, e))?;
            let file = File::from(fd);
            // Not subject to the umask.
            file.set_permissions(Permissions::from_mode(RECEIVING_FILE_MODE))
                .map_err(|e| StoreError::io(path, e))?;
            file
        }
        Err(e) => return Err(StoreError::io(path, e)),
    };
    file.set_len(size).map_err(|e| StoreError::io(path, e))?;
    Ok(FileState::Remade)
}

/// `held` minus every chunk of the given entries.
fn without_entries(held: &Bitfield, layout: &Layout, entries: &[u32]) -> Bitfield {
    let mut out = Bitfield::new(held.len());
    for i in held.iter_ones() {
        if entries
            .binary_search(&layout.chunks[i as usize].entry)
            .is_err()
        {
            out.set(i);
        }
    }
    out
}
