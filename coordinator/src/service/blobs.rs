//! The content-addressed blob store: every checkpoint blob the coordinator holds, one file
//! per blob, named by its sha256.
//!
//! ```text
//! blobs/
//!   <sha256>            immutable; written only by `commit`, after the hash matched
//!   .incoming/<random>  uploads in progress; removed at start-up (a crash mid-upload)
//! ```
//!
//! A blob becomes visible under its name only by an atomic rename after its bytes were
//! hashed, fsync'ed and found equal to the id the publisher announced, so a file under a
//! blob name is complete unless the disk itself lost data, which [`BlobStore::verify`]
//! detects at start-up.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arlas_proto::limits::MAX_CHUNK_BYTES;
use rand::Rng;
use sha2::{Digest, Sha256};

use arlas_core::{BlobId, BlobRef, hash_file};

use crate::error::{Error, Result, io};

const INCOMING: &str = ".incoming";

/// The blob directory.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    incoming: PathBuf,
}

impl BlobStore {
    /// Opens (or creates) the store in `dir` and removes unfinished uploads.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let incoming = dir.join(INCOMING);
        if incoming.exists() {
            fs::remove_dir_all(&incoming).map_err(io(&incoming))?;
        }
        fs::create_dir_all(&incoming).map_err(io(&incoming))?;
        Ok(Self { dir, incoming })
    }

    /// Where blob `id` lives. `id` is a validated hex digest, so this is always a direct
    /// child of the store.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.path(id).is_file()
    }

    /// The id and size of blob `id`.
    pub fn get(&self, id: &BlobId) -> Result<BlobRef> {
        match fs::metadata(self.path(id)) {
            Ok(meta) if meta.is_file() => Ok(BlobRef {
                id: id.clone(),
                size: meta.len(),
            }),
            Ok(_) => Err(Error::UnknownBlob(id.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::UnknownBlob(id.to_string()))
            }
            Err(e) => Err(io(self.path(id))(e)),
        }
    }

    /// Every blob in the store (files whose names are not blob ids are ignored).
    pub fn list(&self) -> Result<Vec<BlobId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|name| BlobId::parse(name).ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Checks that blob `id` is complete (at least `expected_size` bytes, when known) and
    /// that its bytes hash to its name.
    pub fn verify(&self, id: &BlobId, expected_size: Option<u64>) -> Result<BlobRef> {
        let path = self.path(id);
        let found = self.get(id)?;
        if let Some(expected) = expected_size
            && found.size != expected
        {
            return Err(Error::BlobTruncated {
                id: id.to_string(),
                path,
                expected,
                found: found.size,
            });
        }
        let hash = hash_file(&path)?;
        if hash != id.as_str() {
            return Err(Error::BlobCorrupted {
                id: id.to_string(),
                path,
                found: hash,
            });
        }
        Ok(found)
    }

    /// A writer for a new upload, in `.incoming/`.
    pub fn writer(&self) -> Result<BlobWriter> {
        let name: [u8; 8] = rand::rng().random();
        let path = self.incoming.join(format!("{}.part", hex::encode(name)));
        let file = fs::File::create(&path).map_err(io(&path))?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Sha256::new(),
            written: 0,
            chunks: ChunkHasher::default(),
        })
    }

    /// Moves a finished upload into the store under its id, after checking that it is what
    /// `expected` announced. A blob already present is kept (same id, same bytes).
    pub fn commit(&self, mut staged: StagedBlob, expected: &BlobRef) -> Result<BlobRef> {
        if staged.blob != *expected {
            return Err(Error::UploadMismatch {
                expected: expected.id.to_string(),
                expected_size: expected.size,
                found: staged.blob.id.to_string(),
                found_size: staged.blob.size,
            });
        }
        let target = self.path(&expected.id);
        if !target.is_file() {
            fs::rename(&staged.path, &target).map_err(io(&staged.path))?;
            staged.committed = true;
            sync_dir(&self.dir)?;
        }
        Ok(staged.blob.clone())
    }

    /// Deletes blob `id` (retention). Absent blobs are not an error.
    pub fn remove(&self, id: &BlobId) -> Result<()> {
        match fs::remove_file(self.path(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(self.path(id))(e)),
        }
    }
}

/// An upload being written: bytes are hashed as they arrive. Dropped unfinished, the
/// partial file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<BufWriter<fs::File>>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    /// The download chunk checksums of the same bytes (see `chunk_digests`).
    chunks: ChunkHasher,
}

