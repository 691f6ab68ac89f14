//! The compiled form of the workflows: what the engine, `preview`, `plan` and `simulate` run
//! from. Everything here has been checked; nothing needs parsing again.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::source::SourceFile;
use crate::time::cron::CronSchedule;
use crate::workflow::expr::{Expr, ExprEngine};
use crate::workflow::raw::{CatchUp, Deferral, DeliveryMode, MailClass};
use crate::workflow::templates::{EmailFiles, Templates};

/// Every valid workflow of a project, with the templates, the expression engine and the
/// lifecycle stages (when `stages.yaml` exists).
pub struct Plan {
    pub workflows: Vec<Arc<Workflow>>,
    pub templates: Arc<Templates>,
    pub engine: Arc<ExprEngine>,
    pub stages: Option<Arc<crate::workflow::stages::Stages>>,
}

impl Plan {
    pub fn workflow(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.workflows.iter().find(|w| w.name == name)
    }

    /// The message for a name that is not a workflow: the closest name, or all of them.
    pub fn no_such_workflow(&self, name: &str) -> String {
        let names: Vec<&str> = self.workflows.iter().map(|w| w.name.as_str()).collect();
        let hint = match crate::source::yaml::closest(name, names.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("the workflows are: {}", names.join(", ")),
        };
        format!("no workflow named `{name}`; {hint}")
    }

    /// The same plan with only the named workflows, or the message for the first unknown
    /// name.
    pub fn only(&self, names: &[String]) -> Result<Plan, String> {
        if let Some(unknown) = names.iter().find(|n| self.workflow(n).is_none()) {
            return Err(self.no_such_workflow(unknown));
        }
        Ok(Plan {
            workflows: self
                .workflows
                .iter()
                .filter(|w| names.is_empty() || names.contains(&w.name))
                .cloned()
                .collect(),
            templates: self.templates.clone(),
            engine: self.engine.clone(),
            stages: self.stages.clone(),
        })
    }
}

#[derive(Debug)]
pub struct Workflow {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub class: MailClass,
    pub trigger: Trigger,
    pub audience: Option<Expr>,
    pub reentry: Reentry,
    pub exit_when: Option<Expr>,
    pub delivery: DeliveryMode,
    pub catch_up: CatchUp,
    /// `tracking:` as the workflow wrote it (combined with the project's at each email).
    pub tracking: crate::config::WorkflowTracking,
    /// `topic:`: the kind of mail, which a customer may opt out of on its own.
    pub topic: Option<String>,
    /// The events its `wait: {for: ...}` steps wait for: computed once, since every event a
    /// pass processes asks whether some workflow waits for it.
    pub waits_for: std::collections::BTreeSet<String>,
    /// `holdout:` as a share (0.1 for `10%`) of those who enter.
    pub holdout: Option<f64>,
    pub goal: Option<Goal>,
    pub steps: Vec<Step>,
    /// How the steps follow each other, by id: computed once, when the workflow compiles.
    pub graph: StepGraph,
    pub file: SourceFile,
}

/// Where each step stands and what comes after it, by step id.
#[derive(Debug, Clone, Default)]
pub struct StepGraph {
    pub nodes: HashMap<String, StepLinks>,
    /// The first step's id.
    pub first: Option<String>,
}

/// One step's place (indices from the top list: `[i]`, or `[i, 0, j]` for the `then`
/// branch of step `i`, `[i, 1, j]` for its `else`, `[i, k, j]` for a split's variant `k`)
/// and the ids that follow it.
#[derive(Debug, Clone, Default)]
pub struct StepLinks {
    pub path: Vec<usize>,
    pub next: Option<String>,
    pub then_first: Option<String>,
    pub else_first: Option<String>,
    /// A split's first step of each variant.
    pub variant_firsts: Vec<Option<String>>,
}

impl StepGraph {
    pub fn of(steps: &[Step]) -> Self {
        let mut graph = Self {
            nodes: HashMap::new(),
            first: steps.first().map(|s| s.id.clone()),
        };
        graph.link(steps, &[], None);
        graph
    }

