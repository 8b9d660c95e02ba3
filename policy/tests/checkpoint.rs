//! Checkpoints: round trips, exact resume, integrity checks, LoRA adapters, tiny model
//! directories, weight broadcast buffers, and loading in Hugging Face transformers.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use arlas_policy::{
    Error, LoadOptions, LoraConfig, ModelSpec, Policy, SamplingParams, ScoreItem, TinyPreset,
    TrainConfig, Trainer, save_policy, verify_checkpoint,
};
use candle_core::Device;
use common::{corpus, demonstrations, prompts, tiny_policy, weights};

fn params() -> SamplingParams {
    SamplingParams {
        max_new_tokens: 10,
        seed: 2,
        ..SamplingParams::default()
    }
}

fn train_config() -> TrainConfig {
    TrainConfig {
        learning_rate: 2e-3,
        warmup_steps: 1,
        total_steps: 10,
        weight_decay: 0.01,
        micro_batch_size: 8,
        ..TrainConfig::default()
    }
}

#[test]
fn a_saved_policy_loads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let policy = tiny_policy(false, 3, 0.1);
    let manifest = save_policy(&policy, &path).unwrap();
    assert_eq!(manifest.content_hash.len(), 64);
    let loaded = Policy::load(
        &ModelSpec::Path(path.clone()),
        &Device::Cpu,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(weights(&policy), weights(&loaded));
    assert_eq!(loaded.config(), policy.config());
    assert_eq!(loaded.source(), path.display().to_string());
    let prompts = prompts(&policy);
    assert_eq!(
        policy.generate(&prompts, &params()).unwrap(),
        loaded.generate(&prompts, &params()).unwrap()
    );
    // Saving again over the same path replaces it atomically with the same content.
    let again = save_policy(&loaded, &path).unwrap();
    assert_eq!(again.content_hash, manifest.content_hash);
}

#[test]
fn resuming_a_checkpoint_gives_the_same_next_step_as_never_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("step2");
    let policy = tiny_policy(true, 4, 0.02);
    let items = demonstrations(&policy);
    let mut trainer = Trainer::new(policy, train_config()).unwrap();
    trainer.sft_step(&items[..8]).unwrap();
    trainer.sft_step(&items[8..]).unwrap();
    trainer.save_checkpoint(&path).unwrap();
    let uninterrupted = trainer.sft_step(&items).unwrap();

    let mut resumed = Trainer::resume(&path, &Device::Cpu, &LoadOptions::default()).unwrap();
    assert_eq!(resumed.step(), 2);
    assert_eq!(resumed.config(), &train_config());
    let after_resume = resumed.sft_step(&items).unwrap();
    assert_eq!(uninterrupted, after_resume);
    assert_eq!(weights(trainer.policy()), weights(resumed.policy()));
}

