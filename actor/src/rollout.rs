//! Playing batches of episodes.
//!
//! Episodes of a batch advance in lock-step, one game turn at a time: first every
//! attacker writes its injection (the episodes facing the same policy attacker are sampled
//! in one batched `generate`), then the agent acts in every live episode (one batched
//! `generate` when the agent is a policy). Finished episodes leave the batch.
//!
//! Sampling seeds are derived from the run seed, the batch, the turn and the player, so a
//! rollout is reproducible given its inputs.

use arlas_core::{Segment, Trajectory};
use arlas_game::play::{episode_seed, player_rng};
use arlas_game::players::{AgentKind, AttackerKind, ScriptedAgent, ScriptedAttacker};
use arlas_game::seed::mix_all;
use arlas_game::{Episode, EpisodeSpec, GameConfig, GameRng, Outcome, Rewards};
use arlas_policy::{Policy, SamplingParams};
use serde::{Deserialize, Serialize};

use crate::conversation::{Conversation, single_turn_prompt};
use crate::error::{Error, Result};

/// Both players stop at the end of their action.
pub const STOP: &str = "</action>";

/// Who writes the injections.
pub enum AttackerPlayer<'a> {
    /// No attack: the observation's injection slot stays benign.
    None,
    /// A scripted attacker (templates or an attack file).
    Scripted(Box<dyn ScriptedAttacker + Send>),
    /// An attacker LLM at a given version.
    Policy { policy: &'a Policy, version: u64 },
}

/// A named attacker for a batch of episodes.
pub struct Opponent<'a> {
    /// `none`, `templates`, `file:PATH`, a population member id, or `current`.
    pub name: String,
    pub player: AttackerPlayer<'a>,
}

impl<'a> Opponent<'a> {
    /// A scripted opponent from `none`, `templates` or `file:PATH`.
    pub fn scripted(kind: &AttackerKind) -> Result<Self> {
        let player = match kind.build()? {
            Some(attacker) => AttackerPlayer::Scripted(attacker),
            None => AttackerPlayer::None,
        };
        Ok(Self {
            name: kind.to_string(),
            player,
        })
    }

    /// The built-in template attacker.
    pub fn templates() -> Result<Self> {
        Self::scripted(&AttackerKind::Templates)
    }

    /// No attacker.
    pub fn none() -> Self {
        Self {
            name: "none".to_string(),
            player: AttackerPlayer::None,
        }
    }

    /// An attacker LLM.
    pub fn policy(name: impl Into<String>, policy: &'a Policy, version: u64) -> Self {
        Self {
            name: name.into(),
            player: AttackerPlayer::Policy { policy, version },
        }
    }

    fn version(&self) -> u64 {
        match self.player {
            AttackerPlayer::Policy { version, .. } => version,
            _ => 0,
        }
    }
}

/// Who acts for the user.
pub enum AgentPlayer<'a> {
    /// An agent LLM at a given version.
    Policy { policy: &'a Policy, version: u64 },
    /// A scripted agent (`expert`, `naive:P`, `random`).
    Scripted(Box<dyn ScriptedAgent + Send>),
}

impl AgentPlayer<'_> {
    /// A scripted agent.
    pub fn scripted(kind: AgentKind) -> Self {
        Self::Scripted(kind.build())
    }

    fn version(&self) -> u64 {
        match self {
            Self::Policy { version, .. } => *version,
            Self::Scripted(_) => 0,
        }
    }
}

/// One episode to play: the task, the opponent (an index into the opponents given to
/// [`play`]) and its GRPO group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeJob {
    pub spec: EpisodeSpec,
    pub opponent: usize,
    pub group: u64,
}

/// `group_size` rollouts of each spec against one opponent; group ids count from `first_group`.
pub fn jobs(specs: &[EpisodeSpec], group_size: usize, opponent: usize) -> Vec<EpisodeJob> {
    jobs_from(specs, group_size, opponent, 0)
}

/// Like [`jobs`], with group ids starting at `first_group`.
pub fn jobs_from(
    specs: &[EpisodeSpec],
    group_size: usize,
    opponent: usize,
    first_group: u64,
) -> Vec<EpisodeJob> {
    specs
        .iter()
        .zip(first_group..)
        .flat_map(|(spec, group)| {
            (0..group_size).map(move |_| EpisodeJob {
                spec: spec.clone(),
                opponent,
                group,
            })
        })
        .collect()
}

