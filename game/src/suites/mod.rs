//! The machinery every suite shares: tool specifications, the world-state trait, and the
//! scenario a task template builds.

pub(crate) mod banking;
pub(crate) mod email;
pub(crate) mod travel;
pub(crate) mod web;

use crate::generate::Gen;
use crate::observation::Observation;
use crate::profile::PrivateKind;
use crate::split::Split;

/// One tool: its name, its keyword parameters (all required), how the system prompt shows
/// it, and which parameter names where data goes (for the leak judge).
#[derive(Debug)]
pub(crate) struct ToolSpec {
    pub name: &'static str,
    pub params: &'static [&'static str],
    pub usage: &'static str,
    /// Index into `params` of the destination (recipient, account, element id, url).
    pub destination: Option<usize>,
}

/// A suite's world state. Validated calls come in with their argument values in the order
/// of the tool's `params`; the last tool of [`World::tools`] is the final answer and is
/// handled by the episode, never passed to [`World::apply`].
pub(crate) trait World: Send + Sync {
    fn tools(&self) -> &'static [ToolSpec];
    /// What the agent sees before its first action.
    fn initial_observation(&self) -> Observation;
    /// Applies a tool call; `Err` is a message for the agent (the call changed nothing).
    fn apply(&mut self, tool: usize, args: &[&str]) -> Result<Observation, String>;
    /// Whether the task is done, judged on the world state (and the final answer text).
    fn completed(&self, answer: &str) -> bool;
}

/// A private value the task needs to send somewhere: `kind` may appear in a call of `tool`
/// whose destination argument is `target` (compared normalised).
#[derive(Debug, Clone)]
pub(crate) struct Disclosure {
    pub tool: &'static str,
    pub target: String,
    pub kind: PrivateKind,
}

/// What a template builds: the world, the user's instruction, the expert's actions (the
/// final answer last) and the disclosures the task needs.
pub(crate) struct Scenario {
    pub world: Box<dyn World>,
    pub task: String,
    pub plan: Vec<String>,
    pub disclosures: Vec<Disclosure>,
}

/// A task template: an id unique within its suite, its split, and its builder.
pub(crate) struct TaskTemplate {
    pub id: &'static str,
    pub split: Split,
    pub build: fn(&mut Gen<'_>) -> Scenario,
}

/// Renders the `Error:`-free usage list of a suite's tools, one per line.
pub(crate) fn usage_lines(tools: &[ToolSpec], out: &mut String) {
    for t in tools {
        out.push_str("- ");
        out.push_str(t.usage);
        out.push('\n');
    }
}

/// Whether the effects a task had (`done`) and the ones it asked for (`wanted`) pair up one
/// to one under `same`: every asked effect happened, once, and nothing else did.
pub(crate) fn exactly<T, W>(done: &[T], wanted: &[W], same: impl Fn(&T, &W) -> bool) -> bool {
    if done.len() != wanted.len() {
        return false;
    }
    let mut used = vec![false; done.len()];
    wanted.iter().all(
        |w| match (0..done.len()).find(|&i| !used[i] && same(&done[i], w)) {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        },
    )
}
