//! What an experiment shows: per variant (and the holdout) the conversion rate with its
//! 95% Wilson interval, each variant's lift over the holdout with Newcombe's 95% interval,
//! and a verdict in words that declares no winner from a small sample.

use crate::stats::{
    Interval, MIN_CONVERSIONS, MIN_PER_ARM, difference, sample_size, two_proportion_p, wilson,
};
use crate::store::results::Arm;
use crate::workflow::plan::{HOLDOUT, Plan, StepKind};

/// Whether a workflow sets up an experiment (a split or a holdout), so that one whose arms
/// have not all had entries yet says so instead of "no experiment".
pub fn designed(plan: &Plan, workflow: &str) -> bool {
    plan.workflow(workflow).is_some_and(|wf| {
        wf.holdout.is_some()
            || wf
                .all_steps()
                .iter()
                .any(|s| matches!(s.kind, StepKind::Split(_)))
    })
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
