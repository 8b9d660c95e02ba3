#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::{Duration, Instant};

use arlas_core::archive::{self, HashingWriter};
use arlas_core::{
    BlobId, BlobRef, LeaseId, MatchResult, Player, PolicyVersion, PublishHeader, Registration,
};
use sha2::Digest;

use super::{CoordinatorState, PublishCheck, RUN_FILE};
use crate::error::Error;
use crate::service::blobs::StagedBlob;
use crate::service::config::CoordinatorConfig;
use crate::service::record::RunRecord;

/// A checkpoint blob in memory: a small directory packed with `tag` in its weights.
fn blob(tag: &str) -> (Vec<u8>, BlobRef) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("model.safetensors"),
        format!("weights {tag}"),
    )
    .unwrap();
    fs::write(dir.path().join("config.json"), b"{}").unwrap();
    let mut out = HashingWriter::new(Vec::new());
    archive::pack(dir.path(), &mut out).unwrap();
    out.finish()
}

fn stage(state: &CoordinatorState, bytes: &[u8]) -> StagedBlob {
    let mut w = state.upload_writer().unwrap();
    for chunk in bytes.chunks(7) {
        w.write(chunk).unwrap();
    }
    w.finish().unwrap()
}

fn learner(state: &mut CoordinatorState, now: Instant) -> LeaseId {
    state
        .register(
            Registration::Learner {
                name: "learner".into(),
                url: "http://127.0.0.1:50052".into(),
                players: vec![Player::Agent, Player::Attacker],
            },
            now,
        )
        .unwrap()
}

fn header(lease: &LeaseId, player: Player, version: u64, blob: &BlobRef) -> PublishHeader {
    PublishHeader {
        lease: lease.clone(),
        player,
        version,
        checkpoint: blob.clone(),
        join_population: player == Player::Attacker,
        iteration: u32::try_from(version).unwrap(),
    }
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        seed: Some(7),
        ..CoordinatorConfig::default()
    }
}

#[test]
fn publish_verifies_the_hash_before_anything_is_visible_and_versions_only_increase() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
    let now = Instant::now();
    let lease = learner(&mut state, now);
    let (bytes, good) = blob("v1");
    let revision = state.revision();

    // Bytes that do not hash to the header's id are refused; nothing changes.
    let mut tampered = bytes.clone();
    tampered[20] ^= 1;
    let err = state
        .publish(
            &header(&lease, Player::Agent, 1, &good),
            Some(stage(&state, &tampered)),
            now,
        )
        .unwrap_err();
    assert!(matches!(err, Error::UploadMismatch { .. }), "{err}");
    assert_eq!(state.view().versions.agent.version, 0);
    assert_eq!(state.revision(), revision);
    assert!(!state.blobs.contains(&good.id));

    let published = state
        .publish(
            &header(&lease, Player::Agent, 1, &good),
            Some(stage(&state, &bytes)),
            now,
        )
        .unwrap();
    assert_eq!(published.version.version, 1);
    assert_eq!(state.view().versions.agent.checkpoint, Some(good.clone()));
    assert!(state.revision() > revision);

    // A retried publish of the same version and bytes is a no-op; other bytes conflict.
    let h1 = header(&lease, Player::Agent, 1, &good);
    assert!(matches!(
        state.check_publish(&h1, now),
        Ok(PublishCheck::Done(_))
    ));
    let (_, other) = blob("other");
    let err = state
        .check_publish(&header(&lease, Player::Agent, 1, &other), now)
        .unwrap_err();
    assert!(matches!(err, Error::VersionConflict { .. }), "{err}");
    // Going back is refused.
    let (b3, v3) = blob("v3");
    state
        .publish(
            &header(&lease, Player::Agent, 3, &v3),
            Some(stage(&state, &b3)),
            now,
        )
        .unwrap();
    let err = state
        .check_publish(&header(&lease, Player::Agent, 2, &other), now)
        .unwrap_err();
    assert!(
        matches!(err, Error::StaleVersion { current: 3, .. }),
        "{err}"
    );
    assert_eq!(state.current(Player::Agent).version, 3);
    assert_eq!(state.current(Player::Attacker).version, 0);
}

#[test]
fn only_learners_publish_and_only_checkpoint_archives_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
    let now = Instant::now();
    let actor = state
        .register(Registration::Actor { name: "a".into() }, now)
        .unwrap();
    let (_, good) = blob("x");
    let err = state
        .check_publish(&header(&actor, Player::Agent, 1, &good), now)
        .unwrap_err();
    assert!(matches!(err, Error::WrongRole { .. }), "{err}");

    let lease = learner(&mut state, now);
    let junk = b"not a checkpoint archive".to_vec();
    let junk_ref = BlobRef {
        id: BlobId::from_digest(&sha2::Sha256::digest(&junk)),
        size: junk.len() as u64,
    };
    let err = state
        .publish(
            &header(&lease, Player::Attacker, 1, &junk_ref),
            Some(stage(&state, &junk)),
            now,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Core(arlas_core::Error::Archive(_))),
        "{err}"
    );
    assert!(state.population().is_empty());
    assert_eq!(state.current(Player::Attacker).version, 0);
    // No bytes and no such blob: the publisher must send the chunks.
    let err = state
        .publish(&header(&lease, Player::Agent, 1, &good), None, now)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Core(arlas_core::Error::Wire(arlas_proto::Error::Invalid {
                field: "chunk",
                ..
            }))
        ),
        "{err}"
    );
}

