//! Speed accounting: FLOPs per token and a matmul peak measured in-process, for MFU.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::LlamaConfig;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::precision::Precision;
use crate::sampling::SamplingParams;
use crate::scoring::ScoreItem;
use crate::train::{GrpoItem, StepStats, Trainer};

/// FLOPs of one token's forward pass attending to `context` earlier tokens:
/// `2 * matmul parameters + 4 * layers * context * heads * head_dim` (QK^T and PV).
pub fn forward_flops_per_token(config: &LlamaConfig, context: usize) -> f64 {
    let dense = 2.0 * to_f64(config.matmul_parameters());
    let attention = 4.0
        * to_f64(config.num_hidden_layers)
        * to_f64(context)
        * to_f64(config.num_attention_heads * config.head_width());
    dense + attention
}

/// FLOPs of one training token: forward plus backward, about 3x the forward pass.
pub fn train_flops_per_token(config: &LlamaConfig, context: usize) -> f64 {
    3.0 * forward_flops_per_token(config, context)
}

/// The best `dtype` matmul throughput (FLOP/s) of `device` over a few `n x n` products.
pub fn measure_matmul_peak(device: &Device, dtype: DType, n: usize) -> Result<f64> {
    let a = Tensor::ones((n, n), dtype, device)?;
    let b = Tensor::ones((n, n), dtype, device)?;
    let mut best = 0.0f64;
    // One warm-up, then keep the fastest of a few runs.
    for round in 0..6 {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        device.synchronize()?;
        let seconds = start.elapsed().as_secs_f64();
        drop(c);
        if round > 0 && seconds > 0.0 {
            best = best.max(2.0 * to_f64(n).powi(3) / seconds);
        }
    }
    Ok(best)
}

/// The matmul peak a policy's MFU is taken against: its compute dtype, on its device, with
/// products large enough to fill it (1024 on a CPU, 8192 on a GPU).
pub fn policy_matmul_peak(policy: &Policy) -> Result<f64> {
    let n = if policy.device().is_cpu() { 1024 } else { 8192 };
    measure_matmul_peak(policy.device(), policy.precision().dtype(), n)
}

#[allow(clippy::cast_precision_loss)] // counts are far below 2^52
fn to_f64(n: usize) -> f64 {
    n as f64
}

/// A sampling benchmark: `batch` random prompts of `prompt_len` tokens, `new_tokens` each.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleBench {
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Timed repetitions after one short warm-up.
    pub repeats: usize,
    pub seed: u64,
    /// Generate exactly `new_tokens` per row: end-of-sequence ids do not stop a row (as a
    /// reference that sets `min_new_tokens = max_new_tokens`).
    #[serde(default)]
    pub ignore_eos: bool,
}

/// What ran the benchmark: the threads and the build, so that a record describes itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchEnv {
    /// candle's element-wise threads: `CANDLE_NUM_THREADS` (the `arlas` binary sets 1 unless
    /// it is given), else rayon's count, as candle decides.
    pub candle_threads: usize,
    /// rayon's pool, which runs the matmuls and arlas's kernels (`RAYON_NUM_THREADS`).
    pub rayon_threads: usize,
    pub arlas_version: String,
    /// The CPU it ran on (absent in records written before it was recorded).
    #[serde(default)]
    pub cpu: CpuInfo,
}

/// The CPU a benchmark ran on: model, vendor and the instruction sets that matter to the
/// kernels (from `/proc/cpuinfo`; empty elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: String,
    /// Of avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512_vnni, avx512_bf16,
    /// amx_tile, amx_bf16: the ones this CPU has, in that order.
    pub instruction_sets: Vec<String>,
}

/// The instruction sets [`CpuInfo`] reports, as `/proc/cpuinfo` names them.
const INSTRUCTION_SETS: [&str; 10] = [
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
];

