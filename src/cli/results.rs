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

use crate::cli::args::{ResultsArgs, ResultsFormat};
use crate::cli::shared::{CommandError, day_or_time_arg, open_store};
use crate::stats::{
    Interval, MIN_CONVERSIONS, MIN_PER_ARM, difference, sample_size, two_proportion_p, wilson,
};
use crate::store::results::{Arm, arms};
use crate::workflow::plan::HOLDOUT;

pub fn run(root: &Path, args: &ResultsArgs) -> Result<ExitCode, CommandError> {
    let since = match &args.since {
        Some(text) => day_or_time_arg("--since", text)?,
        None => chrono::DateTime::<chrono::Utc>::MIN_UTC,
    };
    let (runtime, project, store) = open_store(root)?;
    // Which workflows set up an experiment (a split or a holdout), so that one whose arms
    // have not all had entries yet says so instead of "no experiment".
    let plan = crate::workflow::compile::compile_project(&project, &[]).plan;
    let designed = |name: &str| {
        plan.workflow(name).is_some_and(|wf| {
            wf.holdout.is_some()
                || wf
                    .all_steps()
                    .iter()
                    .any(|s| matches!(s.kind, crate::workflow::plan::StepKind::Split(_)))
        })
    };
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

/// One arm with what is computed from it.
pub struct Row {
    pub arm: Arm,
    pub rate: Option<Interval>,
    /// Against the holdout, when there is one (and this is not it).
    pub lift: Option<Interval>,
}

/// A workflow's arms and the verdict.
pub struct Experiment {
    pub workflow: String,
    pub rows: Vec<Row>,
    pub verdict: String,
}

impl Experiment {
    /// `designed`: the workflow sets up an experiment (a split or a holdout), whether or
    /// not every arm has had entries yet.
    pub fn of(workflow: &str, arms: Vec<Arm>, designed: bool) -> Self {
        let control = arms
            .iter()
            .find(|a| a.variant.as_deref() == Some(HOLDOUT))
            .map(|a| (a.converted, a.entered));
        let rows: Vec<Row> = arms
            .into_iter()
            .map(|arm| {
                let is_control = arm.variant.as_deref() == Some(HOLDOUT);
                let lift = control
                    .filter(|_| !is_control)
                    .and_then(|c| difference((arm.converted, arm.entered), c));
                Row {
                    rate: wilson(arm.converted, arm.entered),
                    lift,
                    arm,
                }
            })
            .collect();
        let designed = designed || rows.iter().any(|r| r.arm.variant.is_some());
        let verdict = verdict(&rows, designed);
        Self {
            workflow: workflow.to_string(),
            rows,
            verdict,
        }
    }
}

/// The name a verdict gives an arm: the variant after its split's name.
fn short(arm: &Arm) -> String {
    match arm.variant.as_deref() {
        None => "the emails".into(),
        Some(HOLDOUT) => "sending nothing (the holdout)".into(),
        Some(v) => format!("`{}`", v.rsplit('/').next().unwrap_or(v)),
    }
}

/// Which arm is ahead and whether that can be trusted: the two best variants compared
/// (or the one variant against the holdout) with the two-proportion test; below the
/// minimum sample, or without significance at 5%, how many more customers per arm would
/// give 80% power at the rates seen.
fn verdict(rows: &[Row], designed: bool) -> String {
    let mut arms: Vec<&Arm> = rows
        .iter()
        .map(|r| &r.arm)
        .filter(|a| a.variant.as_deref() != Some(HOLDOUT))
        .collect();
    let control = rows
        .iter()
        .map(|r| &r.arm)
        .find(|a| a.variant.as_deref() == Some(HOLDOUT));
    let rate = |a: &Arm| a.converted as f64 / a.entered.max(1) as f64;
    arms.sort_by(|a, b| rate(b).total_cmp(&rate(a)));
    let (first, second) = match (arms.as_slice(), control) {
        ([a, b, ..], _) => (*a, *b),
        ([a], Some(c)) => (*a, c),
        _ if designed => {
            return "only one arm has entries yet: nothing to compare until the others have some"
                .into();
        }
        _ => return "no experiment: add a `split:` step or `holdout:` to compare".into(),
    };
    let (r1, r2) = (rate(first), rate(second));
    let (n1, n2) = (first.entered, second.entered);
    let p = two_proportion_p((first.converted, n1), (second.converted, n2)).unwrap_or(1.0);
    let pct = |r: f64| format!("{:.1}%", r * 100.0);
    let more = |what: &str| match sample_size(r1, r2) {
        Some(n) => format!(
            "{what}: about {} more customers per variant needed for 80% power at the rates seen ({} vs {})",
            thousands(n.saturating_sub(n1.min(n2)).max(1)),
            pct(r1),
            pct(r2)
        ),
        None => format!("{what}: no difference seen yet ({} each)", pct(r1)),
    };
    let small = n1.min(n2) < MIN_PER_ARM || first.converted + second.converted < MIN_CONVERSIONS;
    if small {
        return more(&format!(
            "too early to call (n = {} and {}, {} conversions)",
            n1,
            n2,
            first.converted + second.converted
        ));
    }
    if p < 0.05 {
        return format!(
            "{} beats {}: {} vs {} converted, p = {}",
            short(first),
            short(second),
            pct(r1),
            pct(r2),
            p_value(p)
        );
    }
    more(&format!("no clear winner yet (p = {})", p_value(p)))
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(variant: &str, converted: u64, entered: u64) -> Arm {
        Arm {
            workflow: "w".into(),
            variant: Some(variant.into()),
            entered,
            converted,
            ..Arm::default()
        }
    }

    #[test]
    fn the_verdict_names_a_winner_only_when_it_can() {
        let e = Experiment::of("w", vec![arm("s/a", 80, 1000), arm("s/b", 120, 1000)], true);
        assert_eq!(
            e.verdict,
            "`b` beats `a`: 12.0% vs 8.0% converted, p = 0.003"
        );
        // Checked with Python's statistics.NormalDist: p = 0.7062, n = 55,252 per group.
        let e = Experiment::of("w", vec![arm("s/a", 100, 1000), arm("s/b", 95, 1000)], true);
        assert_eq!(
            e.verdict,
            "no clear winner yet (p = 0.706): about 54,252 more customers per variant needed for 80% power at the rates seen (10.0% vs 9.5%)"
        );
        let e = Experiment::of("w", vec![arm("s/a", 1, 20), arm("s/b", 6, 20)], true);
        assert!(
            e.verdict
                .starts_with("too early to call (n = 20 and 20, 7 conversions)"),
            "{}",
            e.verdict
        );
        let e = Experiment::of(
            "w",
            vec![arm("holdout", 30, 1000), arm("s/a", 60, 1000)],
            true,
        );
        assert!(
            e.verdict
                .starts_with("`a` beats sending nothing (the holdout)"),
            "{}",
            e.verdict
        );
        let lift = e.rows.iter().find_map(|r| r.lift).unwrap();
        assert!(
            (lift.estimate - 0.03).abs() < 1e-12 && lift.low > 0.0,
            "{lift:?}"
        );
        let e = Experiment::of("w", vec![arm("s/a", 3, 10)], false);
        assert!(
            e.verdict.starts_with("only one arm has entries yet"),
            "{}",
            e.verdict
        );
        let mut all = arm("s/a", 3, 10);
        all.variant = None;
        let e = Experiment::of("w", vec![all.clone()], true);
        assert!(
            e.verdict.starts_with("only one arm has entries yet"),
            "{}",
            e.verdict
        );
        let e = Experiment::of("w", vec![all], false);
        assert!(e.verdict.starts_with("no experiment"), "{}", e.verdict);
    }
}