#[test]
fn population_and_versions_survive_a_restart_and_truncation_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let (members, agent, revision) = {
        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        let lease = learner(&mut state, now);
        for v in 1..=2 {
            let (bytes, b) = blob(&format!("attacker {v}"));
            state
                .publish(
                    &header(&lease, Player::Attacker, v, &b),
                    Some(stage(&state, &bytes)),
                    now,
                )
                .unwrap();
        }
        let (bytes, b) = blob("agent 5");
        state
            .publish(
                &header(&lease, Player::Agent, 5, &b),
                Some(stage(&state, &bytes)),
                now,
            )
            .unwrap();
        (
            state.population(),
            state.view().versions.agent,
            state.revision(),
        )
    };
    let state = CoordinatorState::open(tmp.path(), config()).unwrap();
    assert_eq!(state.population(), members);
    assert_eq!(members.len(), 2);
    assert_eq!(state.view().versions.agent, agent);
    assert_eq!(state.view().versions.attacker.version, 2);
    assert!(
        state.revision() > revision,
        "revisions keep increasing across restarts"
    );
    drop(state);

    let blob_path = tmp
        .path()
        .join("blobs")
        .join(agent.checkpoint.unwrap().id.as_str());
    let bytes = fs::read(&blob_path).unwrap();
    fs::write(&blob_path, &bytes[..bytes.len() / 2]).unwrap();
    let err = CoordinatorState::open(tmp.path(), config()).unwrap_err();
    assert!(matches!(err, Error::BlobTruncated { .. }), "{err}");
    assert!(
        err.to_string().contains(&blob_path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_member_committed_before_run_json_is_recovered_at_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let member = {
        let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
        let lease = learner(&mut state, now);
        let (bytes, b) = blob("attacker 1");
        state
            .publish(
                &header(&lease, Player::Attacker, 1, &b),
                Some(stage(&state, &bytes)),
                now,
            )
            .unwrap()
            .member
            .unwrap()
    };
    // As if the process died after the population commit, before run.json was written.
    let mut record = RunRecord::load(&tmp.path().join(RUN_FILE)).unwrap();
    record.attacker = PolicyVersion::initial(Player::Attacker);
    record.history.clear();
    record.members.clear();
    record.save(&tmp.path().join(RUN_FILE)).unwrap();

    let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
    assert_eq!(state.population(), std::slice::from_ref(&member));
    assert_eq!(
        state.current(Player::Attacker).checkpoint,
        Some(member.checkpoint.clone())
    );
    // The learner's retry of that publish is now a no-op, not a second member.
    let lease = learner(&mut state, now);
    let h = header(&lease, Player::Attacker, 1, &member.checkpoint);
    assert!(
        matches!(state.check_publish(&h, now), Ok(PublishCheck::Done(p)) if p.member == Some(member))
    );
}

#[test]
fn old_agent_blobs_are_deleted_but_members_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = CoordinatorState::open(
        tmp.path(),
        CoordinatorConfig {
            keep_versions: 2,
            ..config()
        },
    )
    .unwrap();
    let now = Instant::now();
    let lease = learner(&mut state, now);
    let mut refs = Vec::new();
    for v in 1..=3 {
        let (bytes, b) = blob(&format!("agent {v}"));
        state
            .publish(
                &header(&lease, Player::Agent, v, &b),
                Some(stage(&state, &bytes)),
                now,
            )
            .unwrap();
        let (bytes, a) = blob(&format!("attacker {v}"));
        state
            .publish(
                &header(&lease, Player::Attacker, v, &a),
                Some(stage(&state, &bytes)),
                now,
            )
            .unwrap();
        refs.push((b, a));
    }
    assert!(
        !state.blobs.contains(&refs[0].0.id),
        "agent v1 is beyond retention"
    );
    assert!(state.blobs.contains(&refs[1].0.id) && state.blobs.contains(&refs[2].0.id));
    for (_, attacker) in &refs {
        assert!(
            state.blobs.contains(&attacker.id),
            "population members are kept"
        );
    }
    assert!(matches!(
        state.blob(&refs[0].0.id),
        Err(Error::UnknownBlob(_))
    ));
    drop(state);
    CoordinatorState::open(tmp.path(), config()).unwrap();
}

