//! `tidings run --once [--now TIME]`: one pass of the engine, then the outbox is drained
//! through the configured transport — for cron-driven setups and for rehearsing a moment.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;

use crate::cli::RunArgs;
use crate::commands::{CommandError, eprint_diagnostics, open_store};
use crate::compile::compile_project;
use crate::delivery::{
    DispatchOptions, Transport, configured_transport, dispatch, recover_interrupted,
};
use crate::engine::Engine;
use crate::webhook::WebhookSender;

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
    // Its errors name the setting they come from.
    let transport =
        configured_transport(&project).map_err(|e| CommandError::Usage(e.to_string()))?;
    let options = DispatchOptions::from_config(
        &project.config.email,
        &project.root,
        store.backend() == crate::store::Backend::Sqlite,
    )
    .map_err(|e| CommandError::Usage(e.to_string()))?;
    let engine = Engine::new(
        Arc::new(compiled.plan),
        store.clone(),
        project.config.clone(),
    );
    let report = runtime
        .block_on(engine.run_once(now))
        .map_err(|e| CommandError::Usage(format!("the pass stopped: {e}")))?;
    let sent = runtime
        .block_on(async {
            let recovered = recover_interrupted(&store, &options).await?;
            let mut report = dispatch(&store, &transport, &options, now).await?;
            report.problems.splice(0..0, recovered);
            Ok::<_, crate::delivery::DeliveryError>(report)
        })
        .map_err(|e| CommandError::Usage(format!("delivery stopped: {e}")))?;
    let sender = WebhookSender::new(&project.config.webhooks)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let calls = runtime
        .block_on(sender.dispatch(&store, now))
        .map_err(|e| CommandError::Usage(format!("webhook calls stopped: {e}")))?;
    runtime.block_on(store.close());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
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
    let where_ = match &transport {
        Transport::Folder(dir) => format!(" to {}", dir.display()),
        Transport::Smtp(server) => format!(" to {}:{}", server.host, server.port),
        Transport::Stdout | Transport::Discard => String::new(),
    };
    writeln!(
        out,
        "delivered {} emails{where_}; {} failed, {} to retry, {} suppressed, {} unknown",
        sent.sent, sent.failed, sent.retrying, sent.suppressed, sent.unknown
    )?;
    for problem in &sent.problems {
        eprintln!("warning: {problem}");
    }
    if calls.sent + calls.retrying + calls.failed > 0 {
        writeln!(
            out,
            "called {} webhooks; {} will be retried, {} failed",
            calls.sent, calls.retrying, calls.failed
        )?;
    }
    for problem in &calls.problems {
        eprintln!("warning: {problem}");
    }
    Ok(ExitCode::SUCCESS)
}
