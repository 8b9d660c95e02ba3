//! Failures of a running cluster, with real `arlas` processes on loopback
//! (`arlas::cluster::LocalCluster`: a coordinator, one learner per player, actors; tiny
//! random models). An actor killed with SIGKILL mid-stream costs the run nothing that a
//! learner acknowledged and the survivors go on; an actor added mid-run produces accepted
//! trajectories within seconds; a coordinator killed with SIGKILL and restarted on the same
//! data directory and port serves the same versions and population, every actor and
//! learner comes back by itself and intake goes on. Every test ends with a clean SIGTERM
//! shutdown (every role exits 0).
//!
//! Throughout, each learner's `GetLearnerStatus` must say
//! `accepted_total == trained_total + queue_depth`, `accepted_total` and the versions may
//! never go down, and a learner's `accepted_total` must cover every ACCEPTED ack its
//! actors counted (read before it). Random tiny policies make flat GRPO groups, so versions
//! need not increase; the tests assert on trajectories, not on learning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use arlas::cluster::process::tail;
use arlas::cluster::{ClusterConfig, LocalCluster, RoleProcess};
use arlas::roles::actor::ActorArgs;
use arlas::roles::coordinator::CoordinatorArgs;
use arlas::roles::learner::LearnerArgs;
use arlas_client::CoordinatorClient;
use arlas_core::{PerPlayer, Player, RunView};
use arlas_proto::v1;
use arlas_proto::v1::learner_client::LearnerClient;
use arlas_runtime::auth::{AttachToken, Token};
use tokio::runtime::Runtime;

/// How often the tests look at the cluster.
const POLL: Duration = Duration::from_millis(250);
/// Lease time-to-live of the coordinator: short, so that a dead actor's lease expires
/// within the test.
const LEASE_TTL_SECS: u64 = 8;

fn config(dir: &Path, actors: usize, seed: u64) -> ClusterConfig {
    let models = dir.join("models");
    let learner = LearnerArgs {
        model: Some("tiny".into()),
        models_dir: Some(models.clone()),
        seed: Some(seed),
        batch_episodes: Some(4),
        shutdown_grace_secs: Some(5.0),
        ..LearnerArgs::default()
    };
    ClusterConfig {
        exe: env!("CARGO_BIN_EXE_arlas").into(),
        dir: dir.join("cluster"),
        actors,
        coordinator: CoordinatorArgs {
            lease_ttl_secs: Some(LEASE_TTL_SECS as f64),
            seed: Some(seed),
            shutdown_grace_secs: Some(5.0),
            ..CoordinatorArgs::default()
        },
        learners: PerPlayer::new(learner.clone(), learner),
        actor: ActorArgs {
            models_dir: Some(models),
            seed: Some(seed),
            group_size: Some(2),
            tasks: Some(1),
            max_turns: Some(2),
            agent_max_tokens: Some(16),
            attacker_max_tokens: Some(16),
            ..ActorArgs::default()
        },
        env: vec![
            ("CANDLE_NUM_THREADS".to_string(), "1".to_string()),
            ("ARLAS_LOG".to_string(), "info".to_string()),
        ],
    }
}

/// The players, in the order of the per-player arrays below.
const PLAYERS: [Player; 2] = [Player::Agent, Player::Attacker];

fn label(player: Player) -> &'static str {
    match player {
        Player::Agent => "agent",
        Player::Attacker => "attacker",
    }
}

/// The last lines of every role's log, for panic messages.
fn logs(cluster: &mut LocalCluster) -> String {
    let mut out = String::new();
    for role in cluster.roles_mut() {
        out.push_str(&format!(
            "\n--- {} ({}) ---\n{}\n",
            role.name(),
            role.log().display(),
            tail(role.log(), 12)
        ));
    }
    out
}

/// Fails (with the logs) if a role that should be running has exited.
fn assert_alive(cluster: &mut LocalCluster) {
    let mut dead = Vec::new();
    for role in cluster.roles_mut() {
        if let Some(status) = role.try_exit().unwrap() {
            dead.push(format!("{} ({status})", role.name()));
        }
    }
    assert!(
        dead.is_empty(),
        "roles exited: {}{}",
        dead.join(", "),
        logs(cluster)
    );
}

