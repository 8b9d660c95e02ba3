//! From trajectories to GRPO items.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use arlas_actor::Trajectory;
use arlas_policy::GrpoItem;
use serde::{Deserialize, Serialize};

use crate::advantage::group_advantages;

/// The two players of the game.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Player {
    Agent,
    Attacker,
}

impl Player {
    pub const BOTH: [Self; 2] = [Self::Agent, Self::Attacker];

    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Attacker => "attacker",
        }
    }

    /// This player's reward in a trajectory.
    pub fn reward(self, t: &Trajectory) -> f32 {
        match self {
            Self::Agent => t.rewards.agent,
            Self::Attacker => t.rewards.attacker,
        }
    }
}

impl fmt::Display for Player {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Player {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Self::Agent),
            "attacker" => Ok(Self::Attacker),
            other => Err(format!("unknown player {other:?}: use agent or attacker")),
        }
    }
}

/// Statistics of a set of groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
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
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, t) in trajectories.iter().enumerate() {
        groups.entry(t.group).or_default().push(i);
    }
    let mut items = Vec::new();
    let mut stats = GroupStats {
        groups: groups.len(),
        ..GroupStats::default()
    };
    let mut reward_sum = 0f64;
    for members in groups.values() {
        let rewards: Vec<f32> = members
            .iter()
            .map(|&i| player.reward(&trajectories[i]))
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
                Player::Agent if !t.agent.is_empty() => items.push(t.agent_item(advantage)),
                Player::Agent => {}
                Player::Attacker => items.extend(t.attacker_items(advantage)),
            }
        }
    }
    #[allow(clippy::cast_precision_loss)]
    if !trajectories.is_empty() {
        stats.mean_reward = reward_sum / trajectories.len() as f64;
    }
    (items, stats)
}
