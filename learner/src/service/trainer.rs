//! The training thread: owns the [`Learner`], turns each batch into an update, saves the
//! checkpoint and commits `state.json`, tells the intake, and hands the new version's
//! policy-only blob to the publisher.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arlas_core::BlobRef;
use arlas_core::archive::pack_to_file;
use arlas_game::seed::mix;
use arlas_runtime::metrics as names;
use tokio::sync::watch;

use super::intake::Batch;
use super::owner::{Command, OwnerHandle};
use super::state::{DataDir, LearnerState, sync_tree};
use super::thread::{self, Watched};
use crate::error::{Error, Result, io};
use crate::learner::{Learner, UpdateReport};

/// A version ready to publish: its policy-only checkpoint packed as a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub version: u64,
    pub blob: PathBuf,
    pub checkpoint: BlobRef,
}

/// Writes the learner's policy (no optimizer) to `DATA/publish/vN/`, packs it to
/// `DATA/publish/vN.blob` and removes the directory; older exports are removed first.
pub fn export(learner: &Learner, data: &DataDir) -> Result<Export> {
    let publish = data.publish();
    for entry in std::fs::read_dir(&publish).map_err(io(&publish))? {
        let path = entry.map_err(io(&publish))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io(&path))?;
    }
    let version = learner.version();
    let dir = publish.join(format!("v{version:08}"));
    arlas_policy::save_policy(learner.policy(), &dir)?;
    let blob = publish.join(format!("v{version:08}.blob"));
    let checkpoint = pack_to_file(&dir, &blob)?;
    std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    Ok(Export {
        version,
        blob,
        checkpoint,
    })
}

/// What the training thread needs.
pub struct TrainingThread {
    pub learner: Learner,
    pub data: DataDir,
    pub owner: OwnerHandle,
    pub exports: watch::Sender<Option<Export>>,
    pub seed: u64,
    pub keep_checkpoints: usize,
    /// Lock-step mode: every batch makes a new version, even one that taught nothing.
    pub sync: bool,
}

impl TrainingThread {
    /// Starts the thread; it ends when the batch channel closes, or with the first error
    /// (the learner cannot go on without saving).
    pub fn spawn(self, batches: std_mpsc::Receiver<Batch>) -> Result<Watched> {
        thread::spawn("arlas-trainer", "the training thread", move || {
            self.run(batches)
        })
    }

    fn run(mut self, batches: std_mpsc::Receiver<Batch>) -> Result<()> {
        let player = self.learner.player().name();
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(names::POLICY_VERSION, "player" => player)
            .set(self.learner.version() as f64);
        for batch in batches {
            let started = Instant::now();
            let before = self.learner.version();
            let seed = mix(self.seed, before);
            let report = match self.learner.update(&batch.trajectories, seed) {
                Ok(report) => Some(report),
                // Data the edge let through but the trainer refuses: skip it rather than
                // fail on it again after every restart.
                Err(Error::Policy(arlas_policy::Error::InvalidInput(reason))) => {
                    tracing::error!(
                        reason,
                        trajectories = batch.indices.len(),
                        "the trainer refused a batch: skipped"
                    );
                    None
                }
                Err(e) => return Err(e),
            };
            if self.sync && self.learner.version() == before {
                self.learner.advance_version();
            }
            let version = self.learner.version();
            if version > before {
                let dir = self.data.checkpoint(version);
                self.learner.save(&dir)?;
                sync_tree(&dir)?;
            }
            self.data.write_state(&LearnerState {
                version,
                consumed: batch.consumed_after.clone(),
                dedupe: batch.dedupe.clone(),
                trained_total: batch.trained_total_after,
                ..LearnerState::initial(self.learner.player())
            })?;
            self.data
                .clean_checkpoints(version, self.keep_checkpoints)?;
            let export = (version > before)
                .then(|| export(&self.learner, &self.data))
                .transpose()?;
            if let Some(report) = &report {
                record(player, report, started);
                let message = if version > before {
                    "update saved"
                } else {
                    "batch consumed without an update (no item with a learning signal, or every step skipped)"
                };
                tracing::info!(
                    player,
                    version,
                    trajectories = report.trajectories,
                    items = report.items,
                    flat_groups = report.groups.flat_groups,
                    loss = report.means().loss,
                    seconds = started.elapsed().as_secs_f64(),
                    "{message}"
                );
            }
            if let Some(export) = export {
                let _ = self.exports.send(Some(export));
            }
            if self
                .owner
                .blocking_send(Command::Trained { batch, version })
                .is_err()
            {
                break; // shutting down
            }
        }
        Ok(())
    }
}

fn record(player: &'static str, report: &UpdateReport, started: Instant) {
    let m = report.means();
    metrics::gauge!(names::LOSS, "player" => player).set(m.loss);
    metrics::gauge!(names::KL, "player" => player).set(m.kl);
    metrics::gauge!(names::ENTROPY, "player" => player).set(m.entropy);
    metrics::gauge!(names::GRAD_NORM, "player" => player).set(m.grad_norm);
    metrics::gauge!(names::CLIP_FRACTION, "player" => player).set(m.clip_fraction);
    metrics::gauge!(names::LOGPROB_MISMATCH, "player" => player).set(report.logprob_mismatch);
    let steps = report.steps.len() as u64;
    metrics::counter!(names::UPDATES_TOTAL, "player" => player).increment(steps - m.skipped as u64);
    metrics::counter!(names::UPDATES_SKIPPED_TOTAL, "player" => player).increment(m.skipped as u64);
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!(names::POLICY_VERSION, "player" => player).set(report.version as f64);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(names::LEARNER_LAST_UPDATE_TIMESTAMP_SECONDS, "player" => player).set(now);
    metrics::histogram!(names::LEARNER_BATCH_SECONDS, "player" => player)
        .record(started.elapsed().as_secs_f64());
}
