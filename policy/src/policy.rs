//! `Policy`: a decoder with its tokenizer, chat template and device; the object actors sample
//! from and learners train.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Device, Tensor, Var};

use crate::chat::ChatTemplate;
use crate::config::LlamaConfig;
use crate::error::{Error, Result};
use crate::lora::LoraConfig;
use crate::model::store::{Fill, WeightStore};
use crate::model::{Decoder, Kernels, LoraBuilder};
use crate::precision::Precision;
use crate::sampling::{self, Generation, SamplingParams, SequenceCache, StopRules};
use crate::scoring::{self, ScoreItem, ScoreOutput};
use crate::tokenizer::PolicyTokenizer;

/// The LoRA side of a policy: its settings and its adapter tensors.
#[derive(Clone)]
struct AdapterState {
    config: LoraConfig,
    store: WeightStore,
}

/// A language model ready to sample and to be scored (see the crate docs).
///
/// Clones share the weights (an update through one shows in all); use
/// [`Policy::frozen_copy`] for an independent snapshot.
#[derive(Clone)]
pub struct Policy {
    /// Built over the stores' tensors: `Var`s where trainable, so scoring builds a graph.
    decoder: Decoder,
    /// The same weights detached: sampling and reference scoring never build a graph.
    detached: Decoder,
    base: WeightStore,
    adapter: Option<AdapterState>,
    chat: ChatTemplate,
    eos: Vec<u32>,
    source: String,
    /// Content hash of the base weights, when known (see [`Policy::base_id`]).
    base_id: Option<String>,
    trainable: bool,
    precision: Precision,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("source", &self.source)
            .field("config", self.decoder.config())
            .field("lora", &self.adapter.as_ref().map(|a| &a.config))
            .field("trainable", &self.trainable)
            .field("precision", &self.precision)
            .finish()
    }
}

/// Everything needed to assemble a policy.
pub(crate) struct PolicyParts {
    pub(crate) config: LlamaConfig,
    /// Base weights by Hugging Face name (empty for a random init).
    pub(crate) weights: HashMap<String, Tensor>,
    pub(crate) fill: Fill,
    pub(crate) chat: ChatTemplate,
    /// What the weights came from (`tiny-2m`, `smollm2`, a path): recorded in checkpoints.
    pub(crate) source: String,
    /// Content hash of the base weights, when known.
    pub(crate) base_id: Option<String>,
    /// LoRA adapters to attach: settings, loaded tensors (empty = fresh) and init seed.
    pub(crate) lora: Option<(LoraConfig, HashMap<String, Tensor>, u64)>,
    pub(crate) trainable: bool,
    pub(crate) precision: Precision,
}

impl Policy {
    pub(crate) fn assemble(parts: PolicyParts, device: &Device) -> Result<Self> {
        let PolicyParts {
            config,
            weights,
            fill,
            chat,
            source,
            base_id,
            lora,
            trainable,
            precision,
        } = parts;
        if chat.tokenizer().vocab_size() > config.vocab_size {
            return Err(Error::Config(format!(
                "the tokenizer has {} ids but the model's vocab_size is {}",
                chat.tokenizer().vocab_size(),
                config.vocab_size
            )));
        }
        // Trainable variables are the optimizer's f32 master weights; frozen weights are
        // stored in the compute dtype (see precision.rs).
        let storage = |trains: bool| {
            if trains {
                DType::F32
            } else {
                precision.dtype()
            }
        };
        let base_trains = trainable && lora.is_none();
        let base = WeightStore::new(weights, fill, base_trains);
        let adapter = lora.map(|(config, tensors, seed)| {
            let fill = if tensors.is_empty() {
                Fill::Random { seed }
            } else {
                Fill::Required
            };
            AdapterState {
                config,
                store: WeightStore::new(tensors, fill, trainable),
            }
        });
        let lora_builder = adapter.as_ref().map(|a| LoraBuilder {
            vb: a.store.var_builder(storage(trainable), device),
            config: a.config.clone(),
        });
        let decoder = Decoder::new(
            &config,
            &base.var_builder(storage(base_trains), device),
            lora_builder.as_ref(),
            device,
            precision.dtype(),
        )?;
        let unused = base.unused_loaded();
        if !unused.is_empty() {
            tracing::debug!(?unused, "weights not used by the decoder");
        }
        if let Some(a) = &adapter {
            let unused = a.store.unused_loaded();
            if !unused.is_empty() {
                return Err(Error::Config(format!(
                    "adapter tensors {unused:?} match no layer of the model"
                )));
            }
        }
        let mut eos = config.eos_ids();
        eos.extend(chat.turn_end_id());
        eos.sort_unstable();
        eos.dedup();
        Ok(Self {
            detached: decoder.detached()?,
            decoder,
            base,
            adapter,
            chat,
            eos,
            source,
            base_id,
            trainable,
            precision,
        })
    }

