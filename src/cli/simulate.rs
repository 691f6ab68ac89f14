//! `tidings simulate --from DATE --to DATE [--out DIR]`: the rehearsal, and its tables.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use crate::cli::args::SimulateArgs;
use crate::cli::shared::{CommandError, compile_or_report, open_store};
use crate::delivery::Transport;
use crate::progress::{Meter, Progress, ProgressMode, get};
use crate::rehearsal::simulate::{DaySends, Rehearsal, rehearse};

pub fn run(
    root: &Path,
    args: &SimulateArgs,
    progress: ProgressMode,
) -> Result<ExitCode, CommandError> {
    let from = match &args.from {
        Some(t) => parse_moment(t)?,
        None => Utc::now(),
    };
    let to = parse_moment(&args.to)?;
    if to < from {
        return Err(CommandError::Usage(format!(
            "--to ({}) is before --from ({}); give the window in time order",
            args.to,
            args.from.as_deref().unwrap_or("now")
        )));
    }
    let (runtime, project, store) = open_store(root)?;
    let Some(compiled) = compile_or_report(&project, "nothing was simulated") else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = compiled
        .plan
        .only(&args.workflows)
        .map_err(CommandError::Usage)?;
    let transport = match &args.out {
        Some(dir) => Transport::Folder(dir.clone()),
        None => Transport::Discard,
    };
    let meter = Arc::new(Meter::default());
    let line = Progress::start(progress, clock_line(meter.clone(), from, to));
    let rehearsal = runtime.block_on(rehearse(
        &store,
        Arc::new(plan),
        &project.config,
        from,
        to,
        &transport,
        meter,
    ));
    line.finish();
    let rehearsal = rehearsal.map_err(|e| {
        CommandError::Usage(format!(
            "the simulation stopped: {}",
            crate::source::diagnostic::error_chain(&e)
        ))
    })?;
    runtime.block_on(store.close());
    let mut out = std::io::stdout().lock();
    write!(out, "{}", render(&rehearsal, from, to))?;
    if let Some(dir) = &args.out {
        let path = dir.join("summary.csv");
        std::fs::write(&path, summary_csv(&rehearsal)).map_err(|source| CommandError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let emails = rehearsal.written;
        writeln!(
            out,
            "\n{emails} email{} written to {} (with summary.csv)",
            if emails == 1 { "" } else { "s" },
            dir.display()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The progress line: the virtual clock, how far through the window, and what it did.
fn clock_line(
    meter: Arc<Meter>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Box<crate::progress::Render> {
    let window = (to - from).num_milliseconds().max(1);
    let before = crate::store::statements();
    Box::new(move |elapsed| {
        let at = meter.clock.load(std::sync::atomic::Ordering::Relaxed);
        let done = (at - from.timestamp_millis()).clamp(0, window);
        format!(
            "{:>5.1}s  virtual clock {} ({}%) · {} enrolled · {} steps · {} emails · {}",
            elapsed.as_secs_f64(),
            DateTime::from_timestamp_millis(at.max(from.timestamp_millis()))
                .unwrap_or(from)
                .format("%Y-%m-%d %H:%M"),
            done * 100 / window,
            get(&meter.enrolled),
            get(&meter.steps),
            get(&meter.queued),
            crate::progress::statements_text(
                crate::store::statements() - before,
                get(&meter.steps)
            ),
        )
    })
}

/// A date is midnight UTC; anything else must be RFC 3339.
fn parse_moment(text: &str) -> Result<DateTime<Utc>, CommandError> {
    if let Ok(d) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    crate::time::parse_time(text).map_err(|_| {
        CommandError::Usage(format!(
            "`{text}` is not a date or a time; write `2026-03-01` or `2026-03-01T09:00:00Z`"
        ))
    })
}

/// The two tables: emails per day and workflow, then each workflow's journeys.
fn render(r: &Rehearsal, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "rehearsal {} → {} over a copy of {} customers and {} events ({} passes); the store was not changed",
        from.to_rfc3339_opts(SecondsFormat::Secs, true),
        to.to_rfc3339_opts(SecondsFormat::Secs, true),
        r.copied.customers,
        r.copied.events,
        r.passes
    );
    let workflows: BTreeSet<&str> = r
        .days
        .keys()
        .map(|(_, w)| w.as_str())
        .chain(r.workflows.keys().map(String::as_str))
        .collect();
    day_table(r, &workflows, &mut s);
    journey_table(r, &workflows, &mut s);
    step_table(r, &mut s);
    variant_table(r, &mut s);
    for (workflow, customer, error) in &r.failures {
        let _ = writeln!(s, "failed: {workflow} for customer {customer}: {error}");
    }
    if !r.already_sent.is_empty() {
        let each: Vec<String> = r
            .already_sent
            .iter()
            .map(|(w, n)| format!("{w} {n}"))
            .collect();
        let total: u64 = r.already_sent.values().sum();
        let _ = writeln!(
            s,
            "\nalready sent by the store in this window, not rehearsed: {total} email{} ({})",
            if total == 1 { "" } else { "s" },
            each.join(", ")
        );
    }
    s
}

/// Emails per day (UTC) and workflow, for the workflows that send any.
fn day_table(r: &Rehearsal, workflows: &BTreeSet<&str>, s: &mut String) {
    let mailing: Vec<&str> = workflows
        .iter()
        .copied()
        .filter(|w| r.days.iter().any(|((_, x), d)| x == w && d.emails > 0))
        .collect();
    let days: BTreeSet<NaiveDate> = r
        .days
        .iter()
        .filter(|(_, d)| d.emails > 0)
        .map(|((d, _), _)| *d)
        .collect();
    if days.is_empty() {
        let _ = writeln!(s, "\nno emails would be sent in this window");
    } else {
        let mut header = vec!["day".to_string()];
        header.extend(mailing.iter().map(|w| w.to_string()));
        header.push("total".into());
        let mut rows = vec![header];
        let emails = |day: Option<NaiveDate>, w: &str| -> u64 {
            r.days
                .iter()
                .filter(|((d, x), _)| x == w && day.is_none_or(|day| *d == day))
                .map(|(_, v)| v.emails)
                .sum()
        };
        for day in days.iter().copied().map(Some).chain([None]) {
            let mut row = vec![day.map_or("total".into(), |d| d.to_string())];
            let counts: Vec<u64> = mailing.iter().map(|w| emails(day, w)).collect();
            row.extend(counts.iter().map(u64::to_string));
            row.push(counts.iter().sum::<u64>().to_string());
            rows.push(row);
        }
        let _ = writeln!(s, "\nemails per day (UTC)");
        s.push_str(&table(&rows));
    }
}

/// Each workflow's journeys: entered, how they ended, and what they sent.
fn journey_table(r: &Rehearsal, workflows: &BTreeSet<&str>, s: &mut String) {
    let mut rows = vec![
        [
            "workflow",
            "entered",
            "completed",
            "exit_when",
            "exited",
            "failed",
            "emails",
            "skipped",
            "webhooks",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for w in workflows {
        let o = r.workflows.get(*w).cloned().unwrap_or_default();
        let sends = r.days.iter().filter(|((_, x), _)| x == w).fold(
            DaySends::default(),
            |mut a, (_, d)| {
                a.emails += d.emails;
                a.skipped += d.skipped;
                a.webhooks += d.webhooks;
                a
            },
        );
        rows.push(vec![
            w.to_string(),
            o.enrolled.to_string(),
            o.completed.to_string(),
            o.converted.to_string(),
            o.exited.to_string(),
            o.failed.to_string(),
            sends.emails.to_string(),
            sends.skipped.to_string(),
            sends.webhooks.to_string(),
        ]);
    }
    if rows.len() > 1 {
        let _ = writeln!(s, "\njourneys");
        s.push_str(&table(&rows));
    }
}

/// Emails per email step. A rehearsal's email is read by nobody, so clicks, opens and
/// answers are not counted: `status` and the report have them for real sends.
fn step_table(r: &Rehearsal, s: &mut String) {
    if r.steps.is_empty() {
        return;
    }
    let mut rows = vec![vec!["email step".to_string(), "sent".to_string()]];
    for ((workflow, step), n) in &r.steps {
        rows.push(vec![format!("{workflow}/{step}"), n.to_string()]);
    }
    let _ = writeln!(
        s,
        "\nemails per step (clicks, opens and answers come only from real sends: see `tidings status`)"
    );
    s.push_str(&table(&rows));
}

/// Journeys per split variant and holdout: how an experiment would divide the window's
/// customers.
fn variant_table(r: &Rehearsal, s: &mut String) {
    if r.variants.is_empty() {
        return;
    }
    let mut rows = vec![vec!["variant".to_string(), "journeys".to_string()]];
    for ((workflow, variant), n) in &r.variants {
        rows.push(vec![format!("{workflow}/{variant}"), n.to_string()]);
    }
    let _ = writeln!(s, "\nexperiments (journeys entered per variant)");
    s.push_str(&table(&rows));
}

/// Left-aligned first column, right-aligned numbers.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
    }
    s
}

fn summary_csv(r: &Rehearsal) -> String {
    let mut s = String::from("day,workflow,emails,skipped,failed,webhooks\n");
    for ((day, workflow), d) in &r.days {
        let _ = writeln!(
            s,
            "{day},{workflow},{},{},{},{}",
            d.emails, d.skipped, d.failed, d.webhooks
        );
    }
    s
}
