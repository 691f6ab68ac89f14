//! `tidings daemon`: passes on a timer and the HTTP endpoints, until SIGTERM or SIGINT —
//! then the pass in progress finishes and the process exits 0.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::args::{DaemonArgs, LogFormat};
use crate::cli::shared::{CommandError, compile_or_report};
use crate::config::Project;
use crate::daemon::life::{Served, api_token, serve_and_pass, server_limits, sole_daemon};

pub fn run(root: &Path, args: &DaemonArgs) -> Result<ExitCode, CommandError> {
    init_logs(args.log_format);
    let every = crate::time::duration::parse(&args.every)
        .ok()
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "`--every {}` is not a time between passes; {}",
                args.every,
                crate::time::duration::DURATION_HELP
            ))
        })?;
    let mut project = Project::load(root).map_err(CommandError::Diagnostic)?;
    let Some(compiled) = compile_or_report(&project, "the daemon did not start") else {
        return Ok(ExitCode::FAILURE);
    };
    if !crate::cli::shared::fit_to_send(&project, "the daemon did not start") {
        return Ok(ExitCode::FAILURE);
    }
    for d in crate::workflow::compile::unset_variables(&compiled.plan) {
        let at = (d.span.as_ref()).map(|s| format!("{}:{}", s.file.path().display(), s.start.line));
        tracing::warn!(at = at.as_deref().unwrap_or(""), "{}", d.message);
    }
    let token = api_token(&project)?;
    let limits = server_limits(&project)?;
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| project.config.server.listen.clone());
    // Without a public address, the links in emails point where this daemon listens
    // (`--listen` included), not at the default port it may not be on.
    if project.config.server.public_url.is_none() && project.config.unsubscribe.base_url.is_none() {
        project.config.server.public_url = Some(format!("http://{listen}"));
    }
    let url = crate::cli::shared::database_url(&project)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // SQLite has one writer: a second daemon on the same file would only fight the first.
    let _sole = match crate::store::sqlite_file(&url) {
        Some(path) => Some(sole_daemon(path)?),
        None => None,
    };
    runtime.block_on(serve_and_pass(
        project,
        compiled.plan,
        Served {
            url,
            listen,
            token,
            limits,
        },
        every,
        &args.every,
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Logs on stderr: lines for people, or one JSON object a line (`--log-format json`) for a
/// log pipeline.
fn init_logs(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(crate::cli::shared::color_stderr())
            .try_init(),
    };
}
