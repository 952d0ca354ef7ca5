//! Reading and creating the crate's files: never overwrite, create with the final mode.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::CertError;

/// Mode of private keys.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode of certificates.
pub(crate) const PUBLIC: u32 = 0o644;

/// Creates `path` with `mode` (before the umask) and writes `contents`; fails with
/// [`CertError::AlreadyExists`] if it exists, without touching it.
pub(crate) fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| match source.kind() {
        io::ErrorKind::AlreadyExists => CertError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => CertError::Write {
            path: path.to_owned(),
            source,
        },
    })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| CertError::Write {
            path: path.to_owned(),
            source,
        })
}

/// Replaces `path` atomically with `contents` at `mode`: a temp file beside it (created with
/// the final mode), fsync, rename over `path`, fsync the directory. Used only by renewal.
pub(crate) fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let write = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("pem.tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write(e)),
    }
    create_new(&tmp, contents, mode)?;
    fs::rename(&tmp, path).map_err(write)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write)?;
    }
    Ok(())
}

/// Fails with [`CertError::AlreadyExists`] if `path` exists (even as a dangling symlink).
pub(crate) fn ensure_absent(path: &Path) -> Result<(), CertError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Err(CertError::AlreadyExists {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CertError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates `dir` and its parents if they are missing.
pub(crate) fn create_dir_all(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })
}

/// Reads `path` as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}
