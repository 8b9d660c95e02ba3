//! Playing batches of episodes in an [`Environment`] (the built-in suites, or any other
//! implementation: the rollout does not know which).
//!
//! Episodes of a batch advance in lock-step, one game turn at a time: first every
//! attacker writes its injection where the turn has a slot (the episodes facing the same
//! policy attacker are sampled in one batched `generate`, and the environment takes all
//! injections of the turn in one call), then the agent acts in every live episode (one
//! batched `generate` when the agent is a policy, one `step` call). Finished episodes
//! leave the batch.
//!
//! Sampling seeds are derived from the run seed, the batch, the turn and the player, so a
//! rollout is reproducible given its inputs.
//!
//! Each episode keeps each policy player's KV cache between turns (`RolloutConfig::kv_reuse`,
//! see `prefill.rs`): a turn prefills only what its prompt added, and [`play_counted`]
//! reports how many prompt tokens each episode prefilled.

use arlas_core::{Segment, Trajectory};
use arlas_game::play::{episode_seed, player_rng};
use arlas_game::players::{AgentKind, AttackerKind, ScriptedAgent, ScriptedAttacker};
use arlas_game::seed::mix_all;
use arlas_game::{
    Environment, EpisodeSpec, EpisodeView, GameConfig, GameRng, Outcome, PerPlayer, Rewards,
    TaskRef,
};
use arlas_policy::{Policy, SamplingParams, SequenceCache};
use serde::{Deserialize, Serialize};

use crate::conversation::{Conversation, single_turn_prompt};
use crate::error::{Error, Result};
use crate::prefill::{self, Call, PrefillCount};

/// Both players stop at the end of their action.
pub const STOP: &str = "</action>";

/// Who writes the injections.
pub enum AttackerPlayer<'a> {
    /// No attack: the observation's injection slot stays benign.
    None,
    /// A scripted attacker (templates or an attack file).
    Scripted(Box<dyn ScriptedAttacker + Send>),
    /// An attack the environment renders itself (AgentDojo's `important_instructions`, ...).
    Environment(String),
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
        let player = match kind {
            AttackerKind::Environment(name) => AttackerPlayer::Environment(name.clone()),
            _ => match kind.build()? {
                Some(attacker) => AttackerPlayer::Scripted(attacker),
                None => AttackerPlayer::None,
            },
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
    /// A scripted agent of the built-in suites (`expert`, `naive:P`, `random`).
    Scripted(Box<dyn ScriptedAgent + Send>),
    /// An agent the environment plays itself (`oracle`, `obey`).
    Environment(&'static str),
}

impl AgentPlayer<'_> {
    /// A scripted agent.
    pub fn scripted(kind: AgentKind) -> Result<Self> {
        Ok(match kind.environment_agent() {
            Some(name) => Self::Environment(name),
            None => Self::Scripted(kind.build()?),
        })
    }

    fn version(&self) -> u64 {
        match self {
            Self::Policy { version, .. } => *version,
            Self::Scripted(_) | Self::Environment(_) => 0,
        }
    }
}

/// One episode to play: the task, the opponent (an index into the opponents given to
/// [`play`]) and its GRPO group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeJob {
    pub task: TaskRef,
    pub opponent: usize,
    pub group: u64,
}

/// `group_size` rollouts of each task against one opponent; group ids count from 0.
pub fn jobs(tasks: &[TaskRef], group_size: usize, opponent: usize) -> Vec<EpisodeJob> {
    jobs_from(tasks, group_size, opponent, 0)
}

/// Like [`jobs`], with group ids starting at `first_group`.
pub fn jobs_from(
    tasks: &[TaskRef],
    group_size: usize,
    opponent: usize,
    first_group: u64,
) -> Vec<EpisodeJob> {
    tasks
        .iter()
        .zip(first_group..)
        .flat_map(|(task, group)| {
            (0..group_size).map(move |_| EpisodeJob {
                task: task.clone(),
                opponent,
                group,
            })
        })
        .collect()
}

/// The built-in tasks of `specs` (for callers that draw built-in episodes directly).
pub fn builtin_tasks(specs: &[EpisodeSpec]) -> Vec<TaskRef> {
    specs.iter().map(TaskRef::from).collect()
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
    /// Keep each episode's KV cache between turns (and compute a group's common first prompt
    /// once), so a turn prefills only its new tokens. Off, every turn prefills its whole
    /// prompt: the same computation up to float rounding, several times slower.
    pub kv_reuse: bool,
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
            kv_reuse: true,
        }
    }
}