#[test]
fn opponents_come_from_the_population_for_actors_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
    let now = Instant::now();
    let actor = state
        .register(Registration::Actor { name: "a".into() }, now)
        .unwrap();
    assert!(
        state
            .assign_opponents(&actor, 0, 4, now)
            .unwrap()
            .is_empty()
    );
    let lease = learner(&mut state, now);
    for v in 1..=3 {
        let (bytes, a) = blob(&format!("attacker {v}"));
        state
            .publish(
                &header(&lease, Player::Attacker, v, &a),
                Some(stage(&state, &bytes)),
                now,
            )
            .unwrap();
    }
    let picks = state.assign_opponents(&actor, 0, 50, now).unwrap();
    assert_eq!(picks.len(), 50);
    let members = state.population();
    assert!(picks.iter().all(|p| members.contains(p)));
    assert!(matches!(
        state.assign_opponents(&lease, 0, 1, now),
        Err(Error::WrongRole { .. })
    ));
    state
        .report_results(
            &actor,
            11,
            &[MatchResult {
                agent_version: 0,
                attacker_id: members[0].id.clone(),
                games: 4,
                attacker_wins: 3,
            }],
            now,
        )
        .unwrap();
    // An absurd count, or results from a learner, are refused whole and change nothing;
    // results naming no member or a version never published are left out of the batch.
    let result = |agent_version, attacker_id: &str, games| MatchResult {
        agent_version,
        attacker_id: attacker_id.to_string(),
        games,
        attacker_wins: 0,
    };
    let good = || result(0, &members[0].id, 1);
    let current = state.record.agent.version;
    for (bad, from) in [
        (result(0, &members[0].id, u64::MAX), &actor),
        (good(), &lease),
    ] {
        assert!(
            state
                .report_results(from, 12, &[good(), bad.clone()], now)
                .is_err(),
            "{bad:?}"
        );
    }
    for (id, unknown) in [
        (13, result(0, "attacker-9999", 1)),
        (14, result(current + 1, &members[0].id, 1)),
    ] {
        let left_out = state
            .report_results(&actor, id, &[good(), unknown], now)
            .unwrap();
        assert_eq!(left_out, 1);
    }
    // A report sent again (its answer was lost) is acknowledged and not counted twice; a
    // report with no id is always counted.
    assert_eq!(state.report_results(&actor, 14, &[good()], now).unwrap(), 0);
    state.report_results(&actor, 0, &[good()], now).unwrap();
    state.report_results(&actor, 0, &[good()], now).unwrap();
    drop(state);
    let state = CoordinatorState::open(tmp.path(), config()).unwrap();
    let cell = state.league.payoff().get(0, &members[0].id);
    assert_eq!(
        (cell.games, cell.attacker_wins),
        (8, 3),
        "two good results, the retry of report 14 left out, two without id"
    );
}

#[test]
fn expired_leases_change_the_view() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
    let t0 = Instant::now();
    let actor = state
        .register(Registration::Actor { name: "a".into() }, t0)
        .unwrap();
    learner(&mut state, t0);
    assert_eq!(state.view().connected_actors, 1);
    assert_eq!(state.view().learners.len(), 1);
    let revision = state.revision();
    state.heartbeat(&actor, t0 + state.lease_ttl() / 2).unwrap();
    state.expire(t0 + state.lease_ttl() + Duration::from_millis(1));
    assert_eq!(state.view().connected_actors, 1, "the renewed actor stays");
    assert!(
        state.view().learners.is_empty(),
        "the silent learner is dropped"
    );
    assert!(state.revision() > revision);
    state.expire(t0 + state.lease_ttl() * 2);
    assert!(matches!(
        state.heartbeat(&actor, t0 + state.lease_ttl() * 2),
        Err(Error::UnknownLease(_))
    ));
}

/// The commit point is `run.json` on disk: a publish whose save fails changes nothing a
/// client can see, and the same publish succeeds once the disk accepts it.
#[test]
fn a_publish_whose_run_file_cannot_be_saved_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut state = CoordinatorState::open(tmp.path(), config()).unwrap();
    let now = Instant::now();
    let lease = learner(&mut state, now);
    let (bytes, good) = blob("v1");
    let revision = state.revision();
    // A non-empty directory where run.json is renamed to: the save fails.
    let run = tmp.path().join(RUN_FILE);
    fs::remove_file(&run).unwrap();
    fs::create_dir_all(run.join("blocker")).unwrap();
    let h = header(&lease, Player::Agent, 1, &good);
    assert!(state.publish(&h, Some(stage(&state, &bytes)), now).is_err());
    assert_eq!(state.view().versions.agent.version, 0);
    assert_eq!(state.revision(), revision);
    fs::remove_dir_all(&run).unwrap();
    let published = state.publish(&h, None, now).unwrap();
    assert_eq!(published.version.version, 1);
    assert_eq!(state.view().versions.agent.checkpoint, Some(good));
    // What was saved is what a restart reads.
    drop(state);
    let reopened = CoordinatorState::open(tmp.path(), config()).unwrap();
    assert_eq!(reopened.view().versions.agent.version, 1);
}
