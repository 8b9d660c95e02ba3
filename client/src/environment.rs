//! [`RemoteEnvironment`]: an [`Environment`] served by another process over
//! `arlas.v1.Environment` (AgentDojo's suites from `envs/agentdojo/server.py`).
//!
//! The rollout calls environments synchronously from a blocking thread, so this client owns
//! a small runtime of its own and waits on each rpc's answer through a channel: it works from
//! any thread, inside an async runtime or not. One round trip per call and batch; the
//! episodes' latest states are kept locally for [`Environment::episode`].

use std::collections::BTreeMap;
use std::time::Duration;

use arlas_game::environment::{Environment, EpisodeView, TaskRef};
use arlas_game::{Error as GameError, GameConfig, Outcome, Rewards, Split, Verdicts};
use arlas_proto::limits::MAX_MESSAGE_BYTES;
use arlas_proto::v1;
use arlas_proto::v1::environment_client::EnvironmentClient as Generated;
use arlas_runtime::auth::{AttachToken, Token};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::{Error, Result};

type Inner = Generated<InterceptedService<Channel, AttachToken>>;

/// Longest an environment rpc may take (a reset of a large batch loads every episode's
/// environment; AgentDojo's heaviest suite takes ~60 ms an episode).
const RPC_DEADLINE: Duration = Duration::from_secs(300);

/// What the environment serves, from its `Describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub name: String,
    pub version: String,
    /// Tasks per (suite, split): the ids `sample` draws from.
    pub tasks: BTreeMap<(String, Split), Vec<String>>,
    pub scripted_agents: Vec<String>,
    pub attacks: Vec<String>,
}

/// One episode's latest state, as the service answered.
#[derive(Debug, Clone)]
struct RemoteEpisode {
    task: TaskRef,
    state: v1::EpisodeState,
    penalty: f32,
}

impl RemoteEpisode {
    fn outcome(&self) -> Option<Outcome> {
        if !self.state.done {
            return None;
        }
        Some(if self.state.security == Some(true) {
            Outcome::Leaked
        } else if !self.state.answered {
            Outcome::TurnLimit
        } else if self.state.utility == Some(true) {
            Outcome::Completed
        } else {
            Outcome::Failed
        })
    }
}

impl EpisodeView for RemoteEpisode {
    fn task(&self) -> TaskRef {
        self.task.clone()
    }
    fn agent_system_prompt(&self) -> String {
        self.state.agent_system_prompt.clone()
    }
    fn attacker_system_prompt(&self) -> String {
        self.state.attacker_system_prompt.clone()
    }
    fn injection_slot(&self) -> bool {
        self.state.injection_slot
    }
    fn attacker_message(&self) -> String {
        self.state.attacker_message.clone()
    }
    fn agent_message(&self) -> String {
        self.state.agent_message.clone()
    }
    fn injection(&self) -> Option<&str> {
        self.state.injection.as_deref()
    }
    fn goal_sentence(&self) -> &str {
        &self.state.goal_sentence
    }
    fn is_done(&self) -> bool {
        self.state.done
    }
    fn outcome(&self) -> Option<Outcome> {
        RemoteEpisode::outcome(self)
    }
    fn rewards(&self) -> Option<Rewards> {
        self.outcome().map(|o| {
            Rewards::for_outcome(
                o,
                self.state.format_errors,
                self.state.attacker_format_errors,
                self.penalty,
            )
        })
    }
    fn turn(&self) -> u32 {
        self.state.turn
    }
    fn format_errors(&self) -> u32 {
        self.state.format_errors
    }
    fn attacker_format_errors(&self) -> u32 {
        self.state.attacker_format_errors
    }
    fn scripted_action(&self, agent: &str) -> Option<String> {
        self.state.scripted.get(agent).cloned()
    }
    fn verdicts(&self) -> Option<Verdicts> {
        self.state.utility.map(|utility| Verdicts {
            utility,
            security: self.state.security,
        })
    }
    fn record(&self) -> Option<&str> {
        (!self.state.record.is_empty()).then_some(self.state.record.as_str())
    }
}

/// An environment served over `arlas.v1.Environment`.
pub struct RemoteEnvironment {
    runtime: Option<tokio::runtime::Runtime>,
    inner: Inner,
    description: Description,
    suites: Vec<String>,
    config: GameConfig,
    batch: Option<String>,
    episodes: Vec<RemoteEpisode>,
    record: bool,
}

impl std::fmt::Debug for RemoteEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEnvironment")
            .field("name", &self.description.name)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

fn rpc_error(rpc: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |s| Error::Rpc {
        service: "environment",
        rpc,
        code: s.code(),
        message: s.message().to_string(),
    }
}

