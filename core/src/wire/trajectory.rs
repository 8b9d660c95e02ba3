//! Conversions between the wire [`v1::Trajectory`] and [`Trajectory`]: the one
//! place where a received trajectory is validated (learners call `try_from` at the edge and
//! trust the result inside).

use arlas_game::environment::{BUILTIN, TaskRef};
use arlas_game::{EpisodeSpec, Outcome, Rewards, Split, Suite, Verdicts};
use arlas_proto::{Error, Result, v1};

use crate::trajectory::{Segment, Trajectory};

/// Largest log-prob accepted: log-probs are ≤ 0; this leaves room for rounding only.
const MAX_LOGPROB: f32 = 1e-4;

/// Smallest log-prob accepted. A sampled token's log-prob is above ln of the smallest f32
/// (about -104) at any temperature a rollout uses; this leaves a wide margin and refuses the
/// absurd values (-3e38) with which one actor could derail a learner's step.
const MIN_LOGPROB: f32 = -1e4;

/// Largest |reward| accepted: the game's rewards are ±1 less a format-error penalty per
/// turn; a reward of 1e30 would overflow the group's variance.
const MAX_ABS_REWARD: f32 = 1e3;

impl From<&Trajectory> for v1::Trajectory {
    fn from(t: &Trajectory) -> Self {
        Self {
            spec: Some(v1::EpisodeSpec {
                suite: t.spec.suite.clone(),
                split: t.spec.split.name().to_string(),
                template: t.spec.task.clone(),
                seed: t.spec.seed,
                environment: t.spec.environment.clone(),
            }),
            group: t.group,
            agent_version: t.agent_version,
            opponent: t.opponent.clone(),
            attacker_version: t.attacker_version,
            agent: t.agent.iter().map(segment_to_wire).collect(),
            attacker: t.attacker.iter().map(segment_to_wire).collect(),
            injections: t.injections.clone(),
            outcome: outcome_to_wire(t.outcome).into(),
            rewards: Some(v1::Rewards {
                attacker: t.rewards.attacker,
                agent: t.rewards.agent,
            }),
            turns: t.turns,
            format_errors: t.format_errors,
            truncated: t.truncated,
            utility: t.verdicts.map(|v| v.utility),
            security: t.verdicts.and_then(|v| v.security),
        }
    }
}

impl TryFrom<v1::Trajectory> for Trajectory {
    type Error = Error;

    fn try_from(t: v1::Trajectory) -> Result<Self> {
        let spec = spec_from_wire(t.spec.ok_or(Error::Missing {
            field: "trajectory.spec",
        })?)?;
        let rewards = t.rewards.ok_or(Error::Missing {
            field: "trajectory.rewards",
        })?;
        let bounded = |r: f32| r.is_finite() && r.abs() <= MAX_ABS_REWARD;
        if !(bounded(rewards.attacker) && bounded(rewards.agent)) {
            return Err(Error::invalid(
                "trajectory.rewards",
                format!(
                    "rewards must be finite and within ±{MAX_ABS_REWARD}, got attacker {} agent {}",
                    rewards.attacker, rewards.agent
                ),
            ));
        }
        Ok(Self {
            spec,
            group: t.group,
            agent_version: t.agent_version,
            opponent: t.opponent,
            attacker_version: t.attacker_version,
            agent: segments_from_wire("trajectory.agent", t.agent)?,
            attacker: segments_from_wire("trajectory.attacker", t.attacker)?,
            injections: t.injections,
            outcome: outcome_from_wire(t.outcome)?,
            rewards: Rewards {
                attacker: rewards.attacker,
                agent: rewards.agent,
            },
            turns: t.turns,
            format_errors: t.format_errors,
            truncated: t.truncated,
            verdicts: t.utility.map(|utility| Verdicts {
                utility,
                security: t.security,
            }),
            record: None,
        })
    }
}

/// Longest environment name, in bytes.
pub const MAX_ENVIRONMENT_BYTES: usize = 64;
/// Longest suite or task name, in bytes.
pub const MAX_TASK_NAME_BYTES: usize = 256;

