//! A player's sampling call over some episodes of a batch, with each episode's KV cache kept
//! between turns, and what it prefilled.
//!
//! An agent's conversation grows every turn by the last action's end, the new observation
//! and the assistant prefix; prefilling it whole every turn made the prefill grow with the
//! square of the episode's length. Each episode keeps a [`SequenceCache`] per player
//! instead, so a turn feeds only the tokens added since its last completion (an attacker's
//! single-turn prompt reuses the prefix it shares with its previous one: the system prompt,
//! the task and the goal). At an episode's first turn the rollouts of a GRPO group (same
//! task, same system prompt) have a long common prompt prefix: it is computed once for the
//! group and forked ([`share_prefixes`]).

use std::collections::BTreeMap;
use std::ops::AddAssign;

use arlas_policy::{Generation, Policy, SamplingParams, SequenceCache};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A group's common prefix shorter than this (beyond what its rows' own caches hold) is not
/// worth a prefill call of its own: each call runs over the weights once more, which for a
/// few tokens costs more than it saves. The chat's opening tokens alone are a few; a shared
/// system prompt is hundreds.
const MIN_SHARED_PREFIX: usize = 32;

/// Prompt tokens of sampling calls: how many the model prefilled, and how many the prompts
/// held (what prefilling every prompt whole would have cost: the count without reuse).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefillCount {
    /// Prompt tokens fed through the model (a group's shared prefix counts once, on the
    /// first rollout that used it).
    pub prefilled: usize,
    /// Prompt tokens of every call.
    pub prompt: usize,
}

impl AddAssign for PrefillCount {
    fn add_assign(&mut self, other: Self) {
        self.prefilled += other.prefilled;
        self.prompt += other.prompt;
    }
}

/// One player's batched call: a prompt per episode and the episode's GRPO group.
pub(crate) struct Call<'c> {
    pub(crate) prompts: &'c [Vec<u32>],
    pub(crate) groups: &'c [u64],
    pub(crate) params: &'c SamplingParams,
}

/// Samples `call` with `policy`, each prompt continuing its episode's cache when `caches`
/// are given (one per prompt, updated in place), else prefilling every prompt whole.
/// Returns the generations and what each prompt cost to prefill.
pub(crate) fn sample<'p>(
    policy: &'p Policy,
    call: &Call<'_>,
    caches: Option<&mut [SequenceCache<'p>]>,
) -> Result<(Vec<Generation>, Vec<PrefillCount>)> {
    let (generations, shared) = match caches {
        Some(caches) => {
            let shared = share_prefixes(policy, call, caches)?;
            let generations = policy.generate_cached(call.prompts, caches, call.params)?;
            (generations, shared)
        }
        None => (
            policy.generate(call.prompts, call.params)?,
            vec![0; call.prompts.len()],
        ),
    };
    let counts = generations
        .iter()
        .zip(call.prompts)
        .zip(shared)
        .map(|((g, prompt), shared)| PrefillCount {
            prefilled: g.prefilled + shared,
            prompt: prompt.len(),
        })
        .collect();
    Ok((generations, counts))
}

/// For each group with rows that would prefill at least [`MIN_SHARED_PREFIX`] tokens of the
/// group's common prompt prefix themselves, computes that prefix once (all groups in one
/// batch) and gives those rows a clone of it. Returns the tokens prefilled per row: each
/// prefix counts on its group's first row that took it.
fn share_prefixes<'p>(
    policy: &'p Policy,
    call: &Call<'_>,
    caches: &mut [SequenceCache<'p>],
) -> Result<Vec<usize>> {
    let mut prefilled = vec![0; call.prompts.len()];
    let mut by_group: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (row, &group) in call.groups.iter().enumerate() {
        by_group.entry(group).or_default().push(row);
    }
    let mut prefixes = Vec::new();
    let mut takers = Vec::new();
    for rows in by_group.values().filter(|rows| rows.len() > 1) {
        let common = common_prefix(rows.iter().map(|&r| call.prompts[r].as_slice()));
        let gain: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|&r| caches[r].reusable(&call.prompts[r]) + MIN_SHARED_PREFIX <= common)
            .collect();
        // One row alone would prefill the prefix anyway: sharing needs two.
        if gain.len() > 1 {
            prefixes.push(call.prompts[gain[0]][..common].to_vec());
            takers.push(gain);
        }
    }
    if prefixes.is_empty() {
        return Ok(prefilled);
    }
    let shared = policy.prefill(&prefixes)?;
    for ((cache, rows), prefix) in shared.into_iter().zip(takers).zip(&prefixes) {
        prefilled[rows[0]] = prefix.len();
        for r in rows {
            caches[r] = cache.clone();
        }
    }
    Ok(prefilled)
}

/// The length of the longest prefix common to every prompt, less one token of the
/// shortest (a call always feeds its prompt's last token, for the logits).
fn common_prefix<'a>(mut prompts: impl Iterator<Item = &'a [u32]>) -> usize {
    let Some(first) = prompts.next() else {
        return 0;
    };
    let mut common = first.len().saturating_sub(1);
    for p in prompts {
        let same = first.iter().zip(p).take_while(|(a, b)| a == b).count();
        common = common.min(same).min(p.len().saturating_sub(1));
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_prefix_leaves_every_prompt_its_last_token() {
        let a: &[u32] = &[1, 2, 3, 4];
        assert_eq!(common_prefix([a, &[1, 2, 3, 9, 9]].into_iter()), 3);
        assert_eq!(common_prefix([a, a].into_iter()), 3);
        assert_eq!(common_prefix([a, &[1, 2]].into_iter()), 1);
        assert_eq!(common_prefix([a, &[7]].into_iter()), 0);
        assert_eq!(common_prefix(std::iter::empty()), 0);
    }

    #[test]
    fn counts_add_up() {
        let mut total = PrefillCount::default();
        total += PrefillCount {
            prefilled: 3,
            prompt: 10,
        };
        total += PrefillCount {
            prefilled: 1,
            prompt: 12,
        };
        assert_eq!(
            total,
            PrefillCount {
                prefilled: 4,
                prompt: 22
            }
        );
    }
}
