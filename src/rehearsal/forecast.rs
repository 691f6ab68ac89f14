//! What the working tree would do if it were deployed now, for `tidings plan`: who matches
//! each audience, who enters next, the emails of the next day and week, and what the change
//! does to journeys already running.
//!
//! The email counts come from a seven-day rehearsal on a copy of the store (the engine
//! that the daemon runs, on a virtual clock), so frequency caps, quiet hours, waits already
//! running and schedules all count as they will; events that have not happened yet do not.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::config::Config;
use crate::delivery::Transport;
use crate::engine::deployed::WorkflowPrint;
use crate::model::customer::Customer;
use crate::model::filter::ColumnFilter;
use crate::rehearsal::simulate::{Rehearsal, SimulateError, rehearse};
use crate::store::customer_rows::CustomerFilter;
use crate::store::customer_rows::customers_page;
use crate::store::engagement::pasts;
use crate::store::{Store, StoreError};
use crate::workflow::expr::{EvalInput, Expr};
use crate::workflow::plan::{Plan, Trigger, Workflow, Zone};

#[derive(Debug, Error)]
pub enum ForecastError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error("the rehearsal of the next seven days stopped")]
    Rehearsal(#[from] SimulateError),
}

/// How a workflow differs from the set it is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Unchanged,
    Added,
    /// The file or one of its templates changed; the step ids that went and came.
    Changed {
        removed_steps: Vec<String>,
        added_steps: Vec<String>,
    },
    Removed,
}

/// Who enters a workflow next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NextEntry {
    /// Each matching event enrolls its customer; nothing to count ahead.
    OnEvent,
    /// A schedule in one zone: its next fire time and the customers it would enroll.
    At { at: DateTime<Utc>, customers: u64 },
    /// Date triggers and schedules in each customer's zone: entries in the next 24 hours.
    Next24h { customers: u64 },
    /// Disabled, or removed.
    Never,
}

/// One workflow's line in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub workflow: String,
    pub change: Change,
    /// The trigger as `validate` words it; empty for a removed workflow.
    pub trigger: String,
    /// Customers the audience holds now; `None` when it depends on the triggering event.
    pub audience_now: Option<u64>,
    pub next_entry: NextEntry,
    pub emails_24h: u64,
    pub emails_7d: u64,
    /// Running enrollments at a step id the new version lacks (all of a removed workflow's):
    /// step id to count. They would exit at their next step.
    pub stranded: BTreeMap<String, u64>,
    /// For a workflow with a split or a holdout: how its arms fill up.
    pub experiment: Option<ExperimentPlan>,
}

/// How fast an experiment gathers its sample, at the rehearsed week's volumes.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentPlan {
    /// Journeys each arm would get in the week (`SPLIT/VARIANT`, `holdout`, `(rest)`).
    pub arms_7d: BTreeMap<String, u64>,
    /// Days until the smallest arm holds the minimum sample `results` needs before it
    /// names a winner; `None` when an arm gets nobody in the week.
    pub days_to_minimum: Option<u64>,
}

