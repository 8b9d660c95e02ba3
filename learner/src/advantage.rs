//! Group-relative advantages (GRPO).
//!
//! Several rollouts of the same task form a group; each rollout's advantage is its reward
//! minus the group's mean, divided by the group's standard deviation (population form,
//! plus a small epsilon). A group whose rollouts all got the same reward carries no
//! learning signal: every advantage is 0. Every turn of an episode shares the episode's
//! advantage.

/// Added to the standard deviation so that near-constant groups do not explode.
pub const STD_EPSILON: f32 = 1e-4;

/// The group-normalised advantage of each reward, in the same order.
pub fn group_advantages(rewards: &[f32]) -> Vec<f32> {
    if rewards.is_empty() {
        return Vec::new();
    }
    #[allow(clippy::cast_precision_loss)]
    let n = rewards.len() as f32;
    let mean = rewards.iter().sum::<f32>() / n;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt();
    if std < 1e-6 {
        return vec![0.0; rewards.len()];
    }
    rewards
        .iter()
        .map(|r| (r - mean) / (std + STD_EPSILON))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_group() {
        // rewards 1, -1, -1, -1: mean -0.5, std sqrt(0.75) = 0.8660
        let a = group_advantages(&[1.0, -1.0, -1.0, -1.0]);
        assert!((a[0] - 1.5 / 0.866_125).abs() < 1e-3, "{a:?}");
        assert!((a[1] + 0.5 / 0.866_125).abs() < 1e-3, "{a:?}");
    }

    #[test]
    fn constant_groups_carry_no_signal() {
        assert_eq!(group_advantages(&[-1.0; 5]), vec![0.0; 5]);
        assert_eq!(group_advantages(&[1.0]), vec![0.0]);
        assert!(group_advantages(&[]).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn advantages_are_centred_and_ordered(rewards in prop::collection::vec(-1.0f32..1.0, 2..16)) {
            let a = group_advantages(&rewards);
            prop_assert!(a.iter().sum::<f32>().abs() < 1e-3);
            for i in 0..rewards.len() {
                for j in 0..rewards.len() {
                    if rewards[i] > rewards[j] + 1e-4 {
                        prop_assert!(a[i] > a[j]);
                    }
                }
            }
        }
    }
}