/// One look at both learners.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Intake {
    /// Per player (see [`PLAYERS`]).
    accepted: [u64; 2],
    trained: [u64; 2],
    version: [u64; 2],
}

/// Watches the learners and the coordinator and checks the invariants at every look.
struct Observer {
    rt: Runtime,
    token: Token,
    learners: [SocketAddr; 2],
    last: Intake,
    /// The coordinator's versions and revision seen last.
    run_versions: [u64; 2],
    revision: u64,
    looks: u64,
}

impl Observer {
    fn new(cluster: &LocalCluster) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let token = Token::from_file(cluster.token_file()).unwrap();
        let grpc = |role: &RoleProcess| role.announced().grpc.unwrap();
        Self {
            rt,
            token,
            learners: [
                grpc(&cluster.agent_learner),
                grpc(&cluster.attacker_learner),
            ],
            last: Intake::default(),
            run_versions: [0, 0],
            revision: 0,
            looks: 0,
        }
    }

    /// Both learners' status; asserts `accepted == trained + queued` and that nothing went
    /// down since the last look.
    fn intake(&mut self) -> Intake {
        let mut now = Intake::default();
        for (i, addr) in self.learners.iter().enumerate() {
            let status = self.rt.block_on(async {
                let channel = arlas_runtime::client::connect(&format!("http://{addr}"))
                    .await
                    .unwrap_or_else(|e| panic!("learner {} at {addr}: {e}", label(PLAYERS[i])));
                LearnerClient::with_interceptor(channel, AttachToken::new(Some(&self.token)))
                    .get_learner_status(v1::GetLearnerStatusRequest {})
                    .await
                    .unwrap()
                    .into_inner()
            });
            let player = label(PLAYERS[i]);
            assert_eq!(
                status.accepted_total,
                status.trained_total + status.queue_depth,
                "{player} learner: accepted != trained + queued: {status:?}"
            );
            now.accepted[i] = status.accepted_total;
            now.trained[i] = status.trained_total;
            now.version[i] = status.versions.first().map_or(0, |v| v.version);
            assert!(
                now.accepted[i] >= self.last.accepted[i],
                "{player} learner: accepted_total went down from {} to {}",
                self.last.accepted[i],
                now.accepted[i]
            );
            assert!(
                now.trained[i] >= self.last.trained[i],
                "{player} learner: trained_total went down from {} to {}",
                self.last.trained[i],
                now.trained[i]
            );
            assert!(
                now.version[i] >= self.last.version[i],
                "{player} learner: version went down from {} to {}",
                self.last.version[i],
                now.version[i]
            );
        }
        self.last = now;
        self.looks += 1;
        now
    }

    /// The coordinator's run state, or None while it does not answer; asserts that
    /// versions and the revision never go down.
    fn run_state(&mut self, url: &str) -> Option<RunView> {
        let view = self.rt.block_on(async {
            let connect = CoordinatorClient::connect(url, Some(&self.token));
            let mut client = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(Duration::from_secs(5), client.run_state())
                .await
                .ok()?
                .ok()
        })?;
        for (i, player) in PLAYERS.into_iter().enumerate() {
            let v = view.version(player).version;
            assert!(
                v >= self.run_versions[i],
                "coordinator: {} version went down from {} to {v}",
                label(player),
                self.run_versions[i]
            );
            self.run_versions[i] = v;
        }
        assert!(
            view.revision >= self.revision,
            "coordinator: revision went down from {} to {}",
            self.revision,
            view.revision
        );
        self.revision = view.revision;
        Some(view)
    }

    fn population(&mut self, url: &str) -> Vec<(String, String)> {
        self.rt.block_on(async {
            let mut client = CoordinatorClient::connect(url, Some(&self.token))
                .await
                .unwrap();
            client
                .population()
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.id, m.checkpoint.id.to_string()))
                .collect()
        })
    }

    /// An actor's ACCEPTED acks per player, from its `/metrics` (None while it does not
    /// answer).
    fn actor_accepted(&self, actor: &RoleProcess) -> Option<[u64; 2]> {
        let addr = actor.announced().metrics?;
        let (code, text) = self
            .rt
            .block_on(arlas_runtime::http::get(addr, "/metrics"))
            .ok()?;
        if code != 200 {
            return None;
        }
        let mut out = [0u64; 2];
        for (i, player) in PLAYERS.into_iter().enumerate() {
            let want = format!("player=\"{}\"", label(player));
            out[i] = text
                .lines()
                .filter(|l| {
                    l.starts_with("arlas_actor_trajectories_acked_total{")
                        && l.contains(&want)
                        && l.contains("status=\"accepted\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum();
        }
        Some(out)
    }
}

/// Polls `done` until it returns Some, failing after `limit` with `what` and the logs.
fn wait_for<T>(
    cluster: &mut LocalCluster,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&mut LocalCluster) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = done(cluster) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "after {limit:?}: {what}{}",
            logs(cluster)
        );
        std::thread::sleep(POLL);
    }
}