    fn link(&mut self, steps: &[Step], prefix: &[usize], after: Option<&str>) {
        for (i, step) in steps.iter().enumerate() {
            let next = steps.get(i + 1).map(|s| s.id.as_str()).or(after);
            let mut path = prefix.to_vec();
            path.push(i);
            let (mut then_first, mut else_first) = (None, None);
            let mut variant_firsts = Vec::new();
            for (k, branch) in step.kind.branches().into_iter().enumerate() {
                self.link(branch, &[path.as_slice(), &[k]].concat(), next);
                let first = branch.first().map(|s| s.id.clone());
                match (&step.kind, k) {
                    (StepKind::If { .. }, 0) => then_first = first,
                    (StepKind::If { .. }, _) => else_first = first,
                    _ => variant_firsts.push(first),
                }
            }
            let links = StepLinks {
                path,
                next: next.map(str::to_string),
                then_first,
                else_first,
                variant_firsts,
            };
            self.nodes.insert(step.id.clone(), links);
        }
    }
}

impl Workflow {
    /// The step at a graph node's path.
    pub fn step_at(&self, path: &[usize]) -> Option<&Step> {
        let (&first, mut rest) = path.split_first()?;
        let mut step = self.steps.get(first)?;
        while let [branch, index, more @ ..] = rest {
            step = step.kind.branches().get(*branch)?.get(*index)?;
            rest = more;
        }
        Some(step)
    }

    /// How long after entry the journey's first email goes, on its quickest way there:
    /// the holdout, sent nothing, is measured from that moment, as the arms are from
    /// their email. Fixed waits count whole; `wait: {for, at_most}` counts its limit (a
    /// holdout gets no email to react to); `wait: {until}` counts nothing; of an `if`'s
    /// or a split's branches the quickest to an email counts. Zero when no email comes.
    pub fn first_email_after(&self) -> TimeDelta {
        /// The time until an email within `steps`, or the time they take without one.
        fn walk(steps: &[Step]) -> (Option<TimeDelta>, TimeDelta) {
            let mut elapsed = TimeDelta::zero();
            for step in steps {
                let quickest = match &step.kind {
                    StepKind::Email(_) => return (Some(elapsed), elapsed),
                    StepKind::Exit { .. } => return (None, elapsed),
                    StepKind::Wait(Wait::For(d)) => {
                        elapsed = elapsed.checked_add(d).unwrap_or(elapsed);
                        None
                    }
                    StepKind::WaitFor(w) => {
                        elapsed = elapsed.checked_add(&w.at_most).unwrap_or(elapsed);
                        None
                    }
                    _ => step
                        .kind
                        .branches()
                        .into_iter()
                        .filter_map(|b| walk(b).0)
                        .min(),
                };
                if let Some(d) = quickest {
                    return (elapsed.checked_add(&d), elapsed);
                }
            }
            (None, elapsed)
        }
        walk(&self.steps).0.unwrap_or_else(TimeDelta::zero)
    }

    /// Every step, depth first, with branches after their `if`.
    pub fn all_steps(&self) -> Vec<&Step> {
        fn walk<'a>(steps: &'a [Step], out: &mut Vec<&'a Step>) {
            for s in steps {
                out.push(s);
                for branch in s.kind.branches() {
                    walk(branch, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out
    }

    /// Whether an expression of this workflow reads the customer's past events
    /// ([`Expr::reads_history`]): only then are they loaded.
    pub fn reads_history(&self) -> bool {
        self.audience.as_ref().is_some_and(Expr::reads_history)
            || self.exit_when.as_ref().is_some_and(Expr::reads_history)
            || self.all_steps().iter().any(|s| match &s.kind {
                StepKind::If { condition, .. } => condition.reads_history(),
                _ => false,
            })
    }

    /// The template files this workflow's emails use.
    pub fn template_files(&self) -> Vec<String> {
        self.all_steps()
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Email(e) => {
                    Some(e.files.all_files().map(str::to_string).collect::<Vec<_>>())
                }
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Each email step's id and the template it sends, as written in `email:`.
    pub fn email_templates(&self) -> Vec<(String, String)> {
        self.all_steps()
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Email(e) => Some((
                    s.id.clone(),
                    e.files.html.trim_end_matches(".html").to_string(),
                )),
                _ => None,
            })
            .collect()
    }

    pub fn email_count(&self) -> usize {
        self.all_steps()
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Email(_)))
            .count()
    }

