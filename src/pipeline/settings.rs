//! Everything that determines a run, written to `DIR/config.json`.

use std::path::PathBuf;

use arlas_actor::RolloutConfig;
use arlas_coordinator::{OpponentPool, OpponentRule, OpponentSampling};
use arlas_learner::{LearnerConfig, Player};
use arlas_policy::TrainConfig;

use super::models::AdapterSettings;
use crate::environments::{EnvKind, EnvironmentSettings, parse_builtin_suites};
use serde::{Deserialize, Serialize};

/// The imitation warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupSettings {
    /// Scripted episodes demonstrated.
    pub episodes: usize,
    /// Fraction of the agent's demonstrations played by the gullible `naive:1.0` agent.
    pub naive_fraction: f64,
    /// Passes over the demonstrations.
    pub epochs: usize,
    /// Optimizer of the warm-up (both players).
    pub train: TrainConfig,
    /// Demonstrations per optimizer step.
    pub minibatch_size: usize,
}

impl Default for WarmupSettings {
    fn default() -> Self {
        Self {
            episodes: 600,
            naive_fraction: 0.5,
            epochs: 3,
            train: TrainConfig {
                learning_rate: 2e-3,
                warmup_steps: 10,
                total_steps: 0,
                min_lr_ratio: 0.1,
                weight_decay: 0.01,
                micro_batch_size: 8,
                ..TrainConfig::default()
            },
            minibatch_size: 16,
        }
    }
}

/// Held-out evaluation during and after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSettings {
    /// Held-out episodes per attacker (and without attack).
    pub episodes: usize,
    /// Evaluate every this many iterations (0 = only before and after).
    pub every: u32,
    /// The agent samples greedily in evaluation when 0.
    pub agent_temperature: f32,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            episodes: 64,
            every: 1,
            agent_temperature: 0.0,
        }
    }
}

/// A whole ARLAS run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `tiny`, `tiny-2m`, `tiny-20m`, `smollm2` or a model directory: both players start from it.
    pub model: String,
    /// Where episodes are played: the built-in suites or an environment service (AgentDojo).
    pub environment: EnvironmentSettings,
    /// Where models are cached and fetched.
    pub models_dir: PathBuf,
    /// LoRA adapters over one shared frozen base, or full fine-tuning (per player, by its
    /// base: `auto` adapts pretrained bases and fully trains the random-init `tiny` ones).
    pub adapters: AdapterSettings,
    /// Start the agent from this checkpoint instead of warming it up.
    pub agent_init: Option<PathBuf>,
    /// Start the attacker from this checkpoint instead of warming it up.
    pub attacker_init: Option<PathBuf>,
    pub seed: u64,
    pub warmup: WarmupSettings,
    /// Adversarial iterations after the warm-up.
    pub iterations: u32,
    /// Tasks per iteration and player; each is played `group_size` times (a GRPO group).
    pub tasks_per_iteration: usize,
    pub group_size: usize,
    /// `all` (ARLAS) or `latest` (no-population ablation).
    pub opponents: OpponentPool,
    pub opponent_sampling: OpponentSampling,
    /// A player that is not trained.
    pub freeze: Option<Player>,
    pub agent: LearnerConfig,
    pub attacker: LearnerConfig,
    pub rollout: RolloutConfig,
    pub eval: EvalSettings,
}

impl Default for Settings {
    fn default() -> Self {
        let rl = TrainConfig {
            learning_rate: 2e-4,
            warmup_steps: 0,
            weight_decay: 0.0,
            micro_batch_size: 8,
            clip_low: 0.1,
            clip_high: 0.3,
            kl_coef: 0.05,
            ..TrainConfig::default()
        };
        let learner = LearnerConfig {
            train: rl,
            minibatch_size: 32,
            ..LearnerConfig::default()
        };
        Self {
            model: "tiny".to_string(),
            environment: EnvironmentSettings::default(),
            models_dir: PathBuf::from("models"),
            adapters: AdapterSettings::default(),
            agent_init: None,
            attacker_init: None,
            seed: 0,
            warmup: WarmupSettings::default(),
            iterations: 10,
            tasks_per_iteration: 16,
            group_size: 8,
            opponents: OpponentPool::All,
            opponent_sampling: OpponentSampling::Uniform,
            freeze: None,
            agent: learner.clone(),
            attacker: learner,
            rollout: RolloutConfig::default(),
            eval: EvalSettings::default(),
        }
    }
}

impl Settings {
    /// The GRPO settings of `player`.
    pub fn learner(&self, player: Player) -> &LearnerConfig {
        match player {
            Player::Agent => &self.agent,
            Player::Attacker => &self.attacker,
        }
    }

    /// The pipeline's rule for the agent's opponents.
    pub fn opponent_rule(&self) -> OpponentRule {
        OpponentRule {
            pool: self.opponents,
            sampling: self.opponent_sampling,
        }
    }

    /// Settles `environment.suites` (where `--suites` goes): the built-in suites' names move
    /// to `rollout.game.suites`; another environment keeps them.
    pub fn resolve_environment(&mut self) -> anyhow::Result<()> {
        if self.environment.kind == EnvKind::Builtin
            && self.environment.url.is_none()
            && !self.environment.suites.is_empty()
        {
            self.rollout.game.suites = parse_builtin_suites(&self.environment.suites)?;
            self.environment.suites.clear();
        }
        Ok(())
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.group_size >= 2,
            "group_size is {}; GRPO needs at least 2 rollouts per task",
            self.group_size
        );
        anyhow::ensure!(
            self.tasks_per_iteration >= 1,
            "tasks_per_iteration must be at least 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.warmup.naive_fraction),
            "naive_fraction is {}; use a value from 0 to 1",
            self.warmup.naive_fraction
        );
        anyhow::ensure!(self.eval.episodes >= 1, "eval episodes must be at least 1");
        self.rollout.game.validate()?;
        self.adapters.validate()?;
        Ok(())
    }

    /// The demo: the whole pipeline on the tiny model, sized for about 15 minutes on 2 cores
    /// (measured: docs/results.md).
    pub fn demo() -> Self {
        let mut s = Self::default();
        s.warmup.episodes = 400;
        s.warmup.epochs = 3;
        s.warmup.minibatch_size = 8;
        s.warmup.train.learning_rate = 3e-3;
        s.iterations = 4;
        s.tasks_per_iteration = 8;
        s.group_size = 4;
        s.eval.episodes = 32;
        s.eval.every = 2;
        for learner in [&mut s.agent, &mut s.attacker] {
            learner.train.learning_rate = 5e-4;
        }
        s
    }
}
