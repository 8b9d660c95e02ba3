//! The `arlas` binary's library half: the one-machine ARLAS pipeline that `arlas train`,
//! `arlas demo` and `arlas eval` run, and the run report. The roles it wires together live
//! in their own crates: `arlas-actor` (play and record), `arlas-learner` (update),
//! `arlas-coordinator` (population, payoffs, opponents).
//!
//! - [`pipeline`]: settings, the run directory, warm-up, adversarial iterations,
//!   evaluation and resume;
//! - [`report`]: `report.html` with inline SVG plots;
//! - [`evaluate`](mod@evaluate): an agent on held-out tasks (`arlas eval`);
//! - [`environments`]: `--env builtin|agentdojo`, a local environment service or `--env-url`;
//! - [`experiment`]: the summary of `arlas experiment` across seeds;
//! - [`config`]: the one configuration mechanism (defaults < file < environment < flags);
//! - [`roles`]: the distributed roles' settings (flags, variables and `--config` keys);
//! - [`cluster`]: the distributed roles as local processes (`arlas train --processes`).

pub mod cluster;
pub mod config;
pub mod environments;
pub mod evaluate;
pub mod experiment;
pub mod pipeline;
pub mod report;
pub mod roles;
