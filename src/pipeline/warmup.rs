//! The imitation warm-up of both players (see `arlas_actor::demos` for the mix).

use anyhow::Context as _;
use arlas_actor::demos::{DemoConfig, demonstrations};
use arlas_learner::{Learner, LearnerConfig, Player, StepMeans};
use arlas_policy::{Policy, SftItem, Trainer};

use super::records::{Demonstrations, Eval, Record, Stage, WarmupStep};
use super::{Pipeline, evaluation};

/// Warms both players up, saves `agent/warmup` and `attacker/warmup`, makes the warm-up
/// attacker the first population member, evaluates the warm-up agent and commits.
pub(super) fn run(p: &mut Pipeline) -> anyhow::Result<()> {
    let s = p.settings.clone();
    // A player starts from its given checkpoint (an adapter checkpoint keeps training its
    // adapters) or from the run's model, with fresh adapters where the settings say so.
    let load = |init: &Option<std::path::PathBuf>| -> anyhow::Result<Policy> {
        let spec = match init {
            Some(dir) if dir.join(arlas_policy::checkpoint::ADAPTER_CONFIG).is_file() => {
                return p.models.load_dir(dir, true);
            }
            Some(dir) => arlas_policy::ModelSpec::Path(dir.clone()),
            None => arlas_policy::ModelSpec::parse(&s.model)?,
        };
        let lora = s.adapters.for_spec(&spec);
        p.models.load_spec(&spec, true, s.seed, lora)
    };
    let agent = load(&s.agent_init)?;
    let attacker = load(&s.attacker_init)?;
    p.progress.phase("demonstrations");
    let demos = demonstrations(
        p.env.as_mut(),
        agent.chat(),
        attacker.chat(),
        &DemoConfig {
            episodes: s.warmup.episodes,
            naive_fraction: s.warmup.naive_fraction,
            split: arlas_game::Split::Train,
            seed: s.seed,
        },
    )?;
    p.log(Record::Demonstrations(Demonstrations {
        episodes: s.warmup.episodes,
        naive_fraction: s.warmup.naive_fraction,
        agent_items: demos.agent.len(),
        attacker_items: demos.attacker.len(),
        agent_tokens: demos.agent.iter().map(|i| i.tokens.len()).sum(),
        attacker_tokens: demos.attacker.iter().map(|i| i.tokens.len()).sum(),
        leaked: demos.leaked,
        completed: demos.completed,
    }))?;

    let agent = imitate(
        p,
        Player::Agent,
        agent,
        &demos.agent,
        s.agent_init.is_none(),
    )?;
    let attacker = imitate(
        p,
        Player::Attacker,
        attacker,
        &demos.attacker,
        s.attacker_init.is_none(),
    )?;

    let agent_dir = p.dir.checkpoint("agent", "warmup");
    agent.save(&agent_dir)?;
    let attacker_dir = p.dir.checkpoint("attacker", "warmup");
    attacker.save(&attacker_dir)?;
    let member = p.league.stage_member()?;
    attacker.save(&member.dir)?;
    let id = p
        .league
        .commit_member(member, 0, attacker.version())?
        .id()
        .to_string();

    if p.evaluate {
        p.progress.phase("evaluating the warm-up agent");
        let report = evaluation::quick(
            &mut p.eval,
            agent.policy(),
            agent.version(),
            Some((attacker.policy(), &id)),
        )?;
        p.log(Record::Eval(Eval {
            iteration: 0,
            stage: Stage::Warmup,
            report: report.clone(),
        }))?;
        p.progress.eval(0, &report);
    }

    p.state.warmup_done = true;
    p.state.agent_version = agent.version();
    p.state.attacker_version = attacker.version();
    p.state.agent_checkpoint = Some("agent/warmup".to_string());
    p.state.attacker_checkpoint = Some("attacker/warmup".to_string());
    p.league.save_payoff()?;
    p.dir.write_progress(&p.state)
}

/// One player's imitation: `epochs` passes over its demonstrations (none when it starts
/// from a given checkpoint).
fn imitate(
    p: &mut Pipeline,
    player: Player,
    policy: Policy,
    items: &[SftItem],
    train: bool,
) -> anyhow::Result<Learner> {
    let w = &p.settings.warmup;
    let steps_per_epoch = items.len().div_ceil(w.minibatch_size.max(1));
    let mut train_config = w.train.clone();
    train_config.total_steps = (steps_per_epoch * w.epochs) as u64;
    let config = LearnerConfig {
        train: train_config.clone(),
        sft_minibatch_size: w.minibatch_size.max(1),
        ..LearnerConfig::default()
    };
    let trainer = Trainer::new(policy, train_config).context("cannot set up the warm-up")?;
    let mut learner = Learner::new(player, trainer, config, 0)?;
    if !train {
        return Ok(learner);
    }
    let total = steps_per_epoch * w.epochs;
    p.progress
        .start_steps(&format!("warm-up {player}"), total as u64);
    for epoch in 0..w.epochs {
        let seed = p.settings.seed ^ ((epoch as u64) << 32) ^ (player as u64);
        let dir = p.dir.clone();
        let progress = &p.progress;
        let mut log_error = None;
        let steps = learner.imitate(items, seed, |i, _, stats| {
            progress.step(stats.loss);
            let step = epoch * steps_per_epoch + i;
            let record = Record::Warmup(WarmupStep {
                player,
                epoch,
                step,
                stats: *stats,
            });
            if let Err(e) = dir.log_metrics(&record) {
                log_error.get_or_insert(e);
            }
        })?;
        if let Some(e) = log_error {
            return Err(e);
        }
        let means = StepMeans::of(&steps);
        tracing::info!(%player, epoch, loss = means.loss, "warm-up epoch done");
    }
    p.progress.finish_steps();
    Ok(learner)
}
