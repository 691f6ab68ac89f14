//! The daemon's life: the store opened, the endpoints served, a pass every `--every` (and
//! at once when an event arrives), the workflows reloaded when their files change or on
//! SIGHUP, until SIGTERM or SIGINT lets the pass in progress finish. `cli::daemon` reads
//! the arguments and settings and hands them here.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use thiserror::Error;

use crate::config::{Project, expand_env};
use crate::daemon::api::{Api, Health, PassMetrics};
use crate::daemon::router;
use crate::engine::Engine;
use crate::pass::Runner;
use crate::source::files_under;
use crate::store::Store;
use crate::workflow::compile::compile_project;

/// The bearer token of the write endpoints when tidings.yaml names none.
pub const API_TOKEN_ENV: &str = "TIDINGS_API_TOKEN";

#[derive(Debug, Error)]
pub enum DaemonError {
    /// What the operator must change (a setting, another daemon, a taken address).
    #[error("{0}")]
    Refused(String),
    #[error("{source} (in `{key}` of tidings.yaml)")]
    Setting {
        key: &'static str,
        source: crate::config::EnvError,
    },
    #[error("cannot read `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Pass(#[from] crate::pass::PassError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// Where and how the daemon serves.
pub struct Served {
    pub url: String,
    pub listen: String,
    pub token: Option<String>,
    pub limits: crate::daemon::serve::Limits,
}

/// The daemon's life: the store opened, the endpoints served, passes until a signal.
pub async fn serve_and_pass(
    project: Project,
    plan: crate::workflow::plan::Plan,
    served: Served,
    every: std::time::Duration,
    every_text: &str,
) -> Result<(), DaemonError> {
    let Served {
        url,
        listen,
        token,
        limits,
    } = served;
    let store = Store::open(&url).await?;
    let runner = Runner::new(&project, store.clone(), Arc::new(plan))?;
    let signer = crate::engine::project_signer(&project.config.unsubscribe, &store).await?;
    let api = Arc::new(Api {
        store: store.clone(),
        signer,
        token,
        sender: runner
            .options
            .from
            .name
            .clone()
            .unwrap_or_else(|| runner.options.from.email.to_string()),
        health: std::sync::RwLock::new(Health {
            workflows: names(&runner),
            reload_error: None,
        }),
        passes: std::sync::Mutex::new(PassMetrics::default()),
        meter: runner.meter().clone(),
        wake: Arc::new(tokio::sync::Notify::new()),
        tracking: crate::daemon::engagement::Tracking {
            machine_window: crate::config::Settings::of(&project.config).machine_window,
            store_client: project.config.tracking.store_client,
            trusted_proxies: project.config.server.proxies(),
        },
        topics: project.config.topics.clone(),
    });
    // Events recorded elsewhere (another replica, `tidings event`) wake this one too.
    store.listen_for_events(&url, api.wake.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
            DaemonError::Refused(format!(
                "cannot listen on `{listen}`: {e}; pick another address with `--listen` or `server.listen`"
            ))
        })?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop.send(true);
    });
    let mut server_stop = stopped.clone();
    let server = tokio::spawn(crate::daemon::serve::serve(
        listener,
        router(api.clone()),
        limits,
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    ));
    let links = project.config.public_base();
    tracing::info!(address = %address, links = %links, every = %every_text, workflows = names(&runner).len(), "tidings daemon listening; the links in emails point at {links}");
    say_where_the_token_comes_from(&project, &api);
    crate::daemon::sources::start(&project, &store, api.wake.clone(), &stopped);
    if let Some(line) = runner.recover().await? {
        tracing::warn!("{line}");
    }
    passes(&project, runner, &store, &api, every, stopped).await;
    tracing::info!("tidings daemon stopping");
    let _ = server.await;
    store.close().await;
    Ok(())
}

/// The bearer token of the write endpoints: `server.token`, else `TIDINGS_API_TOKEN`.
pub fn api_token(project: &Project) -> Result<Option<String>, DaemonError> {
    let env = |name: &str| std::env::var(name).ok();
    Ok(match &project.config.server.token {
        Some(t) => Some(expand_env(t, &env).map_err(|source| DaemonError::Setting {
            key: "server.token",
            source,
        })?),
        None => env(API_TOKEN_ENV).filter(|t| !t.trim().is_empty()),
    })
}

/// Tells the operator whether the write endpoints are on, and with which token.
fn say_where_the_token_comes_from(project: &Project, api: &Api) {
    match (&project.config.server.token, &api.token) {
        (_, None) => tracing::warn!(
            "the write endpoints (POST /v1/...) are off: set {API_TOKEN_ENV}, or `server.token` in tidings.yaml"
        ),
        (Some(_), Some(_)) => tracing::info!(
            "the write endpoints (POST /v1/...) take the bearer token of `server.token`"
        ),
        (None, Some(_)) => tracing::info!(
            "the write endpoints (POST /v1/...) take the bearer token of {API_TOKEN_ENV}"
        ),
    }
}

