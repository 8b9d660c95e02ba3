//! From trajectories to GRPO items.

use std::collections::HashMap;

use arlas_core::{Player, Segment, Trajectory, concat};
use arlas_policy::GrpoItem;
use serde::{Deserialize, Serialize};

use crate::advantage::group_advantages;

/// Statistics of a set of groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub groups: usize,
    /// Groups whose rollouts all got the same reward (no learning signal).
    pub flat_groups: usize,
    pub mean_reward: f64,
}

/// The GRPO items of `player` from `trajectories`: advantages relative to each group,
/// shared by every turn of an episode. Items with a zero advantage carry no gradient
/// signal and are left out when `skip_zero` is set.
pub fn grpo_items(
    player: Player,
    trajectories: &[Trajectory],
    skip_zero: bool,
) -> (Vec<GrpoItem>, GroupStats) {
    // Groups in order of first appearance (ids are opaque, e.g. hashes).
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, t) in trajectories.iter().enumerate() {
        let g = *index.entry(t.group).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let mut items = Vec::new();
    let mut stats = GroupStats {
        groups: groups.len(),
        ..GroupStats::default()
    };
    let mut reward_sum = 0f64;
    for members in &groups {
        let rewards: Vec<f32> = members
            .iter()
            .map(|&i| trajectories[i].reward(player))
            .collect();
        reward_sum += rewards.iter().map(|&r| f64::from(r)).sum::<f64>();
        let advantages = group_advantages(&rewards);
        if advantages.iter().all(|a| *a == 0.0) {
            stats.flat_groups += 1;
        }
        for (&i, &advantage) in members.iter().zip(&advantages) {
            if skip_zero && advantage == 0.0 {
                continue;
            }
            let t = &trajectories[i];
            match player {
                Player::Agent if !t.agent.is_empty() => items.push(agent_item(t, advantage)),
                Player::Agent => {}
                Player::Attacker => items.extend(attacker_items(t, advantage)),
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    if !trajectories.is_empty() {
        stats.mean_reward = reward_sum / trajectories.len() as f64;
    }
    (items, stats)
}

/// The agent's whole conversation as one GRPO item with the episode's advantage: every
/// turn is one sequence, masked to the agent's own completions.
pub fn agent_item(t: &Trajectory, advantage: f32) -> GrpoItem {
    item(&t.agent, advantage)
}

/// One GRPO item per attacker turn (the attacker sees one turn at a time), each with the
/// episode's advantage.
pub fn attacker_items(t: &Trajectory, advantage: f32) -> Vec<GrpoItem> {
    t.attacker
        .iter()
        .filter(|s| !s.completion.is_empty())
        .map(|s| item(std::slice::from_ref(s), advantage))
        .collect()
}

fn item(segments: &[Segment], advantage: f32) -> GrpoItem {
    let seq = concat(segments);
    GrpoItem {
        tokens: seq.tokens,
        mask: seq.mask,
        behaviour_logprobs: segments
            .iter()
            .flat_map(|s| s.logprobs.iter().copied())
            .collect(),
        advantage,
    }
}
