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
    hash_files(dir, |_| true)
}

/// The content hash of a checkpoint's weights only: its `*.safetensors` files but the
/// optimizer state, hashed as [`hash_dir`] hashes files. Two checkpoints of the same weights
/// have the same one whatever their manifests, versions or training state say. A directory
/// with no such file hashes whole, as [`hash_dir`] does (so that two different directories
/// without weights never look alike).
pub fn hash_weights(dir: &Path) -> Result<ContentHash> {
    let weights = |rel: &Path| {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.ends_with(".safetensors") && name != "optimizer.safetensors"
    };
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    if files.iter().any(|f| weights(f)) {
        hash_files(dir, weights)
    } else {
        hash_dir(dir)
    }
}

fn hash_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<ContentHash> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.retain(|rel| keep(rel));
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

    #[test]
    fn the_weights_hash_sees_the_weights_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for (d, version) in [(a.path(), "1"), (b.path(), "2")] {
            fs::write(d.join("adapter_model.safetensors"), b"adapter").unwrap();
            fs::write(d.join("optimizer.safetensors"), version).unwrap();
            fs::write(d.join("manifest.json"), version).unwrap();
        }
        let ha = hash_weights(a.path()).unwrap();
        assert_eq!(ha, hash_weights(b.path()).unwrap());
        assert_ne!(hash_dir(a.path()).unwrap(), hash_dir(b.path()).unwrap());
        fs::write(b.path().join("adapter_model.safetensors"), b"adapted").unwrap();
        assert_ne!(ha, hash_weights(b.path()).unwrap());
        // Without weight files, the whole directory counts.
        for d in [a.path(), b.path()] {
            fs::remove_file(d.join("adapter_model.safetensors")).unwrap();
        }
        assert_ne!(
            hash_weights(a.path()).unwrap(),
            hash_weights(b.path()).unwrap()
        );
    }
}