fn start(dir: &Path, actors: usize, seed: u64) -> LocalCluster {
    let started = Instant::now();
    let cluster = LocalCluster::start(config(dir, actors, seed)).unwrap_or_else(|e| {
        panic!(
            "the cluster did not start: {e:#}\nlogs in {}",
            dir.join("cluster/logs").display()
        )
    });
    eprintln!(
        "cluster with {actors} actors started in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    cluster
}

fn shutdown(cluster: LocalCluster, observer: &Observer) {
    let started = Instant::now();
    let dir = cluster.dir().to_path_buf();
    if let Err(e) = cluster.shutdown() {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
            let path = entry.unwrap().path();
            text.push_str(&format!(
                "\n--- {} ---\n{}\n",
                path.display(),
                tail(&path, 12)
            ));
        }
        panic!("unclean shutdown: {e:#}{text}");
    }
    eprintln!(
        "clean shutdown in {:.1} s; {} looks at the learners, last {:?}",
        started.elapsed().as_secs_f64(),
        observer.looks,
        observer.last
    );
}

#[test]
fn an_actor_killed_mid_stream_loses_nothing_acknowledged_and_a_new_actor_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = start(tmp.path(), 2, 11);
    let mut obs = Observer::new(&cluster);
    let test_started = Instant::now();

    // Both actors have had trajectories of both players accepted.
    wait_for(
        &mut cluster,
        Duration::from_secs(60),
        "both actors should have trajectories of both players accepted",
        |cluster| {
            assert_alive(cluster);
            obs.intake();
            let counts: Vec<_> = cluster
                .actors
                .iter()
                .map(|a| obs.actor_accepted(a))
                .collect();
            counts
                .iter()
                .all(|c| c.is_some_and(|c| c.iter().all(|&n| n > 0)))
                .then_some(())
        },
    );

    // SIGKILL one actor mid-stream: it keeps playing and sending until the signal.
    let acked_by_actors = {
        let a = obs.actor_accepted(&cluster.actors[0]).unwrap();
        let b = obs.actor_accepted(&cluster.actors[1]).unwrap();
        [a[0] + b[0], a[1] + b[1]]
    };
    let mut killed = cluster.actors.remove(1);
    killed.kill().unwrap();
    let at_kill = obs.intake();
    for i in 0..2 {
        assert!(
            at_kill.accepted[i] >= acked_by_actors[i],
            "the {} learner holds {} trajectories but the actors had {} ACCEPTED acks",
            label(PLAYERS[i]),
            at_kill.accepted[i],
            acked_by_actors[i]
        );
    }
    eprintln!(
        "killed {} (pid gone) at {:.1} s: actors had {acked_by_actors:?} accepted acks, learners {at_kill:?}",
        killed.name(),
        test_started.elapsed().as_secs_f64()
    );
    drop(killed);

    // The run goes on with the survivor.
    let survivor_before = obs.actor_accepted(&cluster.actors[0]).unwrap();
    let after_kill = wait_for(
        &mut cluster,
        Duration::from_secs(45),
        "the learners should keep accepting (from the surviving actor) after the kill",
        |cluster| {
            assert_alive(cluster);
            let now = obs.intake();
            let survivor = obs.actor_accepted(&cluster.actors[0])?;
            (0..2)
                .all(|i| now.accepted[i] > at_kill.accepted[i] && survivor[i] > survivor_before[i])
                .then_some(now)
        },
    );
    eprintln!(
        "after the kill the learners went on to {after_kill:?} ({:.1} s)",
        test_started.elapsed().as_secs_f64()
    );

    // A new actor joins mid-run and its trajectories are accepted within seconds.
    let joined = Instant::now();
    cluster.add_actor().unwrap();
    let fresh = cluster.actors.len() - 1;
    let first_accepted = wait_for(
        &mut cluster,
        Duration::from_secs(60),
        "the actor added mid-run should have a trajectory accepted",
        |cluster| {
            assert_alive(cluster);
            obs.intake();
            obs.actor_accepted(&cluster.actors[fresh])
                .filter(|c| c.iter().any(|&n| n > 0))
                .map(|_| joined.elapsed())
        },
    );
    // ... and both of its players' trajectories, and the dead actor's lease expires.
    let both = wait_for(
        &mut cluster,
        Duration::from_secs(45),
        "the added actor should have trajectories of both players accepted, and the killed actor's lease expire",
        |cluster| {
            assert_alive(cluster);
            obs.intake();
            let counts = obs.actor_accepted(&cluster.actors[fresh])?;
            let view = obs.run_state(cluster.url())?;
            (counts.iter().all(|&n| n > 0) && view.connected_actors == 2).then(|| joined.elapsed())
        },
    );
    eprintln!(
        "added actor: first trajectory accepted {:.1} s after it was started, both players' by {:.1} s",
        first_accepted.as_secs_f64(),
        both.as_secs_f64()
    );

    // Every ACCEPTED ack the live actors counted is still held by the learners.
    let live: Vec<[u64; 2]> = cluster
        .actors
        .iter()
        .map(|a| obs.actor_accepted(a).unwrap())
        .collect();
    let end = obs.intake();
    for i in 0..2 {
        let acked: u64 = live.iter().map(|c| c[i]).sum();
        assert!(
            end.accepted[i] >= acked,
            "the {} learner holds {} but the live actors had {acked} ACCEPTED acks",
            label(PLAYERS[i]),
            end.accepted[i]
        );
    }
    eprintln!(
        "end of test 1 at {:.1} s: learners {end:?}",
        test_started.elapsed().as_secs_f64()
    );
    shutdown(cluster, &obs);
}