/// How to play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    pub game: GameConfig,
    /// The agent's sampling (the stop string `</action>` is always added).
    pub agent_sampling: SamplingParams,
    /// The attacker's sampling (the stop string `</action>` is always added).
    pub attacker_sampling: SamplingParams,
    /// Episodes played at once.
    pub batch_size: usize,
    /// Seed of the scripted players and of every sampling call.
    pub seed: u64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            game: GameConfig::default(),
            agent_sampling: SamplingParams {
                max_new_tokens: 64,
                ..SamplingParams::default()
            },
            attacker_sampling: SamplingParams {
                max_new_tokens: 96,
                ..SamplingParams::default()
            },
            batch_size: 32,
            seed: 0,
        }
    }
}

struct Live {
    ep: Episode,
    rng: GameRng,
    conversation: Option<Conversation>,
    attacker: Vec<Segment>,
    injections: Vec<String>,
    truncated: bool,
}

impl Live {
    fn active(&self) -> bool {
        !self.ep.is_done() && !self.truncated
    }
}

fn with_stop(params: &SamplingParams, seed: u64) -> SamplingParams {
    let mut p = params.clone();
    if !p.stop.iter().any(|s| s == STOP) {
        p.stop.push(STOP.to_string());
    }
    p.seed = seed;
    p
}

