//! One base, many adapters: policies with adapters built through a `BasePool` share one
//! copy of the frozen base (players, KL references, population members); the reference of an
//! adapter-trained player is the base with its adapters switched off; adapter checkpoints
//! name their base by content hash and refuse another one.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use arlas_policy::{
    BasePool, LoadOptions, LoraConfig, ModelSpec, Policy, ScoreItem, TrainConfig, Trainer,
    read_manifest, save_policy,
};
use candle_core::Device;
use common::{chat_vs_scored, demonstrations, prompts, sampled_vs_scored, tiny_policy};

fn adapter_options(pool: &BasePool, trainable: bool) -> LoadOptions {
    LoadOptions {
        trainable,
        lora: Some(LoraConfig::new(4, 8.0).unwrap()),
        bases: Some(pool.clone()),
        ..LoadOptions::default()
    }
}

fn scores(policy: &Policy, items: &[ScoreItem]) -> Vec<Vec<f32>> {
    policy.score_no_grad(items).unwrap().logprobs_vec().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn train_config() -> TrainConfig {
    TrainConfig {
        learning_rate: 1e-2,
        warmup_steps: 0,
        total_steps: 4,
        micro_batch_size: 8,
        ..TrainConfig::default()
    }
}

#[test]
fn adapter_policies_share_one_base_and_the_reference_is_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 5, 0.02), &base_dir).unwrap();
    let spec = ModelSpec::Path(base_dir.clone());
    let pool = BasePool::new();
    let agent = Policy::load(&spec, &Device::Cpu, &adapter_options(&pool, true)).unwrap();
    let attacker = Policy::load(&spec, &Device::Cpu, &adapter_options(&pool, true)).unwrap();
    assert_eq!(pool.len(), 1, "one base for both players");
    assert!(agent.shares_base_with(&attacker));
    assert!(agent.is_trainable() && agent.lora().is_some());

    // Only the adapters train; the base stays frozen and shared.
    let trainable = agent.num_trainable_parameters();
    assert!(trainable > 0 && trainable * 10 < agent.num_parameters());
    let reference = agent.without_adapter().unwrap();
    assert!(reference.shares_base_with(&agent) && reference.lora().is_none());
    let items = demonstrations(&agent);
    let scored: Vec<ScoreItem> = items.clone();
    let before = scores(&reference, &scored);
    let mut trainer = Trainer::new(agent, train_config()).unwrap();
    for _ in 0..3 {
        trainer.sft_step(&items).unwrap();
    }
    let trained = trainer.policy();
    assert!(
        max_diff(&scores(trained, &scored), &before) > 1e-3,
        "the adapters moved the policy"
    );
    assert!(
        max_diff(&scores(&reference, &scored), &before) == 0.0,
        "the reference (base, adapters off) did not move"
    );
    // A frozen copy shares the base and keeps its own adapters.
    let snapshot = trained.frozen_copy().unwrap();
    assert!(snapshot.shares_base_with(trained));
    let at_snapshot = scores(&snapshot, &scored);
    trainer.sft_step(&items).unwrap();
    assert_eq!(scores(&snapshot, &scored), at_snapshot);
    // The untrained attacker still equals the base (fresh adapters start at B = 0).
    assert!(max_diff(&scores(&attacker, &scored), &before) < 1e-6);
}

#[test]
fn a_trained_adapter_samples_the_log_probs_it_scores() {
    // Sampling folds each adapter into its weight (W + scale B A) for the call; scoring keeps
    // them apart. With B moved off zero by training, both must still agree, with and
    // without the cache carried between turns.
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 5, 0.02), &base_dir).unwrap();
    let spec = ModelSpec::Path(base_dir);
    let pool = BasePool::new();
    let agent = Policy::load(&spec, &Device::Cpu, &adapter_options(&pool, true)).unwrap();
    let items = demonstrations(&agent);
    let before = scores(&agent, &items);
    let mut trainer = Trainer::new(agent, train_config()).unwrap();
    for _ in 0..3 {
        trainer.sft_step(&items).unwrap();
    }
    let trained = trainer.policy();
    assert!(max_diff(&scores(trained, &items), &before) > 1e-3);
    let params = arlas_policy::SamplingParams {
        max_new_tokens: 12,
        seed: 3,
        ..arlas_policy::SamplingParams::default()
    };
    for agreement in [
        sampled_vs_scored(trained, &params),
        chat_vs_scored(trained, &params),
    ] {
        assert!(agreement.max <= 1e-4, "{agreement:?}");
    }
}