/// What the rollout keeps of episode `i` of the environment's batch; `'a` and `'o` borrow
/// the agent's and the opponents' policies, which its caches belong to.
struct Live<'a, 'o> {
    rng: GameRng,
    group: u64,
    conversation: Option<Conversation>,
    attacker: Vec<Segment>,
    injections: Vec<String>,
    truncated: bool,
    /// The agent's conversation so far, the attacker's last prompt and injection.
    agent_cache: SequenceCache<'a>,
    attacker_cache: SequenceCache<'o>,
    prefill: PerPlayer<PrefillCount>,
}

impl Live<'_, '_> {
    /// Frees the caches of an episode that will not be sampled again.
    fn release(&mut self) {
        self.agent_cache.clear();
        self.attacker_cache.clear();
    }
}

/// What [`play_counted`] played: the trajectories, in job order, and what each episode's
/// sampling calls prefilled, per player.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Played {
    pub trajectories: Vec<Trajectory>,
    pub prefill: Vec<PerPlayer<PrefillCount>>,
}

impl Played {
    /// The prefill of every episode, summed per player.
    pub fn prefill_total(&self) -> PerPlayer<PrefillCount> {
        let mut total = PerPlayer::<PrefillCount>::default();
        for p in &self.prefill {
            total.agent += p.agent;
            total.attacker += p.attacker;
        }
        total
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

/// Plays every job in `env` and returns one trajectory per job, in job order.
pub fn play(
    env: &mut dyn Environment,
    agent: &mut AgentPlayer<'_>,
    opponents: &mut [Opponent<'_>],
    jobs: &[EpisodeJob],
    config: &RolloutConfig,
) -> Result<Vec<Trajectory>> {
    Ok(play_counted(env, agent, opponents, jobs, config)?.trajectories)
}

/// [`play`], also counting the prompt tokens each episode prefilled.
pub fn play_counted(
    env: &mut dyn Environment,
    agent: &mut AgentPlayer<'_>,
    opponents: &mut [Opponent<'_>],
    jobs: &[EpisodeJob],
    config: &RolloutConfig,
) -> Result<Played> {
    if let Some(job) = jobs.iter().find(|j| j.opponent >= opponents.len()) {
        return Err(Error::UnknownOpponent {
            index: job.opponent,
            count: opponents.len(),
        });
    }
    let batch = config.batch_size.max(1);
    let mut out = Played::default();
    for (chunk_index, chunk) in jobs.chunks(batch).enumerate() {
        let first = chunk_index * batch;
        let played = play_chunk(env, agent, opponents, chunk, first, config)?;
        out.trajectories.extend(played.trajectories);
        out.prefill.extend(played.prefill);
    }
    Ok(out)
}

/// The episodes of `chunk`, ready for their first turn.
fn start_chunk<'a, 'o>(
    env: &dyn Environment,
    agent: &AgentPlayer<'a>,
    chunk: &[EpisodeJob],
    first: usize,
    config: &RolloutConfig,
) -> Result<Vec<Live<'a, 'o>>> {
    let mut live = Vec::with_capacity(chunk.len());
    for (i, job) in chunk.iter().enumerate() {
        let conversation = match agent {
            AgentPlayer::Policy { policy, .. } => Some(Conversation::new(
                policy.chat(),
                &env.episode(i).agent_system_prompt(),
            )?),
            AgentPlayer::Scripted(_) | AgentPlayer::Environment(_) => None,
        };
        live.push(Live {
            rng: player_rng(episode_seed(config.seed, (first + i) as u64)),
            group: job.group,
            conversation,
            attacker: Vec::new(),
            injections: Vec::new(),
            truncated: false,
            agent_cache: SequenceCache::new(),
            attacker_cache: SequenceCache::new(),
            prefill: PerPlayer::default(),
        });
    }
    Ok(live)
}

fn play_chunk<'a, 'o>(
    env: &mut dyn Environment,
    agent: &mut AgentPlayer<'a>,
    opponents: &mut [Opponent<'o>],
    chunk: &[EpisodeJob],
    first: usize,
    config: &RolloutConfig,
) -> Result<Played> {
    let tasks: Vec<TaskRef> = chunk.iter().map(|j| j.task.clone()).collect();
    env.reset(&tasks)?;
    let mut live = start_chunk(&*env, agent, chunk, first, config)?;
    let mut turn = 0u64;
    loop {
        let mut active = Vec::with_capacity(live.len());
        for (i, l) in live.iter_mut().enumerate() {
            if env.episode(i).is_done() || l.truncated {
                l.release();
            } else {
                active.push(i);
            }
        }
        if active.is_empty() {
            break;
        }
        for (o, opponent) in opponents.iter_mut().enumerate() {
            let mine: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&i| chunk[i].opponent == o && env.episode(i).injection_slot())
                .collect();
            if mine.is_empty() {
                continue;
            }
            let seed = mix_all(&[config.seed, first as u64, turn, 1, o as u64]);
            attack(env, &mut opponent.player, &mut live, &mine, config, seed)?;
        }
        let seed = mix_all(&[config.seed, first as u64, turn, 2]);
        act(env, agent, &mut live, &active, config, seed)?;
        turn += 1;
    }
    let prefill = live.iter().map(|l| l.prefill).collect();
    let trajectories = live
        .into_iter()
        .zip(chunk)
        .enumerate()
        .map(|(i, (l, job))| {
            finish(
                env.episode(i),
                l,
                job,
                agent.version(),
                &opponents[job.opponent],
                config,
            )
        })
        .collect();
    Ok(Played {
        trajectories,
        prefill,
    })
}

/// This turn's injections of episodes `which`, all handed to the environment at once.
fn attack<'o>(
    env: &mut dyn Environment,
    player: &mut AttackerPlayer<'o>,
    live: &mut [Live<'_, 'o>],
    which: &[usize],
    config: &RolloutConfig,
    seed: u64,
) -> Result<()> {
    let injections: Vec<(usize, Option<String>)> = match player {
        AttackerPlayer::None => which.iter().map(|&i| (i, None)).collect(),
        AttackerPlayer::Scripted(attacker) => which
            .iter()
            .map(|&i| (i, Some(attacker.inject(env.episode(i), &mut live[i].rng))))
            .collect(),
        AttackerPlayer::Environment(name) => {
            let texts = env.render_attack(name, which)?;
            which
                .iter()
                .copied()
                .zip(texts.into_iter().map(Some))
                .collect()
        }
        AttackerPlayer::Policy { policy, .. } => {
            policy_injections(&*env, policy, live, which, config, seed)?
        }
    };
    env.inject(&injections)?;
    for &i in which {
        let injection = env.episode(i).injection().unwrap_or_default().to_string();
        live[i].injections.push(injection);
    }
    Ok(())
}

/// The attacker LLM's injections, one batched `generate` (an episode whose prompt leaves
/// no room to write gets none).
fn policy_injections<'o>(
    env: &dyn Environment,
    policy: &'o Policy,
    live: &mut [Live<'_, 'o>],
    which: &[usize],
    config: &RolloutConfig,
    seed: u64,
) -> Result<Vec<(usize, Option<String>)>> {
    let chat = policy.chat();
    let limit = policy.config().max_position_embeddings;
    let mut injections = Vec::with_capacity(which.len());
    let mut prompts = Vec::with_capacity(which.len());
    let mut sampled = Vec::with_capacity(which.len());
    for &i in which {
        let ep = env.episode(i);
        let prompt =
            single_turn_prompt(chat, &ep.attacker_system_prompt(), &ep.attacker_message())?;
        if prompt.len() + config.attacker_sampling.max_new_tokens > limit {
            // No room to write: this turn carries no injection.
            injections.push((i, None));
        } else {
            prompts.push(prompt);
            sampled.push(i);
        }
    }
    if prompts.is_empty() {
        return Ok(injections);
    }
    let params = with_stop(&config.attacker_sampling, seed);
    debug_assert!(sampled.is_sorted(), "episodes in batch order");
    let episodes = live
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| sampled.binary_search(i).is_ok())
        .map(|(_, l)| (l.group, &mut l.attacker_cache, &mut l.prefill.attacker))
        .collect();
    let generations = sample_episodes(policy, &prompts, &params, episodes, config.kv_reuse)?;
    for ((prompt, generation), &i) in prompts.into_iter().zip(generations).zip(&sampled) {
        let text = policy
            .tokenizer()
            .decode(&generation.tokens, true)
            .unwrap_or_default();
        injections.push((i, Some(text)));
        live[i].attacker.push(Segment {
            prompt,
            completion: generation.tokens,
            logprobs: generation.logprobs,
        });
    }
    Ok(injections)
}

/// The agent's actions in episodes `which`, all handed to the environment at once.
fn act<'a>(
    env: &mut dyn Environment,
    agent: &mut AgentPlayer<'a>,
    live: &mut [Live<'a, '_>],
    which: &[usize],
    config: &RolloutConfig,
    seed: u64,
) -> Result<()> {
    let actions = match agent {
        AgentPlayer::Scripted(scripted) => {
            let mut actions = Vec::with_capacity(which.len());
            for &i in which {
                let ep = env.episode(i).as_builtin().ok_or(Error::ScriptedAgent {
                    agent: "expert, naive or random".to_string(),
                    environment: env.name().to_string(),
                })?;
                actions.push((i, scripted.act(ep, &mut live[i].rng)));
            }
            actions
        }
        AgentPlayer::Environment(name) => {
            let mut actions = Vec::with_capacity(which.len());
            for &i in which {
                let action =
                    env.episode(i)
                        .scripted_action(name)
                        .ok_or_else(|| Error::ScriptedAgent {
                            agent: (*name).to_string(),
                            environment: env.name().to_string(),
                        })?;
                actions.push((i, action));
            }
            actions
        }
        AgentPlayer::Policy { policy, .. } => {
            policy_actions(&*env, policy, live, which, config, seed)?
        }
    };
    env.step(&actions)?;
    Ok(())
}

