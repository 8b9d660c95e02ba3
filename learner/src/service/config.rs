//! Everything the learner service needs besides its listeners.

use std::path::PathBuf;
use std::time::Duration;

use arlas_policy::{Device, LoadOptions, ModelSpec};
use arlas_runtime::auth::Token;

use crate::Player;
use crate::learner::LearnerConfig;

/// Default of [`ServiceConfig::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default of [`ServiceConfig::batch_episodes`].
pub const DEFAULT_BATCH_EPISODES: usize = 32;
/// Default of [`ServiceConfig::stream_credits`].
pub const DEFAULT_STREAM_CREDITS: u32 = 64;
/// Default of [`ServiceConfig::journal_segment_bytes`].
pub const DEFAULT_JOURNAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default of [`ServiceConfig::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The learner's settings.
#[derive(Clone)]
pub struct ServiceConfig {
    /// The player it trains.
    pub player: Player,
    /// The data directory (created if absent; resumed if it holds a state).
    pub data_dir: PathBuf,
    /// The coordinator's gRPC URL, `http://host:port`.
    pub coordinator: String,
    /// The URL actors reach this learner at (default `http://<bound gRPC address>`).
    pub advertise: Option<String>,
    /// The name registered with the coordinator.
    pub name: String,
    /// The shared token: required of callers, and sent to the coordinator.
    pub token: Option<Token>,
    /// The initial policy on an empty data directory (a model name or a directory written
    /// by `arlas train`, e.g. `RUN/agent/warmup`).
    pub model: ModelSpec,
    /// How to load it (models directory, tiny corpus, seed).
    pub load: LoadOptions,
    pub device: Device,
    /// Optimizer, GRPO and staleness settings (`max_staleness` bounds the intake too).
    pub learner: LearnerConfig,
    pub queue_capacity: usize,
    pub batch_episodes: usize,
    /// Most credits one stream holds.
    pub stream_credits: u32,
    /// Lock-step mode: max staleness 0, batches of exactly `batch_episodes`.
    pub sync: bool,
    /// Seed of the updates' shuffling.
    pub seed: u64,
    pub journal_segment_bytes: u64,
    /// Checkpoints kept besides version 1 (the KL reference).
    pub keep_checkpoints: usize,
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("player", &self.player)
            .field("data_dir", &self.data_dir)
            .field("coordinator", &self.coordinator)
            .field("advertise", &self.advertise)
            .field("name", &self.name)
            .field("token", &self.token.is_some())
            .field("model", &self.model)
            .field("learner", &self.learner)
            .field("queue_capacity", &self.queue_capacity)
            .field("batch_episodes", &self.batch_episodes)
            .field("stream_credits", &self.stream_credits)
            .field("sync", &self.sync)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl ServiceConfig {
    /// Defaults for everything but what has none.
    pub fn new(player: Player, data_dir: PathBuf, coordinator: String, model: ModelSpec) -> Self {
        Self {
            player,
            data_dir,
            coordinator,
            advertise: None,
            name: format!("learner-{player}"),
            token: None,
            model,
            load: LoadOptions::default(),
            device: Device::Cpu,
            learner: LearnerConfig::default(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            batch_episodes: DEFAULT_BATCH_EPISODES,
            stream_credits: DEFAULT_STREAM_CREDITS,
            sync: false,
            seed: 0,
            journal_segment_bytes: DEFAULT_JOURNAL_SEGMENT_BYTES,
            keep_checkpoints: 2,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// The staleness bound in force (0 in `--sync` mode).
    pub fn max_staleness(&self) -> u64 {
        if self.sync {
            0
        } else {
            self.learner.max_staleness
        }
    }

    /// Checks the numbers that would make the learner stall.
    pub fn validate(&self) -> crate::Result<()> {
        let fail = |m: String| Err(crate::Error::Config(m));
        if self.batch_episodes == 0 {
            return fail("--batch-episodes must be at least 1".into());
        }
        if self.queue_capacity < self.batch_episodes {
            return fail(format!(
                "--queue-capacity {} is below --batch-episodes {}: training would never start",
                self.queue_capacity, self.batch_episodes
            ));
        }
        if self.stream_credits == 0 {
            return fail("stream credits must be at least 1".into());
        }
        Ok(())
    }
}
