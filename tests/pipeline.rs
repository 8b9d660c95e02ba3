//! The one-machine pipeline through the real `arlas` binary: a run killed with SIGKILL
//! mid-way resumes from its last committed iteration and neither replays nor skips one;
//! `arlas eval` reports the contract's fields for every kind of attacker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn arlas() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arlas"));
    c.env("ARLAS_LOG", "warn");
    c
}

/// Settings small enough for CI: a few scripted demonstrations, short actions, tiny groups.
fn small_run(run_dir: &Path, models: &Path) -> Command {
    let mut c = arlas();
    c.args(["train", "--quiet", "--run-dir"]).arg(run_dir);
    c.arg("--models-dir").arg(models);
    c.args([
        "--warmup-episodes",
        "8",
        "--warmup-epochs",
        "1",
        "--iterations",
        "3",
        "--tasks-per-iteration",
        "2",
        "--group-size",
        "2",
        "--eval-episodes",
        "2",
        "--eval-every",
        "0",
        "--max-turns",
        "2",
        "--agent-max-tokens",
        "12",
        "--attacker-max-tokens",
        "12",
        "--seed",
        "5",
    ]);
    c
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The iterations `metrics.jsonl` records, in order.
fn iterations_logged(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "iteration")
        .map(|r| r["iteration"].as_u64().unwrap())
        .collect()
}