    /// The model's architecture.
    pub fn config(&self) -> &LlamaConfig {
        self.decoder.config()
    }

    pub fn tokenizer(&self) -> &PolicyTokenizer {
        self.chat.tokenizer()
    }

    pub fn chat(&self) -> &ChatTemplate {
        &self.chat
    }

    pub fn device(&self) -> &Device {
        self.decoder.device()
    }

    /// The dtype this policy computes in (its trainable variables stay f32).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether sampling and scoring use arlas's own CPU kernels (f32 on the CPU only).
    pub fn uses_cpu_kernels(&self) -> bool {
        self.decoder.native()
    }

    /// Allows (the default) or forbids arlas's own CPU kernels. Forbidden, an f32 policy on
    /// the CPU runs the portable candle primitives that a GPU or bf16 runs: tests and A/B
    /// benchmarks use it to check that path without a GPU.
    pub fn set_cpu_kernels(&mut self, on: bool) {
        self.decoder.set_cpu_kernels(on);
        self.detached.set_cpu_kernels(on);
    }

    /// What the weights came from (`tiny-2m`, `smollm2`, a directory).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Content hash of the base weights (the pinned GGUF sha256 for `smollm2`, a model
    /// directory's manifest hash, else a hash of its files): an adapter checkpoint's manifest
    /// records it, and loading the adapter checks that the base found is that base.
    pub fn base_id(&self) -> Option<&str> {
        self.base_id.as_deref()
    }

    /// Ids that end a generation (config EOS and the chat template's end of turn).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The LoRA settings, when the policy has adapters.
    pub fn lora(&self) -> Option<&LoraConfig> {
        self.adapter.as_ref().map(|a| &a.config)
    }

    /// Whether `score` builds an autograd graph over trainable variables.
    pub fn is_trainable(&self) -> bool {
        self.trainable
    }

    /// Number of parameters of the base model.
    pub fn num_parameters(&self) -> usize {
        self.config().num_parameters()
    }

    /// Number of trainable parameters (the adapters under LoRA).
    pub fn num_trainable_parameters(&self) -> usize {
        self.trainable_vars()
            .values()
            .map(|v| v.as_tensor().elem_count())
            .sum()
    }