#[test]
fn corrupted_or_truncated_files_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt");
    let policy = tiny_policy(true, 4, 0.02);
    let trainer = Trainer::new(policy, train_config()).unwrap();
    trainer.save_checkpoint(&path).unwrap();
    verify_checkpoint(&path).unwrap();

    let model = path.join("model.safetensors");
    let original = std::fs::read(&model).unwrap();
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    std::fs::write(&model, &flipped).unwrap();
    let err = Policy::load(
        &ModelSpec::Path(path.clone()),
        &Device::Cpu,
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(&model, &original[..original.len() - 100]).unwrap();
    let err = Trainer::resume(&path, &Device::Cpu, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");

    std::fs::write(&model, &original).unwrap();
    std::fs::remove_file(path.join("optimizer.safetensors")).unwrap();
    let err = verify_checkpoint(&path).unwrap_err();
    assert!(
        err.to_string().contains("optimizer.safetensors is missing"),
        "{err}"
    );
}

#[test]
fn lora_checkpoints_hold_only_the_adapters_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 5, 0.02), &base_dir).unwrap();
    let options = LoadOptions {
        trainable: true,
        lora: Some(LoraConfig::new(4, 8.0).unwrap()),
        ..LoadOptions::default()
    };
    let policy = Policy::load(&ModelSpec::Path(base_dir.clone()), &Device::Cpu, &options).unwrap();
    let items = demonstrations(&policy);
    let mut trainer = Trainer::new(policy, train_config()).unwrap();
    trainer.sft_step(&items).unwrap();
    let path = dir.path().join("lora");
    let manifest = trainer.save_checkpoint(&path).unwrap();
    assert!(manifest.files.contains_key("adapter_model.safetensors"));
    assert!(!manifest.files.contains_key("model.safetensors"));
    let adapter_bytes = manifest.files["adapter_model.safetensors"].bytes;
    let base_bytes = std::fs::metadata(base_dir.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(
        adapter_bytes * 3 < base_bytes,
        "{adapter_bytes} vs {base_bytes}"
    );

    let next = trainer.sft_step(&items).unwrap();
    let mut resumed = Trainer::resume(&path, &Device::Cpu, &LoadOptions::default()).unwrap();
    assert_eq!(
        resumed.policy().lora(),
        Some(&LoraConfig::new(4, 8.0).unwrap())
    );
    assert_eq!(resumed.sft_step(&items).unwrap(), next);
    assert_eq!(weights(trainer.policy()), weights(resumed.policy()));
}

#[test]
fn tiny_models_are_built_once_and_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let corpus_fn: arlas_policy::CorpusFn = Arc::new(|| Ok(corpus()));
    let options = LoadOptions {
        models_dir: dir.path().to_path_buf(),
        tiny_corpus: Some(corpus_fn),
        seed: 9,
        ..LoadOptions::default()
    };
    let spec = ModelSpec::parse("tiny").unwrap();
    assert_eq!(spec, ModelSpec::Tiny(TinyPreset::Tiny2M));
    let built = Policy::load(&spec, &Device::Cpu, &options).unwrap();
    assert!(dir.path().join("tiny-2m/manifest.json").is_file());
    assert_eq!(built.source(), "tiny-2m");
    // Without a corpus the cached directory is used.
    let cached_options = LoadOptions {
        models_dir: dir.path().to_path_buf(),
        ..LoadOptions::default()
    };
    let cached = Policy::load(&spec, &Device::Cpu, &cached_options).unwrap();
    assert_eq!(weights(&built), weights(&cached));
    // Another directory built from the same corpus and seed is identical.
    let other = tempfile::tempdir().unwrap();
    let rebuilt = arlas_policy::build_tiny(
        TinyPreset::Tiny2M,
        corpus().into_iter(),
        9,
        &other.path().join("t"),
    )
    .unwrap();
    assert_eq!(weights(&built), weights(&rebuilt));
    let missing = LoadOptions {
        models_dir: other.path().to_path_buf(),
        ..LoadOptions::default()
    };
    let err = Policy::load(&spec, &Device::Cpu, &missing).unwrap_err();
    assert!(err.to_string().contains("build-tiny"), "{err}");
    assert!(matches!(
        ModelSpec::parse("gpt-5"),
        Err(Error::UnknownModel(_))
    ));
}

#[test]
fn weights_travel_as_safetensors_bytes() {
    let source = tiny_policy(true, 11, 0.1);
    let mut target = tiny_policy(false, 12, 0.1);
    let prompts = prompts(&source);
    assert_ne!(
        source.generate(&prompts, &params()).unwrap(),
        target.generate(&prompts, &params()).unwrap()
    );
    let bytes = source.weights_to_safetensors().unwrap();
    target.load_weights_from_safetensors(&bytes).unwrap();
    assert_eq!(
        source.generate(&prompts, &params()).unwrap(),
        target.generate(&prompts, &params()).unwrap()
    );
    // Into a trainable policy, in place.
    let mut trainable = tiny_policy(true, 13, 0.1);
    trainable.load_weights_from_safetensors(&bytes).unwrap();
    assert_eq!(weights(&source), weights(&trainable));
    // A buffer of another shape is refused.
    let mut other = common::tiny_config(0.1);
    other.num_hidden_layers = 2;
    let small = common::policy_with(&other, false, 1, None);
    assert!(
        target
            .load_weights_from_safetensors(&small.weights_to_safetensors().unwrap())
            .is_err()
    );
}

