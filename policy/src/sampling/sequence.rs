//! A sequence's keys and values kept between sampling calls.

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::policy::Policy;

/// The keys and values a policy computed for one token sequence, kept so that a later
/// [`Policy::generate_cached`] call that continues the sequence prefills only the tokens
/// added since (see the module docs of [`crate::sampling`]).
///
/// A cache belongs to the policy that filled it: `'p` borrows that policy, so its weights
/// cannot be replaced while the cache lives, and handing the cache to another policy is an
/// error. Clones share the tensors (cheap): the rollouts of a group fork one prefilled prefix.
#[derive(Clone, Default)]
pub struct SequenceCache<'p> {
    owner: Option<&'p Policy>,
    /// The ids whose keys and values are cached, in order.
    tokens: Vec<u32>,
    /// Per layer `(2, kv_heads, tokens.len(), head_dim)`; empty when nothing is cached.
    layers: Vec<Tensor>,
}

impl std::fmt::Debug for SequenceCache<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequenceCache")
            .field("tokens", &self.tokens.len())
            .field("owner", &self.owner.map(Policy::source))
            .finish()
    }
}

impl<'p> SequenceCache<'p> {
    /// An empty cache: the first call that uses it prefills the whole prompt.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids whose keys and values are cached.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// How many leading tokens of `prompt` this cache saves from prefilling: the common
    /// prefix of the cached ids and the prompt, less the prompt's last token (whose logits
    /// the call needs, so it is always fed).
    pub fn reusable(&self, prompt: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(prompt.len().saturating_sub(1))
    }

    /// Drops everything cached (frees the memory).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Checks that `policy` may use this cache (an empty cache fits any policy).
    pub(crate) fn check_owner(&self, policy: &Policy, index: usize) -> Result<()> {
        match self.owner {
            Some(owner) if !std::ptr::eq(owner, policy) => Err(Error::InvalidInput(format!(
                "sequence cache {index} was filled by another policy ({}), not this one ({})",
                owner.source(),
                policy.source()
            ))),
            _ => Ok(()),
        }
    }

    /// Marks the cache as `policy`'s (before a call fills it).
    pub(crate) fn bind(&mut self, policy: &'p Policy) {
        self.owner = Some(policy);
    }

    /// Empties the cache and returns the keys and values of its first `n` tokens, per layer
    /// `(2, kv_heads, n, head_dim)` (nothing when `n` is 0).
    pub(crate) fn take(&mut self, n: usize) -> Result<Vec<Tensor>> {
        if n > self.tokens.len() {
            return Err(Error::InvalidInput(format!(
                "sequence cache holds {} tokens, {n} were asked for",
                self.tokens.len()
            )));
        }
        self.tokens.clear();
        let layers = std::mem::take(&mut self.layers);
        if n == 0 {
            return Ok(Vec::new());
        }
        layers
            .into_iter()
            .map(|kv| {
                if kv.dim(2)? == n {
                    Ok(kv)
                } else {
                    Ok(kv.narrow(2, 0, n)?)
                }
            })
            .collect()
    }

    /// Stores what a call computed: `tokens` and their keys and values per layer.
    pub(crate) fn fill(&mut self, tokens: Vec<u32>, layers: Vec<Tensor>) {
        self.tokens = tokens;
        self.layers = layers;
    }
}
