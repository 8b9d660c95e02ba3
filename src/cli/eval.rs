//! `arlas eval`: a trained agent on held-out tasks, with no attack and against attackers.

use arlas::evaluate::{BaselineEval, EvalArgs, evaluate};
use arlas_core::stats::PairedDifference;
use clap::Args;

#[derive(Debug, Args)]
pub struct EvalCommand {
    #[command(flatten)]
    pub args: EvalArgs,
    /// Print one JSON object on stdout (otherwise a table).
    #[arg(long)]
    pub json: bool,
}

pub fn eval(command: EvalCommand) -> anyhow::Result<()> {
    let args = command.args;
    let out = evaluate(&args)?;
    if command.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!(
        "agent {} on {} tasks ({} episodes per attacker)",
        args.agent,
        args.split.name(),
        args.episodes
    );
    println!("rates with their 95% intervals and counts");
    println!("task success rate, no attack: {}", out.task_success);
    println!("| {:<40} | {:<34} | {:<34} |", "attacker", "TSR", "ASR");
    for (name, r) in &out.by_attacker {
        println!(
            "| {:<40} | {:<34} | {:<34} |",
            name,
            r.rates.task_success.to_string(),
            r.rates.attack_success.to_string()
        );
    }
    if let Some(b) = &out.baseline {
        print_paired(b);
    }
    Ok(())
}

/// This agent minus the baseline on the same episodes, rate by rate.
fn print_paired(b: &BaselineEval) {
    println!();
    println!(
        "minus the baseline {} on the same episodes (paired difference, 95% interval, exact \
         McNemar p)",
        b.agent
    );
    println!(
        "| {:<48} | {:>8} | {:<18} | {:>8} |",
        "rate", "diff", "95% interval", "p"
    );
    let row = |what: String, d: &PairedDifference| {
        println!(
            "| {:<48} | {:>+8.3} | [{:>+7.3}, {:>+7.3}] | {:>8.4} |",
            what, d.difference, d.low, d.high, d.mcnemar_p
        );
    };
    row("TSR, no attack".into(), &b.paired.no_attack.task_success);
    row(
        "TSR under attack".into(),
        &b.paired.under_attack.task_success,
    );
    row(
        "ASR, all attackers".into(),
        &b.paired.under_attack.attack_success,
    );
    for (name, r) in &b.paired.by_attacker {
        row(format!("ASR vs {name}"), &r.attack_success);
    }
}
