//! The actor's checkpoint cache, addressed by sha256:
//!
//! ```text
//! CACHE/blobs/<sha256>              the blob as fetched (verified by fetch_to_file)
//! CACHE/blobs/<sha256>.partial      an interrupted download (fetch_to_file resumes it)
//! CACHE/checkpoints/<sha256>/       the unpacked checkpoint directory
//! CACHE/checkpoints/.unpack-<sha256>  an unpack in progress (removed at open)
//! ```
//!
//! The cache is pruned after every round ([`CheckpointCache::prune`]): a blob whose
//! checkpoint is unpacked is deleted (the directory is what gets loaded), and of the
//! checkpoints no loaded policy uses, only the most recently unpacked few are kept. Without
//! it a long run kept every version it ever played: ~1.1 GB per SmolLM2 version.
//!
//! A checkpoint directory appears only by renaming a fully unpacked temporary directory,
//! so an unpack cut by a crash (kill -9) is never mistaken for a complete one: the next
//! use unpacks again. A blob already on disk is hashed again before it is unpacked; one
//! that fails is deleted and fetched again.

use std::path::{Path, PathBuf};

use arlas_client::CoordinatorClient;
use arlas_core::{BlobId, BlobRef, archive, hash_file};
use arlas_runtime::blocking;

use crate::error::{Error, Result, io};

const UNPACKING_PREFIX: &str = ".unpack-";

/// Where a checkpoint directory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    /// Already unpacked: nothing was read or fetched.
    Hit,
    /// The blob was on disk (verified again), and was unpacked now.
    Blob,
    /// The blob was downloaded from the coordinator, then unpacked.
    Fetched,
}

impl CacheSource {
    /// The metric label: `hit`, `blob`, `fetched`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Blob => "blob",
            Self::Fetched => "fetched",
        }
    }
}

/// A checkpoint cache directory (see the module docs for its layout).
#[derive(Debug, Clone)]
pub struct CheckpointCache {
    root: PathBuf,
}

impl CheckpointCache {
    /// Opens (creating) the cache at `root` and removes unpacks a crash left behind.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let cache = Self { root: root.into() };
        for dir in [cache.blobs_dir(), cache.checkpoints_dir()] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let checkpoints = cache.checkpoints_dir();
        for entry in std::fs::read_dir(&checkpoints).map_err(io(&checkpoints))? {
            let path = entry.map_err(io(&checkpoints))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(UNPACKING_PREFIX) {
                tracing::info!(path = %path.display(), "removing an unpack a crash left behind");
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
        Ok(cache)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.root.join("checkpoints")
    }

    /// Where the blob `id` lives once fetched.
    pub fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.blobs_dir().join(id.as_str())
    }

    /// Where the checkpoint of blob `id` lives once unpacked.
    pub fn checkpoint_dir(&self, id: &BlobId) -> PathBuf {
        self.checkpoints_dir().join(id.as_str())
    }

    /// The unpacked checkpoint of `blob`, if it is there.
    pub fn unpacked(&self, blob: &BlobRef) -> Option<PathBuf> {
        let dir = self.checkpoint_dir(&blob.id);
        dir.is_dir().then_some(dir)
    }

    /// Without the network: the checkpoint directory of `blob` if it is unpacked, or if its
    /// blob is on disk and still hashes to its id (then it is unpacked now). `Ok(None)`:
    /// fetch it. A blob on disk that fails its hash is deleted. Blocking (hashes files).
    pub fn from_disk(&self, blob: &BlobRef) -> Result<Option<(PathBuf, CacheSource)>> {
        if let Some(dir) = self.unpacked(blob) {
            return Ok(Some((dir, CacheSource::Hit)));
        }
        let path = self.blob_path(&blob.id);
        if !path.is_file() {
            return Ok(None);
        }
        let found = hash_file(&path)?;
        if found != blob.id.as_str() {
            std::fs::remove_file(&path).map_err(io(&path))?;
            tracing::warn!(
                "{}",
                Error::CacheCorrupted {
                    id: blob.id.to_string(),
                    path,
                    found,
                }
            );
            return Ok(None);
        }
        Ok(Some((self.unpack(blob)?, CacheSource::Blob)))
    }

