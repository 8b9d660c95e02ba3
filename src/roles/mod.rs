//! The distributed roles' settings: for each role one clap + serde struct whose fields are
//! its flags, their `ARLAS_*` variables and the keys of its `--config` TOML file (the
//! mechanism is [`crate::config`]), and `resolve`, which applies the defaults and checks the
//! values. `arlas train --processes` builds these structs as values and hands each role its
//! file.

pub mod actor;
pub mod coordinator;
pub mod learner;

/// A role's flags parsed as the `arlas` binary would (the roles' settings tests).
#[cfg(test)]
fn parse_for_tests<A: clap::Args>(args: &[&str]) -> Result<A, clap::Error> {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }

    Cli::<A>::try_parse_from(std::iter::once("arlas").chain(args.iter().copied())).map(|c| c.args)
}
