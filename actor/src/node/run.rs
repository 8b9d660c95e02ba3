//! The actor loop: wait for both players' first versions, load what the run state names
//! (through the checkpoint cache), plan a round, play it off the async runtime, hand the
//! trajectories to the players' links, report the agent phase's results, and start again
//! — swapping in new versions between rounds, without a restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use arlas_client::CoordinatorClient;
use arlas_client::learner::{Link, LinkConfig, LinkStatus, link};

use arlas_core::{BlobRef, LeaseId, Member, Player, RunView};
use arlas_game::Environment;
use arlas_policy::{BasePool, Device, LoadOptions, ModelSpec, Policy};
use arlas_proto::v1;
use arlas_runtime::auth::Token;
use arlas_runtime::http::{MetricsEndpoint, serve as serve_metrics};
use arlas_runtime::metrics as names;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;

use arlas_runtime::blocking;

use super::cache::{CacheSource, CheckpointCache};
use super::pending::PendingResults;
use super::policies::{Loaded, Policies};
use super::session::{Announced, ViewFeed, follow_run, keep_lease};
use super::stats::{Rolling, record_episodes};
use crate::error::{Error, Result};
use crate::rollout::Played;
use crate::rollout::RolloutConfig;
use crate::round::{Phase, RoundOutput, RoundPlan, RoundPlanner, RoundShape, play_phase_counted};

/// Everything an actor node needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The coordinator's gRPC URL, e.g. `http://10.0.0.2:50051`.
    pub coordinator: String,
    /// The shared token, sent to the coordinator and the learners.
    pub token: Option<Token>,
    /// The name the actor registers with (logs, metrics).
    pub name: String,
    /// The checkpoint cache directory.
    pub cache_dir: PathBuf,
    /// Checkpoints kept in the cache besides those loaded (see `CheckpointCache::prune`).
    pub cache_keep: usize,
    /// Where LoRA checkpoints find their base models.
    pub models_dir: PathBuf,
    pub device: Device,
    pub shape: RoundShape,
    /// How episodes are played (its `seed` is replaced per phase by the planner's).
    pub rollout: RolloutConfig,
    /// The user's seed; mixed with a random number drawn at start.
    pub seed: u64,
    /// Lock-step: after each round, wait for both players' versions to change.
    pub sync: bool,
    /// The longest a lock-step wait lasts: a learner that never publishes again (stopped,
    /// frozen, nothing to train on) must not stop the actor. After it, the next round plays
    /// the current versions.
    pub sync_timeout: Duration,
    /// Unsent trajectories kept per player before the oldest is dropped.
    pub max_pending: usize,
    /// Stop after this many episodes were played, sent and acknowledged.
    pub episodes: Option<u64>,
}

/// What a node did, when it stops.
#[derive(Debug, Clone, Default)]
pub struct NodeReport {
    pub rounds: u64,
    pub episodes: u64,
    /// Final link status per player (`agent`, `attacker`).
    pub links: BTreeMap<&'static str, LinkStatus>,
    /// Checkpoint lookups by result (`hit`, `blob`, `fetched`).
    pub cache: BTreeMap<&'static str, u64>,
    /// Blobs downloaded from the coordinator, in order.
    pub fetched: Vec<String>,
    /// (agent version, attacker version) of each round played.
    pub versions: Vec<(u64, u64)>,
    /// Frozen bases held for adapter checkpoints (one per model, however many versions
    /// and population members were loaded over it).
    pub bases: usize,
}