/// The arms of an experimenting workflow in a rehearsal, and the days to the minimum
/// sample at that pace.
fn experiment(wf: &Workflow, rehearsal: &Rehearsal) -> Option<ExperimentPlan> {
    let mut arms_7d: BTreeMap<String, u64> = BTreeMap::new();
    for step in wf.all_steps() {
        if let crate::workflow::plan::StepKind::Split(split) = &step.kind {
            for v in &split.variants {
                arms_7d.insert(format!("{}/{}", split.name, v.name), 0);
            }
        }
    }
    let splits = !arms_7d.is_empty();
    if !splits && wf.holdout.is_none() {
        return None;
    }
    for ((w, v), n) in &rehearsal.variants {
        if *w == wf.name {
            arms_7d.insert(v.clone(), *n);
        }
    }
    if !splits {
        let entered = rehearsal.workflows.get(&wf.name).map_or(0, |o| o.enrolled);
        let held: u64 = arms_7d.values().sum();
        arms_7d.insert(
            crate::workflow::plan::NO_VARIANT.into(),
            entered.saturating_sub(held),
        );
        arms_7d
            .entry(crate::workflow::plan::HOLDOUT.into())
            .or_insert(0);
    }
    let smallest = arms_7d.values().copied().min().unwrap_or(0);
    let days_to_minimum = (smallest > 0).then(|| {
        let per_day = smallest as f64 / 7.0;
        (crate::stats::MIN_PER_ARM as f64 / per_day).ceil() as u64
    });
    Some(ExperimentPlan {
        arms_7d,
        days_to_minimum,
    })
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    pub now: DateTime<Utc>,
    pub customers: u64,
    pub lines: Vec<Line>,
}

const WEEK: TimeDelta = TimeDelta::days(7);
const DAY: TimeDelta = TimeDelta::days(1);
const PAGE: i64 = 1_000;

/// Forecasts `plan` over `store` at `now`, comparing it with `base` (every workflow is
/// `Added` when there is none).
/// What a change does to one workflow, against its print in the base set (if it has one).
fn change_of(old: Option<&WorkflowPrint>, print: &WorkflowPrint) -> Change {
    match old {
        None => Change::Added,
        Some(old) if old.digest == print.digest => Change::Unchanged,
        Some(old) => Change::Changed {
            removed_steps: old
                .steps
                .iter()
                .filter(|s| !print.steps.contains(s))
                .cloned()
                .collect(),
            added_steps: print
                .steps
                .iter()
                .filter(|s| !old.steps.contains(s))
                .cloned()
                .collect(),
        },
    }
}

pub async fn forecast(
    store: &Store,
    plan: Arc<Plan>,
    config: &Config,
    base: Option<&[WorkflowPrint]>,
    now: DateTime<Utc>,
) -> Result<Forecast, ForecastError> {
    let (customers, audiences) = audiences(store, &plan, now).await?;
    let running = running_steps(store).await?;
    let rehearsal = rehearse(
        store,
        plan.clone(),
        config,
        now,
        now + WEEK,
        &Transport::Discard,
        Default::default(),
    )
    .await?;
    let mut lines = Vec::new();
    for wf in &plan.workflows {
        let print = WorkflowPrint::of(wf, &plan);
        let change = change_of(
            base.and_then(|b| b.iter().find(|p| p.name == wf.name)),
            &print,
        );
        let stranded = running
            .get(&wf.name)
            .map(|steps| {
                steps
                    .iter()
                    .filter(|(step, _)| !print.steps.contains(step))
                    .map(|(s, n)| (s.clone(), *n))
                    .collect()
            })
            .unwrap_or_default();
        lines.push(Line {
            workflow: wf.name.clone(),
            change,
            trigger: wf.summary(),
            audience_now: audiences.get(&wf.name).copied().flatten(),
            next_entry: next_entry(wf, &rehearsal, now),
            emails_24h: count(&rehearsal.sends, &wf.name, now, now + DAY),
            emails_7d: count(&rehearsal.sends, &wf.name, now, now + WEEK),
            stranded,
            experiment: experiment(wf, &rehearsal),
        });
    }
    // Workflows that are gone: those of the base set, and any the store still runs.
    let mut gone: Vec<&String> = base
        .unwrap_or_default()
        .iter()
        .map(|p| &p.name)
        .chain(running.keys())
        .filter(|name| plan.workflow(name).is_none())
        .collect();
    gone.sort();
    gone.dedup();
    for name in gone {
        lines.push(Line {
            workflow: name.clone(),
            change: Change::Removed,
            trigger: String::new(),
            audience_now: None,
            next_entry: NextEntry::Never,
            emails_24h: 0,
            emails_7d: 0,
            stranded: running.get(name).cloned().unwrap_or_default(),
            experiment: None,
        });
    }
    Ok(Forecast {
        now,
        customers,
        lines,
    })
}

