//! `tidings test [PATH..]`: runs the workflows' behaviour tests and reports like a test
//! runner; exit 1 when a case fails or a test cannot be read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::args::{TestArgs, TestFormat};
use crate::cli::shared::{CommandError, eprint_diagnostics};
use crate::config::Project;
use crate::rehearsal::workflow_tests::{report, runner, spec};
use crate::workflow::compile::compile_project;

pub fn run(root: &Path, args: &TestArgs) -> Result<ExitCode, CommandError> {
    let project = Project::load(root).map_err(CommandError::Diagnostic)?;
    let compiled = compile_project(&project, &[]);
    let mut diagnostics = compiled.diagnostics;
    let suites = spec::load(&compiled.plan, &mut diagnostics);
    crate::source::diagnostic::sort(&mut diagnostics);
    if diagnostics
        .iter()
        .any(crate::source::diagnostic::Diagnostic::is_error)
    {
        eprint_diagnostics(&diagnostics);
        eprintln!("error: the workflows or their tests have errors; no test was run");
        return Ok(ExitCode::FAILURE);
    }
    let wanted: Vec<PathBuf> = args.paths.iter().map(|p| absolute(p)).collect();
    let suites: Vec<spec::Suite> = suites
        .into_iter()
        .filter(|s| {
            let file = absolute(s.file.path());
            let workflow = compiled
                .plan
                .workflow(&s.workflow)
                .map(|w| absolute(w.file.path()));
            wanted.is_empty()
                || wanted.iter().any(|w| {
                    file.starts_with(w) || workflow.as_ref().is_some_and(|f| f.starts_with(w))
                })
        })
        .collect();
    if suites.iter().all(|s| s.cases.is_empty()) {
        eprintln!(
            "error: no test cases found; add a `tests:` block to a workflow, or a `NAME.test.yaml` beside it (see README.md, \"Testing workflows\")"
        );
        return Ok(ExitCode::FAILURE);
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let results = runner::run_all(&compiled.plan, &project.config, &suites, jobs);
    let text = match args.format {
        TestFormat::Human => report::human(&results),
        TestFormat::Json => report::json(&results),
        TestFormat::Github => report::github(&results),
        TestFormat::Junit => report::junit(&results),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(if results.iter().any(|r| r.failure.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