/// Plays every job and returns one trajectory per job, in job order.
pub fn play(
    agent: &mut AgentPlayer<'_>,
    opponents: &mut [Opponent<'_>],
    jobs: &[EpisodeJob],
    config: &RolloutConfig,
) -> Result<Vec<Trajectory>> {
    if let Some(job) = jobs.iter().find(|j| j.opponent >= opponents.len()) {
        return Err(Error::UnknownOpponent {
            index: job.opponent,
            count: opponents.len(),
        });
    }
    let batch = config.batch_size.max(1);
    let mut out = Vec::with_capacity(jobs.len());
    for (chunk_index, chunk) in jobs.chunks(batch).enumerate() {
        let first = chunk_index * batch;
        out.extend(play_chunk(agent, opponents, chunk, first, config)?);
    }
    Ok(out)
}

fn play_chunk(
    agent: &mut AgentPlayer<'_>,
    opponents: &mut [Opponent<'_>],
    chunk: &[EpisodeJob],
    first: usize,
    config: &RolloutConfig,
) -> Result<Vec<Trajectory>> {
    let mut live = Vec::with_capacity(chunk.len());
    for (i, job) in chunk.iter().enumerate() {
        let ep = Episode::new(job.spec.clone(), &config.game)?;
        let conversation = match agent {
            AgentPlayer::Policy { policy, .. } => {
                Some(Conversation::new(policy.chat(), &ep.agent_system_prompt())?)
            }
            AgentPlayer::Scripted(_) => None,
        };
        live.push(Live {
            ep,
            rng: player_rng(episode_seed(config.seed, (first + i) as u64)),
            conversation,
            attacker: Vec::new(),
            injections: Vec::new(),
            truncated: false,
        });
    }
    let mut turn = 0u64;
    loop {
        let active: Vec<usize> = (0..live.len()).filter(|&i| live[i].active()).collect();
        if active.is_empty() {
            break;
        }
        for (o, opponent) in opponents.iter_mut().enumerate() {
            let mine: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| chunk[i].opponent == o)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let seed = mix_all(&[config.seed, first as u64, turn, 1, o as u64]);
            attack(&mut opponent.player, &mut live, &mine, config, seed)?;
        }
        let seed = mix_all(&[config.seed, first as u64, turn, 2]);
        act(agent, &mut live, &active, config, seed)?;
        turn += 1;
    }
    Ok(live
        .into_iter()
        .zip(chunk)
        .map(|(l, job)| finish(l, job, agent.version(), &opponents[job.opponent], config))
        .collect())
}

fn attack(
    player: &mut AttackerPlayer<'_>,
    live: &mut [Live],
    which: &[usize],
    config: &RolloutConfig,
    seed: u64,
) -> Result<()> {
    match player {
        AttackerPlayer::None => {
            for &i in which {
                live[i].ep.inject_none();
            }
        }
        AttackerPlayer::Scripted(attacker) => {
            for &i in which {
                let l = &mut live[i];
                let text = attacker.inject(&l.ep, &mut l.rng);
                l.ep.inject(&text)?;
            }
        }
        AttackerPlayer::Policy { policy, .. } => {
            let chat = policy.chat();
            let limit = policy.config().max_position_embeddings;
            let mut prompts = Vec::with_capacity(which.len());
            let mut sampled = Vec::with_capacity(which.len());
            for &i in which {
                let ep = &live[i].ep;
                let prompt =
                    single_turn_prompt(chat, &ep.attacker_system_prompt(), &ep.attacker_message())?;
                if prompt.len() + config.attacker_sampling.max_new_tokens > limit {
                    // No room to write: this turn carries no injection.
                    live[i].ep.inject_none();
                } else {
                    prompts.push(prompt);
                    sampled.push(i);
                }
            }
            if !prompts.is_empty() {
                let params = with_stop(&config.attacker_sampling, seed);
                let generations = policy.generate(&prompts, &params)?;
                for ((prompt, generation), &i) in prompts.into_iter().zip(generations).zip(&sampled)
                {
                    let text = policy
                        .tokenizer()
                        .decode(&generation.tokens, true)
                        .unwrap_or_default();
                    live[i].ep.inject(&text)?;
                    live[i].attacker.push(Segment {
                        prompt,
                        completion: generation.tokens,
                        logprobs: generation.logprobs,
                    });
                }
            }
        }
    }
    for &i in which {
        let injection = live[i].ep.injection().unwrap_or_default().to_string();
        live[i].injections.push(injection);
    }
    Ok(())
}

fn act(
    agent: &mut AgentPlayer<'_>,
    live: &mut [Live],
    which: &[usize],
    config: &RolloutConfig,
    seed: u64,
) -> Result<()> {
    match agent {
        AgentPlayer::Scripted(scripted) => {
            for &i in which {
                let l = &mut live[i];
                let text = scripted.act(&l.ep, &mut l.rng);
                l.ep.act(&text)?;
            }
        }
        AgentPlayer::Policy { policy, .. } => {
            let chat = policy.chat();
            let limit = policy.config().max_position_embeddings;
            let mut prompts = Vec::with_capacity(which.len());
            let mut sampled = Vec::with_capacity(which.len());
            for &i in which {
                let l = &mut live[i];
                let message = l.ep.agent_message();
                let Some(conversation) = l.conversation.as_mut() else {
                    continue;
                };
                let tokens = conversation.push_user(chat, &message)?;
                if tokens.len() + config.agent_sampling.max_new_tokens > limit {
                    l.truncated = true;
                } else {
                    prompts.push(tokens.to_vec());
                    sampled.push(i);
                }
            }
            if !prompts.is_empty() {
                let params = with_stop(&config.agent_sampling, seed);
                let generations = policy.generate(&prompts, &params)?;
                for (generation, &i) in generations.into_iter().zip(&sampled) {
                    let text = policy
                        .tokenizer()
                        .decode(&generation.tokens, true)
                        .unwrap_or_default();
                    let l = &mut live[i];
                    if let Some(conversation) = l.conversation.as_mut() {
                        conversation.push_completion(
                            chat,
                            &generation.tokens,
                            &generation.logprobs,
                        );
                    }
                    l.ep.act(&text)?;
                }
            }
        }
    }
    Ok(())
}

fn finish(
    l: Live,
    job: &EpisodeJob,
    agent_version: u64,
    opponent: &Opponent<'_>,
    config: &RolloutConfig,
) -> Trajectory {
    let (outcome, rewards) = match (l.ep.outcome(), l.ep.rewards()) {
        (Some(outcome), Some(rewards)) => (outcome, rewards),
        // Context exhausted before the game ended: scored as hitting the turn limit.
        _ => (
            Outcome::TurnLimit,
            Rewards::for_outcome(
                Outcome::TurnLimit,
                l.ep.format_errors(),
                l.ep.attacker_format_errors(),
                config.game.format_error_penalty,
            ),
        ),
    };
    Trajectory {
        spec: job.spec.clone(),
        group: job.group,
        agent_version,
        opponent: opponent.name.clone(),
        attacker_version: opponent.version(),
        agent: l
            .conversation
            .map(Conversation::into_segments)
            .unwrap_or_default(),
        attacker: l.attacker,
        injections: l.injections,
        outcome,
        rewards,
        turns: l.ep.turn(),
        format_errors: l.ep.format_errors(),
        truncated: l.truncated,
    }
}
