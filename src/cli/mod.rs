//! Command-line front ends. Each module parses its flags and calls into the library crates;
//! no game or model logic lives here.

pub mod actor;
pub mod bench;
pub mod bench_env;
pub mod bench_iteration;
pub mod bench_join;
pub mod config_reference;
pub mod coordinator;
pub mod env;
pub mod eval;
pub mod experiment;
pub mod game;
pub mod learner;
pub mod logging;
pub mod model;
pub mod processes;
pub mod role;
pub mod train;