    /// Samples a completion for every prompt, in one batch (see [`crate::sampling`]).
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        params: &SamplingParams,
    ) -> Result<Vec<Generation>> {
        self.generate_with_eos(prompts, params, &self.eos)
    }

    /// [`Policy::generate`] with another end-of-sequence list (empty: never stop early).
    pub(crate) fn generate_with_eos(
        &self,
        prompts: &[Vec<u32>],
        params: &SamplingParams,
        eos: &[u32],
    ) -> Result<Vec<Generation>> {
        let rules = StopRules {
            eos,
            tokenizer: self.tokenizer(),
        };
        sampling::generate(&self.detached.for_compute()?, &rules, prompts, None, params)
    }

    /// [`Policy::generate`] continuing each prompt from its cache (one per prompt): only the
    /// tokens after the prefix a cache shares with its prompt are prefilled, and each cache
    /// ends holding its prompt and completion (see [`crate::sampling`]).
    pub fn generate_cached<'p>(
        &'p self,
        prompts: &[Vec<u32>],
        caches: &mut [SequenceCache<'p>],
        params: &SamplingParams,
    ) -> Result<Vec<Generation>> {
        for (i, cache) in caches.iter().enumerate() {
            cache.check_owner(self, i)?;
        }
        caches.iter_mut().for_each(|c| c.bind(self));
        let rules = StopRules {
            eos: &self.eos,
            tokenizer: self.tokenizer(),
        };
        let decoder = self.detached.for_compute()?;
        sampling::generate(&decoder, &rules, prompts, Some(caches), params)
    }

    /// The caches of `prompts` (every token of each), computed in one batch without
    /// sampling: a shared prefix to clone into the caches of the rows that continue it.
    pub fn prefill(&self, prompts: &[Vec<u32>]) -> Result<Vec<SequenceCache<'_>>> {
        let mut caches = sampling::prefill(&self.detached.for_compute()?, prompts)?;
        caches.iter_mut().for_each(|c| c.bind(self));
        Ok(caches)
    }

    /// Log-probs (with autograd when trainable) and entropies of the masked tokens, f32.
    pub fn score(&self, items: &[ScoreItem]) -> Result<ScoreOutput> {
        scoring::score(&self.decoder.for_compute()?, items, Kernels::Autograd)
    }

    /// The decoder in the compute dtype over the trainable variables (a graph-building
    /// forward pass starts from it; see [`Decoder::for_compute`]).
    pub(crate) fn compute_decoder(&self) -> Result<Decoder> {
        self.decoder.for_compute()
    }

    /// Like [`Policy::score`] but never builds a graph (reference models, metrics).
    pub fn score_no_grad(&self, items: &[ScoreItem]) -> Result<ScoreOutput> {
        scoring::score(&self.detached.for_compute()?, items, Kernels::Fused)
    }

    /// The next-token log-prob distribution (full vocabulary) after each context, from a
    /// full forward pass without cache and without graph.
    pub fn next_token_logprobs(&self, contexts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        scoring::next_token_logprobs(&self.detached.for_compute()?, contexts, Kernels::Autograd)
    }

    /// Names of the trainable variables (the adapters under LoRA), sorted.
    pub fn trainable_names(&self) -> Vec<String> {
        self.trainable_vars().into_keys().collect()
    }

    /// Back-propagates `loss` and returns the gradient of each trainable variable that
    /// received one (gradients of constants and intermediates are dropped at once).
    pub fn gradients(&self, loss: &Tensor) -> Result<BTreeMap<String, Tensor>> {
        let store = loss.backward()?;
        Ok(self
            .trainable_vars()
            .into_iter()
            .filter_map(|(name, var)| store.get(var.as_tensor()).map(|g| (name, g.detach())))
            .collect())
    }

    /// The trainable variables by name: the adapters under LoRA, else every weight; empty
    /// when the policy was loaded frozen.
    pub(crate) fn trainable_vars(&self) -> BTreeMap<String, Var> {
        match &self.adapter {
            Some(a) => a.store.vars(),
            None => self.base.vars(),
        }
    }

    /// The base model's tensors by Hugging Face name (a tied head appears once, as the
    /// embedding).
    pub fn base_tensors(&self) -> BTreeMap<String, Tensor> {
        detach_all(self.base.tensors())
    }

    /// The adapter tensors by name (`model.layers.0.self_attn.q_proj.lora_A.weight`, ...).
    pub fn adapter_tensors(&self) -> Option<BTreeMap<String, Tensor>> {
        self.adapter.as_ref().map(|a| detach_all(a.store.tensors()))
    }

    /// The tensors a learner updates and broadcasts: the adapters under LoRA, else the
    /// whole model.
    pub fn weight_tensors(&self) -> BTreeMap<String, Tensor> {
        self.adapter_tensors()
            .unwrap_or_else(|| self.base_tensors())
    }

    /// [`Policy::weight_tensors`] as a safetensors buffer (for broadcasting weights).
    pub fn weights_to_safetensors(&self) -> Result<Vec<u8>> {
        tensors_to_safetensors(&self.weight_tensors())
    }

    /// Replaces [`Policy::weight_tensors`] with the tensors of a safetensors buffer, in place;
    /// the names and shapes must be exactly the current ones.
    pub fn load_weights_from_safetensors(&mut self, bytes: &[u8]) -> Result<()> {
        let device = self.device().clone();
        let loaded = candle_core::safetensors::load_buffer(bytes, &device)?;
        self.set_weights(loaded)
    }

    /// Replaces the weights (see [`Policy::load_weights_from_safetensors`]).
    pub fn set_weights(&mut self, loaded: HashMap<String, Tensor>) -> Result<()> {
        let current = self.weight_tensors();
        let mut missing: Vec<&String> = current
            .keys()
            .filter(|k| !loaded.contains_key(*k))
            .collect();
        let mut extra: Vec<&String> = loaded
            .keys()
            .filter(|k| !current.contains_key(*k))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            missing.sort();
            extra.sort();
            return Err(Error::InvalidInput(format!(
                "weights do not match the model: missing {missing:?}, unexpected {extra:?}"
            )));
        }
        for (name, tensor) in &loaded {
            let want = current[name].shape();
            if tensor.shape() != want {
                return Err(Error::InvalidInput(format!(
                    "weight {name} has shape {:?}, the model needs {want:?}",
                    tensor.shape()
                )));
            }
        }
        let vars = self.trainable_vars();
        if !vars.is_empty() {
            for (name, var) in vars {
                let value = loaded[&name].to_dtype(candle_core::DType::F32)?;
                var.set(&value)?;
            }
            return Ok(());
        }
        // Frozen tensors are immutable: rebuild the decoder over the new ones.
        let device = self.device().clone();
        let mut parts_weights: HashMap<String, Tensor> = self.base_tensors().into_iter().collect();
        let mut lora = None;
        match &self.adapter {
            Some(a) => lora = Some((a.config.clone(), loaded, 0)),
            None => parts_weights = loaded,
        }
        let rebuilt = Self::assemble(
            PolicyParts {
                config: self.config().clone(),
                weights: parts_weights,
                fill: Fill::Required,
                chat: self.chat.clone(),
                source: self.source.clone(),
                base_id: self.base_id.clone(),
                lora,
                trainable: false,
                precision: self.precision,
            },
            &device,
        )?;
        let cpu_kernels = self.decoder.cpu_kernels();
        *self = rebuilt;
        self.set_cpu_kernels(cpu_kernels);
        Ok(())
    }

    /// A frozen copy that later updates of `self` do not touch: the reference model of the
    /// KL term, or a snapshot. What can change is copied (the adapters under LoRA, every
    /// weight otherwise); a frozen base is immutable and stays shared.
    pub fn frozen_copy(&self) -> Result<Self> {
        let copy = |m: BTreeMap<String, Tensor>| -> Result<HashMap<String, Tensor>> {
            m.into_iter().map(|(k, t)| Ok((k, t.copy()?))).collect()
        };
        let (weights, lora) = match &self.adapter {
            Some(a) => (
                self.base_tensors().into_iter().collect(),
                Some((a.config.clone(), copy(detach_all(a.store.tensors()))?, 0)),
            ),
            None => (copy(self.base_tensors())?, None),
        };
        Self::assemble(
            PolicyParts {
                config: self.config().clone(),
                weights,
                fill: Fill::Required,
                chat: self.chat.clone(),
                source: self.source.clone(),
                base_id: self.base_id.clone(),
                lora,
                trainable: false,
                precision: self.precision,
            },
            self.device(),
        )
        .map(|mut copy| {
            copy.set_cpu_kernels(self.decoder.cpu_kernels());
            copy
        })
    }
}

