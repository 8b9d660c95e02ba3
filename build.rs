//! Records the commit the binary is built from as `ARLAS_COMMIT` (the full hash, `-dirty` when
//! the checkout has uncommitted changes, `unknown` outside a git checkout), so that every run
//! directory and benchmark record can say exactly which code ran.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    // Rebuilt when the commit, the index or any source of the workspace changes.
    for path in [
        ".git/HEAD",
        ".git/index",
        ".git/refs",
        "Cargo.lock",
        "src",
        "game",
        "policy",
        "core",
        "client",
        "actor",
        "learner",
        "coordinator",
        "proto",
        "runtime",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = match git(&["rev-parse", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            // `git status --porcelain` lists modified and untracked files; empty when clean.
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_none_or(|s| !s.is_empty());
            if dirty { format!("{hash}-dirty") } else { hash }
        }
        _ => "unknown".to_string(),
    };
    println!("cargo:rustc-env=ARLAS_COMMIT={commit}");
}