fn count(
    times: &[(String, DateTime<Utc>)],
    wf: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> u64 {
    times
        .iter()
        .filter(|(w, t)| w == wf && *t >= from && *t < to)
        .count() as u64
}

fn next_entry(wf: &Workflow, rehearsal: &Rehearsal, now: DateTime<Utc>) -> NextEntry {
    if !wf.enabled {
        return NextEntry::Never;
    }
    match &wf.trigger {
        Trigger::Event { .. } => NextEntry::OnEvent,
        Trigger::Schedule {
            cron,
            zone: Zone::Fixed(tz),
            ..
        } => match cron.next_after(now, *tz) {
            // A pass at the fire time enrolls everyone it finds; the rehearsal's clock stops
            // there, so the entries carry that time.
            Some(at) => NextEntry::At {
                at,
                customers: count(&rehearsal.entries, &wf.name, at, at + TimeDelta::seconds(1)),
            },
            None => NextEntry::Never,
        },
        Trigger::Schedule { .. } | Trigger::Date { .. } => NextEntry::Next24h {
            customers: count(&rehearsal.entries, &wf.name, now, now + DAY),
        },
    }
}

/// The customer count, and per workflow the customers its audience holds now (`None` when
/// the audience needs the triggering event). One read of the customers for all workflows.
async fn audiences(
    store: &Store,
    plan: &Plan,
    now: DateTime<Utc>,
) -> Result<(u64, BTreeMap<String, Option<u64>>), ForecastError> {
    let mut counts: BTreeMap<String, Option<u64>> = plan
        .workflows
        .iter()
        .map(|w| (w.name.clone(), Some(0)))
        .collect();
    // `event_count` reads the customer's past events: loaded per page, and only when
    // an audience calls it.
    let needs_history = plan
        .workflows
        .iter()
        .any(|w| w.audience.as_ref().is_some_and(Expr::reads_history));
    let mut total = 0;
    let mut conn = store.connection().await?;
    let mut after = String::new();
    loop {
        let page: Vec<Customer> = customers_page(
            &mut conn,
            &after,
            PAGE,
            &CustomerFilter::All,
            &ColumnFilter::default(),
        )
        .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        total += page.len() as u64;
        let mut histories = Vec::new();
        if needs_history {
            let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
            let pasts = pasts(&mut conn, &ids, now).await?;
            for customer in &page {
                let past = pasts.get(&customer.id).map(|p| p.until(now));
                histories.push(Arc::new(past.unwrap_or_default()));
            }
        }
        for wf in &plan.workflows {
            let Some(Some(n)) = counts.get_mut(&wf.name) else {
                continue;
            };
            let Some(audience) = &wf.audience else {
                *n += page.len() as u64;
                continue;
            };
            for (i, customer) in page.iter().enumerate() {
                let input = EvalInput {
                    customer,
                    event: None,
                    enrollment: None,
                    now,
                    history: histories.get(i).cloned(),
                };
                match plan.engine.eval_bool(audience, &input) {
                    Ok(true) => *n += 1,
                    Ok(false) => {}
                    // An event workflow's audience may read the event, which no customer
                    // has before it happens: then there is no count to give.
                    Err(_) if matches!(wf.trigger, Trigger::Event { .. }) => {
                        counts.insert(wf.name.clone(), None);
                        break;
                    }
                    // A customer the audience fails for is not in it (the engine records
                    // a failed enrollment for them).
                    Err(_) => {}
                }
            }
        }
    }
    Ok((total, counts))
}

/// Running enrollments per workflow and step id.
async fn running_steps(
    store: &Store,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, ForecastError> {
    let mut conn = store.connection().await?;
    Ok(crate::store::enrollments::running_steps(&mut conn).await?)
}