/// The agent LLM's actions, one batched `generate` over the live conversations (an
/// episode whose conversation fills the context is truncated instead).
fn policy_actions<'a>(
    env: &dyn Environment,
    policy: &'a Policy,
    live: &mut [Live<'a, '_>],
    which: &[usize],
    config: &RolloutConfig,
    seed: u64,
) -> Result<Vec<(usize, String)>> {
    let chat = policy.chat();
    let limit = policy.config().max_position_embeddings;
    let mut prompts = Vec::with_capacity(which.len());
    let mut sampled = Vec::with_capacity(which.len());
    for &i in which {
        let message = env.episode(i).agent_message();
        let l = &mut live[i];
        let Some(conversation) = l.conversation.as_mut() else {
            continue;
        };
        let tokens = conversation.push_user(chat, &message)?;
        if tokens.len() + config.agent_sampling.max_new_tokens > limit {
            l.truncated = true;
            l.release();
        } else {
            prompts.push(tokens.to_vec());
            sampled.push(i);
        }
    }
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let params = with_stop(&config.agent_sampling, seed);
    debug_assert!(sampled.is_sorted(), "episodes in batch order");
    let episodes = live
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| sampled.binary_search(i).is_ok())
        .map(|(_, l)| (l.group, &mut l.agent_cache, &mut l.prefill.agent))
        .collect();
    let generations = sample_episodes(policy, &prompts, &params, episodes, config.kv_reuse)?;
    let mut actions = Vec::with_capacity(sampled.len());
    for (generation, &i) in generations.into_iter().zip(&sampled) {
        let text = policy
            .tokenizer()
            .decode(&generation.tokens, true)
            .unwrap_or_default();
        if let Some(conversation) = live[i].conversation.as_mut() {
            conversation.push_completion(chat, &generation.tokens, &generation.logprobs);
        }
        actions.push((i, text));
    }
    Ok(actions)
}