/// The loop: a pass every `every` (a changed workflow set reloaded first, at once on
/// SIGHUP), until SIGTERM or SIGINT; the pass in progress finishes.
async fn passes(
    project: &Project,
    mut runner: Runner,
    store: &Store,
    api: &Api,
    every: std::time::Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let hangup = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(forward_hangups(hangup.clone()));
    let mut seen = fingerprint(project);
    loop {
        // A changed workflow set (a merge deployed by git pull, or SIGHUP) is checked
        // first; only a valid one replaces the running one.
        let now_seen = fingerprint(project);
        if now_seen != seen {
            seen = now_seen;
            reload(project, &mut runner, store, api);
        }
        let started = std::time::Instant::now();
        let result = runner.pass(Utc::now()).await;
        count_pass(api, &result, started.elapsed().as_secs_f64());
        log_pass(&result, started.elapsed().as_secs_f64());
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            // New events: their journeys start now, not at the next timer.
            _ = api.wake.notified() => {}
            _ = hangup.notified() => seen = 0,
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
}

/// What `/metrics` counts of a pass.
fn count_pass(
    api: &Api,
    result: &Result<crate::pass::Outcome, crate::pass::PassError>,
    seconds: f64,
) {
    let Ok(mut m) = api.passes.lock() else {
        return;
    };
    m.passes += 1;
    m.seconds_total += seconds;
    m.last_seconds = seconds;
    match result {
        Ok(o) => {
            m.steps += o.engine.steps;
            m.emails_sent += o.emails.sent;
            m.emails_failed += o.emails.failed;
            m.emails_retried += o.emails.retrying;
        }
        Err(_) => m.failed_passes += 1,
    }
}

/// A pass's line in the log (when it did anything), and a line per problem.
fn log_pass(result: &Result<crate::pass::Outcome, crate::pass::PassError>, seconds: f64) {
    match result {
        Ok(outcome) => {
            let (e, m) = (&outcome.engine, &outcome.emails);
            if e.enrolled + e.steps + m.sent + m.failed + m.retrying > 0 {
                tracing::info!(
                    enrolled = e.enrolled,
                    steps = e.steps,
                    emails_sent = m.sent,
                    emails_failed = m.failed,
                    emails_retrying = m.retrying,
                    seconds,
                    "pass"
                );
            }
            for problem in m.problems.iter().chain(&outcome.webhooks.problems) {
                tracing::warn!("{problem}");
            }
        }
        // A failed pass is retried on the next tick: the store may be back by then.
        Err(e) => {
            tracing::error!(error = %crate::source::diagnostic::error_chain(e), "pass failed")
        }
    }
}

/// `server:`'s timeouts (parsed, and checked, when the project loaded) and connection
/// limit, or what to change.
pub fn server_limits(project: &Project) -> Result<crate::daemon::serve::Limits, DaemonError> {
    let server = &project.config.server;
    if server.max_connections == 0 {
        return Err(DaemonError::Refused(
            "`server.max_connections` must be at least 1".into(),
        ));
    }
    let settings = crate::config::Settings::of(&project.config);
    let std = |d: chrono::TimeDelta| d.to_std().unwrap_or(std::time::Duration::from_secs(1));
    Ok(crate::daemon::serve::Limits {
        header_read: std(settings.header_timeout),
        request: std(settings.request_timeout),
        max_connections: server.max_connections,
        per_client: server.max_connections_per_client,
        proxies: server.proxies(),
    })
}

/// Holds `FILE.daemon.lock` for as long as the daemon runs (the OS releases it when the
/// process ends, however it ends); a second daemon on the same SQLite file is refused.
pub fn sole_daemon(db: &str) -> Result<std::fs::File, DaemonError> {
    let path = format!("{db}.daemon.lock");
    match crate::store::try_lock_file(&path) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(DaemonError::Refused(format!(
            "another tidings daemon is running on the SQLite store `{db}`; SQLite runs one daemon — stop the other one, or use PostgreSQL to run several"
        ))),
        Err(source) => Err(DaemonError::Read { path, source }),
    }
}

fn names(runner: &Runner) -> Vec<String> {
    runner
        .engine
        .plan()
        .workflows
        .iter()
        .map(|w| w.name.clone())
        .collect()
}

/// Compiles the workflows again; a valid set replaces the running one (enrollments go on
/// by step id), an invalid one is refused with its diagnostics logged and in `/healthz`.
fn reload(project: &Project, runner: &mut Runner, store: &Store, api: &Api) {
    let compiled = compile_project(project, &[]);
    let mut health = api.health.write().unwrap_or_else(|e| e.into_inner());
    if compiled.has_errors() {
        let text: Vec<String> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| crate::source::diagnostic::render_human(d, false))
            .collect();
        let text = text.join("\n");
        tracing::error!(diagnostics = %text, "the changed workflows were refused; the previous set keeps running");
        health.reload_error = Some(text);
        return;
    }
    runner.engine = Engine::new(
        Arc::new(compiled.plan),
        store.clone(),
        project.config.clone(),
    )
    .with_meter(runner.meter().clone());
    health.workflows = names(runner);
    health.reload_error = None;
    tracing::info!(workflows = health.workflows.len(), "reloaded the workflows");
}

/// What the workflow set is made of: every file's name, size and modification time under
/// the workflows and templates folders, and `stages.yaml`. A change means a reload.
fn fingerprint(project: &Project) -> u64 {
    let mut paths = files_under(&project.workflows_dir());
    paths.extend(files_under(&project.templates_dir()));
    paths.push(project.path(&project.config.stages));
    let mut files: Vec<String> = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok().map(|meta| stamp(p, &meta)))
        .collect();
    files.sort();
    crate::model::ids::fnv(&files.join("\n")).max(1)
}

/// A file's name, size and modification time, as one line of the fingerprint.
fn stamp(path: &Path, meta: &std::fs::Metadata) -> String {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{}:{modified}", path.display(), meta.len())
}

/// SIGHUP asks for a reload now.
async fn forward_hangups(hangup: Arc<tokio::sync::Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            while hup.recv().await.is_some() {
                hangup.notify_one();
            }
        }
    }
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
