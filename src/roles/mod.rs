//! The distributed roles' settings: for each role one clap + serde struct whose fields are
//! its flags, their `ARLAS_*` variables and the keys of its `--config` TOML file (the
//! mechanism is [`crate::config`]), and `resolve`, which applies the defaults and checks the
//! values. `arlas train --processes` builds these structs as values and hands each role its
//! file.

pub mod actor;
pub mod coordinator;
pub mod learner;
