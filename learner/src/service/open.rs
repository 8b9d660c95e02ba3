//! Start-up: a new data directory gets version 1 from the configured model; an existing
//! one resumes from the checkpoint `state.json` names, replays the journal past the
//! consumed records into the queue and rebuilds the de-duplication keys.

use arlas_core::Trajectory;
use arlas_policy::{LoadOptions, ModelSpec, Policy, Trainer};

use super::config::ServiceConfig;
use super::intake::{Intake, IntakeConfig};
use super::journal::Journal;
use super::state::{DataDir, LearnerState, sync_tree};
use super::trainer::{Export, export};
use crate::error::{Error, Result};
use crate::learner::{Learner, LearnerConfig};

/// Everything start-up restored.
pub struct Opened {
    pub learner: Learner,
    pub intake: Intake,
    pub journal: Journal,
    pub data: DataDir,
    /// The current version, ready to publish.
    pub export: Export,
    /// Journal records put back in the queue.
    pub replayed: usize,
}

fn learner_config(config: &ServiceConfig) -> LearnerConfig {
    LearnerConfig {
        max_staleness: config.max_staleness(),
        ..config.learner.clone()
    }
}

/// Opens (or creates) the learner's data directory.
pub fn open(config: &ServiceConfig) -> Result<Opened> {
    config.validate()?;
    let data = DataDir::create(&config.data_dir)?;
    let frozen = LoadOptions {
        trainable: false,
        lora: None,
        ..config.load.clone()
    };
    let (learner, state) = match data.read_state()? {
        Some(state) => {
            if state.player != config.player {
                return Err(Error::State {
                    path: data.state_file(),
                    reason: format!(
                        "it trains the {}, not the {}; use another --data directory",
                        state.player, config.player
                    ),
                });
            }
            data.clean_checkpoints(state.version, config.keep_checkpoints)?;
            let dir = data.checkpoint(state.version);
            let trainer = Trainer::resume(&dir, &config.device, &config.load)?;
            let mut learner = Learner::new(
                config.player,
                trainer,
                learner_config(config),
                state.version,
            )?;
            let reference = Policy::load(
                &ModelSpec::Path(data.checkpoint(1)),
                &config.device,
                &frozen,
            )?;
            learner.set_reference(reference);
            tracing::info!(version = state.version, dir = %dir.display(), "resumed");
            (learner, state)
        }
        None => {
            let trainable = LoadOptions {
                trainable: true,
                ..config.load.clone()
            };
            let policy = Policy::load(&config.model, &config.device, &trainable)?;
            let trainer = Trainer::new(policy, config.learner.train.clone())?;
            let mut learner = Learner::new(config.player, trainer, learner_config(config), 1)?;
            learner.freeze_reference()?;
            data.clean_checkpoints(0, config.keep_checkpoints)?;
            let dir = data.checkpoint(1);
            learner.save(&dir)?;
            sync_tree(&dir)?;
            let state = LearnerState::initial(config.player);
            data.write_state(&state)?;
            tracing::info!(model = %config.model, dir = %dir.display(), "new learner at version 1");
            (learner, state)
        }
    };
    let intake_config = IntakeConfig {
        player: config.player,
        capacity: config.queue_capacity,
        max_staleness: config.max_staleness(),
        stream_credits: config.stream_credits,
        batch_episodes: config.batch_episodes,
        complete_groups: !config.sync,
    };
    let journal_dir = data.journal();
    let (mut journal, records) = Journal::open(&journal_dir, config.journal_segment_bytes)?;
    let mut intake = Intake::new(
        intake_config,
        state.version,
        state.dedupe,
        state.consumed,
        state.trained_total,
    );
    let mut replayed = 0;
    for record in records {
        if intake.is_consumed(record.index) {
            continue;
        }
        let request = record.request;
        let trajectory = request
            .trajectory
            .ok_or_else(|| "no trajectory".to_string())
            .and_then(|t| Trajectory::try_from(t).map_err(|e| e.to_string()))
            .map_err(|reason| Error::State {
                path: journal_dir.clone(),
                reason: format!(
                    "journal record {} is not a valid trajectory: {reason}",
                    record.index
                ),
            })?;
        intake.replay(
            record.index,
            &request.actor_lease_id,
            request.sequence,
            trajectory,
        );
        replayed += 1;
    }
    journal.release_before(intake.consumed_below())?;
    if replayed > 0 {
        tracing::info!(replayed, "journal replayed into the queue");
    }
    let export = export(&learner, &data)?;
    Ok(Opened {
        learner,
        intake,
        journal,
        data,
        export,
        replayed,
    })
}
