//! The one owner of [`CoordinatorState`]: a dedicated thread (its work touches the disk)
//! that takes commands with `oneshot` replies, sweeps expired leases on a tick, publishes
//! every new [`RunView`] on a `watch` channel and keeps the gauges current.
//!
//! [`CoordinatorHandle`] is the async face of it; cloning the handle is cheap, and the
//! thread ends once every handle is gone.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use metrics::gauge;
use tokio::sync::{oneshot, watch};

use super::blobs::{BlobWriter, StagedBlob};
use super::state::{CoordinatorState, PublishCheck};
use crate::error::{Error, Result};
use arlas_core::{
    BlobId, BlobRef, Lease, LeaseId, MatchResult, Member, Player, PublishHeader, Published,
    Registration, Role, RunView,
};
use arlas_runtime::metrics as names;

type Reply<T> = oneshot::Sender<Result<T>>;

enum Command {
    Register(Registration, Reply<(Lease, RunView)>),
    Heartbeat(LeaseId, Reply<(Duration, RunView)>),
    Deregister(LeaseId, Reply<()>),
    View(Reply<RunView>),
    Population(Reply<Vec<Member>>),
    AssignOpponents {
        lease: LeaseId,
        agent_version: u64,
        count: usize,
        reply: Reply<Vec<Member>>,
    },
    ReportResults(LeaseId, u64, Vec<MatchResult>, Reply<()>),
    CheckPublish(PublishHeader, Reply<PublishCheck>),
    UploadWriter(Reply<BlobWriter>),
    Publish(PublishHeader, Option<StagedBlob>, Reply<Published>),
    Blob(BlobId, Reply<(BlobRef, PathBuf)>),
    /// Makes the state thread panic (tests of the watchdog).
    #[cfg(test)]
    Panic,
}

/// The async handle to the coordinator's state.
#[derive(Debug, Clone)]
pub struct CoordinatorHandle {
    commands: mpsc::Sender<Command>,
    views: watch::Receiver<RunView>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl CoordinatorHandle {
    /// Moves `state` onto its own thread and returns the handle, the thread (which ends
    /// after the last handle is dropped) and its end: `true` when it ended in a panic.
    pub fn spawn(
        state: CoordinatorState,
    ) -> Result<(Self, std::thread::JoinHandle<()>, oneshot::Receiver<bool>)> {
        let (commands, inbox) = mpsc::channel();
        let (views_tx, views) = watch::channel(state.view());
        let (ended_tx, ended) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("coordinator-state".into())
            .spawn(move || {
                let _ended = Ended(Some(ended_tx));
                run(state, &inbox, &views_tx);
            })
            .map_err(|e| Error::Serve {
                what: "the coordinator state thread".into(),
                reason: e.to_string(),
            })?;
        Ok((Self { commands, views }, thread, ended))
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// The latest run view, updated after every change.
    pub fn watch(&self) -> watch::Receiver<RunView> {
        self.views.clone()
    }

    pub async fn register(&self, registration: Registration) -> Result<(Lease, RunView)> {
        self.call(|r| Command::Register(registration, r)).await
    }

    pub async fn heartbeat(&self, lease: LeaseId) -> Result<(Duration, RunView)> {
        self.call(|r| Command::Heartbeat(lease, r)).await
    }

    pub async fn deregister(&self, lease: LeaseId) -> Result<()> {
        self.call(|r| Command::Deregister(lease, r)).await
    }

    pub async fn view(&self) -> Result<RunView> {
        self.call(Command::View).await
    }

    pub async fn population(&self) -> Result<Vec<Member>> {
        self.call(Command::Population).await
    }

    pub async fn assign_opponents(
        &self,
        lease: LeaseId,
        agent_version: u64,
        count: usize,
    ) -> Result<Vec<Member>> {
        self.call(|reply| Command::AssignOpponents {
            lease,
            agent_version,
            count,
            reply,
        })
        .await
    }

    pub async fn report_results(
        &self,
        lease: LeaseId,
        report_id: u64,
        results: Vec<MatchResult>,
    ) -> Result<()> {
        self.call(|r| Command::ReportResults(lease, report_id, results, r))
            .await
    }

    pub async fn check_publish(&self, header: PublishHeader) -> Result<PublishCheck> {
        self.call(|r| Command::CheckPublish(header, r)).await
    }

    pub async fn upload_writer(&self) -> Result<BlobWriter> {
        self.call(Command::UploadWriter).await
    }

    pub async fn publish(
        &self,
        header: PublishHeader,
        staged: Option<StagedBlob>,
    ) -> Result<Published> {
        self.call(|r| Command::Publish(header, staged, r)).await
    }

    pub async fn blob(&self, id: BlobId) -> Result<(BlobRef, PathBuf)> {
        self.call(|r| Command::Blob(id, r)).await
    }
}

/// Tells, when the state thread ends however it ends, whether it was a panic.
struct Ended(Option<oneshot::Sender<bool>>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(std::thread::panicking());
        }
    }
}

