//! One module per command; each returns the exit status it wants.

use std::io::IsTerminal;

use thiserror::Error;

use crate::source::diagnostic::{Diagnostic, render_human};

/// Failures that are not findings in the user's files.
#[derive(Debug, Error)]
pub enum CommandError {
    /// An argument the command cannot take (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The command could not do its work (exit status 1).
    #[error("{0}")]
    Failed(String),
    #[error("cannot write output")]
    Io(#[from] std::io::Error),
    #[error("cannot read `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{}", .0.message)]
    Diagnostic(Box<Diagnostic>),
    /// A setting of tidings.yaml that cannot be used as it is (an unset variable).
    #[error("{source} (in `{key}` of tidings.yaml)")]
    Setting {
        key: &'static str,
        source: crate::config::EnvError,
    },
    #[error(transparent)]
    Pass(#[from] crate::pass::PassError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Key(#[from] crate::unsubscribe::KeyError),
    #[error(transparent)]
    Daemon(#[from] crate::daemon::life::DaemonError),
}

/// `1 email`, `2 emails`: a count with its noun, singular for one.
pub fn counted(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// `database:` of tidings.yaml, its `${ENV}` resolved.
pub fn database_url(project: &crate::config::Project) -> Result<String, CommandError> {
    project
        .database_url()
        .map_err(|source| CommandError::Setting {
            key: "database",
            source,
        })
}

/// Loads the project and opens its store, on a runtime that lives as long as the command.
pub fn open_store(
    root: &std::path::Path,
) -> Result<
    (
        tokio::runtime::Runtime,
        crate::config::Project,
        crate::store::Store,
    ),
    CommandError,
> {
    let project = crate::config::Project::load(root).map_err(CommandError::Diagnostic)?;
    let url = database_url(&project)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = runtime.block_on(crate::store::Store::open(&url))?;
    Ok((runtime, project, store))
}

/// `--now TIME` (RFC 3339), or the present.
pub fn time_arg(arg: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, CommandError> {
    match arg {
        None => Ok(chrono::Utc::now()),
        Some(t) => crate::time::parse_time(t).map_err(CommandError::Usage),
    }
}

/// A flag's date (midnight UTC) or RFC 3339 time.
pub fn day_or_time_arg(
    flag: &str,
    text: &str,
) -> Result<chrono::DateTime<chrono::Utc>, CommandError> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    crate::time::parse_time(text)
        .map_err(|e| CommandError::Usage(format!("{flag}: {e}; or a date such as 2026-06-01")))
}

/// The project's workflows, compiled; when they have errors, the diagnostics are printed
/// with "the workflows have errors; {consequence}" and `None` says to stop.
pub fn compile_or_report(
    project: &crate::config::Project,
    consequence: &str,
) -> Option<crate::workflow::compile::Compiled> {
    let compiled = crate::workflow::compile::compile_project(project, &[]);
    if compiled.has_errors() {
        eprint_diagnostics(&compiled.diagnostics);
        eprintln!("error: the workflows have errors; {consequence}");
        return None;
    }
    Some(compiled)
}

/// Refuses to send real mail with settings that would make it unfit to leave (see
/// [`crate::config::Project::production_diagnostics`]); `true` when it may go.
pub fn fit_to_send(project: &crate::config::Project, consequence: &str) -> bool {
    let problems = project.production_diagnostics();
    if problems.is_empty() {
        return true;
    }
    eprint_diagnostics(&problems);
    eprintln!("error: tidings.yaml is not ready to send mail over SMTP; {consequence}");
    false
}

/// Whether to colour diagnostics on stderr.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints diagnostics for a person, on stderr.
pub fn eprint_diagnostics(diagnostics: &[Diagnostic]) {
    let color = color_stderr();
    for d in diagnostics {
        eprintln!("{}\n", render_human(d, color));
    }
}
