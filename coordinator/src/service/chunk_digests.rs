//! The per-chunk checksums of checkpoint downloads, computed once per blob.
//!
//! Every `CheckpointChunk` carries the sha256 of its bytes so that a client detects a
//! corrupted chunk and fetches it again. All actors fetch the same new checkpoint at about
//! the same time; hashing every chunk again for each of them made the coordinator hash each
//! byte once per actor. Here the first download of a blob reads it once and computes the
//! digest of every chunk (chunks of `chunk` bytes from offset 0, the layout downloads
//! use); concurrent downloads of the same blob wait for that one pass, later ones reuse it.
//! A blob uploaded through `PublishCheckpoint` brings its digests along (computed as the
//! upload arrived), so even the first download reads nothing extra.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use arlas_core::{BlobId, BlobRef};

use crate::error::{Error, Result};

/// Blobs whose digests are kept; past this the cache starts over (entries are ~32 bytes per
/// MiB of checkpoint, so this bounds memory, not work).
const MAX_BLOBS: usize = 256;

/// The sha256 of each chunk of one blob, in order.
pub type Digests = Arc<Vec<[u8; 32]>>;

type Slot = Arc<OnceCell<Digests>>;

/// Shared by every download; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ChunkDigests {
    slots: Arc<Mutex<HashMap<(BlobId, usize), Slot>>>,
}

impl ChunkDigests {
    /// Records the digests of `blob` in chunks of `chunk` bytes, computed elsewhere (during
    /// an upload). Ignored when they cannot be that layout's.
    pub fn insert(&self, blob: &BlobRef, chunk: usize, digests: Vec<[u8; 32]>) {
        if chunk == 0 || digests.len() as u64 != blob.size.div_ceil(chunk as u64) {
            return;
        }
        let slot = self.slot(blob, chunk);
        let _ = slot.set(Arc::new(digests));
    }

    fn slot(&self, blob: &BlobRef, chunk: usize) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= MAX_BLOBS {
            slots.clear();
        }
        slots.entry((blob.id.clone(), chunk)).or_default().clone()
    }

    /// The digests of `blob` (stored at `path`) in chunks of `chunk` bytes, computed on the
    /// blocking pool by the first caller. A failed computation is not cached.
    pub async fn get(&self, blob: &BlobRef, path: &Path, chunk: usize) -> Result<Digests> {
        let slot = self.slot(blob, chunk);
        let (path, size) = (path.to_path_buf(), blob.size);
        let digests = slot
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || compute(&path, size, chunk))
                    .await
                    .map_err(|e| Error::Serve {
                        what: "hashing checkpoint chunks".into(),
                        reason: e.to_string(),
                    })?
            })
            .await?;
        Ok(digests.clone())
    }
}

/// One pass over the first `size` bytes of `path`, one digest per `chunk` bytes.
pub fn compute(path: &PathBuf, size: u64, chunk: usize) -> Result<Digests> {
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut buf = vec![0u8; chunk.max(1)];
    let mut left = size;
    let mut out =
        Vec::with_capacity(usize::try_from(size.div_ceil(chunk.max(1) as u64)).unwrap_or(0));
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        file.read_exact(&mut buf[..want]).map_err(io)?;
        out.push(Sha256::digest(&buf[..want]).into());
        left -= want as u64;
    }
    Ok(Arc::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digests_match_the_chunks_and_are_computed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let blob = BlobRef {
            id: BlobId::parse(&hex::encode(Sha256::digest(&bytes))).unwrap(),
            size: bytes.len() as u64,
        };
        let cache = ChunkDigests::default();
        let digests = cache.get(&blob, &path, 4096).await.unwrap();
        let expected: Vec<[u8; 32]> = bytes
            .chunks(4096)
            .map(|c| Sha256::digest(c).into())
            .collect();
        assert_eq!(*digests, expected);
        // Reused: a second call does not read the file (it is gone now).
        std::fs::remove_file(&path).unwrap();
        let again = cache.get(&blob, &path, 4096).await.unwrap();
        assert!(Arc::ptr_eq(&digests, &again));
        // Another chunk size is another layout, and its failure is reported.
        assert!(cache.get(&blob, &path, 1000).await.is_err());
        // Inserted digests are served without reading; a wrong count is ignored.
        cache.insert(&blob, 1000, vec![[7; 32]; 3]);
        assert!(cache.get(&blob, &path, 1000).await.is_err());
        cache.insert(&blob, 1000, vec![[7; 32]; 10]);
        assert_eq!(
            *cache.get(&blob, &path, 1000).await.unwrap(),
            vec![[7; 32]; 10]
        );
    }
}
