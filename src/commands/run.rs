//! `tidings run --once [--now TIME]`: one pass of the engine, for cron-driven setups and
//! for rehearsing a moment in time.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;

use crate::cli::RunArgs;
use crate::commands::{CommandError, eprint_diagnostics, open_store};
use crate::compile::compile_project;
use crate::engine::Engine;

pub fn run(root: &Path, args: &RunArgs) -> Result<ExitCode, CommandError> {
    let now = match &args.now {
        None => Utc::now(),
        Some(t) => crate::import::parse_time(t).map_err(CommandError::Usage)?,
    };
    let (runtime, project, store) = open_store(root)?;
    let compiled = compile_project(&project, &[]);
    if compiled.has_errors() {
        eprint_diagnostics(&compiled.diagnostics);
        eprintln!("error: the workflows have errors; nothing was run");
        return Ok(ExitCode::FAILURE);
    }
    let engine = Engine::new(
        Arc::new(compiled.plan),
        store.clone(),
        project.config.clone(),
    );
    let report = runtime
        .block_on(engine.run_once(now))
        .map_err(|e| CommandError::Usage(format!("the pass stopped: {e}")))?;
    runtime.block_on(store.close());
    writeln!(
        std::io::stdout(),
        "pass at {}: {} events, {} enrolled, {} steps, {} emails and {} webhooks queued; {} completed, {} converted, {} exited, {} failed",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        report.events,
        report.enrolled,
        report.steps,
        report.emails,
        report.webhooks,
        report.completed,
        report.converted,
        report.exited,
        report.failed
    )?;
    Ok(ExitCode::SUCCESS)
}