    /// One line for `validate`'s summary.
    pub fn summary(&self) -> String {
        let trigger = match &self.trigger {
            Trigger::Schedule { line, zone, .. } => format!("schedule `{line}` in {zone}"),
            Trigger::Event {
                to_stage: Some(stage),
                ..
            } => format!("entering stage `{}`", stage.name),
            Trigger::Event { name, .. } => format!("event `{name}`"),
            Trigger::Date { column, at, offset } => {
                let offset = if offset.is_zero() {
                    String::new()
                } else {
                    format!(" {}", crate::time::duration::format(*offset))
                };
                format!(
                    "date `{column}` at {}{offset} local time",
                    at.format("%H:%M")
                )
            }
        };
        let steps = self.all_steps().len();
        let emails = self.email_count();
        let disabled = if self.enabled { "" } else { ", disabled" };
        format!(
            "{trigger}, {steps} step{}, {emails} email{}{disabled}",
            if steps == 1 { "" } else { "s" },
            if emails == 1 { "" } else { "s" }
        )
    }
}

/// The zone a schedule runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Fixed(Tz),
    /// Each customer's own `timezone` (UTC when unset).
    Customer,
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Zone::Fixed(tz) => write!(f, "{}", tz.name()),
            Zone::Customer => write!(f, "each customer's zone"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Trigger {
    Schedule {
        cron: CronSchedule,
        line: String,
        zone: Zone,
    },
    Event {
        name: String,
        /// `stage_entered: lapsed`: only moves into this stage (the event's `to`).
        to_stage: Option<StageRef>,
    },
    Date {
        column: String,
        at: NaiveTime,
        offset: TimeDelta,
    },
}

/// A stage a trigger names, with where, for the check against `stages.yaml` (which is read
/// after the workflows).
#[derive(Debug, Clone)]
pub struct StageRef {
    pub name: String,
    pub span: crate::source::diagnostic::Span,
}

/// When a yearly date trigger fires for one customer's date, in their zone, after `after`.
///
/// The anniversary of Feb 29 is Feb 28 in common years. A local time skipped by a DST gap
/// fires at the jump; a repeated one fires at its first occurrence.
pub fn next_anniversary(
    date: NaiveDate,
    at: NaiveTime,
    offset: TimeDelta,
    tz: Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let start_year = after.with_timezone(&tz).year() - 1;
    for year in start_year..start_year + 3 {
        let day = NaiveDate::from_ymd_opt(year, date.month(), date.day())
            .or_else(|| NaiveDate::from_ymd_opt(year, date.month(), 28))?;
        let local = day.and_time(at).checked_add_signed(offset)?;
        let instant = match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
            chrono::LocalResult::None => crate::time::cron::jump_after_gap(local, tz)?,
        };
        if instant > after {
            return Some(instant);
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reentry {
    Never,
    Always,
    After(TimeDelta),
}

#[derive(Debug)]
pub struct Step {
    /// The step's `id:`, or one derived from its place (`3`, `3.then.1`) or its template.
    pub id: String,
    pub kind: StepKind,
}

#[derive(Debug)]
pub enum StepKind {
    Email(EmailStep),
    Wait(Wait),
    WaitFor(WaitForEvent),
    If {
        condition: Expr,
        then: Vec<Step>,
        else_: Vec<Step>,
    },
    Webhook(WebhookStep),
    Update(UpdateStep),
    Exit {
        reason: String,
    },
    Split(SplitStep),
}

impl StepKind {
    /// The lists of steps inside this one: an `if`'s `then` and `else`, a split's variants.
    pub fn branches(&self) -> Vec<&[Step]> {
        match self {
            StepKind::If { then, else_, .. } => vec![then.as_slice(), else_.as_slice()],
            StepKind::Split(split) => split.variants.iter().map(|v| v.steps.as_slice()).collect(),
            _ => Vec::new(),
        }
    }
}

/// `split:`: named variants by weight.
#[derive(Debug)]
pub struct SplitStep {
    pub name: String,
    pub variants: Vec<Variant>,
}

#[derive(Debug)]
pub struct Variant {
    pub name: String,
    pub weight: f64,
    pub steps: Vec<Step>,
}

impl SplitStep {
    /// The variant a customer is sent down: a stable hash of (customer, workflow, split)
    /// placed on the weights, so that every pass, replica, re-entry and rehearsal agrees.
    pub fn assign(&self, customer: &str, workflow: &str) -> usize {
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        let point = crate::model::ids::unit_hash(&[customer, workflow, &self.name]) * total;
        let mut upto = 0.0;
        for (i, v) in self.variants.iter().enumerate() {
            upto += v.weight;
            if point < upto {
                return i;
            }
        }
        self.variants.len().saturating_sub(1)
    }
}

/// `goal:` of a workflow.
#[derive(Debug)]
pub struct Goal {
    pub event: String,
    pub within: TimeDelta,
    /// The revenue; 0 without one.
    pub value: Option<Expr>,
}

/// The row of journeys that no split or holdout assigned (those who left before a split,
/// or every journey of a workflow whose only experiment is its holdout): one name in
/// `results`, `status`, `plan` and the report.
pub const NO_VARIANT: &str = "(rest)";

/// The variant, and the exit reason, of those a workflow's `holdout:` keeps out.
pub const HOLDOUT: &str = "holdout";

/// Whether a customer entering a workflow with `holdout: share` is held out: a stable hash
/// of (customer, workflow) below the share.
pub fn held_out(share: f64, customer: &str, workflow: &str) -> bool {
    crate::model::ids::unit_hash(&[customer, workflow, "holdout"]) < share
}

#[derive(Debug)]
pub struct EmailStep {
    pub files: EmailFiles,
    /// Locale (`""` for the default) to the name of the subject's inline template.
    pub subjects: BTreeMap<String, String>,
    pub coupon: Option<Coupon>,
    /// Earlier steps whose coupons the templates show (`{{ coupons.deal.code }}`).
    pub earlier_coupons: Vec<String>,
    pub when_capped: Deferral,
    pub in_quiet_hours: Deferral,
}

#[derive(Debug, Clone)]
pub struct Coupon {
    pub prefix: String,
    pub valid_for: TimeDelta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    For(TimeDelta),
    /// Until the next occurrence of this local time in the customer's zone.
    Until(NaiveTime),
}

/// `wait: { for: EVENT, at_most: DURATION }`: the journey goes on when the customer's
/// event of that name comes, or when the time runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitForEvent {
    pub event: String,
    pub at_most: TimeDelta,
}

#[derive(Debug)]
pub struct WebhookStep {
    pub url: String,
    pub method: String,
    pub json: Option<serde_json::Value>,
    pub headers: BTreeMap<String, String>,
    pub timeout: TimeDelta,
}

#[derive(Debug)]
pub struct UpdateStep {
    pub set: BTreeMap<String, serde_json::Value>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn leap_day_birthdays_fall_on_feb_28_in_common_years() {
        let date = NaiveDate::from_ymd_opt(2000, 2, 29).unwrap();
        let at = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let t = next_anniversary(
            date,
            at,
            TimeDelta::zero(),
            Tz::Asia__Tokyo,
            utc("2027-01-01T00:00:00Z"),
        );
        assert_eq!(t, Some(utc("2027-02-28T00:00:00Z")));
        let t = next_anniversary(
            date,
            at,
            TimeDelta::zero(),
            Tz::Asia__Tokyo,
            utc("2028-01-01T00:00:00Z"),
        );
        assert_eq!(t, Some(utc("2028-02-29T00:00:00Z")));
    }

    #[test]
    fn offsets_move_the_fire_time() {
        let date = NaiveDate::from_ymd_opt(1990, 3, 10).unwrap();
        let at = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let t = next_anniversary(
            date,
            at,
            TimeDelta::days(-3),
            Tz::UTC,
            utc("2026-01-01T00:00:00Z"),
        );
        assert_eq!(t, Some(utc("2026-03-07T09:00:00Z")));
    }
}
