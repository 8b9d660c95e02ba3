//! The run's `report.html`, built from the typed records of `metrics.jsonl` and the final
//! evaluation.

use arlas_actor::EvalRates;
use arlas_core::stats::Proportion;
use arlas_game::Player;

use super::Pipeline;
use super::evaluation::FinalEvaluation;
use super::records::{Eval, Iteration, Record};
use crate::report::{Report, Series, WinRateRow};

/// A series of `(iteration, value)` points read off the records `value` accepts.
fn series<'a>(
    records: &'a [Record],
    name: &str,
    value: impl Fn(&'a Record) -> Option<(u32, f64)>,
) -> Series {
    Series {
        name: name.to_string(),
        points: records
            .iter()
            .filter_map(value)
            .map(|(i, v)| (f64::from(i), v))
            .collect(),
        intervals: Vec::new(),
    }
}

/// A rate per iteration with its 95% interval (none for records written before rates
/// carried their counts).
fn rate_series<'a>(
    records: &'a [Record],
    name: &str,
    value: impl Fn(&'a Record) -> Option<(u32, Proportion)>,
) -> Series {
    let rates: Vec<(f64, Proportion)> = records
        .iter()
        .filter_map(value)
        .map(|(i, p)| (f64::from(i), p))
        .collect();
    Series {
        name: name.to_string(),
        points: rates.iter().map(|(x, p)| (*x, p.rate)).collect(),
        intervals: rates
            .iter()
            .filter(|(_, p)| p.n > 0)
            .map(|(x, p)| (*x, p.low, p.high))
            .collect(),
    }
}

/// A rate of the held-out evaluations.
fn eval_series(
    records: &[Record],
    name: &str,
    rate: impl Fn(&Eval) -> Option<Proportion>,
) -> Series {
    rate_series(records, name, |r| match r {
        Record::Eval(e) => Some((e.iteration, rate(e)?)),
        _ => None,
    })
}

/// A rate of one training phase of each iteration.
fn phase_series(
    records: &[Record],
    name: &str,
    phase: impl Fn(&Iteration) -> Option<&EvalRates>,
    rate: impl Fn(&EvalRates) -> Proportion,
) -> Series {
    rate_series(records, name, |r| match r {
        Record::Iteration(i) => Some((i.iteration, rate(phase(i)?))),
        _ => None,
    })
}

/// A mean reward of one training phase of each iteration.
fn reward_series(
    records: &[Record],
    name: &str,
    phase: impl Fn(&Iteration) -> Option<&EvalRates>,
    reward: impl Fn(&EvalRates) -> f64,
) -> Series {
    series(records, name, |r| match r {
        Record::Iteration(i) => Some((i.iteration, reward(phase(i)?))),
        _ => None,
    })
}

fn facts(p: &Pipeline) -> Vec<(String, String)> {
    let s = &p.settings;
    vec![
        ("model".into(), s.model.clone()),
        ("seed".into(), s.seed.to_string()),
        ("iterations".into(), s.iterations.to_string()),
        (
            "tasks × group size".into(),
            format!("{} × {}", s.tasks_per_iteration, s.group_size),
        ),
        (
            "opponents".into(),
            format!("{} / {}", s.opponents, s.opponent_sampling),
        ),
        ("population".into(), p.league.population().len().to_string()),
    ]
}

fn before_after_table(evaluation: &FinalEvaluation) -> (String, Vec<String>, Vec<Vec<String>>) {
    (
        "Warm-up agent vs trained agent (held-out tasks)".into(),
        vec!["metric".into(), "warm-up".into(), "trained".into()],
        evaluation
            .table
            .iter()
            .map(|r| {
                vec![
                    r.metric.clone(),
                    format!("{:.3}", r.warmup),
                    format!("{:.3}", r.trained),
                ]
            })
            .collect(),
    )
}

/// The trained agent minus the warm-up agent on the same episodes, with intervals.
fn paired_table(evaluation: &FinalEvaluation) -> (String, Vec<String>, Vec<Vec<String>>) {
    let p = &evaluation.paired;
    let mut rows = vec![
        (
            "task success rate (no attack)".to_string(),
            &p.no_attack.task_success,
        ),
        (
            "task success rate under attack".to_string(),
            &p.under_attack.task_success,
        ),
        (
            "attack success rate (all attackers)".to_string(),
            &p.under_attack.attack_success,
        ),
    ];
    for (name, r) in &p.by_attacker {
        rows.push((format!("attack success rate ({name})"), &r.attack_success));
    }
    (
        "Trained minus warm-up on the same episodes (paired; 95% intervals, exact McNemar p)"
            .into(),
        [
            "metric",
            "warm-up",
            "trained",
            "difference",
            "95% interval",
            "p",
        ]
        .map(String::from)
        .to_vec(),
        rows.into_iter()
            .map(|(metric, d)| {
                vec![
                    metric,
                    d.b.to_string(),
                    d.a.to_string(),
                    format!("{:+.3}", d.difference),
                    format!("[{:+.3}, {:+.3}]", d.low, d.high),
                    format!("{:.4}", d.mcnemar_p),
                ]
            })
            .collect(),
    )
}

