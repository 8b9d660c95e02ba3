//! One frozen base per model, shared by every policy with adapters built on it.
//!
//! With LoRA, what differs between the agent, the attacker, the KL references and every
//! population member is a few megabytes of adapters; the base (540 MB for SmolLM2 in f32)
//! is the same frozen weights. A [`BasePool`] in [`crate::LoadOptions::bases`] makes every
//! load that needs a base take it from the pool: loaded once per model, device and
//! precision, its tensors shared (candle tensors are reference-counted; a frozen base is
//! never written, so sharing is safe).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::Device;

use crate::error::Result;
use crate::load::{LoadOptions, ModelSpec};
use crate::policy::Policy;

/// Frozen bases by model, device and precision (see the module docs). Clones share the pool.
#[derive(Clone, Default)]
pub struct BasePool {
    bases: Arc<Mutex<BTreeMap<String, Policy>>>,
}

impl std::fmt::Debug for BasePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasePool")
            .field("bases", &self.len())
            .finish()
    }
}

impl BasePool {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bases loaded so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Policy>> {
        // A poisoned pool only means a load panicked elsewhere; the bases held are intact.
        self.bases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The frozen base `spec` (no adapters), loaded on first use.
    pub(crate) fn base(
        &self,
        spec: &ModelSpec,
        device: &Device,
        options: &LoadOptions,
    ) -> Result<Policy> {
        let precision = options.precision_on(device);
        let key = format!("{spec}|{:?}|{precision:?}", device.location());
        let mut bases = self.lock();
        if let Some(base) = bases.get(&key) {
            return Ok(base.clone());
        }
        let frozen = LoadOptions {
            lora: None,
            trainable: false,
            bases: None,
            precision: Some(precision),
            ..options.clone()
        };
        let base = Policy::load(spec, device, &frozen)?;
        tracing::debug!(base = %spec, params = base.num_parameters(), "base model loaded into the pool");
        bases.insert(key, base.clone());
        Ok(base)
    }
}