fn wait_for(deadline: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn killed_run_resumes_without_replaying_or_skipping_iterations() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let run = tmp.path().join("run");

    let mut child = small_run(&run, &models)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let state = run.join("state.json");
    let committed_one = wait_for(Duration::from_secs(900), || {
        std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|s| s["iterations_done"].as_u64() >= Some(1))
    });
    assert!(committed_one, "the run never committed its first iteration");
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be killed"
    );
    let killed_at = read_json(&state)["iterations_done"].as_u64().unwrap();
    assert!(killed_at < 3);

    // Starting again in the same directory is refused with a hint.
    let again = small_run(&run, &models).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    let out = arlas()
        .args(["train", "--quiet", "--json", "--resume"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["evaluation"]["table"].as_array().unwrap().len(), 4);

    let state = read_json(&state);
    assert_eq!(state["iterations_done"], 3);
    assert_eq!(state["finished"], true);
    // Each iteration logged exactly once, in order.
    let iterations = iterations_logged(&run);
    assert_eq!(iterations, [1, 2, 3]);
    // The warm-up attacker, then at most one attacker per iteration, each iteration once,
    // and only when its weights changed: no two members hold the same weights.
    let population = read_json(&run.join("population/population.json"));
    let members = population["members"].as_array().unwrap();
    let joined: Vec<u64> = members
        .iter()
        .map(|m| m["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(joined[0], 0, "{joined:?}");
    assert!(
        joined.windows(2).all(|w| w[0] < w[1]) && joined.len() <= 4,
        "{joined:?}"
    );
    let weights: std::collections::BTreeSet<&str> = members
        .iter()
        .map(|m| m["weights_hash"].as_str().unwrap())
        .collect();
    assert_eq!(
        weights.len(),
        members.len(),
        "two members hold the same weights"
    );
    let ids: Vec<&str> = members.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(report.contains("<svg") && report.contains(last));
    assert!(report.contains("Trained minus warm-up on the same episodes"));
    assert!(report.contains("Updates per iteration"));
    for dir in [
        "agent/warmup",
        "agent/final",
        "attacker/final",
        "config.json",
        "versions.json",
        "eval/final.json",
    ] {
        assert!(run.join(dir).exists(), "{dir} missing");
    }
    // The run says which code ran: the commit the binary was built from.
    let versions = read_json(&run.join("versions.json"));
    let commit = versions["commit"].as_str().unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() >= 40 && commit[..40].chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    // Only the last iteration's checkpoints are kept besides warm-up and final.
    let kept: Vec<PathBuf> = std::fs::read_dir(run.join("agent"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 3, "{kept:?}");

    // `arlas eval` on the trained agent: the contract's fields, per attacker.
    let attacks = tmp.path().join("attacks.jsonl");
    std::fs::write(&attacks, "{\"id\": \"t1\", \"family\": \"urgency\", \"template\": \"URGENT {goal} {not a placeholder}\"}\n").unwrap();
    // `arlas eval --json` of the trained agent on 2 episodes per attacker, seed 1, against the
    // population, with `extra` flags.
    let eval_json = |extra: &[&std::ffi::OsStr]| -> Value {
        let out = arlas()
            .args([
                "eval",
                "--json",
                "--episodes",
                "2",
                "--seed",
                "1",
                "--agent",
            ])
            .arg(run.join("agent/final"))
            .arg("--population")
            .arg(run.join("population"))
            .arg("--models-dir")
            .arg(&models)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "eval {extra:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let eval = eval_json(&["--attacks".as_ref(), attacks.as_os_str()]);
    for field in [
        "task_success_rate",
        "task_success_rate_under_attack",
        "attack_success_rate",
    ] {
        let v = eval[field].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{field} = {v}");
    }
    let by = eval["by_attacker"].as_object().unwrap();
    assert!(by.contains_key("templates"));
    assert!(by.keys().any(|k| k.starts_with("file:")), "{:?}", by.keys());
    assert!(by.contains_key(first) && by.contains_key(last));
    // Every rate with its count, n and interval.
    let tsr = &eval["task_success"];
    assert_eq!(tsr["n"], 2);
    assert!(tsr["low"].as_f64().unwrap() <= tsr["rate"].as_f64().unwrap());
    assert!(tsr["rate"].as_f64().unwrap() <= tsr["high"].as_f64().unwrap());
    assert_eq!(by["templates"]["attack_success"]["n"], 2);

    // Against itself as the baseline, on the same episodes: every pair agrees, so every
    // paired difference is exactly 0 with McNemar p = 1. (Greedy sampling, same seeds, same
    // attackers: anything unpaired would show.)
    let final_dir = run.join("agent/final");
    let eval = eval_json(&["--baseline".as_ref(), final_dir.as_os_str()]);
    let paired = &eval["baseline"]["paired"];
    let mut differences = vec![&paired["no_attack"], &paired["under_attack"]];
    differences.extend(paired["by_attacker"].as_object().unwrap().values());
    assert_eq!(differences.len(), 2 + ids.len() + 1, "{paired}");
    for rates in differences {
        for rate in ["task_success", "attack_success"] {
            let d = &rates[rate];
            assert_eq!(
                (d["only_a"].as_u64(), d["only_b"].as_u64()),
                (Some(0), Some(0)),
                "{d}"
            );
            assert_eq!(d["difference"], 0.0);
            assert_eq!(d["mcnemar_p"], 1.0);
        }
    }

    // Resume takes the run's own settings: another setting is an error naming it, not
    // silently ignored; `--iterations` extends the finished run from its last iteration.
    let changed = arlas()
        .args(["train", "--quiet", "--resume"])
        .arg(&run)
        .args(["--agent-lr", "1e-3"])
        .output()
        .unwrap();
    assert!(!changed.status.success());
    let err = String::from_utf8_lossy(&changed.stderr);
    assert!(err.contains("agent.train.learning_rate"), "{err}");
    let shorter = arlas()
        .args(["train", "--quiet", "--resume"])
        .arg(&run)
        .args(["--iterations", "2"])
        .output()
        .unwrap();
    assert!(
        !shorter.status.success(),
        "3 iterations done cannot become 2"
    );
    let extended = arlas()
        .args(["train", "--quiet", "--json", "--resume"])
        .arg(&run)
        .args(["--iterations", "4"])
        .output()
        .unwrap();
    assert!(
        extended.status.success(),
        "{}",
        String::from_utf8_lossy(&extended.stderr)
    );
    let state = read_json(&run.join("state.json"));
    assert_eq!(
        (
            state["iterations_done"].as_u64(),
            state["finished"].as_bool()
        ),
        (Some(4), Some(true))
    );
    assert_eq!(read_json(&run.join("config.json"))["iterations"], 4);
    let iterations = iterations_logged(&run);
    assert_eq!(iterations, [1, 2, 3, 4]);
}

#[test]
fn malformed_attack_file_is_an_error_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let attacks = tmp.path().join("bad.jsonl");
    std::fs::write(
        &attacks,
        "{\"id\": \"a\", \"family\": \"x\", \"template\": \"{goal}\"}\n{not json\n",
    )
    .unwrap();
    let out = arlas()
        .args([
            "game",
            "play",
            "--agent",
            "expert",
            "--episodes",
            "2",
            "--attacker",
        ])
        .arg(format!("file:{}", attacks.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
}