fn run(
    mut state: CoordinatorState,
    inbox: &mpsc::Receiver<Command>,
    views: &watch::Sender<RunView>,
) {
    let tick = (state.lease_ttl() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    update_gauges(&state);
    loop {
        match inbox.recv_timeout(tick) {
            Ok(command) => handle(&mut state, command, views),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        state.expire(Instant::now());
        announce(&state, views);
    }
    tracing::debug!("coordinator state thread stopped");
}

/// Publishes the state's view to the watchers if it changed.
fn announce(state: &CoordinatorState, views: &watch::Sender<RunView>) {
    if views.borrow().revision != state.revision() {
        views.send_replace(state.view());
        update_gauges(state);
    }
}

/// Sends `value` once the watchers see the state it describes: a caller told "published"
/// finds the new version in every view taken after, the watch stream included.
fn answer<T>(
    state: &CoordinatorState,
    views: &watch::Sender<RunView>,
    reply: Reply<T>,
    value: Result<T>,
) {
    announce(state, views);
    let _ = reply.send(value);
}

fn handle(state: &mut CoordinatorState, command: Command, views: &watch::Sender<RunView>) {
    let now = Instant::now();
    // A dropped reply receiver means the rpc was cancelled; the state change stands.
    match command {
        Command::Register(registration, reply) => {
            let result = state.register(registration, now).map(|id| {
                let lease = Lease {
                    id,
                    ttl: state.lease_ttl(),
                };
                (lease, state.view())
            });
            answer(state, views, reply, result);
        }
        Command::Heartbeat(lease, reply) => {
            let result = state
                .heartbeat(&lease, now)
                .map(|()| (state.lease_ttl(), state.view()));
            answer(state, views, reply, result);
        }
        Command::Deregister(lease, reply) => {
            state.deregister(&lease, now);
            answer(state, views, reply, Ok(()));
        }
        Command::View(reply) => {
            answer(state, views, reply, Ok(state.view()));
        }
        Command::Population(reply) => {
            answer(state, views, reply, Ok(state.population()));
        }
        Command::AssignOpponents {
            lease,
            agent_version,
            count,
            reply,
        } => {
            let value = state.assign_opponents(&lease, agent_version, count, now);
            answer(state, views, reply, value);
        }
        Command::ReportResults(lease, report_id, results, reply) => {
            let value = state
                .report_results(&lease, report_id, &results, now)
                .map(|_| ());
            answer(state, views, reply, value);
        }
        Command::CheckPublish(header, reply) => {
            let value = state.check_publish(&header, now);
            answer(state, views, reply, value);
        }
        Command::UploadWriter(reply) => {
            let value = state.upload_writer();
            answer(state, views, reply, value);
        }
        Command::Publish(header, staged, reply) => {
            let result = state.publish(&header, staged, now);
            if let Err(e) = &result {
                tracing::warn!(error = %e, player = header.player.name(), version = header.version, "publish rejected");
            }
            answer(state, views, reply, result);
        }
        Command::Blob(id, reply) => {
            let value = state.blob(&id);
            answer(state, views, reply, value);
        }
        #[cfg(test)]
        Command::Panic => panic!("a test asked the state thread to panic"),
    }
}

#[allow(clippy::cast_precision_loss)]
fn update_gauges(state: &CoordinatorState) {
    gauge!(names::CONNECTED_ACTORS).set(state.connected(Role::Actor) as f64);
    gauge!(names::CONNECTED_LEARNERS).set(state.connected(Role::Learner) as f64);
    let view = state.view();
    gauge!(names::POPULATION_SIZE).set(view.population_size as f64);
    for player in Player::ALL {
        gauge!(names::POLICY_VERSION, "player" => player.name())
            .set(view.version(player).version as f64);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::service::config::CoordinatorConfig;

    fn spawn(
        dir: &std::path::Path,
    ) -> (
        CoordinatorHandle,
        std::thread::JoinHandle<()>,
        oneshot::Receiver<bool>,
    ) {
        let config = CoordinatorConfig {
            seed: Some(7),
            ..CoordinatorConfig::default()
        };
        CoordinatorHandle::spawn(CoordinatorState::open(dir, config).unwrap()).unwrap()
    }

    #[test]
    fn the_state_thread_tells_a_panic_from_a_normal_end() {
        let tmp = tempfile::tempdir().unwrap();
        let (handle, thread, ended) = spawn(tmp.path());
        handle.commands.send(Command::Panic).unwrap();
        assert!(thread.join().is_err());
        assert_eq!(ended.blocking_recv(), Ok(true));

        let (handle, thread, ended) = spawn(tmp.path());
        drop(handle);
        thread.join().unwrap();
        assert_eq!(ended.blocking_recv(), Ok(false));
    }

    /// The watch view is updated before the reply: whoever is told of a change (a
    /// publish, a registration) and then subscribes sees it. A reply sent first let an
    /// actor started right after a publish play the version before it.
    #[test]
    fn a_reply_comes_after_the_watchers_see_its_change() {
        let tmp = tempfile::tempdir().unwrap();
        let (handle, _thread, _ended) = spawn(tmp.path());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for n in 1..=50 {
            let (_, view) = runtime
                .block_on(handle.register(Registration::Learner {
                    name: format!("learner-{n}"),
                    url: "http://127.0.0.1:50052".into(),
                    players: vec![Player::Agent],
                }))
                .unwrap();
            assert_eq!(handle.watch().borrow().revision, view.revision, "after {n}");
        }
    }
}
