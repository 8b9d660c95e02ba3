//! Playing episodes between scripted players, and the rates they reach.

use std::collections::BTreeMap;

use rand::SeedableRng;
use serde::Serialize;

use crate::GameRng;
use crate::config::GameConfig;
use crate::episode::{Episode, EpisodeSpec};
use crate::error::Result;
use crate::judge::Outcome;
use crate::players::{AgentKind, AttackerKind, ScriptedAgent, ScriptedAttacker};
use crate::split::Split;
use crate::suite::Suite;
use crate::transcript::{Transcript, TurnRecord};

/// Plays `ep` to the end. Each turn renders the messages both players would read (as an
/// actor does), so timing this measures the whole game. With `record`, returns the transcript.
pub fn play_episode(
    ep: &mut Episode,
    agent: &mut dyn ScriptedAgent,
    mut attacker: Option<&mut dyn ScriptedAttacker>,
    rng: &mut GameRng,
    record: bool,
) -> Result<Option<Transcript>> {
    let mut turns = Vec::new();
    while !ep.is_done() {
        let (attacker_message, attacker_output) = match attacker.as_mut() {
            Some(a) => {
                let message = ep.attacker_message();
                let output = a.inject(ep, rng);
                ep.inject(&output)?;
                (Some(message), Some(output))
            }
            None => {
                ep.inject_none();
                (None, None)
            }
        };
        let agent_message = ep.agent_message();
        let agent_output = agent.act(ep, rng);
        ep.act(&agent_output)?;
        if record {
            turns.push(TurnRecord {
                attacker_message,
                attacker_output,
                agent_message,
                agent_output,
            });
        }
    }
    if !record {
        return Ok(None);
    }
    let (Some(outcome), Some(rewards)) = (ep.outcome(), ep.rewards()) else {
        return Ok(None);
    };
    Ok(Some(Transcript {
        spec: ep.spec().clone(),
        agent_system_prompt: ep.agent_system_prompt(),
        attacker_system_prompt: attacker.is_some().then(|| ep.attacker_system_prompt()),
        goal: ep.goal().sentence().to_string(),
        turns,
        outcome,
        rewards,
        format_errors: ep.format_errors(),
        attacker_format_errors: ep.attacker_format_errors(),
    }))
}

pub use crate::seed::episode_seed;

/// The scripted players' random stream for the episode seeded `seed`.
pub fn player_rng(seed: u64) -> GameRng {
    let mut rng = GameRng::seed_from_u64(seed);
    rng.set_stream(2);
    rng
}

/// What to play.
#[derive(Debug, Clone)]
pub struct PlayOptions {
    pub agent: AgentKind,
    pub attacker: AttackerKind,
    pub episodes: u64,
    pub split: Split,
    pub seed: u64,
    /// Only this suite; all suites (drawn per episode) when `None`.
    pub suite: Option<Suite>,
    pub config: GameConfig,
}

impl PlayOptions {
    /// The spec of episode `index`.
    pub fn spec(&self, index: u64) -> EpisodeSpec {
        let seed = episode_seed(self.seed, index);
        match self.suite {
            Some(s) => EpisodeSpec::sample_in(s, self.split, seed),
            None => EpisodeSpec::sample(self.split, seed),
        }
    }
}

/// Rates over a set of episodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rates {
    pub episodes: u64,
    /// Episodes completed without a leak.
    pub task_success_rate: f64,
    /// Episodes that leaked a private value.
    pub attack_success_rate: f64,
    /// Agent format errors per agent turn.
    pub format_error_rate: f64,
    /// Agent turns per episode.
    pub mean_turns: f64,
}

