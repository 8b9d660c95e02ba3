//! One adversarial iteration: the attacker learns against the current agent, the agent
//! learns against opponents drawn from the population, the new attacker joins it.

use std::time::Instant;

use arlas_actor::{
    AgentPlayer, EpisodeJob, Opponent, RolloutConfig, Trajectory, jobs, play, rates,
};
use arlas_coordinator::sample_opponents;
use arlas_game::{EpisodeSpec, Split, play::episode_seed};
use arlas_learner::{Learner, Player, UpdateReport};
use rand::SeedableRng;
use serde_json::json;

use super::{Pipeline, evaluation};

/// A well-mixed seed from its parts.
pub(super) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pipeline {
    /// Runs the iterations not yet committed.
    pub(super) fn iterate(
        &mut self,
        mut agent: Learner,
        mut attacker: Learner,
    ) -> anyhow::Result<(Learner, Learner)> {
        let first = self.state.iterations_done + 1;
        self.progress
            .start_iterations(first, self.settings.iterations);
        for i in first..=self.settings.iterations {
            self.iteration(i, &mut agent, &mut attacker)?;
        }
        self.progress.finish_iterations();
        Ok((agent, attacker))
    }

    fn train_specs(&self, seed: u64) -> Vec<EpisodeSpec> {
        (0..self.settings.tasks_per_iteration)
            .map(|k| {
                EpisodeSpec::sample_from(
                    &self.settings.rollout.game.suites,
                    Split::Train,
                    episode_seed(seed, k as u64),
                )
            })
            .collect()
    }

    fn rollout(&self, seed: u64) -> RolloutConfig {
        RolloutConfig {
            seed,
            ..self.settings.rollout.clone()
        }
    }

    fn iteration(
        &mut self,
        i: u32,
        agent: &mut Learner,
        attacker: &mut Learner,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let seed = mix(self.settings.seed, u64::from(i));
        let g = self.settings.group_size;
        let mut episodes = 0usize;
        let mut sampled_tokens = 0usize;

        // The attacker against the current agent.
        let mut attacker_phase = None;
        if self.settings.freeze != Some(Player::Attacker) {
            self.progress
                .phase(&format!("iteration {i}: attacker rollouts"));
            let specs = self.train_specs(mix(seed, 1));
            let trajectories = {
                let mut player = AgentPlayer::Policy {
                    policy: agent.policy(),
                    version: agent.version(),
                };
                let mut opponents = vec![Opponent::policy(
                    "current",
                    attacker.policy(),
                    attacker.version(),
                )];
                play(
                    &mut player,
                    &mut opponents,
                    &jobs(&specs, g, 0),
                    &self.rollout(mix(seed, 2)),
                )?
            };
            attacker_phase = Some(self.learn(
                i,
                attacker,
                &trajectories,
                mix(seed, 3),
                &mut episodes,
                &mut sampled_tokens,
            )?);
        }

        // The agent against opponents drawn from the population.
        let mut agent_phase = None;
        if self.settings.freeze != Some(Player::Agent) {
            self.progress
                .phase(&format!("iteration {i}: agent rollouts"));
            let specs = self.train_specs(mix(seed, 4));
            let ids: Vec<String> = self
                .population
                .members()
                .iter()
                .map(|m| m.id.clone())
                .collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix(seed, 5));
            let picks = sample_opponents(
                &ids,
                &self.payoff,
                agent.version(),
                self.settings.opponents,
                self.settings.opponent_sampling,
                specs.len(),
                &mut rng,
            );
            let mut unique = picks.clone();
            unique.sort_unstable();
            unique.dedup();
            for &m in &unique {
                self.member(&ids[m])?;
            }
            let mut job_list: Vec<EpisodeJob> = Vec::with_capacity(specs.len() * g);
            for (k, (spec, pick)) in specs.iter().zip(&picks).enumerate() {
                let opponent = unique.iter().position(|u| u == pick).unwrap_or(0);
                job_list.extend(arlas_actor::rollout::jobs_from(
                    std::slice::from_ref(spec),
                    g,
                    opponent,
                    k as u64,
                ));
            }
            let trajectories = {
                let mut opponents = Vec::with_capacity(unique.len());
                for &m in &unique {
                    let id = &ids[m];
                    let version = self.population.get(id)?.attacker_version;
                    if let Some(policy) = self.members.get(id) {
                        opponents.push(Opponent::policy(id.clone(), policy, version));
                    }
                }
                anyhow::ensure!(
                    !opponents.is_empty(),
                    "the population is empty: the warm-up attacker should be its first member"
                );
                let mut player = AgentPlayer::Policy {
                    policy: agent.policy(),
                    version: agent.version(),
                };
                play(
                    &mut player,
                    &mut opponents,
                    &job_list,
                    &self.rollout(mix(seed, 6)),
                )?
            };
            for t in &trajectories {
                self.payoff.record(t.agent_version, &t.opponent, t.leaked());
            }
            agent_phase = Some(self.learn(
                i,
                agent,
                &trajectories,
                mix(seed, 7),
                &mut episodes,
                &mut sampled_tokens,
            )?);
        }

        // Commit: checkpoints, the new population member, payoffs, then the state.
        let step = format!("step-{i:04}");
        agent.save(&self.dir.checkpoint("agent", &step))?;
        attacker.save(&self.dir.checkpoint("attacker", &step))?;
        if self.settings.freeze != Some(Player::Attacker) {
            let id = self.population.next_id();
            let staging = self.population.staging_dir(&id)?;
            attacker.save(&staging)?;
            self.population.commit(&id, i, attacker.version())?;
        }
        super::run_dir::write_json(&self.dir.path("payoff.json"), &self.payoff)?;

        let every = self.settings.eval.every;
        let mut eval = None;
        if i == self.settings.iterations || (every > 0 && i.is_multiple_of(every)) {
            self.progress.phase(&format!("iteration {i}: evaluation"));
            let latest = self.population.latest().map(|m| m.id.clone());
            let report = match latest {
                Some(id) => {
                    self.member(&id)?;
                    let policy = self.members.get(&id);
                    evaluation::quick(
                        self,
                        agent.policy(),
                        agent.version(),
                        policy.map(|p| (p, id.as_str())),
                    )?
                }
                None => evaluation::quick(self, agent.policy(), agent.version(), None)?,
            };
            self.log(
                json!({"kind": "eval", "iteration": i, "stage": "iteration", "report": report}),
            )?;
            self.progress.eval(i, &report);
            eval = Some(report);
        }

        let seconds = started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let episodes_per_sec = episodes as f64 / seconds.max(1e-9);
        self.log(json!({
            "kind": "iteration",
            "iteration": i,
            "agent_version": agent.version(),
            "attacker_version": attacker.version(),
            "population": self.population.len(),
            "episodes": episodes,
            "sampled_tokens": sampled_tokens,
            "seconds": seconds,
            "episodes_per_sec": episodes_per_sec,
            "attacker_phase": attacker_phase,
            "agent_phase": agent_phase,
        }))?;
        self.progress
            .iteration(i, episodes_per_sec, agent_phase.as_ref(), eval.as_ref());

        let previous = self.state.clone();
        self.state.iterations_done = i;
        self.state.agent_version = agent.version();
        self.state.attacker_version = attacker.version();
        self.state.agent_checkpoint = Some(format!("agent/{step}"));
        self.state.attacker_checkpoint = Some(format!("attacker/{step}"));
        self.dir.write_state(&self.state)?;
        // The previous iteration's checkpoints are no longer needed for resume.
        for (player, old) in [
            ("agent", previous.agent_checkpoint),
            ("attacker", previous.attacker_checkpoint),
        ] {
            if let Some(old) = old.filter(|o| o.contains("step-")) {
                let path = self.dir.root().join(&old);
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(%player, path = %path.display(), error = %e, "could not remove an old checkpoint");
                }
            }
        }
        Ok(())
    }

    /// One player's GRPO update from its phase's trajectories; counts and rates the phase.
    fn learn(
        &self,
        i: u32,
        learner: &mut Learner,
        trajectories: &[Trajectory],
        seed: u64,
        episodes: &mut usize,
        sampled_tokens: &mut usize,
    ) -> anyhow::Result<arlas_actor::EvalRates> {
        self.progress
            .phase(&format!("iteration {i}: {} update", learner.player()));
        let report = learner.update(trajectories, seed)?;
        self.log_update(i, &report)?;
        *episodes += trajectories.len();
        *sampled_tokens += trajectories
            .iter()
            .map(Trajectory::sampled_tokens)
            .sum::<usize>();
        Ok(rates(trajectories))
    }

    fn log_update(&self, i: u32, report: &UpdateReport) -> anyhow::Result<()> {
        self.log(json!({
            "kind": "update",
            "iteration": i,
            "player": report.player,
            "version": report.version,
            "trajectories": report.trajectories,
            "dropped_stale": report.dropped_stale,
            "items": report.items,
            "groups": report.groups,
            "logprob_mismatch": report.logprob_mismatch,
            "means": report.means(),
            "steps": report.steps.len(),
        }))
    }
}
