//! `tidings plan [--against REF] [--format markdown|json]`: the forecast of the working
//! tree, compared with the set the store last ran or with a git ref, as a table a reviewer
//! pastes into a pull request.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::cli::args::{PlanArgs, PlanFormat};
use crate::cli::shared::{CommandError, compile_or_report, open_store, time_arg};
use crate::engine::deployed::{self, WorkflowPrint};
use crate::rehearsal::forecast::{Change, Forecast, NextEntry, forecast};
use crate::rehearsal::tempdir::TempDir;

/// What the working tree is compared with.
enum Base {
    Deployed(DateTime<Utc>),
    NothingDeployed,
    Ref(String),
}

pub fn run(root: &Path, args: &PlanArgs) -> Result<ExitCode, CommandError> {
    let now = time_arg(args.now.as_deref())?;
    let (runtime, project, store) = open_store(root)?;
    let Some(compiled) = compile_or_report(&project, "nothing was planned") else {
        return Ok(ExitCode::FAILURE);
    };
    let (base, prints) = match &args.against {
        Some(reference) => (
            Base::Ref(reference.clone()),
            Some(prints_at(root, reference)?),
        ),
        None => match runtime.block_on(deployed::load(&store))? {
            Some(set) => (Base::Deployed(set.at), Some(set.workflows)),
            None => (Base::NothingDeployed, None),
        },
    };
    let workflows = Arc::new(compiled.plan);
    let result = runtime.block_on(forecast(
        &store,
        workflows.clone(),
        &project.config,
        prints.as_deref(),
        now,
    ));
    let plan = result.map_err(|e| {
        CommandError::Usage(format!(
            "the plan stopped: {}",
            crate::source::diagnostic::error_chain(&e)
        ))
    })?;
    let engine =
        crate::engine::Engine::new(workflows.clone(), store.clone(), project.config.clone());
    let backfills = runtime.block_on(backfills(&engine, &workflows, &plan));
    runtime.block_on(store.close());
    let backfills = backfills.map_err(|e| {
        CommandError::Failed(format!(
            "the plan stopped: {}",
            crate::source::diagnostic::error_chain(&e)
        ))
    })?;
    let text = match args.format {
        PlanFormat::Markdown => markdown(&plan, &base, &backfills),
        PlanFormat::Json => json(&plan, &base, &backfills),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// How far back `plan` looks for the events a new workflow could be backfilled from.
const BACKFILL_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Who a new event-triggered workflow would take from the last 30 days' events with
/// `tidings enroll`: the workflow takes only future events unless asked.
#[derive(Debug, serde::Serialize)]
struct Backfillable {
    workflow: String,
    event: String,
    since: DateTime<Utc>,
    events: u64,
    customers: usize,
}

/// A dry-run backfill of each new workflow started by an event.
async fn backfills(
    engine: &crate::engine::Engine,
    workflows: &crate::workflow::plan::Plan,
    plan: &Forecast,
) -> Result<Vec<Backfillable>, crate::engine::EngineError> {
    use crate::engine::backfill::{Backfill, BackfillFrom};
    use crate::workflow::plan::Trigger;
    let since = plan.now - BACKFILL_WINDOW;
    let mut out = Vec::new();
    for line in plan.lines.iter().filter(|l| l.change == Change::Added) {
        let Some(wf) = workflows.workflow(&line.workflow) else {
            continue;
        };
        let Trigger::Event { name, .. } = &wf.trigger else {
            continue;
        };
        if !wf.enabled {
            continue;
        }
        let job = Backfill {
            workflow: wf,
            from: BackfillFrom::Events { since },
            audience: None,
            dry_run: true,
        };
        let report = engine.backfill(&job, plan.now).await?;
        out.push(Backfillable {
            workflow: wf.name.clone(),
            event: name.clone(),
            since,
            events: report.considered,
            customers: report.admitted.len(),
        });
    }
    Ok(out)
}

/// The workflows at `reference`, from an export of the project's folder at that ref.
fn prints_at(root: &Path, reference: &str) -> Result<Vec<WorkflowPrint>, CommandError> {
    let git_failed = |what: &str, detail: &str| {
        CommandError::Usage(format!(
            "`--against {reference}`: {what}{}{}",
            if detail.trim().is_empty() { "" } else { ": " },
            detail.trim()
        ))
    };
    let prefix = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--show-prefix"])
        .output()
        .map_err(|e| git_failed("cannot run git", &e.to_string()))?;
    if !prefix.status.success() {
        return Err(git_failed(
            "the project is not in a git repository",
            &String::from_utf8_lossy(&prefix.stderr),
        ));
    }
    let prefix = String::from_utf8_lossy(&prefix.stdout).trim().to_string();
    let dir = TempDir::new("plan")
        .map_err(|e| git_failed("cannot make a scratch folder", &e.to_string()))?;
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", &format!("{reference}:{prefix}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| git_failed("cannot run git", &e.to_string()))?;
    let tar = archive
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or(Stdio::null());
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir.path())
        .stdin(tar)
        .output()
        .map_err(|e| git_failed("cannot run tar", &e.to_string()))?;
    let archived = archive
        .wait_with_output()
        .map_err(|e| git_failed("git stopped", &e.to_string()))?;
    if !archived.status.success() {
        return Err(git_failed(
            "git cannot export that ref (check the name with `git log`)",
            &String::from_utf8_lossy(&archived.stderr),
        ));
    }
    if !untar.status.success() {
        return Err(git_failed(
            "tar cannot unpack the export",
            &String::from_utf8_lossy(&untar.stderr),
        ));
    }
    let project = crate::config::Project::load(dir.path()).map_err(CommandError::Diagnostic)?;
    let compiled = crate::workflow::compile::compile_project(&project, &[]);
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        eprintln!(
            "note: the workflows at `{reference}` have {errors} error(s); compared with those that compile there"
        );
    }
    Ok(deployed::prints(&compiled.plan))
}

