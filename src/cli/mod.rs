//! The command line: `args` holds the clap types and nothing else; each command has a file
//! of its own; `shared` is what the commands share (opening the store, compiling the
//! workflows, errors and their exit codes).

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

pub mod args;
pub mod daemon;
pub mod enroll;
pub mod import;
pub mod outbox;
pub mod plan;
pub mod preview;
pub mod report;
pub mod results;
pub mod run;
pub mod schedule;
pub mod shared;
pub mod simulate;
pub mod status;
pub mod sync;
pub mod test;
pub mod validate;

/// Parses the arguments, runs the command, and maps the outcome to an exit status:
/// 0 success, 1 problems found or a failure, 2 a usage error (clap's, or an argument the
/// command cannot take: an unknown workflow, a time that does not parse).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Validate(args) => validate::run(&cli.project, args),
        Command::Schedule(args) => schedule::run(&cli.project, args),
        Command::Import(args) => import::run(&cli.project, args, args.progress.progress),
        Command::Event(args) => import::event(&cli.project, args),
        Command::Sync(args) => sync::run(&cli.project, args),
        Command::Run(args) => run::run(&cli.project, args, args.progress.progress),
        Command::Enroll(args) => enroll::run(&cli.project, args),
        Command::Simulate(args) => simulate::run(&cli.project, args, args.progress.progress),
        Command::Outbox(args) => outbox::run(&cli.project, args),
        Command::Plan(args) => plan::run(&cli.project, args),
        Command::Status(args) => status::run(&cli.project, args),
        Command::Report(args) => report::run(&cli.project, args),
        Command::Results(args) => results::run(&cli.project, args),
        Command::Preview(args) => preview::run(&cli.project, args),
        Command::Test(args) => test::run(&cli.project, args),
        Command::Daemon(args) => daemon::run(&cli.project, args),
    };
    match result {
        Ok(code) => code,
        Err(shared::CommandError::Diagnostic(d)) => {
            shared::eprint_diagnostics(&[*d]);
            ExitCode::FAILURE
        }
        // What the command line asked for cannot be done as asked: 2, as clap's own errors.
        Err(shared::CommandError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
