//! The per-token losses: SFT cross-entropy and GRPO's clipped policy ratio with a KL term.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// GRPO hyper-parameters of the token loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoCoefficients {
    /// Lower clip: ratios below `1 - clip_low` stop pushing down (for negative advantages).
    pub clip_low: f64,
    /// Upper clip: ratios above `1 + clip_high` stop pushing up (for positive advantages).
    pub clip_high: f64,
    /// Weight of the k3 KL estimator to the reference model.
    pub kl_coef: f64,
}

/// Per-token GRPO terms of a batch of `N` scored tokens.
#[derive(Debug, Clone)]
pub struct GrpoTerms {
    /// `(N,)` loss of each token (differentiable): `-objective + kl_coef * k3`.
    pub loss: Tensor,
    /// k3 estimate of KL(policy || reference) per token (0 without a reference).
    pub kl: Vec<f32>,
    /// Whether the clipped branch was taken (the token gives no policy gradient).
    pub clipped: Vec<bool>,
}

/// GRPO's token loss (DAPO-style decoupled clip bounds):
///
/// `r = exp(logp - behaviour)`, objective `min(r A, clip(r, 1 - clip_low, 1 + clip_high) A)`,
/// KL term `k3 = exp(ref - logp) - (ref - logp) - 1`.
///
/// The clipped branch is selected on the host and enters as a constant, so a clipped token
/// contributes its value but no gradient — the same gradient as `min`, without relying on
/// the tie-breaking of a differentiable `min`/`clamp`.
pub fn grpo_token_loss(
    logprobs: &Tensor,
    behaviour: &[f32],
    reference: Option<&[f32]>,
    advantages: &[f32],
    coefficients: GrpoCoefficients,
) -> Result<GrpoTerms> {
    let n = logprobs.dim(0)?;
    if behaviour.len() != n || advantages.len() != n || reference.is_some_and(|r| r.len() != n) {
        return Err(Error::InvalidInput(format!(
            "grpo loss needs one behaviour log-prob, advantage and reference log-prob per scored token: {n} tokens, {} behaviour, {} advantages, {:?} reference",
            behaviour.len(),
            advantages.len(),
            reference.map(<[f32]>::len)
        )));
    }
    let device = logprobs.device();
    let current = logprobs.detach().to_vec1::<f32>()?;
    let low = 1.0 - coefficients.clip_low;
    let high = 1.0 + coefficients.clip_high;
    let mut keep = Vec::with_capacity(n);
    let mut clipped_value = Vec::with_capacity(n);
    let mut clipped = Vec::with_capacity(n);
    for i in 0..n {
        let log_ratio = f64::from(current[i]) - f64::from(behaviour[i]);
        let ratio = log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp();
        let a = f64::from(advantages[i]);
        let bounded = ratio.clamp(low, high);
        let is_clipped = bounded * a < ratio * a;
        clipped.push(is_clipped);
        keep.push(if is_clipped { 0.0f32 } else { 1.0 });
        clipped_value.push(if is_clipped { narrow(bounded * a) } else { 0.0 });
    }
    let behaviour_t = vec_tensor(behaviour, device)?;
    let adv_t = vec_tensor(advantages, device)?;
    let ratio = (logprobs - &behaviour_t)?
        .clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)?
        .exp()?;
    let objective = ((ratio * adv_t)? * vec_tensor(&keep, device)?)?;
    let objective = (objective + vec_tensor(&clipped_value, device)?)?;
    let mut loss = objective.neg()?;
    if behaviour.iter().any(|b| !b.is_finite()) {
        // Not a log-prob at all: the step must not run (the trainer skips a non-finite
        // loss), rather than train on a ratio the bound above made up.
        loss = (loss + f64::NAN)?;
    }
    let mut kl = vec![0.0f32; n];
    if let Some(reference) = reference {
        let diff = (vec_tensor(reference, device)? - logprobs)?;
        let k3 = ((diff.exp()? - &diff)? - 1.0)?;
        kl = k3.detach().to_vec1::<f32>()?;
        loss = (loss + (k3 * coefficients.kl_coef)?)?;
    }
    Ok(GrpoTerms { loss, kl, clipped })
}

/// The largest |log ratio| of a token's current and behaviour log-probs that enters the
/// loss: beyond it the ratio is held (and passes no gradient). An honest behaviour log-prob
/// is within a few nats of the current one; a hostile or corrupt one (an actor sending
/// -1e4) would otherwise overflow `exp` and make the whole step non-finite.
const MAX_LOG_RATIO: f64 = 20.0;

/// SFT's token loss: the negative log-likelihood of each scored token.
pub fn sft_token_loss(logprobs: &Tensor) -> Result<Tensor> {
    Ok(logprobs.neg()?)
}

