//! The `arlas` binary's library half: the one-machine ARLAS pipeline that `arlas train`,
//! `arlas demo` and `arlas eval` run, and the run report. The roles it wires together live
//! in their own crates: `arlas-actor` (play and record), `arlas-learner` (update),
//! `arlas-coordinator` (population, payoffs, opponents).
//!
//! - [`pipeline`]: settings, the run directory, warm-up, adversarial iterations,
//!   evaluation and resume;
//! - [`report`]: `report.html` with inline SVG plots;
//! - [`cluster`]: the distributed roles as local processes (`arlas train --processes`).

pub mod cluster;
pub mod pipeline;
pub mod report;
