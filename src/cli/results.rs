//! `tidings results [WORKFLOW] [--since DATE] [--format table|json|markdown]`: what each
//! workflow's experiment shows. Per variant (and the holdout): journeys entered, emailed,
//! clicked, converted, the conversion rate with its 95% Wilson interval, revenue and
//! revenue per entered customer, coupons redeemed; each variant's lift over the holdout
//! with Newcombe's 95% interval; and a verdict in words that declares no winner from a
//! small sample.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::analysis::results::{Experiment, Row, designed};
use crate::cli::args::{ResultsArgs, ResultsFormat};
use crate::cli::shared::{CommandError, day_or_time_arg, open_store};
use crate::store::results::arms;

pub fn run(root: &Path, args: &ResultsArgs) -> Result<ExitCode, CommandError> {
    let since = match &args.since {
        Some(text) => day_or_time_arg("--since", text)?,
        None => chrono::DateTime::<chrono::Utc>::MIN_UTC,
    };
    let (runtime, project, store) = open_store(root)?;
    let plan = crate::workflow::compile::compile_project(&project, &[]).plan;
    let designed = |name: &str| designed(&plan, name);
    let all = runtime.block_on(async {
        let mut conn = store.connection().await?;
        arms(&mut conn, since).await
    })?;
    runtime.block_on(store.close());
    let mut workflows: Vec<String> = Vec::new();
    for a in &all {
        if !workflows.contains(&a.workflow) {
            workflows.push(a.workflow.clone());
        }
    }
    if let Some(name) = &args.workflow {
        if !workflows.contains(name) {
            let known = if workflows.is_empty() {
                "no workflow has had a journey yet".to_string()
            } else {
                format!("the workflows with journeys are: {}", workflows.join(", "))
            };
            return Err(CommandError::Usage(format!(
                "no journeys of workflow `{name}`; {known}"
            )));
        }
        workflows.retain(|w| w == name);
    }
    let results: Vec<Experiment> = workflows
        .iter()
        .map(|w| {
            Experiment::of(
                w,
                all.iter().filter(|a| a.workflow == *w).cloned().collect(),
                designed(w),
            )
        })
        .collect();
    let text = match args.format {
        ResultsFormat::Json => format!("{:#}\n", json_of(&results)),
        ResultsFormat::Table => table(&results),
        ResultsFormat::Markdown => markdown(&results),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

pub fn json_of(results: &[Experiment]) -> Value {
    let workflows: Vec<Value> = results
        .iter()
        .map(|e| {
            let variants: Vec<Value> = e
                .rows
                .iter()
                .map(|r| {
                    let a = &r.arm;
                    let per_entered = (a.entered > 0).then(|| a.revenue / a.entered as f64);
                    json!({
                        "variant": a.variant,
                        "entered": a.entered,
                        "emailed": a.emailed,
                        "clicked": a.clicked,
                        "converted": a.converted,
                        "rate": r.rate.map(|i| i.estimate),
                        "ci_low": r.rate.map(|i| i.low),
                        "ci_high": r.rate.map(|i| i.high),
                        "revenue": a.revenue,
                        "revenue_per_entered": per_entered,
                        "redeemed": a.redeemed,
                        "lift": r.lift.map(|l| json!({ "difference": l.estimate, "ci_low": l.low, "ci_high": l.high })),
                    })
                })
                .collect();
            json!({ "workflow": e.workflow, "variants": variants, "verdict": e.verdict })
        })
        .collect();
    json!({ "workflows": workflows })
}

/// The rows as cells: variant, entered, emailed, clicked, converted, rate [interval],
/// revenue, per entered, redeemed, lift [interval].
fn cells(r: &Row) -> Vec<String> {
    let a = &r.arm;
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let rate = r.rate.map_or("-".into(), |i| {
        format!("{} [{}, {}]", pct(i.estimate), pct(i.low), pct(i.high))
    });
    let lift = r.lift.map_or("-".into(), |l| {
        format!(
            "{:+.1} pt [{:+.1}, {:+.1}]",
            l.estimate * 100.0,
            l.low * 100.0,
            l.high * 100.0
        )
    });
    let per = if a.entered > 0 {
        format!("{:.2}", a.revenue / a.entered as f64)
    } else {
        "-".into()
    };
    vec![
        a.variant
            .clone()
            .unwrap_or_else(|| crate::workflow::plan::NO_VARIANT.into()),
        a.entered.to_string(),
        a.emailed.to_string(),
        a.clicked.to_string(),
        a.converted.to_string(),
        rate,
        format!("{:.2}", round4(a.revenue)),
        per,
        a.redeemed.to_string(),
        lift,
    ]
}

const HEADER: [&str; 10] = [
    "variant",
    "entered",
    "emailed",
    "clicked",
    "converted",
    "rate [95% CI]",
    "revenue",
    "per entered",
    "redeemed",
    "lift vs holdout",
];

fn table(results: &[Experiment]) -> String {
    let mut out = String::new();
    if results.is_empty() {
        out.push_str("no journeys yet\n");
    }
    for e in results {
        let mut rows = vec![HEADER.map(str::to_string).to_vec()];
        rows.extend(e.rows.iter().map(cells));
        let widths: Vec<usize> = (0..HEADER.len())
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let _ = writeln!(out, "{}", e.workflow);
        for row in rows {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| match i {
                    0 => format!("  {c:<w$}", w = widths[i]),
                    _ => format!("{c:>w$}", w = widths[i]),
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        let _ = writeln!(out, "  → {}\n", e.verdict);
    }
    out
}

fn markdown(results: &[Experiment]) -> String {
    let mut out = String::from("## Experiment results\n\n");
    for e in results {
        let _ = writeln!(out, "### `{}`\n", e.workflow);
        let _ = writeln!(out, "| {} |", HEADER.join(" | "));
        let _ = writeln!(out, "|{}", " --- |".repeat(HEADER.len()));
        for r in &e.rows {
            let _ = writeln!(out, "| {} |", cells(r).join(" | "));
        }
        let _ = writeln!(out, "\n**Verdict:** {}\n", e.verdict);
    }
    out.push_str("Rates are conversions per customer who entered, with 95% Wilson intervals; lift is the difference from the holdout with Newcombe's 95% interval; the verdict is a two-sided two-proportion z-test at 5%, and names no winner below 100 customers per variant or 10 conversions.\n");
    out
}
