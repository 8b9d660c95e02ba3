//! The learner's data directory and its commit point, `state.json`.
//!
//! ```text
//! DATA/
//!   state.json        version, its checkpoint, journal records consumed, dedupe keys,
//!                     trained_total — written by temporary file, fsync, rename
//!   checkpoints/      v00000001/ (the KL reference, kept) ... vNNNNNNNN/: model, optimizer
//!                     and trainer state (`Learner::save`)
//!   journal/          accepted trajectories (see `journal`)
//!   publish/          the current version's policy-only export and its blob, until published
//! ```
//!
//! A checkpoint becomes the learner's version only when `state.json` names it; directories
//! of newer versions that `state.json` does not name (a crash between the two writes) and
//! temporary directories are removed at start-up.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dedupe::{Dedupe, Watermarked};
use crate::Player;
use crate::error::{Error, Result, io};

const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerState {
    pub format: u32,
    pub player: Player,
    /// The policy version of `checkpoint`.
    pub version: u64,
    /// Journal records trained into `checkpoint`.
    pub consumed: Watermarked,
    /// Keys accepted when `checkpoint` was saved (the journal adds the later ones).
    pub dedupe: Dedupe,
    /// Trajectories trained into `checkpoint` since the run began.
    pub trained_total: u64,
}

impl LearnerState {
    pub fn initial(player: Player) -> Self {
        Self {
            format: FORMAT,
            player,
            version: 1,
            consumed: Watermarked::default(),
            dedupe: Dedupe::default(),
            trained_total: 0,
        }
    }
}

/// Paths inside a learner data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Fsyncs every file under `dir` and the directories themselves (checkpoints are written
/// without fsync by the policy crate; the state file must never name unsynced bytes).
pub fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    sync_dir(dir)
}

impl DataDir {
    /// Creates the layout under `root` if absent.
    pub fn create(root: &Path) -> Result<Self> {
        let dir = Self {
            root: root.to_path_buf(),
        };
        for d in [dir.checkpoints(), dir.journal(), dir.publish()] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }
    pub fn publish(&self) -> PathBuf {
        self.root.join("publish")
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }
    pub fn checkpoint(&self, version: u64) -> PathBuf {
        self.checkpoints().join(format!("v{version:08}"))
    }

    /// The committed state, or `None` in a new directory.
    pub fn read_state(&self) -> Result<Option<LearnerState>> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let state: LearnerState = serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if state.format != FORMAT {
            return Err(Error::State {
                path,
                reason: format!("format {} is not {FORMAT}", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Commits `state` (temporary file, fsync, rename, fsync of the directory).
    pub fn write_state(&self, state: &LearnerState) -> Result<()> {
        let path = self.state_file();
        let tmp = self.root.join(format!(".{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec(state).map_err(|e| Error::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.root)
    }

    /// Removes temporary checkpoint directories, checkpoints newer than `version` (never
    /// committed) and old ones beyond the newest `keep` (version 1, the KL reference, stays).
    pub fn clean_checkpoints(&self, version: u64, keep: usize) -> Result<()> {
        let dir = self.checkpoints();
        let mut versions = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            match name.strip_prefix('v').and_then(|v| v.parse::<u64>().ok()) {
                Some(v) if v > version => remove(&path)?,
                Some(v) => versions.push(v),
                None if name.starts_with('.') => remove(&path)?,
                None => {}
            }
        }
        versions.sort_unstable();
        let keep = keep.max(1);
        if versions.len() > keep {
            for &v in &versions[..versions.len() - keep] {
                if v != 1 {
                    remove(&self.checkpoint(v))?;
                }
            }
        }
        Ok(())
    }
}

fn remove(path: &Path) -> Result<()> {
    tracing::debug!(path = %path.display(), "removing");
    if path.is_dir() {
        std::fs::remove_dir_all(path).map_err(io(path))
    } else {
        std::fs::remove_file(path).map_err(io(path))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_round_trips_and_dedupe_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        assert!(dir.read_state().unwrap().is_none());
        let mut state = LearnerState::initial(Player::Attacker);
        state.dedupe.insert("lease", 1);
        state.dedupe.insert("lease", 7);
        state.consumed.insert(0);
        state.version = 3;
        dir.write_state(&state).unwrap();
        let back = DataDir::create(tmp.path())
            .unwrap()
            .read_state()
            .unwrap()
            .unwrap();
        assert_eq!(back, state);
        assert!(back.dedupe.contains("lease", 7) && !back.dedupe.contains("lease", 2));
        std::fs::write(dir.state_file(), "{\"format\":1}").unwrap();
        let err = dir.read_state().unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn uncommitted_temporary_and_old_checkpoints_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        for v in 1..=6 {
            std::fs::create_dir_all(dir.checkpoint(v)).unwrap();
        }
        std::fs::create_dir_all(dir.checkpoints().join(".v00000007.tmp-1-2")).unwrap();
        dir.clean_checkpoints(5, 2).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.checkpoints())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, vec!["v00000001", "v00000004", "v00000005"]);
    }
}