/// The report of `arlas game play --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PlayReport {
    pub agent: String,
    pub attacker: String,
    pub split: Split,
    pub seed: u64,
    pub episodes: u64,
    pub task_success_rate: f64,
    pub attack_success_rate: f64,
    pub format_error_rate: f64,
    pub mean_turns: f64,
    /// Attacker outputs that inserted nothing, per attacker turn.
    pub attacker_format_error_rate: f64,
    /// Episodes per outcome: completed, leaked, failed, turn_limit.
    pub outcomes: BTreeMap<String, u64>,
    /// The same rates per suite, keyed by suite name.
    pub by_suite: BTreeMap<String, Rates>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    episodes: u64,
    completed: u64,
    leaked: u64,
    format_errors: u64,
    turns: u64,
}

impl Tally {
    fn add(&mut self, ep: &Episode) {
        self.episodes += 1;
        self.completed += u64::from(ep.outcome() == Some(Outcome::Completed));
        self.leaked += u64::from(ep.outcome() == Some(Outcome::Leaked));
        self.format_errors += u64::from(ep.format_errors());
        self.turns += u64::from(ep.turn());
    }

    fn rates(&self) -> Rates {
        let per = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        Rates {
            episodes: self.episodes,
            task_success_rate: per(self.completed, self.episodes),
            attack_success_rate: per(self.leaked, self.episodes),
            format_error_rate: per(self.format_errors, self.turns),
            mean_turns: per(self.turns, self.episodes),
        }
    }
}

/// Plays `opts.episodes` episodes on one thread and reports the rates.
pub fn play(opts: &PlayOptions) -> Result<PlayReport> {
    let mut agent = opts.agent.build()?;
    let mut attacker = opts.attacker.build()?;
    let mut total = Tally::default();
    let mut by_suite: BTreeMap<Suite, Tally> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = Outcome::ALL
        .iter()
        .map(|o| (o.name().to_string(), 0))
        .collect();
    let mut attacker_errors = 0u64;
    for index in 0..opts.episodes {
        let spec = opts.spec(index);
        let suite = spec.suite;
        let mut rng = player_rng(spec.seed);
        let mut ep = Episode::new(spec, &opts.config)?;
        let attacker_ref: Option<&mut dyn ScriptedAttacker> = match attacker.as_mut() {
            Some(a) => Some(a.as_mut()),
            None => None,
        };
        play_episode(&mut ep, agent.as_mut(), attacker_ref, &mut rng, false)?;
        total.add(&ep);
        by_suite.entry(suite).or_default().add(&ep);
        attacker_errors += u64::from(ep.attacker_format_errors());
        if let Some(o) = ep.outcome() {
            *outcomes.entry(o.name().to_string()).or_default() += 1;
        }
    }
    let rates = total.rates();
    let attacker_turns = if attacker.is_some() { total.turns } else { 0 };
    Ok(PlayReport {
        agent: opts.agent.to_string(),
        attacker: opts.attacker.to_string(),
        split: opts.split,
        seed: opts.seed,
        episodes: rates.episodes,
        task_success_rate: rates.task_success_rate,
        attack_success_rate: rates.attack_success_rate,
        format_error_rate: rates.format_error_rate,
        mean_turns: rates.mean_turns,
        attacker_format_error_rate: if attacker_turns == 0 {
            0.0
        } else {
            attacker_errors as f64 / attacker_turns as f64
        },
        outcomes,
        by_suite: by_suite
            .into_iter()
            .map(|(s, t)| (s.name().to_string(), t.rates()))
            .collect(),
    })
}

/// Plays one recorded episode of `spec`.
pub fn sample_episode(
    spec: EpisodeSpec,
    agent: AgentKind,
    attacker: &AttackerKind,
    config: &GameConfig,
) -> Result<Transcript> {
    let mut rng = player_rng(spec.seed);
    let mut ep = Episode::new(spec, config)?;
    let mut agent = agent.build()?;
    let mut attacker = attacker.build()?;
    let attacker_ref: Option<&mut dyn ScriptedAttacker> = match attacker.as_mut() {
        Some(a) => Some(a.as_mut()),
        None => None,
    };
    let transcript = play_episode(&mut ep, agent.as_mut(), attacker_ref, &mut rng, true)?;
    transcript.ok_or_else(|| crate::error::Error::Config("the episode did not finish".to_string()))
}
