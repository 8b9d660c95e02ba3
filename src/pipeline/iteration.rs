//! One adversarial iteration: a round of the actor crate's planner (the same plans an
//! `arlas actor` plays), both players' GRPO updates, then the commit — checkpoints, the new
//! attacker into the league, the payoff matrix, the run's progress.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use arlas_actor::round::{RoundOutput, RoundPlan, RoundPolicies, label, play_round};
use arlas_actor::{EvalRates, rates};
use arlas_coordinator::Joined;
use arlas_coordinator::League;
use arlas_core::{Player, Trajectory};
use arlas_learner::Learner;
use arlas_policy::Policy;
use rand::SeedableRng;

use super::records::{Eval, Iteration, PhaseSeconds, Record, Stage, Update};
use super::{Pipeline, evaluation};

/// The pipeline's policies as a round sees them: the learners' live policies and the
/// population members loaded so far.
struct Held<'a> {
    learners: [&'a Learner; 2],
    members: &'a BTreeMap<String, Policy>,
    league: &'a League,
}

impl RoundPolicies for Held<'_> {
    fn current(&self, player: Player) -> Option<(&Policy, u64)> {
        let learner = self.learners.iter().find(|l| l.player() == player)?;
        Some((learner.policy(), learner.version()))
    }

    fn member(&self, id: &str) -> Option<(&Policy, u64)> {
        let version = self.league.population().get(id).ok()?.attacker_version;
        Some((self.members.get(id)?, version))
    }
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

    /// The round of iteration `i`: the agent phase's opponents drawn from the league.
    fn plan(&mut self, i: u32, agent_version: u64) -> anyhow::Result<RoundPlan> {
        let round = u64::from(i);
        let round_seed = self.planner.round_seed(round);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(arlas_game::seed::mix(
            round_seed,
            label::OPPONENTS,
        ));
        let assigned: Vec<String> = self
            .league
            .draw_opponents(
                agent_version,
                self.settings.opponent_rule(),
                self.settings.tasks_per_iteration,
                &mut rng,
            )
            .into_iter()
            .map(|m| m.id.clone())
            .collect();
        anyhow::ensure!(
            !assigned.is_empty(),
            "the population is empty: the warm-up attacker should be its first member"
        );
        let mut plan = self.planner.plan(round, &assigned, &*self.env)?;
        match self.settings.freeze {
            Some(Player::Attacker) => plan.attacker_phase.jobs.clear(),
            Some(Player::Agent) => plan.agent_phase.jobs.clear(),
            None => {}
        }
        if !plan.agent_phase.jobs.is_empty() {
            for id in &plan.agent_phase.opponents {
                self.member(id)?;
            }
        }
        Ok(plan)
    }

    fn iteration(
        &mut self,
        i: u32,
        agent: &mut Learner,
        attacker: &mut Learner,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut timing = PhaseSeconds::default();
        let plan = self.plan(i, agent.version())?;
        self.progress.phase(&format!("iteration {i}: rollouts"));
        let out = play_round(
            &mut *self.env,
            &Held {
                learners: [agent, attacker],
                members: &self.members,
                league: &self.league,
            },
            &plan,
            &self.settings.rollout,
        )?;
        self.league.add_results(&out.match_results());
        timing.rollout = started.elapsed().as_secs_f64();

        let mut phases = BTreeMap::new();
        for (learner, update_label) in [
            (&mut *attacker, label::ATTACKER_UPDATE),
            (&mut *agent, label::AGENT_UPDATE),
        ] {
            let player = learner.player();
            if self.settings.freeze != Some(player) {
                let learning = Instant::now();
                let rates = self.learn(i, learner, &out, plan.seed(update_label))?;
                phases.insert(player, rates);
                let seconds = learning.elapsed().as_secs_f64();
                match player {
                    Player::Agent => timing.agent_update = seconds,
                    Player::Attacker => timing.attacker_update = seconds,
                }
            }
        }
        let committing = Instant::now();
        self.commit(i, agent, attacker)?;
        timing.commit = committing.elapsed().as_secs_f64();
        let evaluating = Instant::now();
        let eval = self.evaluate_iteration(i, agent)?;
        timing.evaluation = evaluating.elapsed().as_secs_f64();

        let episodes = out.attacker_phase.len() + out.agent_phase.len();
        let sampled_tokens = out
            .attacker_phase
            .iter()
            .chain(&out.agent_phase)
            .map(Trajectory::sampled_tokens)
            .sum();
        let seconds = started.elapsed().as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let episodes_per_sec = episodes as f64 / seconds.max(1e-9);
        let agent_phase = phases.get(&Player::Agent).copied();
        self.log(Record::Iteration(Iteration {
            iteration: i,
            agent_version: agent.version(),
            attacker_version: attacker.version(),
            population: self.league.population().len(),
            episodes,
            sampled_tokens,
            prefilled_tokens: Some(out.prefill.agent.prefilled + out.prefill.attacker.prefilled),
            prefill: Some(out.prefill),
            seconds,
            phase_seconds: Some(timing),
            episodes_per_sec,
            attacker_phase: phases.get(&Player::Attacker).copied(),
            agent_phase,
        }))?;
        self.progress
            .iteration(i, episodes_per_sec, agent_phase.as_ref(), eval.as_ref());
        self.commit_progress(i, agent, attacker)
    }

    /// One player's GRPO update from its phase's trajectories; the phase's rates.
    fn learn(
        &self,
        i: u32,
        learner: &mut Learner,
        out: &RoundOutput,
        seed: u64,
    ) -> anyhow::Result<EvalRates> {
        let player = learner.player();
        self.progress
            .phase(&format!("iteration {i}: {player} update"));
        let trajectories = out.for_player(player);
        let report = learner.update(trajectories, seed)?;
        self.log(Record::Update(Update::new(i, &report)))?;
        Ok(rates(trajectories))
    }

    /// Checkpoints of both players, the new attacker into the league, the payoff matrix.
    /// Nothing of it counts until [`Pipeline::commit_progress`].
    fn commit(&mut self, i: u32, agent: &Learner, attacker: &Learner) -> anyhow::Result<()> {
        let step = format!("step-{i:04}");
        agent.save(&self.dir.checkpoint("agent", &step))?;
        attacker.save(&self.dir.checkpoint("attacker", &step))?;
        if self.settings.freeze != Some(Player::Attacker) {
            let member = self.league.stage_member()?;
            attacker.save(&member.dir)?;
            // An attacker whose weights did not change does not join (Population::commit).
            if let Joined::Unchanged { same_as } =
                self.league.commit_member(member, i, attacker.version())?
            {
                tracing::info!(
                    iteration = i,
                    same_as = %same_as,
                    "the attacker did not change: no new population member"
                );
            }
        }
        self.league.save_payoff()?;
        Ok(())
    }

    /// The held-out evaluation of iteration `i`, when one is due.
    fn evaluate_iteration(
        &mut self,
        i: u32,
        agent: &Learner,
    ) -> anyhow::Result<Option<arlas_actor::eval::EvalReport>> {
        let every = self.settings.eval.every;
        let due = i == self.settings.iterations || (every > 0 && i.is_multiple_of(every));
        if !self.evaluate || !due {
            return Ok(None);
        }
        self.progress.phase(&format!("iteration {i}: evaluation"));
        let latest = self.league.population().latest().map(|m| m.id.clone());
        let report = match latest {
            Some(id) => {
                self.member(&id)?;
                let policy = self.members.get(&id);
                evaluation::quick(
                    &mut self.eval,
                    agent.policy(),
                    agent.version(),
                    policy.map(|p| (p, id.as_str())),
                )?
            }
            None => evaluation::quick(&mut self.eval, agent.policy(), agent.version(), None)?,
        };
        self.log(Record::Eval(Eval {
            iteration: i,
            stage: Stage::Iteration,
            report: report.clone(),
        }))?;
        self.progress.eval(i, &report);
        Ok(Some(report))
    }

    /// Writes `state.json`, the commit point of iteration `i`, then removes the previous
    /// iteration's checkpoints (no longer needed for resume).
    fn commit_progress(
        &mut self,
        i: u32,
        agent: &Learner,
        attacker: &Learner,
    ) -> anyhow::Result<()> {
        let step = format!("step-{i:04}");
        let previous = self.state.clone();
        self.state.iterations_done = i;
        self.state.agent_version = agent.version();
        self.state.attacker_version = attacker.version();
        self.state.agent_checkpoint = Some(format!("agent/{step}"));
        self.state.attacker_checkpoint = Some(format!("attacker/{step}"));
        self.dir
            .write_progress(&self.state)
            .context("cannot commit the iteration")?;
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
}
