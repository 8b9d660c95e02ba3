//! The crate boundaries the architecture rests on (docs/architecture.md): the role crates
//! (actor, learner, coordinator) are peers that never depend on each other, in any
//! dependency kind (normal, dev or build); what they exchange lives in `arlas-core` and
//! their clients in `arlas-client`, neither of which depends on a role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const ROLES: [&str; 3] = ["arlas-actor", "arlas-learner", "arlas-coordinator"];
const SHARED: [&str; 2] = ["arlas-core", "arlas-client"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (package, dependency, kind) of every dependency inside the workspace.
fn edges(meta: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_string();
        for dep in package["dependencies"].as_array().unwrap() {
            let kind = dep["kind"].as_str().unwrap_or("normal").to_string();
            out.push((
                name.clone(),
                dep["name"].as_str().unwrap().to_string(),
                kind,
            ));
        }
    }
    out
}

#[test]
fn role_crates_are_peers_and_shared_crates_depend_on_no_role() {
    let meta = metadata();
    let edges = edges(&meta);
    let names: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for crate_name in ROLES.iter().chain(&SHARED) {
        assert!(
            names.contains(crate_name),
            "{crate_name} is not in the workspace"
        );
    }
    let forbidden: Vec<_> = edges
        .iter()
        .filter(|(from, to, _)| {
            let from_role = ROLES.contains(&from.as_str());
            let from_shared = SHARED.contains(&from.as_str());
            let to_role = ROLES.contains(&to.as_str());
            (from_role || from_shared) && to_role && from != to
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "role crates must not depend on each other, nor shared crates on roles: {forbidden:?}"
    );
    // The check itself sees dependencies: every role depends on the shared nouns.
    for role in ROLES {
        assert!(
            edges
                .iter()
                .any(|(from, to, _)| from == role && to == "arlas-core"),
            "{role} should depend on arlas-core"
        );
    }
}
