//! `WeightStore`: where the decoder's tensors come from when it is built with a `VarBuilder`.
//!
//! One backend serves every source: tensors loaded from safetensors/GGUF, or a seeded random
//! initialisation (so a `tiny` model is the same on every machine). A trainable store wraps
//! each tensor in a `Var` and remembers it; a frozen one hands out plain tensors, so a forward
//! pass over it builds no autograd graph.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Error;

/// Where missing tensors come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fill {
    /// Every tensor must be present in the loaded map.
    Required,
    /// Missing tensors are drawn from the init hint with a seeded generator.
    Random { seed: u64 },
}

struct Inner {
    loaded: Mutex<HashMap<String, Tensor>>,
    fill: Fill,
    trainable: bool,
    rng: Mutex<Option<ChaCha8Rng>>,
    /// Every tensor handed out, by name (the same name always gets the same tensor).
    handed_out: Mutex<BTreeMap<String, Tensor>>,
    vars: Mutex<BTreeMap<String, Var>>,
}

/// A cloneable handle on one weight source (see the module docs).
#[derive(Clone)]
pub(crate) struct WeightStore(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-build; the data is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WeightStore {
    pub(crate) fn new(loaded: HashMap<String, Tensor>, fill: Fill, trainable: bool) -> Self {
        let rng = match fill {
            Fill::Random { seed } => Some(ChaCha8Rng::seed_from_u64(seed)),
            Fill::Required => None,
        };
        Self(Arc::new(Inner {
            loaded: Mutex::new(loaded),
            fill,
            trainable,
            rng: Mutex::new(rng),
            handed_out: Mutex::new(BTreeMap::new()),
            vars: Mutex::new(BTreeMap::new()),
        }))
    }

    /// A `VarBuilder` over this store whose tensors (and `Var`s) are of `dtype`.
    pub(crate) fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// The trainable variables created so far, by name.
    pub(crate) fn vars(&self) -> BTreeMap<String, Var> {
        lock(&self.0.vars).clone()
    }

    /// Every tensor handed out, by name.
    pub(crate) fn tensors(&self) -> BTreeMap<String, Tensor> {
        lock(&self.0.handed_out).clone()
    }

    /// Names present in the loaded map that the model never asked for.
    pub(crate) fn unused_loaded(&self) -> Vec<String> {
        let handed = lock(&self.0.handed_out);
        let mut unused: Vec<String> = lock(&self.0.loaded)
            .keys()
            .filter(|k| !handed.contains_key(*k))
            .cloned()
            .collect();
        unused.sort();
        unused
    }

    fn random(&self, shape: &Shape, init: Init, device: &Device) -> candle_core::Result<Tensor> {
        let mut guard = lock(&self.0.rng);
        let Some(rng) = guard.as_mut() else {
            candle_core::bail!("no random fill configured");
        };
        let n = shape.elem_count();
        let values: Vec<f32> = match init {
            Init::Const(v) => vec![narrow_f32(v); n],
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| narrow_f32(mean + stdev * gaussian(rng)))
                .collect(),
            Init::Uniform { lo, up } => (0..n)
                .map(|_| narrow_f32(rng.random_range(lo..up)))
                .collect(),
            Init::Kaiming { .. } => {
                // Only used through the uniform LoRA init below; keep a sane fallback.
                let fan_in = shape.dims().last().copied().unwrap_or(1).max(1);
                let bound = 1.0 / count_f64(fan_in).sqrt();
                (0..n)
                    .map(|_| narrow_f32(rng.random_range(-bound..bound)))
                    .collect()
            }
        };
        Tensor::from_vec(values, shape.clone(), device)
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[allow(clippy::cast_possible_truncation)] // init values are small, f32 is the model's dtype
fn narrow_f32(x: f64) -> f32 {
    x as f32
}

#[allow(clippy::cast_precision_loss)] // tensor widths are far below 2^52
fn count_f64(n: usize) -> f64 {
    n as f64
}

impl SimpleBackend for WeightStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(existing) = lock(&self.0.handed_out).get(name) {
            if existing.shape() != &shape {
                candle_core::bail!(
                    "tensor {name} requested with shape {shape:?} but it has {:?}",
                    existing.shape()
                );
            }
            return Ok(existing.clone());
        }
        let loaded = lock(&self.0.loaded).get(name).cloned();
        let tensor = match (loaded, self.0.fill) {
            (Some(t), _) => {
                if t.shape() != &shape {
                    candle_core::bail!(
                        "tensor {name} has shape {:?} but the config needs {shape:?}",
                        t.shape()
                    );
                }
                t.to_device(device)?.to_dtype(dtype)?
            }
            (None, Fill::Random { .. }) => self.random(&shape, init, device)?.to_dtype(dtype)?,
            (None, Fill::Required) => {
                candle_core::bail!("tensor {name} is missing from the weights")
            }
        };
        let tensor = if self.0.trainable {
            let var = Var::from_tensor(&tensor)?;
            let t = var.as_tensor().clone();
            lock(&self.0.vars).insert(name.to_string(), var);
            t
        } else {
            tensor
        };
        lock(&self.0.handed_out).insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(existing) = lock(&self.0.handed_out).get(name) {
            return Ok(existing.clone());
        }
        match lock(&self.0.loaded).get(name) {
            Some(t) => t.to_device(device)?.to_dtype(dtype),
            None => candle_core::bail!("tensor {name} is missing from the weights"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        lock(&self.0.handed_out).contains_key(name) || lock(&self.0.loaded).contains_key(name)
    }
}

/// Converts a candle error raised while building from a store into a config error that
/// names the problem (missing or mis-shaped tensor).
pub(crate) fn build_error(err: candle_core::Error) -> Error {
    Error::Config(format!("weights do not match the config: {err}"))
}
