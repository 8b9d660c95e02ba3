//! The process-wide Prometheus recorder and the metric catalog of `docs/metrics.md`.
//!
//! The `metrics` facade has one global recorder per process; [`install`] builds it once
//! (with explicit histogram buckets, so histograms render as histograms, not summaries)
//! and returns the same handle to every later caller. Names live here, once, so roles and
//! dashboards cannot drift apart.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::{Error, Result};

pub const BUILD_INFO: &str = "arlas_build_info";
pub const POLICY_VERSION: &str = "arlas_policy_version";
pub const POPULATION_SIZE: &str = "arlas_population_size";
// Actors.
pub const EPISODES_TOTAL: &str = "arlas_episodes_total";
pub const TOKENS_SAMPLED_TOTAL: &str = "arlas_tokens_sampled_total";
pub const EPISODE_REWARD: &str = "arlas_episode_reward";
pub const TASK_SUCCESS_RATE: &str = "arlas_task_success_rate";
pub const ATTACK_SUCCESS_RATE: &str = "arlas_attack_success_rate";
pub const ACTOR_ROUNDS_TOTAL: &str = "arlas_actor_rounds_total";
pub const ACTOR_PENDING_TRAJECTORIES: &str = "arlas_actor_pending_trajectories";
pub const ACTOR_UNACKED_TRAJECTORIES: &str = "arlas_actor_unacked_trajectories";
pub const ACTOR_TRAJECTORIES_SENT_TOTAL: &str = "arlas_actor_trajectories_sent_total";
pub const ACTOR_TRAJECTORIES_ACKED_TOTAL: &str = "arlas_actor_trajectories_acked_total";
pub const ACTOR_TRAJECTORIES_DROPPED_TOTAL: &str = "arlas_actor_trajectories_dropped_total";
pub const CHECKPOINT_CACHE_TOTAL: &str = "arlas_checkpoint_cache_total";
pub const CONNECTED_ACTORS: &str = "arlas_connected_actors";
pub const CONNECTED_LEARNERS: &str = "arlas_connected_learners";
pub const CHECKPOINT_BYTES_TOTAL: &str = "arlas_checkpoint_bytes_total";
pub const CHECKPOINT_BROADCAST_SECONDS: &str = "arlas_checkpoint_broadcast_seconds";
pub const TRAJECTORY_STALENESS_VERSIONS: &str = "arlas_trajectory_staleness_versions";
pub const TRAJECTORIES_RECEIVED_TOTAL: &str = "arlas_trajectories_received_total";
pub const TRAJECTORIES_ACKNOWLEDGED_TOTAL: &str = "arlas_trajectories_acknowledged_total";
pub const TRAJECTORIES_DROPPED_TOTAL: &str = "arlas_trajectories_dropped_total";
pub const LEARNER_QUEUE_DEPTH: &str = "arlas_learner_queue_depth";
pub const LOSS: &str = "arlas_loss";
pub const KL: &str = "arlas_kl";
pub const ENTROPY: &str = "arlas_entropy";
pub const GRAD_NORM: &str = "arlas_grad_norm";
pub const CLIP_FRACTION: &str = "arlas_clip_fraction";
pub const LOGPROB_MISMATCH: &str = "arlas_logprob_mismatch";
pub const UPDATES_TOTAL: &str = "arlas_updates_total";
pub const UPDATES_SKIPPED_TOTAL: &str = "arlas_updates_skipped_total";
pub const LEARNER_LAST_UPDATE_TIMESTAMP_SECONDS: &str =
    "arlas_learner_last_update_timestamp_seconds";
pub const LEARNER_BATCH_SECONDS: &str = "arlas_learner_batch_seconds";

/// Buckets of latency histograms, in seconds.
const SECONDS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];
/// Buckets of the staleness histogram, in policy versions.
const VERSION_BUCKETS: [f64; 8] = [0.0, 1.0, 2.0, 3.0, 4.0, 8.0, 16.0, 32.0];

static HANDLE: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide recorder (once) and records `arlas_build_info{version,role}`.
pub fn install(role: &'static str) -> Result<PrometheusHandle> {
    let handle = HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(TRAJECTORY_STALENESS_VERSIONS.into()),
                        &VERSION_BUCKETS,
                    )
                })
                .map_err(|e| e.to_string())?;
            let handle = builder.install_recorder().map_err(|e| e.to_string())?;
            describe_all();
            Ok(handle)
        })
        .clone()
        .map_err(Error::Metrics)?;
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "role" => role).set(1.0);
    Ok(handle)
}

