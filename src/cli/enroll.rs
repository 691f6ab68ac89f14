//! `tidings enroll WORKFLOW (--since DATE | --audience EXPR [--as-of DATE]) [--dry-run]`:
//! a backfill, so that a journey deployed today also takes the customers it would have
//! taken had it been running. `--dry-run` is its plan: who would enter, and as of when.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::args::EnrollArgs;
use crate::cli::shared::{
    CommandError, compile_or_report, counted, day_or_time_arg, open_store, time_arg,
};
use crate::engine::Engine;
use crate::engine::backfill::{Backfill, BackfillFrom, BackfillReport};
use crate::workflow::expr::Vars;
use crate::workflow::plan::{Trigger, Workflow};

/// How many entrants are listed by name; the rest are counted.
const LISTED: usize = 50;

pub fn run(root: &Path, args: &EnrollArgs) -> Result<ExitCode, CommandError> {
    let now = time_arg(args.now.as_deref())?;
    let (runtime, project, store) = open_store(root)?;
    let Some(compiled) = compile_or_report(&project, "nobody was enrolled") else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = Arc::new(compiled.plan);
    let wf = plan
        .workflow(&args.workflow)
        .ok_or_else(|| CommandError::Usage(plan.no_such_workflow(&args.workflow)))?
        .clone();
    let from = backfill_from(&wf, args, now)?;
    let by_event = matches!(from, BackfillFrom::Events { .. });
    let audience = match &args.audience {
        Some(text) => Some(
            plan.engine
                .compile(
                    text,
                    Vars {
                        event: by_event,
                        enrollment: false,
                    },
                )
                .map_err(|issues| {
                    let why: Vec<String> = issues.into_iter().map(|i| i.message).collect();
                    CommandError::Usage(format!("--audience: {}", why.join("; ")))
                })?,
        ),
        None => None,
    };
    let engine = Engine::new(plan.clone(), store.clone(), project.config.clone());
    let job = Backfill {
        workflow: &wf,
        from,
        audience: audience.as_ref(),
        dry_run: args.dry_run,
    };
    let result = runtime.block_on(engine.backfill(&job, now));
    runtime.block_on(store.close());
    let report = result.map_err(|e| {
        CommandError::Failed(format!(
            "the backfill stopped: {}",
            crate::source::diagnostic::error_chain(&e)
        ))
    })?;
    let text = summary(&wf, &job, &report);
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Which customers the workflow's trigger lets a backfill consider, or why the arguments
/// do not fit it.
fn backfill_from(
    wf: &Workflow,
    args: &EnrollArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<BackfillFrom, CommandError> {
    let usage = |m: String| Err(CommandError::Usage(m));
    let name = &wf.name;
    if !wf.enabled {
        return usage(format!(
            "`{name}` is disabled (`enabled: false`); enable it first"
        ));
    }
    match (&wf.trigger, &args.since) {
        (Trigger::Event { name: event, .. }, None) => usage(format!(
            "`{name}` starts with the event `{event}`: give `--since DATE` to replay its events"
        )),
        (Trigger::Event { .. }, Some(_)) if args.as_of.is_some() => usage(format!(
            "`{name}` starts with an event: each customer enters as of their event, so \
             `--as-of` does not apply; leave it out"
        )),
        (Trigger::Event { .. }, Some(since)) => Ok(BackfillFrom::Events {
            since: day_or_time_arg("--since", since)?,
        }),
        (_, Some(_)) => usage(format!(
            "`{name}` is not started by an event, so there are no events to replay: choose \
             who enters with `--audience EXPR` (and `--as-of DATE`)"
        )),
        (_, None) if args.audience.is_none() => usage(format!(
            "`{name}` is not started by an event: choose who enters with `--audience EXPR`"
        )),
        (_, None) => Ok(BackfillFrom::Customers {
            at: match &args.as_of {
                Some(text) => day_or_time_arg("--as-of", text)?,
                None => now,
            },
        }),
    }
}

fn summary(wf: &Workflow, job: &Backfill<'_>, report: &BackfillReport) -> String {
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let considered = match (&wf.trigger, job.from) {
        (Trigger::Event { name, .. }, BackfillFrom::Events { since }) => format!(
            "{} since {}",
            counted(report.considered, &format!("`{name}` event")),
            stamp(since)
        ),
        _ => counted(report.considered, "customer"),
    };
    let already = report.already;
    let mut out = if job.dry_run {
        format!(
            "dry run: {} of {considered} would enter `{}`{}\n",
            report.enrolled,
            wf.name,
            already_note(already)
        )
    } else {
        format!(
            "enrolled {} into `{}` from {considered}{}; their steps run at the next pass\n",
            counted(report.enrolled, "customer"),
            wf.name,
            already_note(already)
        )
    };
    for entrant in report.admitted.iter().take(LISTED) {
        let by = entrant
            .event_id
            .as_ref()
            .map(|e| format!(" (event {e})"))
            .unwrap_or_default();
        let holdout = if entrant.held_out { ", holdout" } else { "" };
        out.push_str(&format!(
            "  {}  as of {}{by}{holdout}\n",
            entrant.customer_id,
            stamp(entrant.entered_at)
        ));
    }
    if report.admitted.len() > LISTED {
        out.push_str(&format!(
            "  … and {} more\n",
            report.admitted.len() - LISTED
        ));
    }
    if job.dry_run {
        out.push_str("nothing was written; run it without --dry-run to enroll them\n");
    }
    out
}

fn already_note(already: u64) -> String {
    if already == 0 {
        String::new()
    } else {
        format!(" ({already} already enrolled by that trigger, not entered twice)")
    }
}