#[test]
fn adapter_checkpoints_load_over_the_pooled_base_and_refuse_another_base() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 5, 0.02), &base_dir).unwrap();
    let spec = ModelSpec::Path(base_dir.clone());
    let pool = BasePool::new();
    let policy = Policy::load(&spec, &Device::Cpu, &adapter_options(&pool, true)).unwrap();
    let items = demonstrations(&policy);
    let mut trainer = Trainer::new(policy, train_config()).unwrap();
    trainer.sft_step(&items).unwrap();
    let members: Vec<_> = (0..3)
        .map(|k| {
            let path = dir.path().join(format!("member-{k}"));
            save_policy(trainer.policy(), &path).unwrap();
            path
        })
        .collect();
    let manifest = read_manifest(&members[0]).unwrap();
    assert_eq!(
        manifest.base_content_hash.as_deref(),
        trainer.policy().base_id(),
        "the adapter names its base by content hash"
    );
    assert!(manifest.base_content_hash.is_some());
    let frozen = LoadOptions {
        bases: Some(pool.clone()),
        ..LoadOptions::default()
    };
    let loaded: Vec<Policy> = members
        .iter()
        .map(|m| Policy::load(&ModelSpec::Path(m.clone()), &Device::Cpu, &frozen).unwrap())
        .collect();
    assert_eq!(pool.len(), 1, "a population of adapters costs one base");
    assert!(loaded.iter().all(|p| p.shares_base_with(trainer.policy())));
    let prompts = prompts(trainer.policy());
    let params = arlas_policy::SamplingParams {
        max_new_tokens: 6,
        seed: 3,
        ..Default::default()
    };
    assert_eq!(
        loaded[0].generate(&prompts, &params).unwrap(),
        trainer.policy().generate(&prompts, &params).unwrap()
    );

    // The same name, other weights: refused, naming both hashes.
    save_policy(&tiny_policy(false, 6, 0.02), &base_dir).unwrap();
    let err = Policy::load(
        &ModelSpec::Path(members[1].clone()),
        &Device::Cpu,
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("trained on base"), "{err}");
}

#[test]
fn adapters_go_only_where_the_targets_say() {
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 5, 0.02), &base_dir).unwrap();
    let lora = LoraConfig::with_targets(4, 8.0, vec!["q_proj".into(), "v_proj".into()]).unwrap();
    let options = LoadOptions {
        trainable: true,
        lora: Some(lora.clone()),
        ..LoadOptions::default()
    };
    let policy = Policy::load(&ModelSpec::Path(base_dir), &Device::Cpu, &options).unwrap();
    let names = policy.trainable_names();
    assert!(!names.is_empty());
    assert!(
        names
            .iter()
            .all(|n| n.contains("q_proj") || n.contains("v_proj")),
        "{names:?}"
    );
    let path = dir.path().join("adapter");
    save_policy(&policy, &path).unwrap();
    let loaded = Policy::load(
        &ModelSpec::Path(path),
        &Device::Cpu,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.lora(), Some(&lora));
}

/// An adapter checkpoint loads in Hugging Face `peft` over its base and gives the same
/// log-probs. Reference (what the test runs):
///
/// ```python
/// import torch, transformers, peft
/// base = transformers.AutoModelForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
/// m = peft.PeftModel.from_pretrained(base, ADAPTER)
/// lp = m(ids).logits.log_softmax(-1)[0]
/// ```
///
/// Skips with a message where python3 lacks torch, transformers or peft.
#[test]
fn an_adapter_checkpoint_loads_in_peft_over_its_base() {
    if !common::python_has("torch, transformers, peft") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    save_policy(&tiny_policy(false, 21, 0.1), &base_dir).unwrap();
    let pool = BasePool::new();
    let policy = Policy::load(
        &ModelSpec::Path(base_dir.clone()),
        &Device::Cpu,
        &adapter_options(&pool, true),
    )
    .unwrap();
    // Train the adapters a little, so that B is no longer zero and the adapters matter.
    let items = demonstrations(&policy);
    let mut trainer = Trainer::new(policy, train_config()).unwrap();
    for _ in 0..3 {
        trainer.sft_step(&items).unwrap();
    }
    let adapter_dir = dir.path().join("adapter");
    save_policy(trainer.policy(), &adapter_dir).unwrap();
    let prompt = &prompts(trainer.policy())[1];
    let ids: Vec<String> = prompt.iter().map(u32::to_string).collect();
    let script = format!(
        r#"
import json, sys, torch, transformers, peft
base = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32)
m = peft.PeftModel.from_pretrained(base, sys.argv[2])
ids = torch.tensor([[{ids}]])
with torch.no_grad():
    lp = m(ids).logits.log_softmax(-1)[0]
print(json.dumps([lp[i - 1, ids[0, i]].item() for i in range(1, ids.shape[1])]))
"#,
        ids = ids.join(",")
    );
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            &script,
            base_dir.to_str().unwrap(),
            adapter_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<f32> = serde_json::from_slice::<Vec<f64>>(&out.stdout)
        .unwrap()
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let mut mask = vec![true; prompt.len()];
    mask[0] = false;
    let ours = scores(
        trainer.policy(),
        &[ScoreItem {
            tokens: prompt.clone(),
            mask,
        }],
    )
    .remove(0);
    let base_only = scores(
        &trainer.policy().without_adapter().unwrap(),
        &[ScoreItem {
            tokens: prompt.clone(),
            mask: {
                let mut m = vec![true; prompt.len()];
                m[0] = false;
                m
            },
        }],
    )
    .remove(0);
    let worst = max_diff(std::slice::from_ref(&ours), &[theirs]);
    eprintln!("peft vs arlas: max |diff| = {worst:e}");
    assert!(worst < 1e-4, "{worst}");
    assert!(
        max_diff(&[ours], &[base_only]) > 1e-3,
        "the adapters change the log-probs, so the comparison tests them"
    );
}
