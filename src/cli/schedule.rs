//! `tidings schedule NAME`: the next fire times, so a marketer can check a cron line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;

use crate::cli::args::ScheduleArgs;
use crate::cli::shared::{CommandError, eprint_diagnostics};
use crate::config::Project;
use crate::workflow::compile::compile_project;
use crate::workflow::plan::{Trigger, Zone, next_anniversary};

pub fn run(root: &Path, args: &ScheduleArgs) -> Result<ExitCode, CommandError> {
    let after = match &args.after {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| {
                CommandError::Usage(format!(
                    "`--after {text}` is not an RFC 3339 time; write e.g. 2026-03-01T00:00:00Z"
                ))
            })?
            .with_timezone(&Utc),
    };
    let zone_arg = match &args.timezone {
        None => None,
        Some(z) => Some(Tz::from_str(z).map_err(|_| {
            CommandError::Usage(format!(
                "`--timezone {z}` is not an IANA time zone such as Europe/Berlin"
            ))
        })?),
    };
    let project = match Project::load(root) {
        Ok(p) => p,
        Err(d) => {
            eprint_diagnostics(&[*d]);
            return Ok(ExitCode::FAILURE);
        }
    };
    let compiled = compile_project(&project, &[]);
    let Some(workflow) = compiled.plan.workflow(&args.name) else {
        return not_found(&compiled, &args.name);
    };
    let times: Vec<DateTime<Utc>> = match &workflow.trigger {
        Trigger::Schedule { cron, zone, .. } => {
            let tz = match (zone, zone_arg) {
                (Zone::Fixed(tz), _) => *tz,
                (Zone::Customer, Some(tz)) => tz,
                (Zone::Customer, None) => {
                    eprintln!(
                        "note: `{}` runs in each customer's zone; showing UTC (pass --timezone to pick one)",
                        workflow.name
                    );
                    Tz::UTC
                }
            };
            cron.upcoming(after, tz, args.count)
        }
        Trigger::Date { column, at, offset } => {
            let Some(date_text) = &args.date else {
                return Err(CommandError::Usage(format!(
                    "`{}` fires on each customer's own `{column}`: pass --date YYYY-MM-DD (and --timezone ZONE) to see one customer's fire times",
                    workflow.name
                )));
            };
            let date = NaiveDate::parse_from_str(date_text, "%Y-%m-%d").map_err(|_| {
                CommandError::Usage(format!(
                    "`--date {date_text}` is not a date; write YYYY-MM-DD"
                ))
            })?;
            let tz = zone_arg.unwrap_or(Tz::UTC);
            anniversaries(date, (*at, *offset), tz, after, args.count)
        }
        Trigger::Event { name, .. } => {
            return Err(CommandError::Usage(format!(
                "`{}` is triggered by the event `{name}`, not by a schedule",
                workflow.name
            )));
        }
    };
    let mut out = std::io::stdout().lock();
    for t in times {
        writeln!(out, "{}", t.to_rfc3339_opts(SecondsFormat::Secs, true))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a workflow has no schedule to show: its file has errors (shown), or there is no
/// workflow of that name.
fn not_found(
    compiled: &crate::workflow::compile::Compiled,
    name: &str,
) -> Result<ExitCode, CommandError> {
    let broken: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| {
            d.span
                .as_ref()
                .is_some_and(|s| s.file.path().file_stem().and_then(|f| f.to_str()) == Some(name))
        })
        .cloned()
        .collect();
    if !broken.is_empty() {
        eprint_diagnostics(&broken);
        eprintln!("error: workflow `{name}` has errors; fix them first");
        return Ok(ExitCode::FAILURE);
    }
    Err(CommandError::Usage(compiled.plan.no_such_workflow(name)))
}

/// The next `count` fire times of one customer's yearly date after `after`.
fn anniversaries(
    date: NaiveDate,
    (at, offset): (chrono::NaiveTime, chrono::TimeDelta),
    tz: Tz,
    after: DateTime<Utc>,
    count: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut cursor = after;
    while out.len() < count {
        match next_anniversary(date, at, offset, tz, cursor) {
            Some(t) => {
                out.push(t);
                cursor = t;
            }
            None => break,
        }
    }
    out
}
