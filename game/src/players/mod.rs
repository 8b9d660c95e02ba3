//! Scripted players: baselines and demonstration writers. They see the episode with
//! privileged access and answer in exactly the text protocol a model writes, so their
//! transcripts are supervised fine-tuning data.

mod agents;
mod attackers;

pub use agents::{AgentKind, Expert, Naive, RandomAgent, ScriptedAgent};
pub use attackers::{AttackerKind, ScriptedAttacker, TemplateAttacker};
