//! Sample directories and verification of copies.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Result, bail};

/// Fill `out` with deterministic pseudo-random bytes (xorshift64).
pub fn fill(seed: u64, out: &mut [u8]) {
    // splitmix64 of the seed (every seed its own stream: `seed | 1` made 2k and 2k+1 equal),
    // never 0, which xorshift would keep at 0.
    let mut x = {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) | 1
    };
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A sample dataset of about `size` bytes: nested folders, a few large files, many small ones,
/// an empty file, an empty folder and an executable. Returns (files, bytes).
pub fn generate(root: &Path, size: u64, seed: u64) -> Result<(u64, u64)> {
    std::fs::create_dir_all(root)?;
    let mut files = 0u64;
    let mut bytes = 0u64;
    write(&root.join("README.txt"), b"swarmcast demo dataset\n", 0o644)?;
    write(
        &root.join("bin/train.sh"),
        b"#!/bin/sh\necho training\n",
        0o755,
    )?;
    write(&root.join("empty.txt"), b"", 0o644)?;
    std::fs::create_dir_all(root.join("checkpoints/empty"))?;
    files += 3;
    // A fifth of the bytes in many small files, the rest in a few large ones.
    let small_budget = size / 5;
    let mut buf = vec![0u8; 64 << 10];
    let mut i = 0u64;
    let mut used = 0u64;
    while used < small_budget {
        let len = (4096 + (i * 7919) % (60 << 10))
            .min(small_budget - used)
            .max(1) as usize;
        fill(seed ^ i, &mut buf[..len]);
        write(
            &root.join(format!("images/{:02}/img{i:05}.bin", i % 16)),
            &buf[..len],
            0o644,
        )?;
        used += len as u64;
        files += 1;
        i += 1;
    }
    bytes += used;
    let large = size - used;
    let parts = 3u64;
    let mut big = vec![0u8; 1 << 20];
    for p in 0..parts {
        let len = large / parts + if p == 0 { large % parts } else { 0 };
        let path = root.join(format!("weights/shard-{p}.safetensors"));
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let mut f = std::fs::File::create(&path)?;
        let mut left = len;
        let mut k = 0u64;
        while left > 0 {
            let n = left.min(big.len() as u64) as usize;
            fill(seed ^ (p << 32) ^ k, &mut big[..n]);
            std::io::Write::write_all(&mut f, &big[..n])?;
            left -= n as u64;
            k += 1;
        }
        bytes += len;
        files += 1;
    }
    Ok((files, bytes))
}

/// Relative path → (is_dir, mode, BLAKE3-free checksum of contents: we compare bytes directly).
type Snapshot = BTreeMap<String, (bool, u32, u64)>;

fn snapshot(root: &Path) -> Result<Snapshot> {
    let mut out = BTreeMap::new();
    let root_mode = std::fs::metadata(root)?.permissions().mode() & 0o777;
    out.insert(String::new(), (true, root_mode, 0));
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let meta = std::fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                out.insert(rel, (true, mode, 0));
                stack.push(p);
            } else if meta.is_file() {
                out.insert(rel, (false, mode, meta.len()));
            } else {
                bail!("{} is neither a file nor a directory", p.display());
            }
        }
    }
    Ok(out)
}

fn same_contents(a: &Path, b: &Path) -> Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }

    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// Check that `copy` (a directory or a symlink to one) holds exactly the entries, bytes and
/// modes of `source`, directories' modes (the top one's too) included. The error names the
/// first difference.
pub fn verify(source: &Path, copy: &Path) -> Result<()> {
    let copy = std::fs::canonicalize(copy)?;
    let (a, b) = (snapshot(source)?, snapshot(&copy)?);
    for k in a.keys() {
        if !b.contains_key(k) {
            bail!("{k} is missing from the copy");
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            bail!("{k} is in the copy but not in the source");
        }
    }
    for (k, (is_dir, mode, len)) in &a {
        let (d2, m2, l2) = b[k];
        if *is_dir != d2 {
            bail!("{k}: file in one, directory in the other");
        }
        if *mode != m2 {
            let k = if k.is_empty() { "." } else { k };
            bail!("{k}: mode {mode:o} in the source, {m2:o} in the copy");
        }
        if *is_dir {
            continue;
        }
        if *len != l2 || !same_contents(&source.join(k), &copy.join(k))? {
            bail!("{k}: contents differ");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_fills_its_own_bytes() {
        let bytes = |seed| {
            let mut b = vec![0u8; 64];
            fill(seed, &mut b);
            b
        };
        // Neighbouring seeds (2k and 2k+1 once gave the same bytes), and 0.
        for seed in [0u64, 1, 2, 3, 10, 11, u64::MAX - 1, u64::MAX] {
            assert_ne!(bytes(seed), bytes(seed ^ 1), "seed {seed}");
            assert!(bytes(seed).iter().any(|&b| b != 0));
        }
        assert_eq!(bytes(7), bytes(7), "deterministic");
    }

    #[test]
    fn generated_tree_verifies_against_itself_and_not_against_a_changed_copy() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (files, bytes) = generate(&a, 300_000, 1)?;
        assert!(
            files >= 8 && bytes == 300_000,
            "{files} files, {bytes} bytes"
        );
        generate(&b, 300_000, 1)?;
        verify(&a, &b)?;
        std::fs::set_permissions(
            b.join("bin/train.sh"),
            std::fs::Permissions::from_mode(0o644),
        )?;
        assert!(verify(&a, &b).is_err(), "a lost executable bit is caught");
        std::fs::set_permissions(
            b.join("bin/train.sh"),
            std::fs::Permissions::from_mode(0o755),
        )?;
        let shard = b.join("weights/shard-1.safetensors");
        let mut data = std::fs::read(&shard)?;
        data[1000] ^= 1;
        std::fs::write(&shard, data)?;
        assert!(verify(&a, &b).is_err(), "a flipped bit is caught");
        Ok(())
    }
}
