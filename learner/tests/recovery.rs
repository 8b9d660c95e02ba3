//! Start-up and recovery of a learner data directory, without sockets: a torn journal tail
//! is cut off, unconsumed records come back into the queue, and the de-duplication keys
//! survive a restart — both the journal's and those of trajectories already trained into
//! the checkpoint `state.json` names.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::io::Write;
use std::sync::Arc;

use arlas_game::{CorpusOptions, Split};
use arlas_learner::Player;
use arlas_learner::service::journal::encode_record;
use arlas_learner::service::open::open;
use arlas_learner::service::state::LearnerState;
use arlas_learner::service::synthetic::{Shape, trajectory};
use arlas_learner::service::{ServiceConfig, Verdict};
use arlas_policy::{LoadOptions, ModelSpec, TinyPreset};
use arlas_proto::v1;
use rand::SeedableRng;

fn config(dir: &std::path::Path) -> ServiceConfig {
    let mut c = ServiceConfig::new(
        Player::Attacker,
        dir.join("learner"),
        "http://127.0.0.1:1".into(),
        ModelSpec::Tiny(TinyPreset::Tiny2M),
    );
    c.load = LoadOptions {
        models_dir: dir.join("models"),
        tiny_corpus: Some(Arc::new(|| {
            arlas_game::corpus(&CorpusOptions {
                episodes: 60,
                seed: 1,
                split: Split::Train,
            })
            .map_err(|e| e.to_string())
        })),
        ..LoadOptions::default()
    };
    c.batch_episodes = 2;
    c.queue_capacity = 8;
    c
}

fn request(seq: u64) -> v1::SubmitTrajectoryRequest {
    let shape = Shape {
        vocab: 500,
        ..Shape::default()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seq);
    v1::SubmitTrajectoryRequest {
        actor_lease_id: "actor".into(),
        sequence: seq,
        trajectory: Some((&trajectory(&mut rng, &shape, seq, 1, 1)).into()),
    }
}

/// Accepts `seqs` the way the intake owner does: decide, append + fsync, commit.
fn accept(opened: &mut arlas_learner::service::open::Opened, seqs: &[u64]) {
    let (stream, _) = opened.intake.open_stream();
    let mut records = Vec::new();
    for &seq in seqs {
        let r = request(seq);
        let t = arlas_core::Trajectory::try_from(r.trajectory.clone().unwrap()).unwrap();
        assert_eq!(
            opened.intake.submit(stream, "actor", seq, t),
            Verdict::Accepted
        );
        records.push(encode_record(&r));
        opened.intake.regrant(stream);
    }
    let first = opened.journal.append(&records).unwrap();
    opened.intake.commit_pending(first);
}

#[test]
fn a_torn_tail_is_cut_and_keys_and_queue_survive_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());

    // A new directory: version 1, nothing queued.
    let mut opened = open(&config).unwrap();
    assert_eq!(opened.learner.version(), 1);
    assert_eq!(opened.replayed, 0);
    assert_eq!(opened.export.version, 1);
    accept(&mut opened, &[1, 2, 3]);
    // Trained into a checkpoint: the batch of 2 (1 and 2) is consumed in state.json.
    let batch = opened.intake.take_batch().unwrap();
    assert_eq!(batch.indices, vec![0, 1]);
    opened
        .data
        .write_state(&LearnerState {
            version: 1,
            consumed: batch.consumed_after.clone(),
            dedupe: batch.dedupe.clone(),
            trained_total: batch.trained_total_after,
            ..LearnerState::initial(Player::Attacker)
        })
        .unwrap();
    drop(opened);

    // A write torn by kill -9: half a record at the end of the journal.
    let segment = std::fs::read_dir(tmp.path().join("learner/journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    let torn = encode_record(&request(4));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&torn[..torn.len() / 2])
        .unwrap();

    let mut opened = open(&config).unwrap();
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        clean_len,
        "the torn tail is cut off"
    );
    assert_eq!(opened.replayed, 1, "only the unconsumed record comes back");
    let status = opened.intake.status();
    assert_eq!(
        (
            status.queue_depth,
            status.trained_total,
            status.accepted_total
        ),
        (1, 2, 3)
    );
    let (stream, _) = opened.intake.open_stream();
    for seq in [1, 2, 3] {
        let t = arlas_core::Trajectory::try_from(request(seq).trajectory.unwrap()).unwrap();
        assert_eq!(
            opened.intake.submit(stream, "actor", seq, t),
            Verdict::Duplicate,
            "sequence {seq} is known after the restart"
        );
    }
    // The torn one was never acknowledged: it is accepted when sent again.
    accept(&mut opened, &[4]);
    drop(opened);
    let opened = open(&config).unwrap();
    assert_eq!(opened.replayed, 2);
    assert_eq!(opened.journal.next_index(), 4);

    // Another player's directory is refused.
    let mut other = config.clone();
    other.player = Player::Agent;
    let err = open(&other).err().unwrap();
    assert!(err.to_string().contains("trains the attacker"), "{err}");
}
