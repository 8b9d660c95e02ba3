//! Progress on the terminal: a bar for warm-up steps, then one for iterations showing
//! episodes/s and the latest TSR/ASR. Hidden when not asked for (tests, `--quiet`); the
//! same facts also go to the log.

use arlas_actor::EvalRates;
use arlas_actor::eval::EvalReport;
use indicatif::{ProgressBar, ProgressStyle};

pub(super) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub(super) fn new(show: bool, _iterations: u32) -> Self {
        let bar = if show {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }

    pub(super) fn phase(&self, what: &str) {
        tracing::debug!("{what}");
        self.bar.set_message(what.to_string());
    }

    pub(super) fn start_steps(&self, name: &str, total: u64) {
        tracing::info!(total, "{name}");
        self.bar.reset();
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} steps {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_prefix(name.to_string());
    }

    pub(super) fn step(&self, loss: f64) {
        self.bar.set_message(format!("loss {loss:.3}"));
        self.bar.inc(1);
    }

    pub(super) fn finish_steps(&self) {
        self.bar.finish_and_clear();
    }

    pub(super) fn start_iterations(&self, first: u32, last: u32) {
        self.bar.reset();
        self.bar.set_length(u64::from(last));
        self.bar.set_position(u64::from(first.saturating_sub(1)));
        self.bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:30}] {pos}/{len} iterations {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        self.bar.set_prefix("ARLAS");
    }

    pub(super) fn iteration(
        &self,
        i: u32,
        episodes_per_sec: f64,
        agent: Option<&EvalRates>,
        eval: Option<&EvalReport>,
    ) {
        let train = agent.map_or(String::new(), |r| {
            format!(
                " train TSR {:.2} ASR {:.2}",
                r.task_success_rate, r.attack_success_rate
            )
        });
        let held_out = eval.map_or(String::new(), |r| {
            format!(
                " | eval TSR {:.2} ASR(templates) {:.2}",
                r.task_success_rate,
                templates_asr(r)
            )
        });
        let msg = format!("{episodes_per_sec:.1} episodes/s{train}{held_out}");
        tracing::info!(iteration = i, "{msg}");
        self.bar.set_position(u64::from(i));
        self.bar.set_message(msg);
    }

    pub(super) fn eval(&self, i: u32, report: &EvalReport) {
        tracing::info!(
            iteration = i,
            tsr = report.task_success_rate,
            asr_templates = templates_asr(report),
            asr = report.attack_success_rate,
            "evaluation"
        );
    }

    pub(super) fn finish_iterations(&self) {
        self.bar.finish_and_clear();
    }
}

pub(super) fn templates_asr(report: &EvalReport) -> f64 {
    report
        .by_attacker
        .get("templates")
        .map_or(0.0, |r| r.attack_success_rate)
}