    /// Deletes what the cache no longer needs: blobs whose checkpoint is unpacked, partial
    /// downloads and blobs of checkpoints not in `in_use`, and all but the `keep_unused`
    /// most recently unpacked checkpoints not in `in_use`. Returns the bytes freed.
    /// Blocking; call when no fetch or unpack is running.
    pub fn prune(&self, in_use: &[&BlobId], keep_unused: usize) -> Result<u64> {
        let used = |name: &str| in_use.iter().any(|id| id.as_str() == name);
        let checkpoints = self.checkpoints_dir();
        let mut unused = Vec::new();
        for entry in std::fs::read_dir(&checkpoints).map_err(io(&checkpoints))? {
            let entry = entry.map_err(io(&checkpoints))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(UNPACKING_PREFIX) || used(&name) {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            unused.push((modified, entry.path()));
        }
        unused.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        let mut freed = 0;
        for (_, dir) in unused.into_iter().skip(keep_unused) {
            freed += dir_size(&dir);
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        let blobs = self.blobs_dir();
        for entry in std::fs::read_dir(&blobs).map_err(io(&blobs))? {
            let entry = entry.map_err(io(&blobs))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".partial").unwrap_or(&name);
            let unpacked = checkpoints.join(id).is_dir();
            if unpacked || !used(id) {
                let path = entry.path();
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        Ok(freed)
    }

    /// Unpacks the (verified) blob of `blob` into a temporary directory, then renames it to
    /// its checkpoint directory. Blocking.
    pub fn unpack(&self, blob: &BlobRef) -> Result<PathBuf> {
        let dest = self.checkpoint_dir(&blob.id);
        let temp = self
            .checkpoints_dir()
            .join(format!("{UNPACKING_PREFIX}{}", blob.id));
        if temp.exists() {
            std::fs::remove_dir_all(&temp).map_err(io(&temp))?;
        }
        archive::unpack(&self.blob_path(&blob.id), &temp)?;
        sync_dir(&temp)?;
        std::fs::rename(&temp, &dest).map_err(io(&dest))?;
        sync_dir(&self.checkpoints_dir())?;
        Ok(dest)
    }

    /// The checkpoint directory of `blob`: from disk when it is there, else fetched from
    /// the coordinator (resuming a partial download) and unpacked.
    pub async fn ensure(
        &self,
        client: &mut CoordinatorClient,
        blob: &BlobRef,
    ) -> Result<(PathBuf, CacheSource)> {
        let (cache, wanted) = (self.clone(), blob.clone());
        if let Some(found) = blocking("reading the checkpoint cache", move || {
            cache.from_disk(&wanted)
        })
        .await?
        {
            return Ok(found);
        }
        let report = client
            .fetch_to_file(blob, &self.blob_path(&blob.id))
            .await?;
        tracing::info!(blob = %blob.id, bytes = blob.size, resumed_from = report.resumed_from, "checkpoint fetched");
        let (cache, wanted) = (self.clone(), blob.clone());
        let dir = blocking("unpacking a checkpoint", move || cache.unpack(&wanted)).await?;
        Ok((dir, CacheSource::Fetched))
    }
}

/// Bytes of the regular files below `dir` (best effort, for the log).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// fsync of a directory, so a rename inside it survives a power cut.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(root: &Path) -> (PathBuf, Vec<u8>) {
        let dir = root.join("src");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("config.json"), b"{\"a\":1}").unwrap();
        std::fs::write(dir.join("sub/weights.bin"), vec![7u8; 5000]).unwrap();
        (dir, vec![7u8; 5000])
    }

    /// Packs a checkpoint straight into the cache's blob store (as a fetch would leave it).
    fn cached_blob(cache: &CheckpointCache, src: &Path) -> BlobRef {
        let tmp = cache.root().join("packing");
        let blob = archive::pack_to_file(src, &tmp).unwrap();
        std::fs::rename(&tmp, cache.blob_path(&blob.id)).unwrap();
        blob
    }

