//! The run's `report.html`, built from `metrics.jsonl` and the final evaluation.

use serde_json::Value;

use super::Pipeline;
use super::evaluation::FinalEvaluation;
use crate::report::{Report, Series, WinRateRow};

fn get(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn series(records: &[Value], kind: &str, name: &str, path: &[&str]) -> Series {
    let points = records
        .iter()
        .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .filter_map(|r| Some((get(r, &["iteration"])?, get(r, path)?)))
        .collect();
    Series {
        name: name.to_string(),
        points,
    }
}

/// Builds the report of the run in `p`.
pub(super) fn build(p: &Pipeline, evaluation: &FinalEvaluation) -> anyhow::Result<Report> {
    let records = p.dir.read_metrics()?;
    let s = &p.settings;
    let mut report = Report {
        title: format!("ARLAS run {}", p.dir.root().display()),
        ..Report::default()
    };
    report.facts = vec![
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
        ("population".into(), p.population.len().to_string()),
    ];
    report.tables.push((
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
    ));
    report.charts.push((
        "Held-out evaluation".into(),
        "rate".into(),
        vec![
            series(
                &records,
                "eval",
                "TSR (no attack)",
                &["report", "task_success_rate"],
            ),
            series(
                &records,
                "eval",
                "ASR (templates)",
                &["report", "by_attacker", "templates", "attack_success_rate"],
            ),
            series(
                &records,
                "eval",
                "ASR (all attackers)",
                &["report", "attack_success_rate"],
            ),
        ],
    ));
    report.charts.push((
        "Training rewards".into(),
        "mean reward".into(),
        vec![
            series(
                &records,
                "iteration",
                "agent (vs population)",
                &["agent_phase", "mean_agent_reward"],
            ),
            series(
                &records,
                "iteration",
                "attacker (vs current agent)",
                &["attacker_phase", "mean_attacker_reward"],
            ),
        ],
    ));
    report.charts.push((
        "Training rates".into(),
        "rate".into(),
        vec![
            series(
                &records,
                "iteration",
                "TSR, agent phase",
                &["agent_phase", "task_success_rate"],
            ),
            series(
                &records,
                "iteration",
                "ASR, agent phase",
                &["agent_phase", "attack_success_rate"],
            ),
            series(
                &records,
                "iteration",
                "ASR, attacker phase",
                &["attacker_phase", "attack_success_rate"],
            ),
        ],
    ));
    report.win_rates = evaluation
        .trained
        .by_attacker
        .iter()
        .map(|(name, r)| WinRateRow {
            attacker: name.clone(),
            games: r.episodes as u64,
            attack_success_rate: r.attack_success_rate,
            task_success_rate: r.task_success_rate,
        })
        .collect();
    report.tables.push((
        "Attack diversity (injections written in the final evaluation)".into(),
        vec![
            "attackers".into(),
            "injections".into(),
            "distinct-1".into(),
            "distinct-2".into(),
            "distinct-3".into(),
            "self-similarity".into(),
        ],
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
    ));
    Ok(report)
}
