//! `tidings sync [SOURCE] [--dry-run]`: each source of tidings.yaml read once, from its
//! cursors to the end, into the store.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::args::SyncArgs;
use crate::cli::shared::{CommandError, open_store};
use crate::config::expand_env;
use crate::sync::SyncReport;

/// Refused rows listed before the rest are summed up.
const SHOWN: usize = 50;

pub fn run(root: &Path, args: &SyncArgs) -> Result<ExitCode, CommandError> {
    let (runtime, project, store) = open_store(root)?;
    let sources = &project.config.sources;
    if sources.is_empty() {
        return Err(CommandError::Usage(
            "tidings.yaml has no `sources:`; see README, \"Your shop's data\"".into(),
        ));
    }
    let chosen: Vec<_> = match &args.source {
        Some(name) => match sources.get_key_value(name) {
            Some(one) => vec![one],
            None => {
                let names: Vec<&str> = sources.keys().map(String::as_str).collect();
                return Err(CommandError::Usage(format!(
                    "tidings.yaml has no source `{name}`; its sources are: {}",
                    names.join(", ")
                )));
            }
        },
        None => sources.iter().collect(),
    };
    let mut ok = true;
    for (name, source) in chosen {
        let url = expand_env(&source.database, &|v| std::env::var(v).ok()).map_err(|e| {
            CommandError::Failed(format!(
                "{e} (in `sources.{name}.database` of tidings.yaml)"
            ))
        })?;
        let report = runtime
            .block_on(crate::sync::sync_source(
                &store,
                name,
                source,
                &url,
                args.dry_run,
            ))
            .map_err(|crate::sync::SyncError::Store(e)| CommandError::Store(e))?;
        ok &= print(&report, args.dry_run)?;
    }
    runtime.block_on(store.close());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints what a source's sync did; `false` when something was refused or failed.
fn print(report: &SyncReport, dry_run: bool) -> std::io::Result<bool> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let mut ok = report.error.is_none();
    if let Some(e) = &report.error {
        writeln!(err, "error: {e}")?;
    }
    for f in &report.feeds {
        let what = match f.feed {
            "orders" => {
                let o = &f.orders;
                format!(
                    "{} new, {} changed, {} unchanged; {} events recorded",
                    o.new, o.changed, o.unchanged, o.events
                )
            }
            _ => format!("{} customers written", f.customers),
        };
        let would = if dry_run {
            " (dry run: nothing kept)"
        } else {
            ""
        };
        writeln!(
            out,
            "source {}, {}: {} rows read; {what}{would}",
            report.source, f.feed, f.read
        )?;
        for line in f.refused.iter().take(SHOWN) {
            writeln!(err, "error: {line}")?;
        }
        if f.refused.len() > SHOWN {
            writeln!(err, "... and {} more refused rows", f.refused.len() - SHOWN)?;
        }
        if !f.refused.is_empty() {
            writeln!(
                err,
                "the cursor of {}/{} stays before the first refused row: fix it in the shop, and the next sync reads it again",
                report.source, f.feed
            )?;
            ok = false;
        }
        if let Some(e) = &f.error {
            writeln!(err, "error: {e}")?;
            ok = false;
        }
    }
    Ok(ok)
}