impl CpuInfo {
    /// This machine's CPU.
    pub fn current() -> Self {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// From the text of `/proc/cpuinfo` (its first processor).
    pub fn parse(cpuinfo: &str) -> Self {
        let field = |name: &str| {
            cpuinfo
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let flags = field("flags");
        let flags: Vec<&str> = flags.split_whitespace().collect();
        Self {
            model: field("model name"),
            vendor: field("vendor_id"),
            instruction_sets: INSTRUCTION_SETS
                .iter()
                .filter(|s| flags.contains(s))
                .map(|s| (*s).to_string())
                .collect(),
        }
    }
}

impl BenchEnv {
    /// The current process's settings.
    pub fn current() -> Self {
        Self {
            // candle_core::utils::get_num_threads() is rayon's count; the element-wise pool
            // reads this variable first.
            candle_threads: std::env::var("CANDLE_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(rayon::current_num_threads),
            rayon_threads: rayon::current_num_threads(),
            arlas_version: env!("CARGO_PKG_VERSION").to_string(),
            cpu: CpuInfo::current(),
        }
    }
}

/// What a sampling benchmark measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleReport {
    /// The compute dtype.
    pub precision: Precision,
    pub generated_tokens: usize,
    pub seconds: f64,
    /// Wall time of each timed `generate` call.
    pub repeat_seconds: Vec<f64>,
    pub tokens_per_sec: f64,
    pub flops_per_sec: f64,
    pub matmul_peak_flops_per_sec: f64,
    pub mfu: f64,
    pub env: BenchEnv,
}

/// A training benchmark: GRPO steps (with KL to a frozen copy unless `reference` is off)
/// over `batch` random sequences of `seq_len` tokens whose second half is scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainBench {
    pub batch: usize,
    pub seq_len: usize,
    pub micro_batch: usize,
    /// Timed steps after one warm-up step.
    pub steps: usize,
    pub reference: bool,
    pub seed: u64,
}

/// What a training benchmark measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// The compute dtype (the optimizer's weights are f32).
    pub precision: Precision,
    pub trainable_parameters: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub seconds_per_step: f64,
    /// Wall time of each timed step.
    pub step_seconds: Vec<f64>,
    pub tokens_per_sec: f64,
    pub flops_per_sec: f64,
    pub matmul_peak_flops_per_sec: f64,
    pub mfu: f64,
    pub last_step: StepStats,
    pub env: BenchEnv,
}