/// A saved full model loads in Hugging Face transformers and gives the same log-probs.
///
/// Manual check (what this test runs):
/// ```text
/// python3 - <<'PY'
/// import torch, transformers
/// m = transformers.AutoModelForCausalLM.from_pretrained(DIR, torch_dtype=torch.float32)
/// t = transformers.AutoTokenizer.from_pretrained(DIR)
/// ids = torch.tensor([IDS]); lp = m(ids).logits.log_softmax(-1)
/// PY
/// ```
#[test]
fn a_saved_model_loads_in_hugging_face_transformers() {
    if !common::python_has("torch, transformers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hf");
    let policy = tiny_policy(false, 21, 0.1);
    save_policy(&policy, &path).unwrap();
    let prompt = &prompts(&policy)[1];
    let ids: Vec<String> = prompt.iter().map(u32::to_string).collect();
    let text = policy.tokenizer().decode(prompt, false).unwrap();
    let script = format!(
        r#"
import json, sys, torch, transformers
d = sys.argv[1]
m = transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
tok = transformers.AutoTokenizer.from_pretrained(d)
ids = torch.tensor([[{ids}]])
with torch.no_grad():
    lp = m(ids).logits.log_softmax(-1)[0]
scores = [lp[i - 1, ids[0, i]].item() for i in range(1, ids.shape[1])]
enc = tok(sys.argv[2], add_special_tokens=False)["input_ids"]
print(json.dumps({{"scores": scores, "ids": enc}}))
"#,
        ids = ids.join(",")
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script, path.to_str().unwrap(), &text])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs: Vec<f32> = parsed["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let mut mask = vec![true; prompt.len()];
    mask[0] = false;
    let ours = policy
        .score_no_grad(&[ScoreItem {
            tokens: prompt.clone(),
            mask,
        }])
        .unwrap()
        .logprobs_vec()
        .unwrap()
        .remove(0);
    let worst = common::max_abs_diff(&ours, &theirs);
    eprintln!("transformers vs arlas: max |diff| = {worst:e}");
    assert!(worst < 1e-4, "{worst}");
    let their_ids: Vec<u32> = parsed["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(
        &their_ids, prompt,
        "transformers tokenizes the rendered chat to the same ids"
    );
}

#[test]
fn lora_adapters_travel_to_a_frozen_actor() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 5, 0.1), &base_dir).unwrap();
    let lora = Some(LoraConfig::new(4, 8.0).unwrap());
    let learner_options = LoadOptions {
        trainable: true,
        lora: lora.clone(),
        ..LoadOptions::default()
    };
    let actor_options = LoadOptions {
        lora,
        seed: 99,
        ..LoadOptions::default()
    };
    let spec = ModelSpec::Path(base_dir);
    let learner = Policy::load(&spec, &Device::Cpu, &learner_options).unwrap();
    let items = demonstrations(&learner);
    let mut trainer = Trainer::new(learner, train_config()).unwrap();
    for _ in 0..3 {
        trainer.sft_step(&items).unwrap();
    }
    let mut actor = Policy::load(&spec, &Device::Cpu, &actor_options).unwrap();
    let prompts = prompts(&actor);
    let bytes = trainer.policy().weights_to_safetensors().unwrap();
    let full = tiny_policy(false, 5, 0.1).weights_to_safetensors().unwrap();
    assert!(bytes.len() * 3 < full.len(), "only the adapters travel");
    actor.load_weights_from_safetensors(&bytes).unwrap();
    assert_eq!(
        trainer.policy().generate(&prompts, &params()).unwrap(),
        actor.generate(&prompts, &params()).unwrap()
    );
}
