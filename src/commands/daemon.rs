//! `tidings daemon`: passes on a timer and the HTTP endpoints, until SIGTERM or SIGINT —
//! then the pass in progress finishes and the process exits 0.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;

use crate::cli::DaemonArgs;
use crate::commands::{CommandError, eprint_diagnostics};
use crate::compile::compile_project;
use crate::config::{Project, expand_env};
use crate::pass::Runner;
use crate::server::{Api, router};
use crate::store::Store;

pub fn run(root: &Path, args: &DaemonArgs) -> Result<ExitCode, CommandError> {
    let every = crate::duration::parse(&args.every)
        .ok()
        .and_then(|d| d.to_std().ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "`--every {}` is not a time between passes; {}",
                args.every,
                crate::duration::DURATION_HELP
            ))
        })?;
    let project = Project::load(root).map_err(CommandError::Diagnostic)?;
    let compiled = compile_project(&project, &[]);
    if compiled.has_errors() {
        eprint_diagnostics(&compiled.diagnostics);
        eprintln!("error: the workflows have errors; the daemon did not start");
        return Ok(ExitCode::FAILURE);
    }
    let env = |name: &str| std::env::var(name).ok();
    let token = match &project.config.server.token {
        Some(t) => Some(expand_env(t, &env).map_err(|e| {
            CommandError::Usage(format!("{e} (in `server.token` of tidings.yaml)"))
        })?),
        None => None,
    };
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| project.config.server.listen.clone());
    let url = project
        .database_url()
        .map_err(|e| CommandError::Usage(format!("{e} (in `database:` of tidings.yaml)")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = Store::open(&url).await?;
        let runner = Runner::new(&project, store.clone(), Arc::new(compiled.plan))
            .map_err(|e| CommandError::Usage(e.to_string()))?;
        let signer = crate::unsubscribe::project_signer(&project.config.unsubscribe, &store)
            .await
            .map_err(|e| CommandError::Usage(e.to_string()))?;
        let api = Arc::new(Api {
            store: store.clone(),
            signer,
            token,
            sender: runner.options.from.name.clone().unwrap_or_else(|| runner.options.from.email.to_string()),
        });
        let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
            CommandError::Usage(format!(
                "cannot listen on `{listen}`: {e}; pick another address with `--listen` or `server.listen`"
            ))
        })?;
        let address = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop.send(true);
        });
        let mut server_stop = stopped.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router(api))
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await
        });
        eprintln!(
            "tidings daemon: listening on http://{address}; a pass every {}",
            args.every
        );
        if let Some(line) = runner.recover().await.map_err(|e| CommandError::Usage(e.to_string()))? {
            eprintln!("warning: {line}");
        }
        loop {
            match runner.pass(Utc::now()).await {
                Ok(outcome) => {
                    let (e, m) = (&outcome.engine, &outcome.emails);
                    if e.enrolled + e.steps + m.sent + m.failed + m.retrying > 0 {
                        eprintln!(
                            "pass: {} enrolled, {} steps; {} emails sent, {} failed, {} to retry",
                            e.enrolled, e.steps, m.sent, m.failed, m.retrying
                        );
                    }
                    for problem in m.problems.iter().chain(&outcome.webhooks.problems) {
                        eprintln!("warning: {problem}");
                    }
                }
                // A failed pass is retried on the next tick: the store may be back by then.
                Err(e) => eprintln!("error: {e}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.wait_for(|s| *s) => break,
            }
        }
        eprintln!("tidings daemon: stopping");
        let _ = server.await;
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM (a service manager) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
