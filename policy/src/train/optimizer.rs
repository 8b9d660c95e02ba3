//! AdamW with decoupled weight decay; its moments are tensors so they can be checkpointed.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Tensor, Var};

use super::TrainConfig;
use crate::error::{Error, Result};

/// AdamW state: first and second moments per variable name, and the step count.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdamW {
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    step: u64,
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
                Some(g) => (g * grad_scale)?,
                None => theta.zeros_like()?,
            };
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
            if config.weight_decay > 0.0 && theta.rank() >= 2 {
                step = (step + (&theta * config.weight_decay)?)?;
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
        Ok(Self { m, v, step })
    }
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
}