fn spec_from_wire(spec: v1::EpisodeSpec) -> Result<TaskRef> {
    let split: Split = spec
        .split
        .parse()
        .map_err(|e| Error::invalid("trajectory.spec.split", format!("{e}")))?;
    let environment = if spec.environment.is_empty() {
        BUILTIN.to_string()
    } else {
        spec.environment
    };
    let ok_name = !environment.is_empty()
        && environment.len() <= MAX_ENVIRONMENT_BYTES
        && environment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok_name {
        return Err(Error::invalid(
            "trajectory.spec.environment",
            format!(
                "{environment:?}: use 1 to {MAX_ENVIRONMENT_BYTES} letters, digits, '-' or '_'"
            ),
        ));
    }
    for (field, value) in [
        ("trajectory.spec.suite", &spec.suite),
        ("trajectory.spec.template", &spec.template),
    ] {
        if value.is_empty()
            || value.len() > MAX_TASK_NAME_BYTES
            || value.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                field,
                format!(
                    "{value:?}: use 1 to {MAX_TASK_NAME_BYTES} bytes without control characters"
                ),
            ));
        }
    }
    let task = TaskRef {
        environment,
        suite: spec.suite,
        split,
        task: spec.template,
        seed: spec.seed,
    };
    // The built-in environment's tasks are checked against its suites.
    if task.environment == BUILTIN {
        let suite_known = task.suite.parse::<Suite>().is_ok();
        EpisodeSpec::try_from(&task).map_err(|e| {
            let field = if suite_known {
                "trajectory.spec.template"
            } else {
                "trajectory.spec.suite"
            };
            Error::invalid(field, e.to_string())
        })?;
    }
    Ok(task)
}

fn segment_to_wire(s: &Segment) -> v1::Segment {
    v1::Segment {
        prompt: s.prompt.clone(),
        completion: s.completion.clone(),
        logprobs: s.logprobs.clone(),
    }
}

fn segments_from_wire(field: &'static str, segments: Vec<v1::Segment>) -> Result<Vec<Segment>> {
    segments
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if !s.logprobs.is_empty() && s.logprobs.len() != s.completion.len() {
                return Err(Error::invalid(
                    field,
                    format!(
                        "segment {i} has {} log-probs for {} completion tokens (send one per token, or none for demonstrations)",
                        s.logprobs.len(),
                        s.completion.len()
                    ),
                ));
            }
            if let Some(bad) = s
                .logprobs
                .iter()
                .find(|lp| !(lp.is_finite() && (MIN_LOGPROB..=MAX_LOGPROB).contains(*lp)))
            {
                return Err(Error::invalid(
                    field,
                    format!(
                        "segment {i} has log-prob {bad}; log-probs are finite, at most 0 and at least {MIN_LOGPROB}"
                    ),
                ));
            }
            Ok(Segment {
                prompt: s.prompt,
                completion: s.completion,
                logprobs: s.logprobs,
            })
        })
        .collect()
}

fn outcome_to_wire(o: Outcome) -> v1::Outcome {
    match o {
        Outcome::Leaked => v1::Outcome::Leaked,
        Outcome::Completed => v1::Outcome::Completed,
        Outcome::Failed => v1::Outcome::Failed,
        Outcome::TurnLimit => v1::Outcome::TurnLimit,
    }
}