fn base_text(base: &Base) -> String {
    match base {
        Base::Deployed(at) => format!(
            "the deployed set (the workflows the store last ran, from {})",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        Base::NothingDeployed => {
            "nothing: the store has not run any workflows yet, so every workflow is new".into()
        }
        Base::Ref(r) => format!("git ref `{r}`"),
    }
}

fn change_text(change: &Change) -> String {
    match change {
        Change::Unchanged => "unchanged".into(),
        Change::Added => "**new**".into(),
        Change::Removed => "**removed**".into(),
        Change::Changed {
            removed_steps,
            added_steps,
        } => {
            let mut parts: Vec<String> = Vec::new();
            if !removed_steps.is_empty() {
                parts.push(format!("steps removed: {}", ticked(removed_steps)));
            }
            if !added_steps.is_empty() {
                parts.push(format!("steps added: {}", ticked(added_steps)));
            }
            if parts.is_empty() {
                "changed".into()
            } else {
                format!("changed ({})", parts.join("; "))
            }
        }
    }
}

fn ticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn next_text(next: &NextEntry) -> String {
    match next {
        NextEntry::OnEvent => "on each event".into(),
        NextEntry::At { at, customers } => {
            format!("{customers} at {}", at.format("%a %Y-%m-%d %H:%M UTC"))
        }
        NextEntry::Next24h { customers } => format!("{customers} in the next 24 h"),
        NextEntry::Never => "—".into(),
    }
}

/// A table cell: pipes would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn markdown(plan: &Forecast, base: &Base, backfills: &[Backfillable]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## tidings plan\n");
    let _ = writeln!(
        out,
        "At {}, over {} customers; compared with {}.\n",
        plan.now.format("%Y-%m-%d %H:%M UTC"),
        plan.customers,
        base_text(base)
    );
    let _ = writeln!(
        out,
        "| workflow | change | trigger | audience now | enters next | emails 24 h | emails 7 d | stranded |"
    );
    let _ = writeln!(out, "| --- | --- | --- | ---: | --- | ---: | ---: | ---: |");
    for l in &plan.lines {
        let stranded: u64 = l.stranded.values().sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&l.workflow),
            cell(&change_text(&l.change)),
            cell(&l.trigger),
            match (l.audience_now, &l.change) {
                (Some(n), _) => n.to_string(),
                (None, Change::Removed) => "—".into(),
                (None, _) => "— (per event)".into(),
            },
            next_text(&l.next_entry),
            l.emails_24h,
            l.emails_7d,
            stranded
        );
    }
    let mut notes = Vec::new();
    for l in &plan.lines {
        for (step, n) in &l.stranded {
            let why = if l.change == Change::Removed {
                "the workflow is removed".to_string()
            } else {
                format!("step `{step}` no longer exists")
            };
            notes.push(format!(
                "- {n} running enrollment{} of `{}` at step `{step}`: {why}; {} at {} next step.",
                if *n == 1 { "" } else { "s" },
                l.workflow,
                if *n == 1 {
                    "it would exit"
                } else {
                    "they would exit"
                },
                if *n == 1 { "its" } else { "their" },
            ));
        }
    }
    let experiments = experiment_notes(plan);
    if !experiments.is_empty() {
        let _ = writeln!(out, "\n**Experiments**\n");
        for e in experiments {
            let _ = writeln!(out, "{e}");
        }
    }
    backfill_notes(&mut out, backfills);
    if !notes.is_empty() {
        let _ = writeln!(out, "\n**Stranded journeys**\n");
        for n in notes {
            let _ = writeln!(out, "{n}");
        }
    }
    let _ = writeln!(
        out,
        "\nEmails are those a seven-day rehearsal on a copy of the store would send, after \
         frequency caps and quiet hours; mail that events not yet received would start is not \
         in them."
    );
    out
}