/// The sha256 of every `MAX_CHUNK_BYTES` chunk from offset 0: the layout downloads use.
#[derive(Debug, Default)]
struct ChunkHasher {
    current: Sha256,
    filled: usize,
    done: Vec<[u8; 32]>,
}

impl ChunkHasher {
    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (MAX_CHUNK_BYTES - self.filled).min(bytes.len());
            self.current.update(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == MAX_CHUNK_BYTES {
                self.done.push(self.current.finalize_reset().into());
                self.filled = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<[u8; 32]> {
        if self.filled > 0 {
            self.done.push(self.current.finalize().into());
        }
        self.done
    }
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.write_all(bytes).map_err(io(&self.path))?;
        }
        self.hasher.update(bytes);
        self.chunks.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and fsyncs the upload; the result can be committed to the store.
    pub fn finish(mut self) -> Result<StagedBlob> {
        if let Some(file) = self.file.take() {
            let file = file.into_inner().map_err(|e| Error::Io {
                path: self.path.clone(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io(&self.path))?;
        }
        let hasher = std::mem::take(&mut self.hasher);
        Ok(StagedBlob {
            chunk_digests: std::mem::take(&mut self.chunks).finish(),
            path: std::mem::take(&mut self.path),
            blob: BlobRef {
                id: BlobId::from_digest(&hasher.finalize()),
                size: self.written,
            },
            committed: false,
        })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A finished upload, hashed and on disk in `.incoming/`; removed when dropped uncommitted.
#[derive(Debug)]
pub struct StagedBlob {
    path: PathBuf,
    blob: BlobRef,
    committed: bool,
    chunk_digests: Vec<[u8; 32]>,
}

impl StagedBlob {
    /// The sha256 of each `MAX_CHUNK_BYTES` chunk, computed as the bytes arrived (empty
    /// after the first call).
    pub fn take_chunk_digests(&mut self) -> Vec<[u8; 32]> {
        std::mem::take(&mut self.chunk_digests)
    }

    /// What was received: its sha256 and size.
    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }

    /// Where the bytes are until committed.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(store: &BlobStore, bytes: &[u8]) -> StagedBlob {
        let mut w = store.writer().unwrap();
        for chunk in bytes.chunks(3) {
            w.write(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn id_of(bytes: &[u8]) -> BlobRef {
        BlobRef {
            id: BlobId::from_digest(&Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }

    #[test]
    fn commit_verifies_the_announced_hash_before_the_blob_is_visible() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let good = id_of(b"checkpoint bytes");
        let staged = upload(&store, b"checkpoint bytez");
        let err = store.commit(staged, &good).unwrap_err();
        assert!(matches!(err, Error::UploadMismatch { .. }), "{err}");
        assert!(!store.contains(&good.id));
        // The rejected upload left nothing behind.
        assert_eq!(fs::read_dir(tmp.path().join(INCOMING)).unwrap().count(), 0);

        let staged = upload(&store, b"checkpoint bytes");
        assert_eq!(store.commit(staged, &good).unwrap(), good);
        assert_eq!(store.get(&good.id).unwrap(), good);
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&good.id));
        assert_eq!(store.verify(&good.id, Some(good.size)).unwrap(), good);
    }

    #[test]
    fn truncated_and_corrupted_blobs_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let blob = id_of(b"0123456789");
        store.commit(upload(&store, b"0123456789"), &blob).unwrap();
        fs::write(store.path(&blob.id), b"01234").unwrap();
        let err = store.verify(&blob.id, Some(blob.size)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BlobTruncated {
                    found: 5,
                    expected: 10,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
        fs::write(store.path(&blob.id), b"0123456780").unwrap();
        let err = store.verify(&blob.id, Some(blob.size)).unwrap_err();
        assert!(matches!(err, Error::BlobCorrupted { .. }), "{err}");
    }

    #[test]
    fn unfinished_uploads_are_dropped_and_cleaned_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let mut w = store.writer().unwrap();
        w.write(b"half").unwrap();
        std::mem::forget(w); // as if the process died mid-upload
        assert_eq!(fs::read_dir(tmp.path().join(INCOMING)).unwrap().count(), 1);
        let store = BlobStore::open(tmp.path()).unwrap();
        assert_eq!(fs::read_dir(tmp.path().join(INCOMING)).unwrap().count(), 0);
        assert!(store.list().unwrap().is_empty());
    }
}