/// Each player's update per iteration: optimizer steps, trained tokens, KL to its start, and
/// its win rate in the phase it trained on (the agent's task success, the attacker's attack
/// success, with 95% intervals); an update with no optimizer step is flagged.
fn updates_table(records: &[Record]) -> (String, Vec<String>, Vec<Vec<String>>) {
    let phase = |iteration: u32, player: Player| {
        records.iter().find_map(|r| match r {
            Record::Iteration(i) if i.iteration == iteration => match player {
                Player::Agent => i.agent_phase.map(|p| p.task_success),
                Player::Attacker => i.attacker_phase.map(|p| p.attack_success),
            },
            _ => None,
        })
    };
    let rows = records
        .iter()
        .filter_map(|r| match r {
            Record::Update(u) => Some(u),
            _ => None,
        })
        .map(|u| {
            vec![
                u.iteration.to_string(),
                u.player.name().to_string(),
                u.version.to_string(),
                if u.steps == 0 {
                    "0 (no update)".to_string()
                } else {
                    u.steps.to_string()
                },
                u.means.tokens.to_string(),
                format!("{:.2e}", u.means.kl),
                phase(u.iteration, u.player).map_or("—".into(), |p| p.to_string()),
            ]
        })
        .collect();
    (
        "Updates per iteration (win rate: the agent's task success or the attacker's attack \
         success in the phase it trained on, 95% interval)"
            .into(),
        [
            "iteration",
            "player",
            "version",
            "optimizer steps",
            "trained tokens",
            "KL to start",
            "win rate",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    )
}

fn diversity_table(evaluation: &FinalEvaluation) -> (String, Vec<String>, Vec<Vec<String>>) {
    (
        "Attack diversity (injections written in the final evaluation)".into(),
        [
            "attackers",
            "injections",
            "distinct-1",
            "distinct-2",
            "distinct-3",
            "self-similarity",
        ]
        .map(String::from)
        .to_vec(),
        evaluation
            .diversity
            .iter()
            .map(|(k, d)| {
                vec![
                    k.clone(),
                    d.injections.to_string(),
                    format!("{:.3}", d.distinct_1),
                    format!("{:.3}", d.distinct_2),
                    format!("{:.3}", d.distinct_3),
                    format!("{:.3}", d.self_similarity),
                ]
            })
            .collect(),
    )
}

fn charts(records: &[Record]) -> Vec<(String, String, Vec<Series>)> {
    let templates = |e: &Eval| {
        e.report
            .by_attacker
            .get("templates")
            .map(|r| r.attack_success)
    };
    vec![
        (
            "Held-out evaluation (95% intervals)".into(),
            "rate".into(),
            vec![
                eval_series(records, "TSR (no attack)", |e| {
                    Some(e.report.no_attack.task_success)
                }),
                eval_series(records, "ASR (templates)", templates),
                eval_series(records, "ASR (all attackers)", |e| {
                    Some(e.report.attack_success)
                }),
            ],
        ),
        (
            "Training rewards".into(),
            "mean reward".into(),
            vec![
                reward_series(
                    records,
                    "agent (vs population)",
                    |i| i.agent_phase.as_ref(),
                    |r| r.mean_agent_reward,
                ),
                reward_series(
                    records,
                    "attacker (vs current agent)",
                    |i| i.attacker_phase.as_ref(),
                    |r| r.mean_attacker_reward,
                ),
            ],
        ),
        (
            "Training rates (95% intervals)".into(),
            "rate".into(),
            vec![
                phase_series(
                    records,
                    "TSR, agent phase",
                    |i| i.agent_phase.as_ref(),
                    |r| r.task_success,
                ),
                phase_series(
                    records,
                    "ASR, agent phase",
                    |i| i.agent_phase.as_ref(),
                    |r| r.attack_success,
                ),
                phase_series(
                    records,
                    "ASR, attacker phase",
                    |i| i.attacker_phase.as_ref(),
                    |r| r.attack_success,
                ),
            ],
        ),
    ]
}

/// Builds the report of the run in `p`.
pub(super) fn build(p: &Pipeline, evaluation: &FinalEvaluation) -> anyhow::Result<Report> {
    let records = p.dir.read_metrics()?;
    Ok(Report {
        title: format!("ARLAS run {}", p.dir.root().display()),
        facts: facts(p),
        tables: vec![
            before_after_table(evaluation),
            paired_table(evaluation),
            updates_table(&records),
            diversity_table(evaluation),
        ],
        charts: charts(&records),
        win_rates: evaluation
            .trained
            .by_attacker
            .iter()
            .map(|(name, r)| WinRateRow {
                attacker: name.clone(),
                games: r.episodes as u64,
                attack_success_rate: r.attack_success_rate,
                task_success_rate: r.task_success_rate,
            })
            .collect(),
    })
}