fn vec_tensor(values: &[f32], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(values, values.len(), device)?)
}

#[allow(clippy::cast_possible_truncation)] // values are log-prob ratios times advantages
fn narrow(x: f64) -> f32 {
    x as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// Hand-computed reference (python3, kept here):
    /// ```text
    /// import math
    /// lp=[0.5,0.6,0.3,0.6,0.2]; old=[0.5,0.4,0.5,0.5,0.4]; A=[1,1,-2,-1,0.5]; ref=0.5; beta=0.05
    /// for p,o,a in zip(lp,old,A):
    ///   r=p/o; obj=min(r*a, min(max(r,0.9),1.3)*a); d=math.log(ref)-math.log(p); k3=math.exp(d)-d-1
    ///   loss += -obj+beta*k3; grad = (0 if clipped else -a*r) + beta*(1-math.exp(d))
    /// # ratios 1.0 1.5 0.6 1.2 0.5; clipped: F T T F F
    /// # mean loss 0.09770860, mean k3 0.15417202, clip fraction 0.4
    /// # d(mean loss)/d(logp) = [-0.2, 0.0016667, -0.0066667, 0.2416667, -0.065]
    /// ```
    #[test]
    fn grpo_matches_hand_computed_example() {
        let p = [0.5f32, 0.6, 0.3, 0.6, 0.2];
        let lp: Vec<f32> = p.iter().map(|x| x.ln()).collect();
        let old: Vec<f32> = [0.5f32, 0.4, 0.5, 0.5, 0.4]
            .iter()
            .map(|x| x.ln())
            .collect();
        let adv = [1.0f32, 1.0, -2.0, -1.0, 0.5];
        let reference = vec![0.5f32.ln(); 5];
        let var = Var::from_vec(lp, 5, &Device::Cpu).unwrap();
        let coefficients = GrpoCoefficients {
            clip_low: 0.1,
            clip_high: 0.3,
            kl_coef: 0.05,
        };
        let terms =
            grpo_token_loss(var.as_tensor(), &old, Some(&reference), &adv, coefficients).unwrap();
        assert_eq!(terms.clipped, vec![false, true, true, false, false]);
        let mean = terms.loss.mean_all().unwrap();
        assert!((mean.to_scalar::<f32>().unwrap() - 0.097_708_6).abs() < 1e-5);
        let kl_mean: f32 = terms.kl.iter().sum::<f32>() / 5.0;
        assert!((kl_mean - 0.154_172).abs() < 1e-5);
        let grads = mean.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let expected = [-0.2f32, 0.001_666_7, -0.006_666_7, 0.241_666_7, -0.065];
        for (got, want) in g.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{g:?}");
        }
    }

    #[test]
    fn an_absurd_behaviour_logprob_leaves_the_loss_and_gradient_finite() {
        let var = Var::from_vec(vec![-1.0f32, -1.0, -2.0], 3, &Device::Cpu).unwrap();
        let coefficients = GrpoCoefficients {
            clip_low: 0.1,
            clip_high: 0.3,
            kl_coef: 0.05,
        };
        for advantages in [[1.0f32, -1.0, 0.5], [-1.0, 1.0, -0.5]] {
            let terms = grpo_token_loss(
                var.as_tensor(),
                &[-1.0e4, -3.0e38, -2.0],
                Some(&[-1.0, -1.0, -2.0]),
                &advantages,
                coefficients,
            )
            .unwrap();
            let loss = terms.loss.sum_all().unwrap();
            assert!(
                loss.to_scalar::<f32>().unwrap().is_finite(),
                "{advantages:?}"
            );
            let g = loss.backward().unwrap();
            let g = g.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
            assert!(g.iter().all(|x| x.is_finite()), "{advantages:?}: {g:?}");
        }
    }

    #[test]
    fn positive_advantage_raises_and_negative_lowers_the_logprob() {
        let var = Var::from_vec(vec![-1.0f32, -1.0], 2, &Device::Cpu).unwrap();
        let coefficients = GrpoCoefficients {
            clip_low: 0.1,
            clip_high: 0.3,
            kl_coef: 0.0,
        };
        let terms = grpo_token_loss(
            var.as_tensor(),
            &[-1.0, -1.0],
            None,
            &[1.0, -1.0],
            coefficients,
        )
        .unwrap();
        let g = terms.loss.sum_all().unwrap().backward().unwrap();
        let g = g.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        // Gradient descent moves against the gradient: up for A > 0, down for A < 0.
        assert!(g[0] < 0.0 && g[1] > 0.0, "{g:?}");
    }
}