/// Random token ids that are not end-of-sequence ids.
pub fn random_tokens(policy: &Policy, len: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let vocab = u32::try_from(policy.tokenizer().vocab_size()).unwrap_or(u32::MAX);
    let mut ids = Vec::with_capacity(len);
    while ids.len() < len {
        let id = rng.random_range(0..vocab);
        if !policy.eos_ids().contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Runs a sampling benchmark on `policy` (tokens/s counts generated tokens).
pub fn run_sample_bench(policy: &Policy, bench: &SampleBench) -> Result<SampleReport> {
    if bench.batch == 0 || bench.prompt_len == 0 || bench.new_tokens == 0 {
        return Err(Error::InvalidInput(format!(
            "batch, prompt length and new tokens must be positive: {bench:?}"
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(bench.seed);
    let prompts: Vec<Vec<u32>> = (0..bench.batch)
        .map(|_| random_tokens(policy, bench.prompt_len, &mut rng))
        .collect();
    let params = SamplingParams {
        max_new_tokens: bench.new_tokens,
        temperature: 1.0,
        seed: bench.seed,
        ..SamplingParams::default()
    };
    let warm_up = SamplingParams {
        max_new_tokens: 2,
        ..params.clone()
    };
    let eos: &[u32] = if bench.ignore_eos {
        &[]
    } else {
        policy.eos_ids()
    };
    policy.generate_with_eos(&prompts, &warm_up, eos)?;
    let device = policy.device();
    let repeats = bench.repeats.max(1);
    let mut generated = 0;
    let mut repeat_seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        device.synchronize()?;
        let start = Instant::now();
        let out = policy.generate_with_eos(&prompts, &params, eos)?;
        device.synchronize()?;
        repeat_seconds.push(start.elapsed().as_secs_f64());
        generated += out.iter().map(|g| g.tokens.len()).sum::<usize>();
    }
    let seconds: f64 = repeat_seconds.iter().sum();
    let config = policy.config();
    let prefill = to_f64(bench.batch * bench.prompt_len * repeats)
        * forward_flops_per_token(config, bench.prompt_len / 2);
    let decode = to_f64(generated)
        * forward_flops_per_token(config, bench.prompt_len + bench.new_tokens / 2);
    let peak = policy_matmul_peak(policy)?;
    let flops_per_sec = (prefill + decode) / seconds;
    Ok(SampleReport {
        precision: policy.precision(),
        generated_tokens: generated,
        seconds,
        repeat_seconds,
        tokens_per_sec: to_f64(generated) / seconds,
        flops_per_sec,
        matmul_peak_flops_per_sec: peak,
        mfu: flops_per_sec / peak,
        env: BenchEnv::current(),
    })
}

/// Runs a training benchmark with `trainer` (tokens/s counts every token of every sequence).
pub fn run_train_bench(trainer: &mut Trainer, bench: &TrainBench) -> Result<TrainReport> {
    if bench.batch == 0 || bench.seq_len < 2 || bench.steps == 0 {
        return Err(Error::InvalidInput(format!(
            "batch and steps must be positive and the sequence at least 2 tokens: {bench:?}"
        )));
    }
    let policy = trainer.policy();
    let reference = if bench.reference {
        Some(policy.frozen_copy()?)
    } else {
        None
    };
    let mut rng = ChaCha8Rng::seed_from_u64(bench.seed);
    let half = bench.seq_len / 2;
    let scores: Vec<ScoreItem> = (0..bench.batch)
        .map(|_| {
            let tokens = random_tokens(policy, bench.seq_len, &mut rng);
            ScoreItem::completion(
                &tokens[..bench.seq_len - half],
                &tokens[bench.seq_len - half..],
            )
        })
        .collect();
    let behaviour = policy.score_no_grad(&scores)?.logprobs_vec()?;
    let items: Vec<GrpoItem> = scores
        .into_iter()
        .zip(behaviour)
        .enumerate()
        .map(|(i, (s, b))| GrpoItem {
            tokens: s.tokens,
            mask: s.mask,
            behaviour_logprobs: b,
            advantage: if i % 2 == 0 { 1.0 } else { -1.0 },
        })
        .collect();
    let trainable_parameters = policy.num_trainable_parameters();
    let config = policy.config().clone();
    trainer.grpo_step(&items, reference.as_ref())?;
    let mut last = None;
    let mut step_seconds = Vec::with_capacity(bench.steps);
    let device = trainer.policy().device().clone();
    for _ in 0..bench.steps {
        device.synchronize()?;
        let start = Instant::now();
        last = Some(trainer.grpo_step(&items, reference.as_ref())?);
        // A GPU may still be applying the update when the step returns.
        device.synchronize()?;
        step_seconds.push(start.elapsed().as_secs_f64());
    }
    let seconds: f64 = step_seconds.iter().sum();
    let tokens = bench.batch * bench.seq_len * bench.steps;
    let mut per_token = train_flops_per_token(&config, bench.seq_len / 2);
    if reference.is_some() {
        per_token += forward_flops_per_token(&config, bench.seq_len / 2);
    }
    let flops_per_sec = to_f64(tokens) * per_token / seconds;
    let peak = policy_matmul_peak(trainer.policy())?;
    let last_step = last.ok_or_else(|| Error::InvalidInput("no timed step ran".to_string()))?;
    Ok(TrainReport {
        precision: trainer.policy().precision(),
        trainable_parameters,
        tokens,
        seconds,
        seconds_per_step: seconds / to_f64(bench.steps),
        step_seconds,
        tokens_per_sec: to_f64(tokens) / seconds,
        flops_per_sec,
        matmul_peak_flops_per_sec: peak,
        mfu: flops_per_sec / peak,
        last_step,
        env: BenchEnv::current(),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_cpu_is_read_off_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n\
                    flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512_bf16 amx_tile\n\nprocessor\t: 1\n";
        let cpu = CpuInfo::parse(text);
        assert_eq!(cpu.vendor, "GenuineIntel");
        assert_eq!(cpu.model, "Intel(R) Xeon(R) Platinum 8481C");
        assert_eq!(
            cpu.instruction_sets,
            [
                "avx2",
                "fma",
                "avx512f",
                "avx512bw",
                "avx512_bf16",
                "amx_tile"
            ]
        );
        assert_eq!(CpuInfo::parse(""), CpuInfo::default());
    }

    use super::*;
    use crate::presets::TinyPreset;

    #[test]
    fn flop_counts_follow_the_parameter_count() {
        let config = TinyPreset::Tiny2M.config(4096, 0);
        let dense = 2.0 * to_f64(config.matmul_parameters());
        assert_eq!(forward_flops_per_token(&config, 0), dense);
        assert!(forward_flops_per_token(&config, 100) > dense);
        assert_eq!(
            train_flops_per_token(&config, 10),
            3.0 * forward_flops_per_token(&config, 10)
        );
        assert!(measure_matmul_peak(&Device::Cpu, DType::F32, 64).unwrap() > 0.0);
        assert!(measure_matmul_peak(&Device::Cpu, DType::BF16, 64).unwrap() > 0.0);
    }
}
