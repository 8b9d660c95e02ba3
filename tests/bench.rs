//! The cost benchmarks through the real binary, on the tiny model: they run, print the
//! JSON fields users and docs/benchmarks.md read, and the counts in it are consistent.
//! (No assertion on time: tests never assert on wall time.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn bench(args: &[&str], models: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_arlas"))
        .arg("bench")
        .args(args)
        .args(["--models-dir", models.to_str().unwrap(), "--json"])
        .env("ARLAS_LOG", "warn")
        .output()
        .expect("arlas runs");
    assert!(
        out.status.success(),
        "arlas bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

#[test]
fn bench_iteration_reports_what_one_iteration_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench(
        &[
            "iteration",
            "--model",
            "tiny",
            "--adapters",
            "on",
            "--tasks",
            "1",
            "--group-size",
            "2",
            "--max-turns",
            "1",
        ],
        tmp.path(),
    );
    assert_eq!(out["bench"], "iteration");
    assert_eq!(out["adapters"]["mode"], "on", "{out}");
    // One task per player, two rollouts each.
    assert_eq!(out["episodes"], 4, "{out}");
    for key in ["seconds", "wall_seconds"] {
        assert!(out[key].as_f64().unwrap() > 0.0, "{key}: {out}");
    }
    for key in ["sampled_tokens", "peak_rss_bytes"] {
        assert!(out[key].as_u64().unwrap() > 0, "{key}: {out}");
    }
    assert!(out["trained_tokens"].as_u64().is_some(), "{out}");
    // Per player, what ran (prompts continued from their KV caches, a group's common prefix
    // once) and what prefilling every prompt whole would have cost on the same episodes.
    let mut prefilled = 0;
    for player in ["agent", "attacker"] {
        let p = &out["prefill"][player];
        let ran = p["prefilled_tokens"].as_u64().unwrap();
        let whole = p["prefilled_tokens_without_reuse"].as_u64().unwrap();
        assert!(ran > 0 && ran <= whole, "{player}: {out}");
        prefilled += ran;
    }
    assert_eq!(out["prefilled_tokens"], prefilled, "{out}");
    // Where the iteration's seconds went: the phases add up to at most the whole.
    let phases = &out["phase_seconds"];
    let mut parts = 0.0;
    for phase in [
        "rollout",
        "attacker_update",
        "agent_update",
        "commit",
        "evaluation",
    ] {
        let s = phases[phase]
            .as_f64()
            .unwrap_or_else(|| panic!("{phase}: {out}"));
        assert!(s >= 0.0, "{phase}: {out}");
        parts += s;
    }
    assert!(phases["rollout"].as_f64().unwrap() > 0.0, "{out}");
    assert!(parts <= out["seconds"].as_f64().unwrap(), "{out}");
}

#[test]
fn bench_join_loads_one_base_for_every_population_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bench(
        &[
            "join",
            "--model",
            "tiny",
            "--members",
            "1,3",
            "--repeats",
            "1",
            "--dir",
            tmp.path().join("work").to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert_eq!(out["bench"], "join");
    let adapter = out["adapter_version_bytes"].as_u64().unwrap();
    let base = out["base_version_bytes"].as_u64().unwrap();
    assert!(adapter > 0 && adapter < base, "{out}");
    let populations = out["populations"].as_array().unwrap();
    assert_eq!(populations.len(), 2, "{out}");
    for p in populations {
        let members = p["members"].as_u64().unwrap();
        let run = &p["runs"][0];
        assert_eq!(
            run["bases_loaded"], 1,
            "one base however many members: {out}"
        );
        // The agent, the current attacker and the members other than the current one.
        let fetched = run["checkpoints_fetched"].as_u64().unwrap();
        assert!(fetched >= 2 && fetched <= members + 1, "{out}");
        assert!(p["seconds_median"].as_f64().unwrap() > 0.0, "{out}");
        let loaded = run["members_loaded"].as_u64().unwrap();
        assert!(loaded >= 1 && loaded <= members, "{out}");
    }
}
