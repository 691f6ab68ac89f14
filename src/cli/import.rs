//! `tidings import customers|events|orders FILE` and `tidings event NAME`: how data gets into the
//! store from files and from the shell.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use chrono::Utc;

use crate::cli::args::{EventArgs, ImportArgs, ImportFormat, ImportKind};
use crate::cli::shared::{CommandError, open_store};
use crate::import::{self, FileFormat, RowError};
use crate::progress::{Meter, Progress, ProgressMode, count, get, rate};
use crate::store::ImportReport;

/// Bad rows listed before the rest are summed up.
const SHOWN_ERRORS: usize = 50;

pub fn run(
    root: &Path,
    args: &ImportArgs,
    progress: ProgressMode,
) -> Result<ExitCode, CommandError> {
    let name = args.file.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file).map_err(|source| CommandError::Read {
            path: name.clone(),
            source,
        })?;
        Box::new(BufReader::new(file))
    };
    let format = match args.format {
        Some(ImportFormat::Csv) => FileFormat::Csv,
        Some(ImportFormat::Jsonl) => FileFormat::Jsonl,
        None => FileFormat::of(&args.file),
    };
    let (runtime, _project, store) = open_store(root)?;
    let meter = std::sync::Arc::new(Meter::default());
    let shown = meter.clone();
    let line = Progress::start(
        progress,
        Box::new(move |elapsed| {
            let rows = get(&shown.rows);
            format!(
                "{:>5.1}s  {rows} rows read ({}/s)",
                elapsed.as_secs_f64(),
                rate(rows, elapsed)
            )
        }),
    );
    let (what, report) = match args.kind {
        ImportKind::Customers => (
            "customer",
            runtime.block_on(store.import_customers(
                import::customers(reader, format).inspect(|_| count(&meter.rows)),
                args.skip_invalid,
            )),
        ),
        ImportKind::Events => (
            "event",
            runtime.block_on(store.record_events(
                import::events(reader, format, Utc::now()).inspect(|_| count(&meter.rows)),
                args.skip_invalid,
            )),
        ),
        ImportKind::Orders => (
            "order",
            runtime.block_on(orders(
                &store,
                import::orders(reader, format).inspect(|_| count(&meter.rows)),
                args.skip_invalid,
            )),
        ),
    };
    line.finish();
    let report = report?;
    runtime.block_on(store.close());
    Ok(print_report(&name, what, &report, args.skip_invalid)?)
}

/// Imports orders; says what changed before the summary line `print_report` writes.
async fn orders(
    store: &crate::store::Store,
    rows: impl Iterator<Item = Result<import::OrderRow, Vec<RowError>>>,
    skip_invalid: bool,
) -> Result<ImportReport, crate::store::StoreError> {
    let r = store
        .import_orders(rows, skip_invalid, chrono::Utc::now())
        .await?;
    let c = &r.counts;
    if r.committed {
        let _ = writeln!(
            std::io::stdout(),
            "{} new, {} changed, {} unchanged; {} events recorded",
            c.new,
            c.changed,
            c.unchanged,
            c.events
        );
    }
    Ok(ImportReport {
        written: c.new + c.changed,
        errors: r.errors,
        committed: r.committed,
    })
}

fn print_report(
    file: &str,
    what: &str,
    report: &ImportReport,
    skip_invalid: bool,
) -> std::io::Result<ExitCode> {
    let mut err = std::io::stderr().lock();
    let bad_lines: std::collections::BTreeSet<u64> = report.errors.iter().map(|e| e.line).collect();
    for e in report.errors.iter().take(SHOWN_ERRORS) {
        writeln!(err, "{}: {}", location(file, e), e.message)?;
    }
    if report.errors.len() > SHOWN_ERRORS {
        writeln!(
            err,
            "... and {} more problems",
            report.errors.len() - SHOWN_ERRORS
        )?;
    }
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let bad = bad_lines.len() as u64;
    if report.committed {
        writeln!(
            std::io::stdout(),
            "imported {} {what}{} from {file}",
            report.written,
            plural(report.written)
        )?;
        if bad > 0 {
            writeln!(err, "skipped {bad} bad row{}", plural(bad))?;
        }
        Ok(ExitCode::SUCCESS)
    } else {
        let hint = if skip_invalid {
            ""
        } else {
            "; fix them, or pass --skip-invalid to import the good rows"
        };
        writeln!(
            err,
            "nothing was imported: {bad} bad row{}{hint}",
            plural(bad)
        )?;
        Ok(ExitCode::FAILURE)
    }
}

/// `file:line:column` as editors and CI read it, then the column's name.
fn location(file: &str, e: &RowError) -> String {
    let field = if e.field.is_empty() {
        String::new()
    } else {
        format!(" `{}`", e.field)
    };
    match e.column {
        Some(c) => format!("error: {file}:{}:{c}:{field}", e.line),
        None => format!("error: {file}:{}:{field}", e.line),
    }
}

pub fn event(root: &Path, args: &EventArgs) -> Result<ExitCode, CommandError> {
    let now = Utc::now();
    let at = match &args.at {
        None => now,
        Some(t) => crate::time::parse_time(t).map_err(CommandError::Usage)?,
    };
    let properties = match &args.data {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(CommandError::Usage(format!(
                    "`--data {text}` is not a JSON object; write e.g. '{{\"order_id\": \"1001\"}}'"
                )));
            }
        },
    };
    // Read as the API reads a POSTed event, so `set` meets the same rules.
    let mut event = serde_json::Map::new();
    event.insert("properties".into(), serde_json::Value::Object(properties));
    for (key, value) in [
        ("set", event["properties"].get("set").cloned()),
        ("id", args.id.clone().map(serde_json::Value::from)),
        ("customer_id", Some(args.customer.clone().into())),
        ("name", Some(args.name.clone().into())),
        ("at", Some(at.to_rfc3339().into())),
    ] {
        if let Some(value) = value {
            event.insert(key.into(), value);
        }
    }
    if let Some(serde_json::Value::Object(p)) = event.get_mut("properties") {
        p.remove("set");
    }
    let row = import::events_posted(std::slice::from_ref(&event), now, None).remove(0);
    if let Err(errors) = &row {
        let all: Vec<String> = errors
            .iter()
            .map(|e| format!("`{}`: {}", e.field, e.message))
            .collect();
        return Err(CommandError::Usage(all.join("; ")));
    }
    let (runtime, _project, store) = open_store(root)?;
    let report = runtime.block_on(store.record_events(std::iter::once(row), false))?;
    runtime.block_on(store.close());
    if let Some(e) = report.errors.first() {
        return Err(CommandError::Failed(e.message.clone()));
    }
    let mut out = std::io::stdout().lock();
    if report.written == 1 {
        writeln!(
            out,
            "recorded `{}` for customer `{}`",
            args.name, args.customer
        )?;
    } else {
        writeln!(
            out,
            "`{}` for customer `{}` was already recorded (same id)",
            args.name, args.customer
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
