//! `--device` through the real binary: every command that runs a model takes it (and
//! `ARLAS_DEVICE`), and asking a build without the `cuda` feature for a GPU is a clear error
//! before anything is written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn arlas(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arlas"))
        .args(args)
        .env("ARLAS_LOG", "warn")
        .output()
        .expect("arlas runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_model_command_refuses_cuda_in_a_cpu_build() {
    if cfg!(feature = "cuda") {
        eprintln!("SKIPPED: this build has the cuda feature");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let cases: Vec<Vec<&str>> = vec![
        vec!["generate", "--prompt", "hi", "--device", "cuda"],
        vec!["bench", "sample", "--device", "cuda:1"],
        vec![
            "eval",
            "--agent",
            "tiny",
            "--episodes",
            "1",
            "--device",
            "cuda",
        ],
        vec![
            "train",
            "--run-dir",
            run.to_str().unwrap(),
            "--device",
            "cuda",
        ],
        vec![
            "learner",
            "--player",
            "agent",
            "--data",
            data.to_str().unwrap(),
            "--device",
            "cuda",
        ],
        vec![
            "actor",
            "--coordinator",
            "http://127.0.0.1:1",
            "--cache",
            cache.to_str().unwrap(),
            "--device",
            "cuda",
        ],
    ];
    for args in cases {
        let (ok, stderr) = arlas(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(
            stderr.contains("--features cuda") && stderr.contains("--device cpu"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !run.exists(),
        "nothing is written when the device cannot be opened"
    );
    // The variable works as the flag does, and an unknown device names the choices.
    let out = Command::new(env!("CARGO_BIN_EXE_arlas"))
        .args(["generate", "--prompt", "hi"])
        .env("ARLAS_DEVICE", "tpu")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cpu, cuda or cuda:N"),
        "{stderr}"
    );
}