/// One episode of a player's sampling call: its group, its cache for that player and its
/// prefill count for that player.
type Sampled<'l, 'p> = (u64, &'l mut SequenceCache<'p>, &'l mut PrefillCount);

/// Samples `prompts` with `policy`, one per episode of `episodes` (in the same order), each
/// continuing that episode's cache when `reuse` (see prefill.rs); adds what each prompt
/// prefilled to its episode's count. Callers list the episodes in batch order, as their
/// prompts are: both follow the batch's list of active episodes, which is increasing.
fn sample_episodes<'p>(
    policy: &'p Policy,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
    mut episodes: Vec<Sampled<'_, 'p>>,
    reuse: bool,
) -> Result<Vec<arlas_policy::Generation>> {
    let groups: Vec<u64> = episodes.iter().map(|e| e.0).collect();
    let call = Call {
        prompts,
        groups: &groups,
        params,
    };
    let mut caches: Vec<SequenceCache<'p>> = if reuse {
        episodes
            .iter_mut()
            .map(|e| std::mem::take(&mut *e.1))
            .collect()
    } else {
        Vec::new()
    };
    let (generations, counts) = prefill::sample(policy, &call, reuse.then_some(&mut caches[..]))?;
    for (e, count) in episodes.iter_mut().zip(counts) {
        *e.2 += count;
    }
    for (e, cache) in episodes.iter_mut().zip(caches) {
        *e.1 = cache;
    }
    Ok(generations)
}

fn finish(
    ep: &dyn EpisodeView,
    l: Live,
    job: &EpisodeJob,
    agent_version: u64,
    opponent: &Opponent<'_>,
    config: &RolloutConfig,
) -> Trajectory {
    let (outcome, rewards) = match (ep.outcome(), ep.rewards()) {
        (Some(outcome), Some(rewards)) => (outcome, rewards),
        // Context exhausted before the game ended: scored as hitting the turn limit.
        _ => (
            Outcome::TurnLimit,
            Rewards::for_outcome(
                Outcome::TurnLimit,
                ep.format_errors(),
                ep.attacker_format_errors(),
                config.game.format_error_penalty,
            ),
        ),
    };
    Trajectory {
        spec: job.task.clone(),
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
        turns: ep.turn(),
        format_errors: ep.format_errors(),
        truncated: l.truncated,
        verdicts: ep.verdicts(),
        record: ep.record().map(str::to_string),
    }
}
