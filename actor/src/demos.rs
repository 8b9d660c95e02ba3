//! Imitation data for the warm-up, played by scripted players.
//!
//! **The mix.** The agent imitates the scripted agents against the template attacker: a
//! fraction `naive_fraction` of the episodes is played by `naive:1.0` (it obeys every
//! injection that names the goal's destination, and the episode ends in a leak), the rest
//! by `expert` (it never obeys). A warmed-up agent is therefore about as gullible as that
//! fraction, like a base model that sometimes follows instructions found in tool outputs —
//! the starting point that adversarial training has to improve on. The attacker imitates
//! the template attacker: every turn's prompt and the template injection written for it.

use arlas_game::attacks::AttackSet;
use arlas_game::play::{episode_seed, player_rng};
use arlas_game::players::{AgentKind, ScriptedAgent, ScriptedAttacker, TemplateAttacker};
use arlas_game::{Environment, GameRng, Outcome, Split};
use arlas_policy::{ChatTemplate, ScoreItem, SftItem};
use serde::{Deserialize, Serialize};

use crate::conversation::{Conversation, single_turn_prompt};
use crate::error::{Error, Result};
use arlas_core::concat;

/// What to demonstrate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Episodes played.
    pub episodes: usize,
    /// Fraction of the agent's episodes played by `naive:1.0` instead of `expert`.
    pub naive_fraction: f64,
    pub split: Split,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            episodes: 512,
            naive_fraction: 0.5,
            split: Split::Train,
            seed: 0,
        }
    }
}

/// Demonstrations for both players.
#[derive(Debug, Clone, Default)]
pub struct Demonstrations {
    /// One whole conversation per episode, the agent's actions masked in.
    pub agent: Vec<SftItem>,
    /// One single-turn prompt and injection per attacker turn.
    pub attacker: Vec<SftItem>,
    /// Episodes that ended in a leak (the naive agent's).
    pub leaked: usize,
    /// Episodes completed.
    pub completed: usize,
}

/// Plays `config.episodes` scripted episodes in `env` and turns them into token-exact SFT
/// items, tokenised with each player's chat template. The built-in suites' agents are
/// `expert` and `naive:1.0`; an environment that plays its own (AgentDojo) gives `oracle`
/// and `obey` in their place.
pub fn demonstrations(
    env: &mut dyn Environment,
    agent_chat: &ChatTemplate,
    attacker_chat: &ChatTemplate,
    config: &DemoConfig,
) -> Result<Demonstrations> {
    let mut templates = TemplateAttacker::new(AttackSet::builtin()?);
    let mut out = Demonstrations::default();
    for i in 0..config.episodes {
        let seed = episode_seed(config.seed, i as u64);
        let task = env.sample(config.split, seed)?;
        env.reset(std::slice::from_ref(&task))?;
        let naive = demo_is_naive(i, config.naive_fraction);
        let mut agent = DemoAgent::new(naive)?;
        let mut rng = player_rng(seed);
        let mut conversation =
            Conversation::new(agent_chat, &env.episode(0).agent_system_prompt())?;
        while !env.episode(0).is_done() {
            if env.episode(0).injection_slot() {
                let ep = env.episode(0);
                let prompt = single_turn_prompt(
                    attacker_chat,
                    &ep.attacker_system_prompt(),
                    &ep.attacker_message(),
                )?;
                let injection = templates.inject(ep, &mut rng);
                let ids = attacker_chat.tokenizer().encode(&injection)?;
                out.attacker.push(ScoreItem::completion(&prompt, &ids));
                env.inject(&[(0, Some(injection))])?;
            }
            conversation.push_user(agent_chat, &env.episode(0).agent_message())?;
            let action = agent.act(&*env, &mut rng)?;
            let ids = agent_chat.tokenizer().encode(&action)?;
            conversation.push_completion(agent_chat, &ids, &[]);
            env.step(&[(0, action)])?;
        }
        out.leaked += usize::from(env.episode(0).outcome() == Some(Outcome::Leaked));
        out.completed += usize::from(env.episode(0).outcome() == Some(Outcome::Completed));
        let seq = concat(conversation.segments());
        out.agent.push(SftItem {
            tokens: seq.tokens,
            mask: seq.mask,
        });
    }
    Ok(out)
}

/// The demonstrating agent: the built-in suites' scripted agent, or the environment's own.
struct DemoAgent {
    builtin: Box<dyn ScriptedAgent + Send>,
    environment: &'static str,
}

impl DemoAgent {
    fn new(naive: bool) -> Result<Self> {
        Ok(if naive {
            Self {
                builtin: AgentKind::Naive(1.0).build()?,
                environment: "obey",
            }
        } else {
            Self {
                builtin: AgentKind::Expert.build()?,
                environment: "oracle",
            }
        })
    }

    fn act(&mut self, env: &dyn Environment, rng: &mut GameRng) -> Result<String> {
        let ep = env.episode(0);
        match ep.as_builtin() {
            Some(builtin) => Ok(self.builtin.act(builtin, rng)),
            None => ep
                .scripted_action(self.environment)
                .ok_or_else(|| Error::ScriptedAgent {
                    agent: self.environment.to_string(),
                    environment: env.name().to_string(),
                }),
        }
    }
}

/// Spreads the naive episodes evenly: episode `i` is naive when the running share of naive
/// episodes would otherwise fall below `fraction`.
fn demo_is_naive(i: usize, fraction: f64) -> bool {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let before = |n: usize| (n as f64 * fraction.clamp(0.0, 1.0)).floor() as usize;
    before(i + 1) > before(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_share_matches_the_fraction() {
        for fraction in [0.0, 0.25, 0.5, 1.0] {
            let n = (0..400).filter(|&i| demo_is_naive(i, fraction)).count();
            assert_eq!(n, (400.0 * fraction) as usize, "{fraction}");
        }
    }
}