fn outcome_from_wire(raw: i32) -> Result<Outcome> {
    match v1::Outcome::try_from(raw) {
        Ok(v1::Outcome::Leaked) => Ok(Outcome::Leaked),
        Ok(v1::Outcome::Completed) => Ok(Outcome::Completed),
        Ok(v1::Outcome::Failed) => Ok(Outcome::Failed),
        Ok(v1::Outcome::TurnLimit) => Ok(Outcome::TurnLimit),
        Ok(v1::Outcome::Unspecified) => Err(Error::Missing {
            field: "trajectory.outcome",
        }),
        Err(_) => Err(Error::invalid(
            "trajectory.outcome",
            format!("unknown outcome value {raw}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = Segment> {
        (
            prop::collection::vec(any::<u32>(), 0..8),
            prop::collection::vec((any::<u32>(), -20.0f32..0.0), 0..8),
            any::<bool>(),
        )
            .prop_map(|(prompt, sampled, demo)| Segment {
                prompt,
                completion: sampled.iter().map(|(t, _)| *t).collect(),
                logprobs: if demo {
                    Vec::new()
                } else {
                    sampled.iter().map(|(_, lp)| *lp).collect()
                },
            })
    }

    fn trajectory() -> impl Strategy<Value = Trajectory> {
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(segment(), 0..4),
            prop::collection::vec(segment(), 0..4),
            0usize..4,
            any::<bool>(),
        )
            .prop_map(|(seed, version, agent, attacker, outcome, truncated)| {
                let outcome = Outcome::ALL[outcome];
                Trajectory {
                    spec: TaskRef::from(&EpisodeSpec::sample(Split::Train, seed)),
                    group: seed % 7,
                    agent_version: version,
                    opponent: "attacker-0001".into(),
                    attacker_version: version / 2,
                    agent,
                    attacker,
                    injections: vec!["hi {goal}".into()],
                    outcome,
                    rewards: Rewards::for_outcome(outcome, 0, 0, 0.0),
                    turns: 3,
                    format_errors: 1,
                    truncated,
                    verdicts: match seed % 4 {
                        0 => None,
                        1 => Some(Verdicts {
                            utility: true,
                            security: None,
                        }),
                        2 => Some(Verdicts {
                            utility: false,
                            security: Some(true),
                        }),
                        _ => Some(Verdicts {
                            utility: true,
                            security: Some(false),
                        }),
                    },
                    record: None,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trips_through_the_wire(t in trajectory()) {
            let wire = v1::Trajectory::from(&t);
            let back = Trajectory::try_from(wire).unwrap();
            prop_assert_eq!(back, t);
        }
    }

    fn valid() -> v1::Trajectory {
        let t = Trajectory {
            spec: TaskRef::from(&EpisodeSpec::sample(Split::Eval, 3)),
            group: 0,
            agent_version: 1,
            opponent: "none".into(),
            attacker_version: 0,
            agent: vec![Segment {
                prompt: vec![1, 2],
                completion: vec![3],
                logprobs: vec![-0.5],
            }],
            attacker: Vec::new(),
            injections: Vec::new(),
            outcome: Outcome::Completed,
            rewards: Rewards::for_outcome(Outcome::Completed, 0, 0, 0.0),
            turns: 1,
            format_errors: 0,
            truncated: false,
            verdicts: None,
            record: None,
        };
        v1::Trajectory::from(&t)
    }

    type Breakage = Box<dyn Fn(&mut v1::Trajectory)>;

    #[test]
    fn malformed_wire_trajectories_are_rejected_with_the_field() {
        let cases: Vec<(&str, Breakage)> = vec![
            ("trajectory.spec", Box::new(|t| t.spec = None)),
            ("trajectory.rewards", Box::new(|t| t.rewards = None)),
            ("trajectory.outcome", Box::new(|t| t.outcome = 0)),
            ("trajectory.outcome", Box::new(|t| t.outcome = 99)),
            (
                "trajectory.spec.suite",
                Box::new(|t| t.spec.as_mut().unwrap().suite = "casino".into()),
            ),
            (
                "trajectory.spec.template",
                Box::new(|t| t.spec.as_mut().unwrap().template = "../../etc".into()),
            ),
            (
                "trajectory.spec.environment",
                Box::new(|t| t.spec.as_mut().unwrap().environment = "a/b".into()),
            ),
            (
                "trajectory.spec.template",
                Box::new(|t| {
                    let spec = t.spec.as_mut().unwrap();
                    spec.environment = "agentdojo".into();
                    spec.template = "x".repeat(MAX_TASK_NAME_BYTES + 1);
                }),
            ),
            (
                "trajectory.agent",
                Box::new(|t| t.agent[0].logprobs = vec![-0.1, -0.2]),
            ),
            (
                "trajectory.agent",
                Box::new(|t| t.agent[0].logprobs = vec![f32::NAN]),
            ),
            (
                "trajectory.agent",
                Box::new(|t| t.agent[0].logprobs = vec![0.7]),
            ),
            (
                "trajectory.agent",
                Box::new(|t| t.agent[0].logprobs = vec![-3.0e38]),
            ),
            (
                "trajectory.rewards",
                Box::new(|t| t.rewards.as_mut().unwrap().agent = f32::INFINITY),
            ),
            (
                "trajectory.rewards",
                Box::new(|t| t.rewards.as_mut().unwrap().attacker = 1.0e30),
            ),
        ];
        assert!(Trajectory::try_from(valid()).is_ok());
        // Another environment's tasks are opaque: any bounded names pass.
        let mut foreign = valid();
        let spec = foreign.spec.as_mut().unwrap();
        spec.environment = "agentdojo".into();
        spec.suite = "slack".into();
        spec.template = "user_task_3/injection_task_1".into();
        assert_eq!(
            Trajectory::try_from(foreign).unwrap().spec.environment,
            "agentdojo"
        );
        for (field, break_it) in cases {
            let mut wire = valid();
            break_it(&mut wire);
            let err = Trajectory::try_from(wire).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}