fn describe_all() {
    describe_gauge!(
        BUILD_INFO,
        "1, labelled with the build's version and the process role"
    );
    describe_actor();
    describe_gauge!(
        POLICY_VERSION,
        "policy version currently served, trained or played, per player"
    );
    describe_gauge!(POPULATION_SIZE, "attacker checkpoints in the population");
    describe_gauge!(CONNECTED_ACTORS, "actors with a live lease");
    describe_gauge!(CONNECTED_LEARNERS, "learners with a live lease");
    describe_counter!(
        CHECKPOINT_BYTES_TOTAL,
        Unit::Bytes,
        "checkpoint bytes sent or received, by direction"
    );
    describe_histogram!(
        CHECKPOINT_BROADCAST_SECONDS,
        Unit::Seconds,
        "publish-to-fetched latency of a checkpoint, per actor"
    );
    describe_histogram!(
        TRAJECTORY_STALENESS_VERSIONS,
        "learner version minus trajectory version"
    );
    describe_counter!(
        TRAJECTORIES_RECEIVED_TOTAL,
        "trajectories received by a learner"
    );
    describe_counter!(
        TRAJECTORIES_ACKNOWLEDGED_TOTAL,
        "trajectories persisted and acknowledged"
    );
    describe_counter!(
        TRAJECTORIES_DROPPED_TOTAL,
        "trajectories dropped, by reason (stale, invalid, overflow)"
    );
    describe_gauge!(LEARNER_QUEUE_DEPTH, "trajectories waiting to be trained");
    describe_gauge!(LOSS, "last update's loss, per player");
    describe_gauge!(KL, "last update's KL to the reference, per player");
    describe_gauge!(ENTROPY, "last update's mean token entropy, per player");
    describe_gauge!(GRAD_NORM, "last update's gradient norm, per player");
    describe_gauge!(
        CLIP_FRACTION,
        "last update's clipped-token fraction, per player"
    );
    describe_gauge!(
        LOGPROB_MISMATCH,
        "mean sampler-vs-learner log-prob gap of the last update, per player"
    );
    describe_counter!(UPDATES_TOTAL, "optimizer steps taken, per player");
    describe_counter!(
        UPDATES_SKIPPED_TOTAL,
        "optimizer steps skipped for a non-finite loss, per player"
    );
    describe_gauge!(
        LEARNER_LAST_UPDATE_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "unix time of the last update, per player"
    );
    describe_histogram!(
        LEARNER_BATCH_SECONDS,
        Unit::Seconds,
        "time the learner spent on one batch (training and saving its checkpoint), per player; rate of _sum is the busy fraction"
    );
}

fn describe_actor() {
    describe_counter!(EPISODES_TOTAL, "episodes finished, by role");
    describe_counter!(TOKENS_SAMPLED_TOTAL, "tokens sampled by actors, per player");
    describe_gauge!(
        EPISODE_REWARD,
        "rolling mean reward of recent episodes, per player"
    );
    describe_gauge!(
        TASK_SUCCESS_RATE,
        "rolling task success rate of recent episodes"
    );
    describe_gauge!(
        ATTACK_SUCCESS_RATE,
        "rolling attack success rate of recent episodes"
    );
    describe_counter!(ACTOR_ROUNDS_TOTAL, "rounds (both phases) an actor finished");
    describe_gauge!(
        ACTOR_PENDING_TRAJECTORIES,
        "trajectories waiting in the actor's buffer to be sent, per player"
    );
    describe_gauge!(
        ACTOR_UNACKED_TRAJECTORIES,
        "trajectories sent and not yet acknowledged, per player"
    );
    describe_counter!(
        ACTOR_TRAJECTORIES_SENT_TOTAL,
        "trajectories sent to learners (resends included), per player"
    );
    describe_counter!(
        ACTOR_TRAJECTORIES_ACKED_TOTAL,
        "acknowledgements received, per player and status (accepted, duplicate, stale, invalid, overflow)"
    );
    describe_counter!(
        ACTOR_TRAJECTORIES_DROPPED_TOTAL,
        "trajectories an actor dropped unsent because its buffer was full, per player"
    );
    describe_counter!(
        CHECKPOINT_CACHE_TOTAL,
        "checkpoint lookups of an actor, by result (hit, blob, fetched)"
    );
}
