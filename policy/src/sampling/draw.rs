//! Drawing one token from a row's logits, and the behaviour log-prob of what was drawn
//! (see the convention in the parent module's docs).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::u32_of;
use crate::model::vector::{exp_f32, max_of, sum_of};

/// Draws one token id from `logits` (see [`sample_token`]) and returns it with its log-prob
/// under the untempered distribution (the behaviour log-prob, see the module docs).
///
/// At temperature 1 without top-p, the one pass of `exp` that the log-prob needs also gives
/// the sampling weights (f32, vectorised); other settings draw with [`sample_token`].
pub(crate) fn draw(
    logits: &[f32],
    temperature: f32,
    top_p: f32,
    rng: &mut ChaCha8Rng,
) -> (u32, f32) {
    let max = max_of(logits);
    let weights: Vec<f32> = logits.iter().map(|&l| exp_f32(l - max)).collect();
    let total = sum_of(&weights);
    let log_total = max + total.ln();
    let token = if temperature == 1.0 && top_p >= 1.0 {
        let mut u = rng.random::<f64>() * f64::from(total);
        let mut chosen = None;
        for (i, &w) in weights.iter().enumerate() {
            u -= f64::from(w);
            if u < 0.0 {
                chosen = Some(u32_of(i));
                break;
            }
        }
        // Rounding can leave u just above zero: take the last token with any weight.
        chosen.unwrap_or_else(|| u32_of(weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)))
    } else {
        sample_token(logits, temperature, top_p, rng)
    };
    let logprob = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| l - log_total);
    (token, logprob)
}

/// Draws one token id from `logits` with temperature and top-p (greedy at temperature 0).
pub(crate) fn sample_token(
    logits: &[f32],
    temperature: f32,
    top_p: f32,
    rng: &mut ChaCha8Rng,
) -> u32 {
    if temperature == 0.0 {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return u32_of(best);
    }
    let t = f64::from(temperature);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| ((f64::from(l) - f64::from(max)) / t).exp())
        .collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    let total: f64 = weights.iter().sum();
    let mut kept_total = total;
    if top_p < 1.0 {
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let target = f64::from(top_p) * total;
        let mut acc = 0.0;
        let mut keep = 0;
        for &i in &order {
            acc += weights[i];
            keep += 1;
            if acc >= target {
                break;
            }
        }
        order.truncate(keep.max(1));
        kept_total = acc;
    }
    let mut u = rng.random::<f64>() * kept_total;
    for &i in &order {
        u -= weights[i];
        if u < 0.0 {
            return u32_of(i);
        }
    }
    u32_of(*order.last().unwrap_or(&0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn greedy_picks_the_first_maximum() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(sample_token(&[0.1, 2.0, 2.0, -1.0], 0.0, 1.0, &mut rng), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Probabilities ~0.71, 0.26, 0.03: top_p 0.7 keeps only the first token.
        let logits = [3.0, 2.0, -0.3];
        for _ in 0..200 {
            assert_eq!(sample_token(&logits, 1.0, 0.7, &mut rng), 0);
        }
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[sample_token(&logits, 1.0, 1.0, &mut rng) as usize] += 1;
        }
        assert!(
            seen[2] > 0 && seen[1] > seen[2] && seen[0] > seen[1],
            "{seen:?}"
        );
    }

    #[test]
    fn draw_returns_the_log_softmax_of_its_token_and_follows_the_distribution() {
        let logits = [3.0f32, 2.0, -0.3, -1e4];
        let log_total = logits.iter().map(|&l| f64::from(l).exp()).sum::<f64>().ln();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            let (token, logprob) = draw(&logits, 1.0, 1.0, &mut rng);
            let want = f64::from(logits[token as usize]) - log_total;
            assert!(
                (f64::from(logprob) - want).abs() < 1e-5,
                "{logprob} vs {want}"
            );
            seen[token as usize] += 1;
        }
        // Probabilities ~0.71, 0.26, 0.03, 0.
        assert!(seen[0] > 2600 && seen[0] < 3100, "{seen:?}");
        assert!(seen[1] > 900 && seen[1] < 1200, "{seen:?}");
        assert!(seen[2] > 60 && seen[3] == 0, "{seen:?}");
        // Other settings go through sample_token and still report the untempered log-prob.
        let (token, logprob) = draw(&logits, 0.0, 1.0, &mut rng);
        assert_eq!(token, 0);
        assert!((f64::from(logprob) - (3.0 - log_total)).abs() < 1e-5);
    }

    #[test]
    fn sampling_is_seeded() {
        let logits: Vec<f32> = (0..50u8).map(|i| f32::from(i % 7) * 0.3).collect();
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample_token(&logits, 0.8, 0.9, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
