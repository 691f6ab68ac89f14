//! `tidings validate`: what CI runs on every pull request.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::args::ValidateArgs;
use crate::cli::shared::{CommandError, eprint_diagnostics};
use crate::config::Project;
use crate::source::diagnostic::{Format, Severity, render_github, to_json_value};
use crate::workflow::compile::compile_project;

pub fn run(root: &Path, args: &ValidateArgs) -> Result<ExitCode, CommandError> {
    let (diagnostics, summaries, files) = match Project::load(root) {
        Ok(project) => {
            let compiled = compile_project(&project, &args.paths);
            let summaries: Vec<(String, String)> = compiled
                .plan
                .workflows
                .iter()
                .map(|w| (w.name.clone(), w.summary()))
                .collect();
            if compiled.files.is_empty() && !args.paths.is_empty() {
                return Err(CommandError::Usage(
                    "no workflow files found in the given paths; pass paths to workflow files or folders".into(),
                ));
            }
            if compiled.files.is_empty() {
                // The project's own setting points nowhere: a finding, reported like any
                // other (exit 1, and in the JSON a program reads).
                (vec![no_workflows(&project)], Vec::new(), 0)
            } else {
                // The tests' syntax too: a broken test fails the pull request like a broken
                // workflow, without running anything.
                let mut diagnostics = compiled.diagnostics;
                diagnostics.extend(project.production_diagnostics());
                diagnostics.extend(crate::workflow::compile::unset_variables(&compiled.plan));
                crate::rehearsal::workflow_tests::spec::load(&compiled.plan, &mut diagnostics);
                crate::source::diagnostic::sort(&mut diagnostics);
                (diagnostics, summaries, compiled.files.len())
            }
        }
        Err(d) => (vec![*d], Vec::new(), 0),
    };
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    let failed = errors > 0 || (args.deny_warnings && warnings > 0);
    print_report(
        args.format,
        &diagnostics,
        &summaries,
        Tally {
            files,
            errors,
            warnings,
            failed,
        },
    )?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The workflows folder of tidings.yaml holds no workflow file (or does not exist): an
/// error at its `workflows:` (at the file's start when the default is used).
fn no_workflows(project: &Project) -> crate::source::diagnostic::Diagnostic {
    use crate::source::diagnostic::{Diagnostic, Span};
    use crate::source::yaml::{Document, Route};
    let dir = project.workflows_dir();
    let what = match dir.is_dir() {
        true => format!("no workflow files in `{}`", dir.display()),
        false => format!("the workflows folder `{}` does not exist", dir.display()),
    };
    let d = Diagnostic::error("config-workflows", what).help(
        "set `workflows:` in tidings.yaml to the folder of your workflow files (default `workflows`), or pass paths to `tidings validate`",
    );
    match &project.file {
        Some(file) => {
            let doc = Document::index(file);
            let route = Route::root().key("workflows");
            match doc.node(&route) {
                Some(_) => d.at(doc.value_span(&route)),
                None => d.at(Span::file_start(file)),
            }
        }
        None => d,
    }
}

/// How a run of `validate` came out.
struct Tally {
    files: usize,
    errors: usize,
    warnings: usize,
    failed: bool,
}

/// The diagnostics and the summary, for a person, as JSON, or as GitHub annotations.
fn print_report(
    format: Format,
    diagnostics: &[crate::source::diagnostic::Diagnostic],
    summaries: &[(String, String)],
    tally: Tally,
) -> Result<(), CommandError> {
    let Tally {
        files,
        errors,
        warnings,
        failed,
    } = tally;
    let summary_line = format!(
        "{files} file{} checked: {} valid workflow{}, {errors} error{}, {warnings} warning{}",
        plural(files),
        summaries.len(),
        plural(summaries.len()),
        plural(errors),
        plural(warnings),
    );
    let mut out = std::io::stdout().lock();
    match format {
        Format::Human => {
            eprint_diagnostics(diagnostics);
            for (name, summary) in summaries {
                writeln!(out, "ok    {name}: {summary}")?;
            }
            writeln!(out, "{summary_line}")?;
        }
        Format::Json => {
            let json = serde_json::json!({
                "ok": !failed,
                "files": files,
                "workflows": summaries.iter().map(|(n, s)| serde_json::json!({"name": n, "summary": s})).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics.iter().map(to_json_value).collect::<Vec<_>>(),
            });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            )?;
        }
        Format::Github => {
            for d in diagnostics {
                writeln!(out, "{}", render_github(d))?;
            }
            writeln!(out, "{summary_line}")?;
        }
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
