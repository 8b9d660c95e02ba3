//! The checkpoint blob format: a whole checkpoint directory as one byte string, so that it
//! has one sha256 (its id), ships in chunks and is verified end to end.
//!
//! ```text
//! "ARLASCK1"                         8 bytes, magic and format version
//! count: u32 LE                      number of files
//! count times, sorted by path:
//!   path_len: u32 LE, path: UTF-8    relative, '/'-separated, no '.', '..' or empty parts
//!   size: u64 LE, bytes              the file's content
//! ```
//!
//! Packing is deterministic (sorted paths, no timestamps or modes), so the same directory
//! always gives the same blob and the same id, wherever it is packed. Unpacking checks
//! every path and that the blob ends exactly after the last file.

use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result, io};
use crate::ids::BlobId;
use crate::version::BlobRef;

/// Magic bytes and format version of a checkpoint blob.
pub const MAGIC: &[u8; 8] = b"ARLASCK1";
const MAX_FILES: u32 = 100_000;
const MAX_PATH_LEN: u32 = 4096;

/// Writes the blob of `dir` to `out`.
pub fn pack(dir: &Path, out: &mut impl Write) -> Result<()> {
    let files = list_files(dir)?;
    let count = u32::try_from(files.len())
        .ok()
        .filter(|&n| n <= MAX_FILES)
        .ok_or_else(|| {
            Error::Archive(format!("{} has more than {MAX_FILES} files", dir.display()))
        })?;
    let write_err = |e: io::Error| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    out.write_all(MAGIC).map_err(write_err)?;
    out.write_all(&count.to_le_bytes()).map_err(write_err)?;
    for rel in &files {
        let path = dir.join(rel);
        let mut file = fs::File::open(&path).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        // `list_files` only returns valid paths, whose length fits.
        let path_len = u32::try_from(rel.len()).unwrap_or(u32::MAX);
        out.write_all(&path_len.to_le_bytes()).map_err(write_err)?;
        out.write_all(rel.as_bytes()).map_err(write_err)?;
        out.write_all(&size.to_le_bytes()).map_err(write_err)?;
        let copied = io::copy(&mut (&mut file).take(size), out).map_err(io(&path))?;
        if copied != size {
            return Err(Error::Archive(format!(
                "{} changed size while being packed",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Packs `dir` into the file `blob` and returns the blob's id and size.
pub fn pack_to_file(dir: &Path, blob: &Path) -> Result<BlobRef> {
    let file = fs::File::create(blob).map_err(io(blob))?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    pack(dir, &mut out)?;
    let (writer, blob_ref) = out.finish();
    let file = writer.into_inner().map_err(|e| Error::Io {
        path: blob.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(blob))?;
    Ok(blob_ref)
}

/// The id and size `dir` would have as a blob, without writing it anywhere.
pub fn blob_ref_of_dir(dir: &Path) -> Result<BlobRef> {
    let mut out = HashingWriter::new(io::sink());
    pack(dir, &mut out)?;
    Ok(out.finish().1)
}

/// Unpacks the blob file `blob` into `dest` (created if absent; must hold none of the
/// blob's paths).
pub fn unpack(blob: &Path, dest: &Path) -> Result<()> {
    read_archive(blob, Some(dest))
}

/// Checks that the blob file `blob` is a well-formed checkpoint archive, writing nothing.
pub fn validate(blob: &Path) -> Result<()> {
    read_archive(blob, None)
}

fn read_archive(blob: &Path, dest: Option<&Path>) -> Result<()> {
    let file = fs::File::open(blob).map_err(io(blob))?;
    let total = file.metadata().map_err(io(blob))?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let bad = |what: String| Error::Archive(format!("{}: {what}", blob.display()));
    let mut magic = [0u8; 8];
    read_exact(&mut input, &mut magic, blob)?;
    if &magic != MAGIC {
        return Err(bad("does not start with the ARLASCK1 magic".into()));
    }
    let count = read_u32(&mut input, blob)?;
    if count > MAX_FILES {
        return Err(bad(format!("claims {count} files, more than {MAX_FILES}")));
    }
    if let Some(dest) = dest {
        fs::create_dir_all(dest).map_err(io(dest))?;
    }
    let mut consumed: u64 = 12;
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let path_len = read_u32(&mut input, blob)?;
        if path_len == 0 || path_len > MAX_PATH_LEN {
            return Err(bad(format!("file path of {path_len} bytes")));
        }
        let mut raw = vec![0u8; path_len as usize];
        read_exact(&mut input, &mut raw, blob)?;
        let rel = String::from_utf8(raw).map_err(|_| bad("a file path is not UTF-8".into()))?;
        validate_rel_path(&rel).map_err(|reason| bad(format!("file path {rel:?} {reason}")))?;
        if previous
            .as_ref()
            .is_some_and(|p| p.as_str() >= rel.as_str())
        {
            return Err(bad(format!(
                "file path {rel:?} is out of order or repeated"
            )));
        }
        let size = read_u64(&mut input, blob)?;
        consumed = consumed
            .saturating_add(4 + u64::from(path_len) + 8)
            .saturating_add(size);
        if consumed > total {
            return Err(bad(format!(
                "file {rel:?} of {size} bytes runs past the end"
            )));
        }
        let copied = match dest {
            Some(dest) => {
                let target = dest.join(&rel);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io(&target))?;
                let copied =
                    io::copy(&mut (&mut input).take(size), &mut out).map_err(io(&target))?;
                out.sync_all().map_err(io(&target))?;
                copied
            }
            None => io::copy(&mut (&mut input).take(size), &mut io::sink()).map_err(io(blob))?,
        };
        if copied != size {
            return Err(bad(format!("file {rel:?} is cut short")));
        }
        previous = Some(rel);
    }
    if consumed != total {
        return Err(bad(format!(
            "{} bytes of trailing data after the last file",
            total - consumed
        )));
    }
    Ok(())
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer and the id and size of everything written.
    pub fn finish(self) -> (W, BlobRef) {
        let id = BlobId::from_digest(&self.hasher.finalize());
        (
            self.inner,
            BlobRef {
                id,
                size: self.written,
            },
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Relative paths of the regular files below `dir`, '/'-separated and sorted.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    walk(dir, &mut PathBuf::new(), &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, rel: &mut PathBuf, out: &mut Vec<String>) -> Result<()> {
    let dir = root.join(&*rel);
    for entry in fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let kind = entry.file_type().map_err(io(entry.path()))?;
        rel.push(entry.file_name());
        if kind.is_dir() {
            walk(root, rel, out)?;
        } else if kind.is_file() {
            let text = rel
                .to_str()
                .ok_or_else(|| Error::Archive(format!("{} is not UTF-8", rel.display())))?
                .replace(std::path::MAIN_SEPARATOR, "/");
            validate_rel_path(&text)
                .map_err(|reason| Error::Archive(format!("file path {text:?} {reason}")))?;
            out.push(text);
        }
        rel.pop();
    }
    Ok(())
}

fn validate_rel_path(rel: &str) -> std::result::Result<(), &'static str> {
    if rel.len() > MAX_PATH_LEN as usize {
        return Err("is too long");
    }
    if rel.contains(['\\', '\0']) {
        return Err("contains a backslash or NUL");
    }
    if rel
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("is not a plain relative path");
    }
    Ok(())
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], blob: &Path) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Archive(format!(
                "{}: ends in the middle of a header",
                blob.display()
            ))
        } else {
            Error::Io {
                path: blob.to_path_buf(),
                source: e,
            }
        }
    })
}