impl Policy {
    /// A policy over this one's base with adapters `lora` (settings, tensors — empty for
    /// fresh ones — and the init seed): the base tensors are shared, not copied, so any
    /// number of adapter policies cost one base in memory. `self` must be frozen.
    pub(crate) fn with_adapter(
        &self,
        lora: (LoraConfig, HashMap<String, Tensor>, u64),
        trainable: bool,
    ) -> Result<Self> {
        if self.trainable && self.adapter.is_none() {
            return Err(Error::InvalidInput(
                "a trainable model cannot be a shared base; load the base frozen".to_string(),
            ));
        }
        self.over_base(Some(lora), trainable)
    }

    /// This policy with its adapters switched off: the base alone, frozen and shared (the
    /// KL reference of an adapter-trained player costs no second copy of the weights). A
    /// policy without adapters gives a [`Policy::frozen_copy`].
    pub fn without_adapter(&self) -> Result<Self> {
        if self.adapter.is_none() {
            return self.frozen_copy();
        }
        self.over_base(None, false)
    }

    /// A policy over this one's base tensors (shared, not copied) with `lora` attached or
    /// none, keeping its chat template, source, base id, precision and kernels.
    fn over_base(
        &self,
        lora: Option<(LoraConfig, HashMap<String, Tensor>, u64)>,
        trainable: bool,
    ) -> Result<Self> {
        let mut policy = Self::assemble(
            PolicyParts {
                config: self.config().clone(),
                weights: self.base_tensors().into_iter().collect(),
                fill: Fill::Required,
                chat: self.chat.clone(),
                source: self.source.clone(),
                base_id: self.base_id.clone(),
                lora,
                trainable,
                precision: self.precision,
            },
            self.device(),
        )?;
        policy.set_cpu_kernels(self.decoder.cpu_kernels());
        Ok(policy)
    }

    /// Whether `other` uses the very same base tensors (shared storage, not equal values).
    pub fn shares_base_with(&self, other: &Policy) -> bool {
        let (a, b) = (self.base.tensors(), other.base.tensors());
        a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|((ka, ta), (kb, tb))| ka == kb && same_storage(ta, tb))
    }
}

/// Whether two tensors read the same allocation (the storage behind both read guards is one).
fn same_storage(a: &Tensor, b: &Tensor) -> bool {
    let (sa, _) = a.storage_and_layout();
    let (sb, _) = b.storage_and_layout();
    std::ptr::eq(&*sa, &*sb)
}

fn detach_all(m: BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    m.into_iter().map(|(k, t)| (k, t.detach())).collect()
}

/// Serializes named tensors to a safetensors buffer.
pub fn tensors_to_safetensors(tensors: &BTreeMap<String, Tensor>) -> Result<Vec<u8>> {
    let views = tensors.iter().map(|(k, t)| (k.clone(), t));
    Ok(safetensors::tensor::serialize(views, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn policies_and_trainers_can_move_to_worker_threads() {
        assert_send_sync::<Policy>();
        assert_send_sync::<crate::train::Trainer>();
    }
}
