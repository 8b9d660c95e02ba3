//! A checkpoint download on disk: `DEST.partial`, the running sha256 of its bytes, and the
//! checksum that came with every chunk written, to find a corrupted chunk when the
//! whole-blob hash disagrees with the blob's id.
//!
//! Each byte is hashed once on the way in (the whole-blob hash that the content address
//! needs). The per-chunk checksums are only compared when that hash fails: the file is
//! read again, the first chunk whose bytes disagree with its checksum is found, and the
//! download is cut back to it and fetched again from there. Corruption is rare; hashing
//! every chunk twice on every download was the most expensive part of a broadcast.
//! Blocking: call from the blocking pool.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, io};

/// A chunk written in this download, and the checksum the server sent with it.
#[derive(Debug)]
struct Written {
    offset: u64,
    len: u64,
    sha256: Vec<u8>,
}

#[derive(Debug)]
pub struct Download {
    path: PathBuf,
    file: File,
    /// Bytes in the file, all of them hashed into `whole`.
    len: u64,
    whole: Sha256,
    written: Vec<Written>,
}

impl Download {
    /// Opens (creating) `path` to continue at its end, hashing the bytes already there. A
    /// file longer than `size` cannot be a prefix of the blob and is emptied.
    pub fn open(path: &Path, size: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut download = Self {
            path: path.to_path_buf(),
            file,
            len: 0,
            whole: Sha256::new(),
            written: Vec::new(),
        };
        download.truncate(if len > size { 0 } else { len })?;
        Ok(download)
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a chunk that starts at [`Self::len`], with the checksum sent along with it.
    pub fn append(&mut self, data: &[u8], sha256: Vec<u8>) -> Result<()> {
        self.file.write_all(data).map_err(io(&self.path))?;
        self.whole.update(data);
        self.written.push(Written {
            offset: self.len,
            len: data.len() as u64,
            sha256,
        });
        self.len += data.len() as u64;
        Ok(())
    }

    /// The hex sha256 of the bytes on disk.
    pub fn sha256(&self) -> String {
        hex::encode(self.whole.clone().finalize())
    }

    /// Reads the chunks written in this download again and returns where the first one
    /// that disagrees with its checksum starts; `None` when all of them agree (then the
    /// fault is in bytes an earlier download left, or in the server's blob).
    pub fn first_bad_chunk(&mut self) -> Result<Option<u64>> {
        let mut buf = Vec::new();
        for chunk in &self.written {
            let len = usize::try_from(chunk.len).unwrap_or(usize::MAX);
            buf.resize(len, 0);
            self.file
                .seek(SeekFrom::Start(chunk.offset))
                .map_err(io(&self.path))?;
            self.file.read_exact(&mut buf).map_err(io(&self.path))?;
            if Sha256::digest(&buf).as_slice() != chunk.sha256.as_slice() {
                return Ok(Some(chunk.offset));
            }
        }
        Ok(None)
    }

    /// Cuts the file back to its first `at` bytes and hashes them again.
    pub fn truncate(&mut self, at: u64) -> Result<()> {
        self.file.set_len(at).map_err(io(&self.path))?;
        self.file.seek(SeekFrom::Start(0)).map_err(io(&self.path))?;
        let mut whole = Sha256::new();
        let copied =
            std::io::copy(&mut (&mut self.file).take(at), &mut whole).map_err(io(&self.path))?;
        if copied != at {
            return Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("read {copied} of the {at} bytes just kept"),
                ),
            });
        }
        self.whole = whole;
        self.len = at;
        self.written.retain(|c| c.offset + c.len <= at);
        self.file
            .seek(SeekFrom::Start(at))
            .map_err(io(&self.path))?;
        Ok(())
    }

    /// Renames the (verified) download to `dest`.
    pub fn finish(self, dest: &Path) -> Result<()> {
        drop(self.file);
        std::fs::rename(&self.path, dest).map_err(io(dest))
    }

    /// Deletes the download.
    pub fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_chunk_is_found_and_cut_off_and_a_resume_hashes_the_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.partial");
        let good: Vec<u8> = (0..3000u32).map(|i| (i % 241) as u8).collect();
        let id = hex::encode(Sha256::digest(&good));
        let sums: Vec<Vec<u8>> = good
            .chunks(1000)
            .map(|c| Sha256::digest(c).to_vec())
            .collect();

        let mut d = Download::open(&path, 3000).unwrap();
        d.append(&good[..1000], sums[0].clone()).unwrap();
        let mut bad = good[1000..2000].to_vec();
        bad[5] ^= 1;
        d.append(&bad, sums[1].clone()).unwrap();
        d.append(&good[2000..], sums[2].clone()).unwrap();
        assert_ne!(d.sha256(), id);
        assert_eq!(d.first_bad_chunk().unwrap(), Some(1000));
        d.truncate(1000).unwrap();
        assert_eq!(d.len(), 1000);
        drop(d);

        // Resumed in a new process: the prefix is hashed, the rest appended.
        let mut d = Download::open(&path, 3000).unwrap();
        assert_eq!(d.len(), 1000);
        d.append(&good[1000..2000], sums[1].clone()).unwrap();
        d.append(&good[2000..], sums[2].clone()).unwrap();
        assert_eq!(d.sha256(), id);
        assert_eq!(d.first_bad_chunk().unwrap(), None);
        let dest = tmp.path().join("x");
        d.finish(&dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), good);

        // A file longer than the blob is emptied.
        std::fs::write(&path, vec![0u8; 4000]).unwrap();
        assert!(Download::open(&path, 3000).unwrap().is_empty());
    }
}