/// For each new workflow started by an event: who the last 30 days' events would enter.
fn backfill_notes(out: &mut String, backfills: &[Backfillable]) {
    if !backfills.is_empty() {
        let _ = writeln!(
            out,
            "\n**Backfill**: a new workflow takes only events still to come; `tidings enroll` \
         takes past ones, each customer as of their event.\n"
        );
        for b in backfills {
            let since = b.since.format("%Y-%m-%d");
            let _ = writeln!(
                out,
                "- `{}`: {} of the last 30 days' `{}` events would enter — `tidings enroll {} --since {since} --dry-run` lists them.",
                b.workflow,
                crate::cli::shared::counted(b.customers as u64, "customer"),
                b.event,
                b.workflow,
            );
        }
    }
}

/// A line per experimenting workflow: its arms' journeys in the week, and the days until
/// the smallest holds the minimum sample.
fn experiment_notes(plan: &Forecast) -> Vec<String> {
    plan
        .lines
        .iter()
        .filter_map(|l| Some((l, l.experiment.as_ref()?)))
        .map(|(l, e)| {
            let arms: Vec<String> = e.arms_7d.iter().map(|(v, n)| format!("{v} {n}")).collect();
            let days = match e.days_to_minimum {
                Some(d) => format!(
                    "about {d} day{} until each has {} journeys, the least `tidings results` names a winner from",
                    if d == 1 { "" } else { "s" },
                    crate::stats::MIN_PER_ARM
                ),
                None => "an arm gets nobody in the week: no estimate of when the sample is large enough".into(),
            };
            format!("- `{}`: journeys per arm in the week: {}; {days}.", l.workflow, arms.join(", "))
        })
        .collect()
}

fn json(plan: &Forecast, base: &Base, backfills: &[Backfillable]) -> String {
    let base = match base {
        Base::Deployed(at) => serde_json::json!({ "kind": "deployed", "at": at }),
        Base::NothingDeployed => serde_json::json!({ "kind": "none" }),
        Base::Ref(r) => serde_json::json!({ "kind": "ref", "ref": r }),
    };
    let doc = serde_json::json!({
        "now": plan.now,
        "customers": plan.customers,
        "against": base,
        "workflows": plan.lines,
        "backfill": backfills,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}