fn read_u32(input: &mut impl Read, blob: &Path) -> Result<u32> {
    let mut b = [0u8; 4];
    read_exact(input, &mut b, blob)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(input: &mut impl Read, blob: &Path) -> Result<u64> {
    let mut b = [0u8; 8];
    read_exact(input, &mut b, blob)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::hash_dir;

    fn checkpoint(dir: &Path, weights: &[u8]) {
        fs::create_dir_all(dir.join("optimizer")).unwrap();
        fs::write(dir.join("model.safetensors"), weights).unwrap();
        fs::write(dir.join("config.json"), b"{\"hidden\": 8}").unwrap();
        fs::write(dir.join("optimizer/state.safetensors"), b"m and v").unwrap();
    }

    #[test]
    fn pack_unpack_round_trips_and_is_deterministic() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        checkpoint(&a, b"weights");
        checkpoint(&b, b"weights");
        let blob = tmp.path().join("a.blob");
        let packed = pack_to_file(&a, &blob).unwrap();
        assert_eq!(packed, blob_ref_of_dir(&b).unwrap());
        assert_eq!(packed.size, fs::metadata(&blob).unwrap().len());
        let out = tmp.path().join("out");
        unpack(&blob, &out).unwrap();
        assert_eq!(hash_dir(&out).unwrap(), hash_dir(&a).unwrap());
        fs::write(b.join("model.safetensors"), b"weightz").unwrap();
        assert_ne!(blob_ref_of_dir(&b).unwrap().id, packed.id);
    }

    fn blob_with(path: &str, trailing: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend(1u32.to_le_bytes());
        v.extend(u32::try_from(path.len()).unwrap().to_le_bytes());
        v.extend(path.as_bytes());
        v.extend(2u64.to_le_bytes());
        v.extend(b"hi");
        v.extend(trailing);
        v
    }

    #[test]
    fn unpack_rejects_escaping_paths_garbage_and_truncation() {
        let tmp = tempfile::tempdir().unwrap();
        let blob = tmp.path().join("x.blob");
        fs::write(&blob, blob_with("ok/file.txt", b"")).unwrap();
        validate(&blob).unwrap();
        unpack(&blob, &tmp.path().join("fine")).unwrap();
        assert_eq!(
            fs::read(tmp.path().join("fine/ok/file.txt")).unwrap(),
            b"hi"
        );
        for (name, bytes) in [
            ("dotdot", blob_with("../escape.txt", b"")),
            ("absolute", blob_with("/etc/escape.txt", b"")),
            ("inner dotdot", blob_with("a/../../escape.txt", b"")),
            ("backslash", blob_with("a\\..\\b", b"")),
            ("trailing", blob_with("f", b"junk")),
            ("truncated data", blob_with("f", b"")[..26].to_vec()),
            ("truncated header", blob_with("f", b"")[..20].to_vec()),
            ("magic", b"NOTARLAS\0\0\0\0".to_vec()),
        ] {
            fs::write(&blob, bytes).unwrap();
            let dest = tmp.path().join(format!("dest-{}", name.replace(' ', "-")));
            let err = unpack(&blob, &dest).unwrap_err();
            assert!(matches!(err, Error::Archive(_)), "{name}: {err}");
            assert!(validate(&blob).is_err(), "{name}");
        }
        assert!(!tmp.path().join("escape.txt").exists());
        assert!(!Path::new("/etc/escape.txt").exists());
    }
}
