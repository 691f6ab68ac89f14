//! `tidings run --once [--now TIME]`: one pass of the engine, then the outbox is drained
//! through the configured transport — for cron-driven setups and for rehearsing a moment.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::args::RunArgs;
use crate::cli::shared::{CommandError, compile_or_report, counted, open_store, time_arg};
use crate::delivery::Transport;
use crate::pass::{Outcome, Runner};
use crate::progress::{Progress, ProgressMode};

pub fn run(root: &Path, args: &RunArgs, progress: ProgressMode) -> Result<ExitCode, CommandError> {
    let now = time_arg(args.now.as_deref())?;
    let (runtime, project, store) = open_store(root)?;
    let Some(compiled) = compile_or_report(&project, "nothing was run") else {
        return Ok(ExitCode::FAILURE);
    };
    if !crate::cli::shared::fit_to_send(&project, "nothing was run") {
        return Ok(ExitCode::FAILURE);
    }
    let mut runner = Runner::new(&project, store.clone(), Arc::new(compiled.plan))?;
    if args.now.is_some() {
        // A moment rehearsed by hand: its mail is dated by the virtual clock.
        runner.options.dates = crate::delivery::MessageDates::PassMoment;
    }
    let line = Progress::start(
        progress,
        crate::progress::pass_line(runner.meter().clone(), crate::store::statements),
    );
    let outcome = runtime.block_on(async {
        let recovered = runner.recover().await?;
        let mut outcome = runner.pass(now).await?;
        outcome.emails.problems.splice(0..0, recovered);
        Ok::<_, crate::pass::PassError>(outcome)
    });
    line.finish();
    runtime.block_on(store.close());
    say(now, outcome?, &runner.transport)?;
    Ok(ExitCode::SUCCESS)
}

/// What the pass did, for the operator: a line each for the engine, the emails, the
/// webhook calls and the bodies dropped; problems as warnings.
fn say(
    now: chrono::DateTime<chrono::Utc>,
    outcome: Outcome,
    transport: &Transport,
) -> Result<(), CommandError> {
    let Outcome {
        engine: report,
        emails: sent,
        webhooks: calls,
        bodies_dropped,
    } = outcome;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "pass at {}: {}, {} enrolled, {}, {} and {} queued; {} completed, {} met exit_when, {} exited, {} failed",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        counted(report.events, "event"),
        report.enrolled,
        counted(report.steps, "step"),
        counted(report.emails, "email"),
        counted(report.webhooks, "webhook"),
        report.completed,
        report.converted,
        report.exited,
        report.failed
    )?;
    let where_ = match transport {
        Transport::Folder(dir) => format!(" to {}", dir.display()),
        Transport::Smtp(server) => format!(" to {}:{}", server.host, server.port),
        Transport::Stdout | Transport::Discard => String::new(),
    };
    writeln!(
        out,
        "delivered {}{where_}; {} failed, {} to retry, {} suppressed, {} unknown",
        counted(sent.sent, "email"),
        sent.failed,
        sent.retrying,
        sent.suppressed,
        sent.unknown
    )?;
    for problem in &sent.problems {
        eprintln!("warning: {problem}");
    }
    if calls.sent + calls.retrying + calls.failed > 0 {
        writeln!(
            out,
            "called {}; {} will be retried, {} failed",
            counted(calls.sent, "webhook"),
            calls.retrying,
            calls.failed
        )?;
    }
    for problem in &calls.problems {
        eprintln!("warning: {problem}");
    }
    if bodies_dropped > 0 {
        writeln!(
            out,
            "dropped the bodies of {} done before retention.bodies",
            counted(bodies_dropped, "email")
        )?;
    }
    Ok(())
}
