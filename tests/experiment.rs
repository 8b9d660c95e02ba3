//! `arlas experiment` through the real binary on the tiny model: two seeds, each an ARLAS run,
//! the `--opponents latest` ablation from that run's warm-up and three paired evaluations;
//! the summary pools the seeds' pairs; a second invocation reruns nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn arlas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arlas"));
    c.env("ARLAS_LOG", "warn");
    c
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn two_seeds_run_the_whole_chain_and_pool_their_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let config = tmp.path().join("small.toml");
    std::fs::write(
        &config,
        format!(
            "models_dir = {:?}\niterations = 1\ntasks_per_iteration = 2\ngroup_size = 2\n\
             [warmup]\nepisodes = 4\nepochs = 1\n[eval]\nepisodes = 1\nevery = 0\n\
             [rollout.game]\nmax_turns = 2\nsuites = [\"banking\"]\n\
             [rollout.agent_sampling]\nmax_new_tokens = 12\n\
             [rollout.attacker_sampling]\nmax_new_tokens = 12\n",
            models.display().to_string()
        ),
    )
    .unwrap();
    let out = tmp.path().join("exp");
    let experiment = || {
        arlas()
            .args([
                "experiment",
                "--seeds",
                "2",
                "--first-seed",
                "3",
                "--episodes",
                "2",
            ])
            .arg("--config")
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = experiment();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    // The ablation starts from the ARLAS run's warm-up and plays the latest attacker only.
    let latest = read_json(&out.join("seed-3/latest/config.json"));
    assert_eq!(latest["opponents"], "latest");
    assert!(
        latest["agent_init"]
            .as_str()
            .unwrap()
            .ends_with("seed-3/population/agent/warmup"),
        "{latest}"
    );
    assert_eq!(latest["seed"], 3);

    let summary = read_json(&out.join("summary.json"));
    assert_eq!(summary["seeds"], serde_json::json!([3, 4]));
    assert!(
        summary["binary"].as_str().unwrap().starts_with("arlas "),
        "{}",
        summary["binary"]
    );
    assert!(summary["runs"]["4"]["versions"]["commit"].is_string());
    assert_eq!(summary["runs"]["4"]["config"]["seed"], 4);
    let comparisons = summary["comparisons"].as_array().unwrap();
    assert_eq!(comparisons.len(), 3);
    for c in comparisons {
        let rows = c["rows"].as_array().unwrap();
        let rates: Vec<&str> = rows.iter().map(|r| r["rate"].as_str().unwrap()).collect();
        for want in [
            "TSR, no attack",
            "ASR vs templates",
            "ASR vs ARLAS attacker",
            "ASR vs ablation attacker",
        ] {
            assert!(rates.contains(&want), "{want} not in {rates:?}");
        }
        for r in rows {
            // 2 episodes per seed and opponent (3 opponents under attack), pooled over 2 seeds.
            let rate = r["rate"].as_str().unwrap();
            let each = if rate.ends_with("all attackers") || rate == "TSR under attack" {
                6
            } else {
                2
            };
            let n = |d: &Value| d["a"]["n"].as_u64().unwrap();
            let per_seed: Vec<u64> = ["3", "4"].iter().map(|s| n(&r["per_seed"][s])).collect();
            assert_eq!(per_seed, vec![each, each], "{r}");
            assert_eq!(n(&r["pooled"]), 2 * each, "{r}");
            let only = |d: &Value, k: &str| d[k].as_u64().unwrap();
            assert_eq!(
                only(&r["pooled"], "only_a"),
                only(&r["per_seed"]["3"], "only_a") + only(&r["per_seed"]["4"], "only_a")
            );
        }
    }
    assert!(summary["verdict"]["tsr_non_inferior"].is_boolean());
    let curves = summary["attacker_curves"].as_array().unwrap();
    assert_eq!(curves.len(), 2);
    assert_eq!(curves[0]["by_iteration"].as_array().unwrap().len(), 1);
    // Injection diversity of each opponent against the ARLAS agent, learned next to templates.
    let diversity = &summary["diversity"]["3"];
    assert!(
        diversity["templates"]["injections"].as_u64().unwrap() > 0,
        "{diversity}"
    );
    assert!(
        diversity["ARLAS attacker"]["distinct_1"].is_number(),
        "{diversity}"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("ARLAS (population) minus warm-up"), "{md}");
    assert!(md.contains("| seed 3 | seed 4 | pooled |"), "{md}");

    // Everything is on disk: the second invocation only summarises.
    let again = experiment();
    assert!(again.status.success());
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("seed-4/latest is done"), "{log}");
    assert!(!log.contains("training"), "{log}");
}