/// Runs the actor until `shutdown` completes (or `episodes` are done), then deregisters.
/// Episodes are played in `env`. `metrics` serves `/metrics` and `/healthz` (503 until the
/// first round starts).
pub async fn run(
    config: NodeConfig,
    env: Box<dyn Environment>,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<NodeReport> {
    let handle = arlas_runtime::metrics::install("actor")?;
    let (ready_tx, ready) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let metrics_task = metrics.map(|listener| {
        let mut stop = stop.clone();
        tokio::spawn(serve_metrics(
            listener,
            MetricsEndpoint { handle, ready },
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    });

    let cache_dir = config.cache_dir.clone();
    let cache = blocking("opening the checkpoint cache", move || {
        CheckpointCache::open(cache_dir)
    })
    .await?;
    let channel = arlas_runtime::client::connect_lazy(&config.coordinator)?;
    let client = CoordinatorClient::new(channel, config.token.as_ref());
    let (states, views, learners) = ViewFeed::new();
    let (lease_tx, lease) = watch::channel(None::<LeaseId>);
    let lease_task = tokio::spawn(keep_lease(
        client.clone(),
        config.name.clone(),
        lease_tx,
        states.clone(),
    ));
    let watch_task = tokio::spawn(follow_run(client.clone(), states));
    let links: Vec<Link> = Player::ALL
        .into_iter()
        .map(|player| {
            link::spawn(
                LinkConfig {
                    player,
                    max_pending: config.max_pending,
                    token: config.token.clone(),
                },
                learners.clone(),
                lease.clone(),
            )
        })
        .collect();

    let mut node = Node {
        planner: RoundPlanner::for_actor(config.shape, config.seed, rand::rng().random()),
        env: Some(env),
        bases: BasePool::new(),
        config,
        client: client.clone(),
        cache,
        policies: Some(Policies::default()),
        rounds: 0,
        views,
        lease: lease.clone(),
        links,
        rolling: Rolling::default(),
        report: NodeReport::default(),
        unreported: PendingResults::default(),
        ready: ready_tx,
    };
    let outcome = tokio::select! {
        r = node.run_rounds() => r,
        () = shutdown => {
            tracing::info!("shutdown requested; abandoning the current step");
            Ok(())
        }
    };
    let _ = node.ready.send(false);

    let held = lease.borrow().clone();
    if let Some(id) = held {
        let mut client = client;
        match tokio::time::timeout(Duration::from_secs(5), client.deregister(&id)).await {
            Ok(Ok(())) => tracing::info!(lease = %id, "deregistered"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deregister failed (the lease expires by itself)")
            }
            Err(_) => tracing::warn!("deregister timed out (the lease expires by itself)"),
        }
    }
    lease_task.abort();
    watch_task.abort();
    for l in &node.links {
        node.report
            .links
            .insert(l.player.name(), l.status.borrow().clone());
        l.abort();
    }
    node.report.bases = node.bases.len();
    let _ = stop_tx.send(true);
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    outcome.map(|()| node.report)
}

struct Node {
    config: NodeConfig,
    client: CoordinatorClient,
    cache: CheckpointCache,
    /// `None` only while a round is being played on the blocking pool.
    policies: Option<Policies>,
    views: watch::Receiver<Option<Announced>>,
    lease: watch::Receiver<Option<LeaseId>>,
    links: Vec<Link>,
    planner: RoundPlanner,
    /// `None` only while a round is being planned and played on the blocking pool.
    env: Option<Box<dyn Environment>>,
    /// The frozen bases of adapter checkpoints: one per model, whatever the number of
    /// versions and population members loaded over it.
    bases: BasePool,
    /// Rounds played so far by this process.
    rounds: u64,
    rolling: Rolling,
    report: NodeReport,
    /// Payoff results not yet accepted by the coordinator.
    unreported: PendingResults,
    ready: watch::Sender<bool>,
}

impl Node {
    fn link(&self, player: Player) -> &Link {
        // `run` creates one link per player.
        &self.links[usize::from(player == Player::Attacker)]
    }

    fn policies(&mut self) -> Result<&mut Policies> {
        self.policies
            .as_mut()
            .ok_or_else(|| gone("the round's policies"))
    }

    async fn run_rounds(&mut self) -> Result<()> {
        let mut backoff = arlas_runtime::backoff::Backoff::default();
        loop {
            let (announced, lease) = self.wait_for_run().await?;
            let played = match self.round(&announced, &lease).await {
                Ok(played) => {
                    backoff.reset();
                    played
                }
                Err(e @ Error::Client(_)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "round not started; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(n) = self.config.episodes
                && self.report.episodes >= n
            {
                tracing::info!(
                    episodes = self.report.episodes,
                    "episode target reached; waiting for the acknowledgements"
                );
                self.wait_links_idle().await;
                return Ok(());
            }
            if self.config.sync {
                self.wait_versions_after(played).await?;
            }
        }
    }

    /// Waits for a lease and a run state in which both players have a version.
    async fn wait_for_run(&mut self) -> Result<(Announced, LeaseId)> {
        let mut logged = false;
        loop {
            let current = self.views.borrow_and_update().clone();
            let lease = self.lease.borrow().clone();
            if let (Some(a), Some(lease)) = (current, lease)
                && Player::ALL.iter().all(|&p| a.view.version(p).version >= 1)
            {
                return Ok((a, lease));
            }
            if !logged {
                tracing::info!("waiting for a lease and for both players' first versions");
                logged = true;
            }
            tokio::select! {
                changed = self.views.changed() => changed.map_err(|_| gone("the run-state watch"))?,
                changed = self.lease.changed() => changed.map_err(|_| gone("the lease keeper"))?,
            }
        }
    }

    /// Loads, plans, plays and sends one round; returns the versions that played it.
    async fn round(&mut self, announced: &Announced, lease: &LeaseId) -> Result<(u64, u64)> {
        for player in Player::ALL {
            self.load_current(announced, player).await?;
        }
        let agent_version = self.policies()?.version(Player::Agent);
        let attacker_version = self.policies()?.version(Player::Attacker);
        let count = u32::try_from(self.config.shape.tasks).unwrap_or(u32::MAX);
        // Actors do not wait for the coordinator either: without an answer (it is down or
        // restarting) the agent phase plays the current attacker, as with an empty population.
        let assigned = match self
            .client
            .assign_opponents(lease, agent_version, count.clamp(1, 1024))
            .await
        {
            Ok(assigned) => assigned,
            Err(e) => {
                tracing::warn!(error = %e, "no opponents from the coordinator; this round's agent phase plays the current attacker");
                Vec::new()
            }
        };
        self.rounds += 1;
        // Ready once the current versions are loaded: the population members assigned load
        // while the attacker phase (which plays only the current versions) is sampled, so a
        // larger population does not delay joining or the first trajectories.
        let _ = self.ready.send(true);
        let (plan, attacker_phase) = self.attacker_phase_loading(&assigned).await?;
        record_episodes(&mut self.rolling, &attacker_phase.trajectories);
        for t in &attacker_phase.trajectories {
            self.link(Player::Attacker).send(v1::Trajectory::from(t));
        }
        self.prune_cache().await;
        let agent_phase = self.play(&plan, |plan| &plan.agent_phase).await?;
        record_episodes(&mut self.rolling, &agent_phase.trajectories);
        for t in &agent_phase.trajectories {
            self.link(Player::Agent).send(v1::Trajectory::from(t));
        }
        let out = RoundOutput::from_phases(attacker_phase, agent_phase);
        self.unreported.add(out.match_results());
        self.report_pending(lease).await;
        let episodes = (out.attacker_phase.len() + out.agent_phase.len()) as u64;
        self.report.rounds += 1;
        self.report.episodes += episodes;
        self.report.versions.push((agent_version, attacker_version));
        metrics::counter!(names::ACTOR_ROUNDS_TOTAL).increment(1);
        tracing::info!(
            round = plan.round,
            episodes,
            agent_version,
            attacker_version,
            opponents = ?plan.agent_phase.opponents,
            agent_prefilled = out.prefill.agent.prefilled,
            agent_prompt_tokens = out.prefill.agent.prompt,
            attacker_prefilled = out.prefill.attacker.prefilled,
            attacker_prompt_tokens = out.prefill.attacker.prompt,
            "round played"
        );
        Ok((agent_version, attacker_version))
    }

    /// Sends the pending match results: a report the coordinator did not acknowledge again,
    /// unchanged and under its id, then the newer results; on a failure the rest waits for
    /// the next round.
    async fn report_pending(&mut self, lease: &LeaseId) {
        while let Some(report) = self.unreported.next_report() {
            match self
                .client
                .report_results(lease, report.id, &report.results)
                .await
            {
                Ok(()) => self.unreported.delivered(),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        pending = self.unreported.len(),
                        dropped_games = self.unreported.dropped(),
                        "cannot report results; they are sent again after the next round"
                    );
                    return;
                }
            }
        }
    }

    /// Plans round `self.rounds` against `assigned` and plays its attacker phase off the
    /// async runtime (the environment and the models block), while the assigned members
    /// not loaded yet are fetched and loaded; then installs them.
    async fn attacker_phase_loading(&mut self, assigned: &[Member]) -> Result<(RoundPlan, Played)> {
        let missing: Vec<Member> = self
            .policies()?
            .missing_members(assigned)
            .into_iter()
            .cloned()
            .collect();
        let policies = self.policies.take().ok_or_else(|| gone("the policies"))?;
        let mut env = self.env.take().ok_or_else(|| gone("the environment"))?;
        let (planner, round) = (self.planner.clone(), self.rounds);
        let rollout = self.config.rollout.clone();
        let ids: Vec<String> = assigned.iter().map(|m| m.id.clone()).collect();
        let phase = tokio::task::spawn_blocking(move || {
            let played = planner.plan(round, &ids, &*env).and_then(|plan| {
                let t = play_phase_counted(&mut *env, &policies, &plan.attacker_phase, &rollout)?;
                Ok((plan, t))
            });
            (policies, env, played)
        });
        let started = std::time::Instant::now();
        let mut loaded = Vec::with_capacity(missing.len());
        let mut failed = None;
        for m in missing {
            match self.load(&m.checkpoint).await {
                Ok(policy) => loaded.push((m, policy)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if failed.is_none() && !loaded.is_empty() {
            tracing::info!(
                members = loaded.len(),
                seconds = started.elapsed().as_secs_f64(),
                "population members loaded"
            );
        }
        let (policies, env, played) = phase.await.map_err(|e| task_failed("the round", &e))?;
        self.policies = Some(policies);
        self.env = Some(env);
        if let Some(e) = failed {
            return Err(e);
        }
        let policies = self.policies()?;
        let evicted = policies.retain_members(assigned);
        if !evicted.is_empty() {
            tracing::debug!(?evicted, "population members no longer assigned; unloaded");
        }
        for (m, policy) in loaded {
            policies.insert_member(
                m.id.clone(),
                Loaded {
                    version: m.attacker_version,
                    checkpoint: m.checkpoint.clone(),
                    policy,
                },
            );
        }
        played
    }

    /// Plays one phase of `plan` off the async runtime.
    async fn play(&mut self, plan: &RoundPlan, phase: fn(&RoundPlan) -> &Phase) -> Result<Played> {
        let policies = self.policies.take().ok_or_else(|| gone("the policies"))?;
        let mut env = self.env.take().ok_or_else(|| gone("the environment"))?;
        let rollout = self.config.rollout.clone();
        let plan = plan.clone();
        let (policies, env, played) = tokio::task::spawn_blocking(move || {
            let played = play_phase_counted(&mut *env, &policies, phase(&plan), &rollout);
            (policies, env, played)
        })
        .await
        .map_err(|e| task_failed("the round", &e))?;
        self.policies = Some(policies);
        self.env = Some(env);
        played
    }

    /// Loads `player`'s announced version unless it is already loaded.
    async fn load_current(&mut self, announced: &Announced, player: Player) -> Result<()> {
        let version = announced.view.version(player);
        let Some(blob) = self.policies()?.stale(version).cloned() else {
            return Ok(());
        };
        let policy = self.load(&blob).await?;
        self.policies()?.install(
            player,
            Loaded {
                version: version.version,
                checkpoint: blob,
                policy,
            },
        );
        let seconds = announced.seen(player).elapsed().as_secs_f64();
        metrics::histogram!(names::CHECKPOINT_BROADCAST_SECONDS).record(seconds);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(names::POLICY_VERSION, "player" => player.name())
            .set(version.version as f64);
        tracing::info!(
            player = player.name(),
            version = version.version,
            seconds,
            "policy version loaded"
        );
        Ok(())
    }

    /// Frees the cache of what the loaded policies do not use (a failure is only logged:
    /// the cache still works, it is just larger).
    async fn prune_cache(&mut self) {
        let Some(policies) = self.policies.as_ref() else {
            return;
        };
        let in_use: Vec<_> = policies
            .checkpoints()
            .into_iter()
            .map(|b| b.id.clone())
            .collect();
        let (cache, keep) = (self.cache.clone(), self.config.cache_keep);
        let pruned = blocking("pruning the checkpoint cache", move || {
            cache.prune(&in_use.iter().collect::<Vec<_>>(), keep)
        })
        .await;
        match pruned {
            Ok(0) => {}
            Ok(freed) => tracing::info!(freed_bytes = freed, "checkpoint cache pruned"),
            Err(e) => tracing::warn!(error = %e, "could not prune the checkpoint cache"),
        }
    }

    /// A policy from a checkpoint blob, through the cache.
    async fn load(&mut self, blob: &BlobRef) -> Result<Policy> {
        let (dir, source) = self.cache.ensure(&mut self.client, blob).await?;
        *self.report.cache.entry(source.name()).or_default() += 1;
        if source == CacheSource::Fetched {
            self.report.fetched.push(blob.id.to_string());
        }
        metrics::counter!(names::CHECKPOINT_CACHE_TOTAL, "result" => source.name()).increment(1);
        let options = LoadOptions {
            models_dir: self.config.models_dir.clone(),
            bases: Some(self.bases.clone()),
            ..LoadOptions::default()
        };
        let device = self.config.device.clone();
        blocking("loading a policy", move || {
            Ok(Policy::load(&ModelSpec::Path(dir), &device, &options)?)
        })
        .await
    }

    async fn wait_links_idle(&mut self) {
        for i in 0..self.links.len() {
            let mut status = self.links[i].status.clone();
            // A closed status channel means the link is gone: nothing more will be acked.
            let _ = status.wait_for(LinkStatus::idle).await;
        }
    }

    /// `--sync`: waits until both players moved past the versions that played.
    async fn wait_versions_after(&mut self, (agent, attacker): (u64, u64)) -> Result<()> {
        tracing::info!(
            agent,
            attacker,
            "sync: waiting for both learners' next versions"
        );
        let moved = |a: &Option<Announced>| {
            a.as_ref().is_some_and(|a| {
                let v: &RunView = &a.view;
                v.versions.agent.version > agent && v.versions.attacker.version > attacker
            })
        };
        match tokio::time::timeout(self.config.sync_timeout, self.views.wait_for(moved)).await {
            Ok(changed) => {
                changed.map_err(|_| gone("the run-state watch"))?;
            }
            Err(_) => tracing::warn!(
                seconds = self.config.sync_timeout.as_secs_f64(),
                agent,
                attacker,
                "sync: no new versions in time; the next round plays the current ones"
            ),
        }
        Ok(())
    }
}

fn gone(what: &str) -> Error {
    arlas_runtime::Error::Task {
        what: what.to_string(),
        reason: "it ended".into(),
    }
    .into()
}

fn task_failed(what: &str, e: &tokio::task::JoinError) -> Error {
    arlas_runtime::Error::Task {
        what: what.to_string(),
        reason: e.to_string(),
    }
    .into()
}
