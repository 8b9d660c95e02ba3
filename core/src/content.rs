//! Content hashes of checkpoint directories.
//!
//! The hash of a directory is the sha256 of the sorted list of `relative/path\0<sha256 of
//! the file's bytes>\n` lines over every regular file below it. Two directories with the
//! same files and bytes have the same hash wherever they live.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, io};

/// A sha256 content hash, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(pub String);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The sha256 of one file's bytes, streamed.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The content hash of every regular file below `dir` (see the module docs).
pub fn hash_dir(dir: &Path) -> Result<ContentHash> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for rel in &files {
        let file_hash = hash_file(&dir.join(rel))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0u8]);
        hasher.update(file_hash.as_bytes());
        hasher.update(b"\n");
    }
    Ok(ContentHash(hex::encode(hasher.finalize())))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_bytes_same_hash_and_any_change_is_seen() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::create_dir(d.join("sub")).unwrap();
            fs::write(d.join("model.safetensors"), b"weights").unwrap();
            fs::write(d.join("sub/config.json"), b"{}").unwrap();
        }
        let ha = hash_dir(a.path()).unwrap();
        assert_eq!(ha, hash_dir(b.path()).unwrap());
        fs::write(b.path().join("model.safetensors"), b"weightz").unwrap();
        assert_ne!(ha, hash_dir(b.path()).unwrap());
        // A rename changes the hash too, even with the same bytes.
        fs::rename(
            a.path().join("sub/config.json"),
            a.path().join("sub/c.json"),
        )
        .unwrap();
        assert_ne!(ha, hash_dir(a.path()).unwrap());
    }
}
