//! `arlas eval`: a trained agent on held-out tasks, with no attack and against attackers.

use arlas::evaluate::{EvalArgs, evaluate};
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
    println!("task success rate, no attack: {:.3}", out.task_success_rate);
    println!("| {:<40} | {:>6} | {:>6} |", "attacker", "TSR", "ASR");
    for (name, r) in &out.by_attacker {
        println!(
            "| {:<40} | {:>6.3} | {:>6.3} |",
            name, r.rates.task_success_rate, r.rates.attack_success_rate
        );
    }
    Ok(())
}