    #[test]
    fn a_verified_blob_is_unpacked_once_then_hit() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, weights) = checkpoint(tmp.path());
        let cache = CheckpointCache::open(tmp.path().join("cache")).unwrap();
        let blob = cached_blob(&cache, &src);
        let (dir, source) = cache.from_disk(&blob).unwrap().unwrap();
        assert_eq!(source, CacheSource::Blob);
        assert_eq!(dir, cache.checkpoint_dir(&blob.id));
        assert_eq!(std::fs::read(dir.join("sub/weights.bin")).unwrap(), weights);
        let (again, source) = cache.from_disk(&blob).unwrap().unwrap();
        assert_eq!((again, source), (dir, CacheSource::Hit));
    }

    #[test]
    fn an_unpack_cut_midway_is_redone() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, weights) = checkpoint(tmp.path());
        let root = tmp.path().join("cache");
        let cache = CheckpointCache::open(&root).unwrap();
        let blob = cached_blob(&cache, &src);
        // A crash in the middle of an unpack: a temporary directory with part of a file.
        let cut = root
            .join("checkpoints")
            .join(format!("{UNPACKING_PREFIX}{}", blob.id));
        std::fs::create_dir_all(cut.join("sub")).unwrap();
        std::fs::write(cut.join("sub/weights.bin"), &weights[..100]).unwrap();
        assert!(
            cache.unpacked(&blob).is_none(),
            "a cut unpack is not a checkpoint"
        );
        assert_eq!(
            cache.from_disk(&blob).unwrap().unwrap().1,
            CacheSource::Blob
        );
        // The same after a restart: open removes the leftover, the next use unpacks again.
        std::fs::remove_dir_all(cache.checkpoint_dir(&blob.id)).unwrap();
        std::fs::create_dir_all(&cut).unwrap();
        let cache = CheckpointCache::open(&root).unwrap();
        assert!(!cut.exists());
        let (dir, source) = cache.from_disk(&blob).unwrap().unwrap();
        assert_eq!(source, CacheSource::Blob);
        assert_eq!(std::fs::read(dir.join("sub/weights.bin")).unwrap(), weights);
    }

    #[test]
    fn prune_keeps_what_is_in_use_and_the_newest_unused() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = CheckpointCache::open(tmp.path().join("cache")).unwrap();
        let mut blobs = Vec::new();
        for k in 0..4u8 {
            let dir = tmp.path().join(format!("src{k}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("w.bin"), vec![k; 1000]).unwrap();
            let blob = cached_blob(&cache, &dir);
            cache.from_disk(&blob).unwrap().unwrap();
            // Distinct unpack times, oldest first.
            std::thread::sleep(std::time::Duration::from_millis(20));
            blobs.push(blob);
        }
        // A download of something no longer wanted, cut midway.
        let stray = cache
            .blobs_dir()
            .join(format!("{}.partial", "ab".repeat(32)));
        std::fs::write(&stray, b"part").unwrap();

        let freed = cache.prune(&[&blobs[0].id], 1).unwrap();
        assert!(freed > 0);
        // In use: kept (though the oldest); newest unused: kept; the other two: gone.
        assert!(cache.unpacked(&blobs[0]).is_some());
        assert!(cache.unpacked(&blobs[3]).is_some());
        assert!(cache.unpacked(&blobs[1]).is_none());
        assert!(cache.unpacked(&blobs[2]).is_none());
        // Blobs of unpacked checkpoints and stray partials are gone.
        assert_eq!(std::fs::read_dir(cache.blobs_dir()).unwrap().count(), 0);
        // Idempotent.
        assert_eq!(cache.prune(&[&blobs[0].id], 1).unwrap(), 0);
    }

    #[test]
    fn a_corrupted_blob_is_deleted_and_fetched_again() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, _) = checkpoint(tmp.path());
        let cache = CheckpointCache::open(tmp.path().join("cache")).unwrap();
        let blob = cached_blob(&cache, &src);
        let path = cache.blob_path(&blob.id);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(cache.from_disk(&blob).unwrap().is_none(), "fetch it again");
        assert!(!path.exists());
        assert!(cache.unpacked(&blob).is_none());
    }
}
