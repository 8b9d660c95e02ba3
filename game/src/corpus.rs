//! Game text for tokenizer training.

use crate::config::GameConfig;
use crate::episode::EpisodeSpec;
use crate::error::Result;
use crate::play::{episode_seed, sample_episode};
use crate::players::{AgentKind, AttackerKind};
use crate::split::Split;

/// What to export.
#[derive(Debug, Clone)]
pub struct CorpusOptions {
    pub episodes: u64,
    pub seed: u64,
    pub split: Split,
}

/// One text per episode ([`Transcript::corpus_text`](crate::Transcript::corpus_text)): the
/// template attacker against, in turn, the expert, `naive:0.5` and `random` agents, so the
/// texts cover solutions, obeyed injections and error messages.
pub fn corpus(opts: &CorpusOptions) -> Result<Vec<String>> {
    const AGENTS: [AgentKind; 3] = [AgentKind::Expert, AgentKind::Naive(0.5), AgentKind::Random];
    let config = GameConfig::default();
    (0..opts.episodes)
        .map(|i| {
            let spec = EpisodeSpec::sample(opts.split, episode_seed(opts.seed, i));
            let agent = AGENTS[(i % 3) as usize];
            Ok(sample_episode(spec, agent, &AttackerKind::Templates, &config)?.corpus_text())
        })
        .collect()
}
