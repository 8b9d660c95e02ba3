//! The run directory: what a run writes and what `--resume` reads back.
//!
//! ```text
//! DIR/config.json        the settings (Settings)
//! DIR/versions.json      arlas and dependency versions, command line, start time
//! DIR/state.json         progress: the commit point of every iteration
//! DIR/metrics.jsonl      one record per warm-up step, update, iteration and evaluation
//! DIR/payoff.json        agent version × attacker: games and attacker wins
//! DIR/population/        frozen attacker checkpoints (arlas-coordinator's Population)
//! DIR/agent/warmup       model directories (checkpoints with optimizer state) that
//! DIR/agent/step-NNNN    `--agent` and `--model` accept; `step-NNNN` is the latest
//! DIR/agent/final        iteration's, kept for resume
//! DIR/attacker/...       the same for the attacker
//! DIR/eval/*.json        evaluation results (warmup, final, diversity)
//! DIR/report.html        plots and tables
//! ```
//!
//! An iteration is committed when `state.json` is rewritten; whatever it wrote before
//! that (checkpoints, a population member, metrics lines) is rolled back on resume, so
//! a resumed run neither replays nor skips an iteration.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::records::Record;

/// Progress of a run (`state.json`): the commit point of the warm-up and every iteration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunProgress {
    pub warmup_done: bool,
    pub iterations_done: u32,
    pub agent_version: u64,
    pub attacker_version: u64,
    /// Checkpoint directories (relative to the run dir) of the latest committed policies.
    pub agent_checkpoint: Option<String>,
    pub attacker_checkpoint: Option<String>,
    pub finished: bool,
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.json")
    }

    pub fn population(&self) -> PathBuf {
        self.path("population")
    }

    pub fn metrics(&self) -> PathBuf {
        self.path("metrics.jsonl")
    }

    pub fn report(&self) -> PathBuf {
        self.path("report.html")
    }

    /// `DIR/<player>/<name>`.
    pub fn checkpoint(&self, player: &str, name: &str) -> PathBuf {
        self.root.join(player).join(name)
    }

    pub fn eval(&self, name: &str) -> PathBuf {
        self.root.join("eval").join(format!("{name}.json"))
    }

    /// Whether `DIR` already holds a run.
    pub fn exists(&self) -> bool {
        self.config().is_file()
    }

    pub fn read_progress(&self) -> anyhow::Result<RunProgress> {
        let path = self.path("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a valid run state; the run directory is damaged",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunProgress::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Commits progress: written to a temporary file and renamed.
    pub fn write_progress(&self, state: &RunProgress) -> anyhow::Result<()> {
        write_json(&self.path("state.json"), state)
    }

    /// Appends one record to `metrics.jsonl`.
    pub fn log_metrics(&self, record: &Record) -> anyhow::Result<()> {
        let path = self.metrics();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        file.write_all(line.as_bytes())
            .with_context(|| format!("cannot append to {}", path.display()))
    }

    /// Every record of `metrics.jsonl` (malformed lines, e.g. one cut by a crash, are skipped).
    pub fn read_metrics(&self) -> anyhow::Result<Vec<Record>> {
        let path = self.metrics();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Drops metrics written by an iteration that was never committed.
    pub fn rollback_metrics(&self, iterations_done: u32) -> anyhow::Result<()> {
        let kept: Vec<Record> = self
            .read_metrics()?
            .into_iter()
            .filter(|r| r.iteration().is_none_or(|i| i <= iterations_done))
            .collect();
        let mut text = String::new();
        for r in &kept {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_bytes(&self.metrics(), text.as_bytes())
    }
}

/// Writes `value` as pretty JSON through a temporary file and a rename.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value)?;
    write_bytes(path, &bytes)
}

fn write_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Reads a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}