#[test]
fn a_coordinator_killed_mid_run_comes_back_with_its_state_and_everyone_reconnects() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = start(tmp.path(), 2, 23);
    let mut obs = Observer::new(&cluster);
    let url = cluster.url().to_string();
    let test_started = Instant::now();

    // Running: both actors registered, both learners listed, trajectories flowing.
    wait_for(
        &mut cluster,
        Duration::from_secs(60),
        "both actors connected, both learners listed and both learners accepting",
        |cluster| {
            assert_alive(cluster);
            let intake = obs.intake();
            let view = obs.run_state(&url)?;
            (view.connected_actors == 2
                && learners_listed(&view)
                && intake.accepted.iter().all(|&n| n > 0))
            .then_some(())
        },
    );
    let before = obs.run_state(&url).unwrap();
    let members_before = obs.population(&url);
    cluster.coordinator.kill().unwrap();
    let at_kill = obs.intake();
    eprintln!(
        "killed the coordinator at {:.1} s: agent v{} attacker v{} population {} revision {:#x}; learners {at_kill:?}",
        test_started.elapsed().as_secs_f64(),
        before.versions.agent.version,
        before.versions.attacker.version,
        before.population_size,
        before.revision
    );
    assert!(
        obs.run_state(&url).is_none(),
        "a killed coordinator answered"
    );

    // Down for longer than a heartbeat interval (TTL / 3), so that every client sees the
    // coordinator gone and retries with backoff; the streams from the actors to the
    // learners do not need it.
    std::thread::sleep(Duration::from_secs(LEASE_TTL_SECS / 2));
    assert_alive_except_coordinator(&mut cluster);
    let while_down = obs.intake();
    eprintln!(
        "while the coordinator was down the learners accepted {:?} more",
        [
            while_down.accepted[0] - at_kill.accepted[0],
            while_down.accepted[1] - at_kill.accepted[1]
        ]
    );

    let restarted = Instant::now();
    cluster
        .coordinator
        .restart(arlas::cluster::local::START_TIMEOUT)
        .unwrap();
    cluster
        .coordinator
        .wait_ready(arlas::cluster::local::START_TIMEOUT)
        .unwrap_or_else(|e| panic!("the restarted coordinator is not ready: {e:#}"));
    assert_eq!(
        format!("http://{}", cluster.coordinator.announced().grpc.unwrap()),
        url,
        "the coordinator came back on another port"
    );
    let ready = restarted.elapsed();

    // The same versions and population (a publish may have landed just before the kill:
    // never older, and an equal version has the same checkpoint).
    let after = obs.run_state(&url).unwrap_or_else(|| {
        panic!(
            "the restarted coordinator does not answer{}",
            logs(&mut cluster)
        )
    });
    for player in PLAYERS {
        let (b, a) = (before.version(player), after.version(player));
        assert!(
            a.version >= b.version,
            "{} version {} after the restart, {} before",
            label(player),
            a.version,
            b.version
        );
        if a.version == b.version {
            assert_eq!(a, b, "{} checkpoint changed by the restart", label(player));
        }
    }
    assert!(
        after.revision >> 32 > before.revision >> 32,
        "the revision's start count did not increase: {:#x} -> {:#x}",
        before.revision,
        after.revision
    );
    assert!(after.population_size >= before.population_size);
    let members_after = obs.population(&url);
    for member in &members_before {
        assert!(
            members_after.contains(member),
            "population member {member:?} lost by the restart: {members_after:?}"
        );
    }

    // Everyone reconnects by themselves.
    let reconnected = wait_for(
        &mut cluster,
        Duration::from_secs(45),
        "both actors should register again and both learners be listed after the restart",
        |cluster| {
            assert_alive(cluster);
            obs.intake();
            let view = obs.run_state(&url)?;
            (view.connected_actors == 2 && learners_listed(&view)).then(|| restarted.elapsed())
        },
    );
    let at_reconnect = obs.intake();
    eprintln!(
        "restarted coordinator ready {:.1} s after the restart; actors and learners back by {:.1} s; learners {at_reconnect:?}",
        ready.as_secs_f64(),
        reconnected.as_secs_f64()
    );

    // Intake goes on after the restart (the agent phase needs the coordinator's opponents).
    let went_on = wait_for(
        &mut cluster,
        Duration::from_secs(45),
        "the learners should keep accepting after the coordinator restart",
        |cluster| {
            assert_alive(cluster);
            let now = obs.intake();
            (0..2)
                .all(|i| now.accepted[i] > at_reconnect.accepted[i])
                .then_some(now)
        },
    );
    let went_on_after = restarted.elapsed();
    let last = obs.run_state(&url).unwrap();
    assert!(learners_listed(&last));
    eprintln!(
        "{:.1} s after the restart the learners went on to {went_on:?}; agent v{} attacker v{} population {} ({:.1} s)",
        went_on_after.as_secs_f64(),
        last.versions.agent.version,
        last.versions.attacker.version,
        last.population_size,
        test_started.elapsed().as_secs_f64()
    );
    shutdown(cluster, &obs);
}

/// Both players have a live learner in the run state.
fn learners_listed(view: &RunView) -> bool {
    PLAYERS
        .into_iter()
        .all(|p| view.learners.iter().any(|l| l.players.contains(&p)))
}

/// Like [`assert_alive`], while the coordinator is known to be dead.
fn assert_alive_except_coordinator(cluster: &mut LocalCluster) {
    let mut dead = Vec::new();
    for role in cluster
        .actors
        .iter_mut()
        .chain([&mut cluster.agent_learner, &mut cluster.attacker_learner])
    {
        if let Some(status) = role.try_exit().unwrap() {
            dead.push(format!("{} ({status})", role.name()));
        }
    }
    assert!(
        dead.is_empty(),
        "roles exited while the coordinator was down: {}{}",
        dead.join(", "),
        logs(cluster)
    );
}