impl RemoteEnvironment {
    /// Connects to the service at `url` and reads what it serves. `suites` picks the suites
    /// tasks are drawn from (empty: all); `config` gives the turn limit and the format-error
    /// penalty of the rewards.
    pub fn connect(
        url: &str,
        token: Option<&Token>,
        suites: &[String],
        config: GameConfig,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("arlas-env-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                path: "tokio runtime".into(),
                source: e,
            })?;
        let url_owned = url.to_string();
        let token = token.cloned();
        let inner = wait(&runtime, async move {
            let channel = arlas_runtime::client::connect(&url_owned).await?;
            Ok::<_, Error>(
                Generated::with_interceptor(channel, AttachToken::new(token.as_ref()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
        })??;
        let mut client = inner.clone();
        let described = wait(&runtime, async move {
            client
                .describe(v1::DescribeRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(rpc_error("Describe"))
        })??;
        let description = describe_from_wire(described)?;
        for suite in suites {
            if !description.tasks.keys().any(|(s, _)| s == suite) {
                let known: std::collections::BTreeSet<&str> =
                    description.tasks.keys().map(|(s, _)| s.as_str()).collect();
                return Err(Error::Environment(format!(
                    "{} has no suite {suite:?}: use one of {known:?}",
                    description.name
                )));
            }
        }
        Ok(Self {
            runtime: Some(runtime),
            inner,
            description,
            suites: suites.to_vec(),
            config,
            batch: None,
            episodes: Vec::new(),
            record: false,
        })
    }

    /// Asks the service for each finished episode's record (`EpisodeView::record`).
    #[must_use]
    pub fn recording(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// What the service serves.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The tasks of `split` in the chosen suites, by suite.
    fn pools(&self, split: Split) -> Vec<(&String, &Vec<String>)> {
        self.description
            .tasks
            .iter()
            .filter(|((suite, s), _)| {
                *s == split && (self.suites.is_empty() || self.suites.contains(suite))
            })
            .map(|((suite, _), tasks)| (suite, tasks))
            .collect()
    }

    fn task_ref(&self, suite: &str, split: Split, task: &str, seed: u64) -> TaskRef {
        TaskRef {
            environment: self.description.name.clone(),
            suite: suite.to_string(),
            split,
            task: task.to_string(),
            seed,
        }
    }

    /// Runs one rpc on the client's runtime and waits for its answer.
    fn call<T, F>(&self, rpc: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| Error::Environment("the environment client was shut down".into()))?;
        wait(runtime, async move {
            match tokio::time::timeout(RPC_DEADLINE, f).await {
                Ok(r) => r.map_err(rpc_error(rpc)),
                Err(_) => Err(Error::Rpc {
                    service: "environment",
                    rpc,
                    code: tonic::Code::DeadlineExceeded,
                    message: format!("no answer in {} s", RPC_DEADLINE.as_secs()),
                }),
            }
        })?
    }

    /// One batched rpc whose answer is the batch's new states; returns the batch id.
    fn round_trip<F, Fut>(&mut self, rpc: &'static str, f: F) -> arlas_game::Result<String>
    where
        F: FnOnce(Inner) -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<tonic::Response<v1::EpisodeBatch>, tonic::Status>,
            > + Send
            + 'static,
    {
        let answer = self
            .call(rpc, f(self.inner.clone()))
            .map(tonic::Response::into_inner);
        let name = self.description.name.clone();
        let batch = answer.map_err(|e| to_game(e, &name))?;
        let id = batch.batch.clone();
        self.update(batch).map_err(|e| to_game(e, &name))?;
        Ok(id)
    }

    fn update(&mut self, batch: v1::EpisodeBatch) -> Result<()> {
        if batch.episodes.len() != self.episodes.len() {
            return Err(Error::Environment(format!(
                "the service answered {} episodes for a batch of {}",
                batch.episodes.len(),
                self.episodes.len()
            )));
        }
        for (ep, state) in self.episodes.iter_mut().zip(batch.episodes) {
            ep.state = state;
        }
        Ok(())
    }

    fn batch(&self) -> Result<String, GameError> {
        self.batch
            .clone()
            .ok_or_else(|| self.game_error("no batch: reset first"))
    }

    fn game_error(&self, reason: impl std::fmt::Display) -> GameError {
        GameError::Environment {
            name: self.description.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn close_batch(&mut self) {
        if let Some(batch) = self.batch.take() {
            let mut client = self.inner.clone();
            let closed = self.call("Close", async move {
                client.close(v1::CloseRequest { batch }).await
            });
            if let Err(e) = closed {
                tracing::debug!(error = %e, "closing an environment batch failed; it expires on the server");
            }
        }
    }

    fn index(&self, i: usize) -> Result<u32, GameError> {
        if i < self.episodes.len() {
            u32::try_from(i).map_err(|_| self.game_error("episode index too large"))
        } else {
            Err(self.game_error(format!(
                "no episode {i} in a batch of {}",
                self.episodes.len()
            )))
        }
    }
}

/// Runs `f` on `runtime` and blocks the calling thread (any thread) for its output.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .map_err(|_| Error::Environment("the environment client's runtime stopped".into()))
}

impl Drop for RemoteEnvironment {
    fn drop(&mut self) {
        self.close_batch();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn describe_from_wire(d: v1::DescribeResponse) -> Result<Description> {
    let mut tasks: BTreeMap<(String, Split), Vec<String>> = BTreeMap::new();
    for t in d.tasks {
        let split: Split = t
            .split
            .parse()
            .map_err(|e: GameError| Error::Environment(e.to_string()))?;
        tasks.entry((t.suite, split)).or_default().push(t.task);
    }
    if tasks.is_empty() {
        return Err(Error::Environment(format!("{} serves no task", d.name)));
    }
    Ok(Description {
        name: d.name,
        version: d.version,
        tasks,
        scripted_agents: d.scripted_agents,
        attacks: d.attacks,
    })
}

fn to_game(e: Error, name: &str) -> GameError {
    GameError::Environment {
        name: name.to_string(),
        reason: e.to_string(),
    }
}

impl Environment for RemoteEnvironment {
    fn name(&self) -> &str {
        &self.description.name
    }

    fn sample(&self, split: Split, seed: u64) -> arlas_game::Result<TaskRef> {
        let pools = self.pools(split);
        let total: usize = pools.iter().map(|(_, t)| t.len()).sum();
        if total == 0 {
            return Err(self.game_error(format!("no {split} task in the chosen suites")));
        }
        // Suites uniformly, then a task of the suite: a seed names the same task every time.
        let mixed = arlas_game::seed::mix(seed, 0x656e_7673);
        let (suite, tasks) = pools[(mixed % pools.len() as u64) as usize];
        let task = &tasks[((mixed >> 16) % tasks.len() as u64) as usize];
        Ok(self.task_ref(suite, split, task, seed))
    }

    fn all_tasks(&self, split: Split) -> arlas_game::Result<Vec<TaskRef>> {
        Ok(self
            .pools(split)
            .into_iter()
            .flat_map(|(suite, tasks)| tasks.iter().map(move |t| self.task_ref(suite, split, t, 0)))
            .collect())
    }

    fn reset(&mut self, tasks: &[TaskRef]) -> arlas_game::Result<()> {
        let name = self.description.name.clone();
        for t in tasks {
            if t.environment != name {
                return Err(self.game_error(format!("task of environment {:?}", t.environment)));
            }
        }
        self.close_batch();
        self.episodes = tasks
            .iter()
            .map(|t| RemoteEpisode {
                task: t.clone(),
                state: v1::EpisodeState::default(),
                penalty: self.config.format_error_penalty,
            })
            .collect();
        let request = v1::ResetRequest {
            episodes: tasks
                .iter()
                .map(|t| v1::EpisodeStart {
                    suite: t.suite.clone(),
                    split: t.split.name().to_string(),
                    task: t.task.clone(),
                    seed: t.seed,
                })
                .collect(),
            max_turns: self.config.max_turns,
            record: self.record,
        };
        let batch = self.round_trip("Reset", |mut c| async move { c.reset(request).await })?;
        self.batch = Some(batch);
        Ok(())
    }

    fn episode(&self, i: usize) -> &dyn EpisodeView {
        &self.episodes[i]
    }

    fn inject(&mut self, injections: &[(usize, Option<String>)]) -> arlas_game::Result<()> {
        let injections = injections
            .iter()
            .map(|(i, text)| {
                Ok(v1::IndexedText {
                    index: self.index(*i)?,
                    text: text.clone(),
                })
            })
            .collect::<arlas_game::Result<Vec<_>>>()?;
        let request = v1::InjectRequest {
            batch: self.batch()?,
            injections,
        };
        self.round_trip("Inject", |mut c| async move { c.inject(request).await })
            .map(drop)
    }

    fn step(&mut self, actions: &[(usize, String)]) -> arlas_game::Result<()> {
        let actions = actions
            .iter()
            .map(|(i, text)| {
                Ok(v1::IndexedText {
                    index: self.index(*i)?,
                    text: Some(text.clone()),
                })
            })
            .collect::<arlas_game::Result<Vec<_>>>()?;
        let request = v1::StepRequest {
            batch: self.batch()?,
            actions,
        };
        self.round_trip("Step", |mut c| async move { c.step(request).await })
            .map(drop)
    }

    fn render_attack(&mut self, attack: &str, which: &[usize]) -> arlas_game::Result<Vec<String>> {
        if !self.description.attacks.iter().any(|a| a == attack) {
            return Err(self.game_error(format!(
                "it has no attack {attack:?}: use one of {:?}",
                self.description.attacks
            )));
        }
        let indices = which
            .iter()
            .map(|&i| self.index(i))
            .collect::<arlas_game::Result<Vec<_>>>()?;
        let request = v1::RenderAttackRequest {
            batch: self.batch()?,
            attack: attack.to_string(),
            indices,
        };
        let name = self.description.name.clone();
        let mut client = self.inner.clone();
        let texts = self
            .call("RenderAttack", async move {
                client.render_attack(request).await
            })
            .map(|r| r.into_inner().texts)
            .map_err(|e| to_game(e, &name))?;
        if texts.len() != which.len() {
            return Err(self.game_error(format!(
                "{} attack texts for {} episodes",
                texts.len(),
                which.len()
            )));
        }
        Ok(texts)
    }
}
