//! AdamW with decoupled weight decay; its moments are tensors so they can be checkpointed.

use std::collections::{BTreeMap, HashMap};

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Tensor, Var};

use super::TrainConfig;
use crate::error::{Error, Result};

/// AdamW state: first and second moments per variable name, and the step count.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdamW {
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    step: u64,
    /// Use the generic tensor-op update even on CPU (to test it against the fused one).
    tensor_ops: bool,
}

impl AdamW {
    /// Updates for bias correction so far.
    pub(crate) fn step_count(&self) -> u64 {
        self.step
    }

    /// One update of every variable with its (already clipped-by-`grad_scale`) gradient.
    ///
    /// `theta -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * theta)`; weight decay
    /// applies to matrices only (not to norms or biases). Variables without a gradient
    /// are treated as having a zero gradient.
    pub(crate) fn update(
        &mut self,
        config: &TrainConfig,
        vars: &BTreeMap<String, Var>,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        grad_scale: f64,
    ) -> Result<()> {
        self.step += 1;
        let t = i32::try_from(self.step).unwrap_or(i32::MAX);
        let (b1, b2) = (config.beta1, config.beta2);
        let c1 = 1.0 - b1.powi(t);
        let c2 = 1.0 - b2.powi(t);
        for (name, var) in vars {
            let theta = var.as_tensor().detach();
            let g = match grads.get(name) {
                Some(g) => g.contiguous()?,
                None => theta.zeros_like()?,
            };
            let decay = if theta.rank() >= 2 {
                config.weight_decay
            } else {
                0.0
            };
            // The fused update is f32 on the CPU; elsewhere (a GPU) the tensor ops run.
            let fused = theta.device().is_cpu()
                && theta.dtype() == candle_core::DType::F32
                && theta.is_contiguous();
            if fused && !self.tensor_ops {
                // One pass per tensor, in place: no temporaries the size of the model.
                let m = match self.m.get(name) {
                    Some(m) => m.clone(),
                    None => theta.zeros_like()?,
                };
                let v = match self.v.get(name) {
                    Some(v) => v.clone(),
                    None => theta.zeros_like()?,
                };
                m.inplace_op2(
                    &g,
                    &Moment {
                        beta: b1,
                        scale: grad_scale,
                        square: false,
                    },
                )?;
                v.inplace_op2(
                    &g,
                    &Moment {
                        beta: b2,
                        scale: grad_scale,
                        square: true,
                    },
                )?;
                var.as_tensor().inplace_op3(
                    &m,
                    &v,
                    &AdamStep {
                        lr,
                        c1,
                        c2,
                        eps: config.eps,
                        decay,
                    },
                )?;
                self.m.insert(name.clone(), m);
                self.v.insert(name.clone(), v);
                continue;
            }
            let g = (g * grad_scale)?;
            let m = match self.m.get(name) {
                Some(m) => ((m * b1)? + (&g * (1.0 - b1))?)?,
                None => (&g * (1.0 - b1))?,
            };
            let v = match self.v.get(name) {
                Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
                None => (g.sqr()? * (1.0 - b2))?,
            };
            let m_hat = (&m / c1)?;
            let v_hat = (&v / c2)?;
            let mut step = m_hat.div(&(v_hat.sqrt()? + config.eps)?)?;
            if decay > 0.0 {
                step = (step + (&theta * decay)?)?;
            }
            let updated = (&theta - (step * lr)?)?;
            var.set(&updated)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<name>`, `v.<name>`) for a safetensors file.
    pub(crate) fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    /// Restores the state saved by `state_tensors`, checking it against the variables.
    pub(crate) fn restore(
        tensors: HashMap<String, Tensor>,
        step: u64,
        vars: &BTreeMap<String, Var>,
    ) -> Result<Self> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (key, tensor) in tensors {
            let (target, name) = if let Some(n) = key.strip_prefix("m.") {
                (&mut m, n)
            } else if let Some(n) = key.strip_prefix("v.") {
                (&mut v, n)
            } else {
                return Err(Error::InvalidInput(format!(
                    "optimizer state has an unknown entry {key:?}"
                )));
            };
            let Some(var) = vars.get(name) else {
                return Err(Error::InvalidInput(format!(
                    "optimizer state for {name:?} matches no trainable variable"
                )));
            };
            if var.as_tensor().shape() != tensor.shape() {
                return Err(Error::InvalidInput(format!(
                    "optimizer state for {name} has shape {:?}, the variable has {:?}",
                    tensor.shape(),
                    var.as_tensor().shape()
                )));
            }
            target.insert(name.to_string(), tensor);
        }
        Ok(Self {
            m,
            v,
            step,
            tensor_ops: false,
        })
    }
}

/// `m = beta m + (1 - beta) (scale g)` (or `(scale g)^2` when `square`), in place on CPU.
struct Moment {
    beta: f64,
    scale: f64,
    square: bool,
}

/// `theta -= lr (m / c1 / (sqrt(v / c2) + eps) + decay theta)`, in place on CPU.
struct AdamStep {
    lr: f64,
    c1: f64,
    c2: f64,
    eps: f64,
    decay: f64,
}

fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op} needs contiguous f32 tensors"),
    }
}

fn f32_slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => candle_core::bail!("{op} needs contiguous f32 tensors"),
    }
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let moment = f32_slice_mut(s1, l1, self.name())?;
        let grad = f32_slice(s2, l2, self.name())?;
        if moment.len() != grad.len() {
            candle_core::bail!(
                "adamw-moment: {} moments for {} gradients",
                moment.len(),
                grad.len()
            );
        }
        let (beta, rest) = (narrow(self.beta), narrow(1.0 - self.beta));
        let scale = narrow(self.scale);
        for (m, &g) in moment.iter_mut().zip(grad) {
            let g = g * scale;
            let x = if self.square { g * g } else { g };
            *m = beta * *m + rest * x;
        }
        Ok(())
    }
}

impl InplaceOp3 for AdamStep {
    fn name(&self) -> &'static str {
        "adamw-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let theta = f32_slice_mut(s1, l1, self.name())?;
        let m = f32_slice(s2, l2, self.name())?;
        let v = f32_slice(s3, l3, self.name())?;
        if theta.len() != m.len() || theta.len() != v.len() {
            candle_core::bail!(
                "adamw-step: mismatched lengths {} {} {}",
                theta.len(),
                m.len(),
                v.len()
            );
        }
        let (lr, eps, decay) = (narrow(self.lr), narrow(self.eps), narrow(self.decay));
        let (inv_c1, inv_c2) = (narrow(1.0 / self.c1), narrow(1.0 / self.c2));
        for ((t, &m), &v) in theta.iter_mut().zip(m).zip(v) {
            let step = (m * inv_c1) / ((v * inv_c2).sqrt() + eps) + decay * *t;
            *t -= lr * step;
        }
        Ok(())
    }
}

#[allow(clippy::cast_possible_truncation)] // hyper-parameters, applied in the weights' f32
fn narrow(x: f64) -> f32 {
    x as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two AdamW steps (lr 0.1, betas 0.9/0.999, eps 1e-8, no decay) from theta = [1, 1],
    /// gradients [1, -2] then [0.5, 0.5], computed by hand:
    /// step 1: m_hat = g, v_hat = g^2, so theta -= lr * sign(g) -> [0.9, 1.1];
    /// step 2: m = [0.14, -0.13], v = [0.001249, 0.004246], c1 = 0.19, c2 = 0.001999,
    /// m_hat = [0.736842, -0.684211], v_hat = [0.624812, 2.124062],
    /// lr * m_hat / sqrt(v_hat) = [0.093218, -0.046947] -> theta = [0.806782, 1.146947].
    #[test]
    fn matches_hand_computed_adam_steps() {
        let var = Var::from_vec(vec![1.0f32, 1.0], 2, &Device::Cpu).unwrap();
        let vars = BTreeMap::from([("w".to_string(), var.clone())]);
        let config = TrainConfig {
            weight_decay: 0.0,
            ..TrainConfig::default()
        };
        let mut opt = AdamW::default();
        for g in [[1.0f32, -2.0], [0.5, 0.5]] {
            let grads = BTreeMap::from([(
                "w".to_string(),
                Tensor::from_vec(g.to_vec(), 2, &Device::Cpu).unwrap(),
            )]);
            opt.update(&config, &vars, &grads, 0.1, 1.0).unwrap();
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!((got[0] - 0.806_782).abs() < 1e-4, "{got:?}");
        assert!((got[1] - 1.146_947).abs() < 1e-4, "{got:?}");
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn fused_cpu_update_equals_the_tensor_op_update() {
        let init: Vec<f32> = (0..24u8).map(|i| f32::from(i) * 0.1 - 1.0).collect();
        let grads: Vec<Vec<f32>> = (0..3u8)
            .map(|s| {
                (0..24u8)
                    .map(|i| f32::from((i * 7 + s * 3) % 11) * 0.2 - 1.0)
                    .collect()
            })
            .collect();
        let config = TrainConfig {
            weight_decay: 0.1,
            ..TrainConfig::default()
        };
        let mut results = Vec::new();
        for tensor_ops in [false, true] {
            let var = Var::from_vec(init.clone(), (4, 6), &Device::Cpu).unwrap();
            let vars = BTreeMap::from([("w".to_string(), var.clone())]);
            let mut opt = AdamW {
                tensor_ops,
                ..AdamW::default()
            };
            for g in &grads {
                let g = Tensor::from_vec(g.clone(), (4, 6), &Device::Cpu).unwrap();
                let grads = BTreeMap::from([("w".to_string(), g)]);
                opt.update(&config, &vars, &grads, 0.05, 0.7).unwrap();
            }
            results.push(
                var.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            );
        }
        for (a, b) in results[0].iter().zip(&results[1]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn weight_decay_applies_to_matrices_only_and_clipping_scales_gradients() {
        let matrix = Var::from_vec(vec![1.0f32; 4], (2, 2), &Device::Cpu).unwrap();
        let bias = Var::from_vec(vec![1.0f32; 2], 2, &Device::Cpu).unwrap();
        let vars = BTreeMap::from([
            ("w".to_string(), matrix.clone()),
            ("b".to_string(), bias.clone()),
        ]);
        let config = TrainConfig {
            weight_decay: 0.5,
            ..TrainConfig::default()
        };
        let zero =
            |shape: &[usize]| Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
        let grads = BTreeMap::from([
            ("w".to_string(), zero(&[2, 2])),
            ("b".to_string(), zero(&[2])),
        ]);
        AdamW::default()
            .update(&config, &vars, &grads, 0.1, 1.0)
            .unwrap();
        // Zero gradient: only decay moves the matrix, theta * (1 - lr * wd) = 0.95.
        for x in matrix
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
        {
            assert!((x - 0.95).abs() < 1e-6);
        }
        assert_eq!(bias.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 1.0]);
        // A gradient scaled by 0.5 gives the same first Adam step (sign only) but half the moments.
        let w = Var::from_vec(vec![0.0f32], 1, &Device::Cpu).unwrap();
        let vars = BTreeMap::from([("w".to_string(), w.clone())]);
        let grads = BTreeMap::from([(
            "w".to_string(),
            Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
        )]);
        let mut opt = AdamW::default();
        opt.update(&TrainConfig::default(), &vars, &grads, 0.1, 0.5)
            .unwrap();
        assert!((w.as_tensor().to_vec1::<f32>().unwrap()[0] + 0.1).abs() < 1e-5);
        let m = opt.state_tensors()["m.w"].to_vec1::<f32>().unwrap()[0];
        assert!((m - 0.2).abs() < 1e-6, "{m}");
    }
}
