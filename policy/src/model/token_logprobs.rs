//! Log-probs of given tokens and the entropy of each row's distribution, straight from the
//! logits: one CPU kernel with its own backward.
//!
//! From primitives this is a log-softmax over the whole vocabulary (max, subtract, exp, sum,
//! log, subtract), a gather, and for the entropy an exp, a product and a sum: each a pass over
//! `(tokens, vocab)` (49,152 wide for SmolLM2), most of them kept for the backward. Here the
//! forward is one pass per row and the backward one more:
//! `d logits = g * (onehot(token) - softmax(logits))`, with the log-sum-exp recovered from the
//! output (`lse = logit[token] - logprob`). The entropy is reported without a gradient.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, bail};
use rayon::prelude::*;

use super::vector::{contiguous_f32, exp_f32, max_of};
use crate::error::Result;

/// For logits `(N, vocab)` and one target id per row: `(log-probs (N,), entropies (N,))`.
/// The log-probs carry the gradient; the entropies are detached.
pub(crate) fn token_logprobs(logits: &Tensor, targets: &[u32]) -> Result<(Tensor, Tensor)> {
    let both = logits.contiguous()?.apply_op1(TokenLogprobs {
        targets: targets.to_vec(),
    })?;
    Ok((
        both.narrow(1, 0, 1)?.squeeze(1)?,
        both.narrow(1, 1, 1)?.squeeze(1)?.detach(),
    ))
}

struct TokenLogprobs {
    targets: Vec<u32>,
}

/// `(rows, vocab)` of logits that fit `targets`: one target per row, each inside the vocabulary.
fn check_rows(layout: &Layout, targets: &[u32]) -> candle_core::Result<(usize, usize)> {
    let (n, vocab) = layout.shape().dims2()?;
    if n != targets.len() {
        bail!(
            "token log-probs: {n} rows of logits for {} targets",
            targets.len()
        );
    }
    if let Some(bad) = targets.iter().find(|&&t| t as usize >= vocab) {
        bail!("token log-probs: target id {bad} outside the vocabulary of {vocab}");
    }
    Ok((n, vocab))
}

impl CustomOp1 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "token-logprobs"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, vocab) = check_rows(l, &self.targets)?;
        let logits = contiguous_f32(s, l, "token log-probs", "logits")?;
        let mut out = vec![0f32; 2 * n];
        if vocab > 0 {
            out.par_chunks_mut(2)
                .zip(logits.par_chunks(vocab))
                .zip(self.targets.par_iter())
                .for_each(|((out, x), &target)| {
                    let max = max_of(x);
                    // sum e and sum e * (x - max) with e = exp(x - max), eight lanes each.
                    let (mut sum, mut weighted) = ([0f32; 8], [0f32; 8]);
                    let chunks = x.chunks_exact(8);
                    let (mut tail_sum, mut tail_weighted) = (0f32, 0f32);
                    for &v in chunks.remainder() {
                        let e = exp_f32(v - max);
                        tail_sum += e;
                        tail_weighted += e * (v - max);
                    }
                    for c in chunks {
                        for i in 0..8 {
                            let d = c[i] - max;
                            let e = exp_f32(d);
                            sum[i] += e;
                            weighted[i] += e * d;
                        }
                    }
                    let sum = sum.iter().sum::<f32>() + tail_sum;
                    let weighted = weighted.iter().sum::<f32>() + tail_weighted;
                    let log_sum = sum.ln();
                    out[0] = x[target as usize] - max - log_sum;
                    // H = -sum p log p = log S - sum e (x - max) / S
                    out[1] = log_sum - weighted / sum;
                });
        }
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let res = res.contiguous()?;
        // (N, 2) rows of [logprob, gradient of the logprob]: the entropy column has none.
        let packed = Tensor::cat(&[&res.narrow(1, 0, 1)?, &grad.narrow(1, 0, 1)?], 1)?;
        Ok(Some(logits.apply_op2_no_bwd(
            &packed,
            &TokenLogprobsBackward {
                targets: &self.targets,
            },
        )?))
    }
}

/// `g * (onehot(target) - softmax(logits))` per row, from the logits and `[logprob, g]` rows.
struct TokenLogprobsBackward<'a> {
    targets: &'a [u32],
}

impl CustomOp2 for TokenLogprobsBackward<'_> {
    fn name(&self) -> &'static str {
        "token-logprobs-backward"
    }

    fn cpu_fwd(
        &self,
        ls: &CpuStorage,
        ll: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, vocab) = check_rows(ll, self.targets)?;
        if pl.dims() != [n, 2] {
            bail!(
                "token log-probs backward: expected ({n}, 2) rows, got {:?}",
                pl.dims()
            );
        }
        let logits = contiguous_f32(ls, ll, "token log-probs", "logits")?;
        let packed = contiguous_f32(ps, pl, "token log-probs", "log-probs and gradients")?;
        let mut out = vec![0f32; n * vocab];
        if vocab > 0 {
            out.par_chunks_mut(vocab)
                .zip(logits.par_chunks(vocab))
                .zip(packed.par_chunks(2).zip(self.targets.par_iter()))
                .for_each(|((out, x), (lp_g, &target))| {
                    let (logprob, g) = (lp_g[0], lp_g[1]);
                    let t = target as usize;
                    let log_sum = x[t] - logprob;
                    for (o, &v) in out.iter_mut().zip(x) {
                        *o = -g * exp_f32(v - log_sum);
                    }
                    out[t] += g;
                });
        }
        Ok((CpuStorage::F32(out), ll.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops;
    use crate::model::vector::max_diff;
    use candle_core::{D, Device, Var};

    #[test]
    fn values_and_gradient_match_log_softmax_and_gather() {
        let dev = Device::Cpu;
        let (n, vocab) = (5, 37);
        let logits =
            Var::from_tensor(&(Tensor::randn(0f32, 1., (n, vocab), &dev).unwrap() * 5.0).unwrap())
                .unwrap();
        let targets = [0u32, 36, 7, 7, 20];
        let weights = Tensor::new(&[1.0f32, -2.0, 0.5, 3.0, -1.0], &dev).unwrap();
        let (lp, ent) = token_logprobs(logits.as_tensor(), &targets).unwrap();
        let log_probs = ops::log_softmax_last(logits.as_tensor()).unwrap();
        let t = Tensor::new(&targets, &dev).unwrap().unsqueeze(1).unwrap();
        let want_lp = log_probs.gather(&t, D::Minus1).unwrap().squeeze(1).unwrap();
        let want_ent = (log_probs.exp().unwrap() * &log_probs)
            .unwrap()
            .sum(D::Minus1)
            .unwrap()
            .neg()
            .unwrap();
        assert!(max_diff(&lp, &want_lp) < 1e-5);
        assert!(max_diff(&ent, &want_ent) < 1e-5);
        let g = (&lp * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let want = (&want_lp * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (g, want) = (g.get(&logits).unwrap(), want.get(&logits).unwrap());
        assert!(
            max_diff(g, want) < 1e-5,
            "gradient differs by {}",
            max_diff(g, want)
        );
    }

    #[test]
    fn rejects_targets_outside_the_vocabulary_or_miscounted() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((2, 4), candle_core::DType::F32, &dev).unwrap();
        let err = token_logprobs(&logits, &[0, 4]).unwrap_err();
        assert!(err.to_string().contains("outside the vocabulary"), "{err}");
        let err = token_logprobs(&logits, &[0]).unwrap_err();
        assert!(
            err.to_string().contains("2 rows of logits for 1 targets"),
            "{err}"
        );
    }
}
