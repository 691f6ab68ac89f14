//! The marketer's rehearsal: every workflow runs on a virtual clock over a scratch copy of
//! the store, and what would be sent is written down instead of sent.
//!
//! The clock jumps from one moment that matters to the next (an event, a due step, a
//! schedule's fire time, a UTC midnight when stages are swept; a day at most), so a 60-day
//! window over many customers is a few hundred passes, and each pass is the real engine's
//! `run_once`: the rehearsal cannot drift from what the daemon would do.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use thiserror::Error;

use crate::config::Config;
use crate::delivery::{DeliveryError, DispatchOptions, Transport};
use crate::engine::{Engine, EngineError};
use crate::model::states::{Channel, DeliveryState, JourneyState};
use crate::pass::Runner;
use crate::rehearsal::tempdir::TempDir;
use crate::store::copy::{self, CopyReport, copy_for_rehearsal};
use crate::store::{Store, StoreError, look};
use crate::time::clock::{Clock, VirtualClock};
use crate::workflow::plan::{Plan, Trigger, Zone};

#[derive(Debug, Error)]
pub enum SimulateError {
    #[error("cannot create the scratch store in `{path}`")]
    Scratch {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Pass(#[from] crate::pass::PassError),
}

/// The longest the clock jumps without a pass. Every moment something can happen is
/// computed (see [`next_moment`]), so this is only a backstop.
const MAX_JUMP: TimeDelta = TimeDelta::days(1);

/// What happened to one workflow's journeys in the window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcomes {
    pub enrolled: u64,
    pub completed: u64,
    pub converted: u64,
    pub exited: u64,
    pub failed: u64,
}

/// One workflow's sends on one (UTC) day.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DaySends {
    pub emails: u64,
    pub skipped: u64,
    pub failed: u64,
    pub webhooks: u64,
}

/// Everything a rehearsal found.
#[derive(Debug, Default)]
pub struct Rehearsal {
    pub passes: u64,
    pub copied: CopyReport,
    pub days: BTreeMap<(NaiveDate, String), DaySends>,
    pub workflows: BTreeMap<String, Outcomes>,
    /// Why failed journeys failed, the first few of each workflow.
    pub failures: Vec<(String, String, String)>,
    /// Each email that would go (workflow, due time): for counts over windows other than
    /// days, such as `plan`'s next 24 hours.
    pub sends: Vec<(String, DateTime<Utc>)>,
    /// Each journey that entered in the window (workflow, entry time).
    pub entries: Vec<(String, DateTime<Utc>)>,
    /// Emails the store had already sent in the window, by workflow: the rehearsal starts
    /// from what the store holds and cannot send them again, so they are not its own.
    pub already_sent: BTreeMap<String, u64>,
    /// Emails the rehearsal wrote through its transport (a folder's `.eml` files).
    pub written: u64,
    /// Emails per workflow and email step: the one engagement figure a rehearsal has
    /// (nobody reads its email, so nothing is clicked, opened or answered).
    pub steps: BTreeMap<(String, String), u64>,
    /// Journeys entered per workflow and variant (`SPLIT/VARIANT`, `holdout`).
    pub variants: BTreeMap<(String, String), u64>,
}

/// Runs the plan from `from` to `to` over a copy of `source`, writing emails through
/// `transport` (a folder of `.eml` files, or nothing) with their virtual send time.
pub async fn rehearse(
    source: &Store,
    plan: Arc<Plan>,
    config: &Config,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    transport: &Transport,
    meter: Arc<crate::progress::Meter>,
) -> Result<Rehearsal, SimulateError> {
    let scratch_dir = TempDir::new("simulate").map_err(|source| SimulateError::Scratch {
        path: std::env::temp_dir().display().to_string(),
        source,
    })?;
    let url = format!(
        "sqlite://{}",
        scratch_dir.path().join("scratch.db").display()
    );
    let scratch = Store::open_scratch(&url).await?;
    let settings = crate::config::Settings::of(config);
    let cap_window = settings
        .frequency_cap
        .map(|(_, per)| per)
        .unwrap_or_default();
    let copied = copy_for_rehearsal(source, &scratch, from, from - cap_window).await?;
    let mut engine = Engine::new(plan.clone(), scratch.clone(), config.clone());
    // Written nowhere: a body is rendered for the first email of each step and template
    // only, and no message is built.
    let writes_mail = !matches!(transport, Transport::Discard);
    if !writes_mail {
        engine = engine.rendering_first_bodies_only();
    }
    // Rehearsal mail never leaves, so it is not signed and needs no key.
    let email = crate::config::EmailConfig {
        dkim: None,
        ..config.email.clone()
    };
    let mut options =
        DispatchOptions::from_config(&email, &settings, std::path::Path::new("."), true)?;
    options.meter = meter.clone();
    options.build_messages = writes_mail;
    let runner = Runner::rehearsal(engine, scratch.clone(), transport.clone(), options);
    // The copy may hold emails the real sender had in flight.
    runner.recover().await?;
    let clock = VirtualClock::new(from);
    let (mut passes, mut written) = (0, 0);
    loop {
        let now = clock.now();
        meter
            .clock
            .store(now.timestamp_millis(), std::sync::atomic::Ordering::Relaxed);
        let outcome = runner.pass(now).await?;
        written += outcome.emails.sent;
        passes += 1;
        if now >= to {
            break;
        }
        // The engine's last look said what falls due next; sending changed none of it.
        let due = match outcome.engine.ahead {
            Some(ahead) => ahead.next,
            None => look::next_due(&scratch, now).await?,
        };
        let mut next = next_moment(&scratch, &plan, now, MAX_JUMP, due).await?;
        // Stages are swept at the first pass of each UTC day, which for a daemon is just
        // after midnight: rules such as "no order in 180 days" change with time alone.
        if plan.stages.is_some()
            && let Some(midnight) = (now.date_naive() + TimeDelta::days(1)).and_hms_opt(0, 0, 0)
        {
            next = next.min(midnight.and_utc());
        }
        clock.set(next.min(to));
    }
    let mut rehearsal = summarize(&scratch, &plan, from, to).await?;
    rehearsal.passes = passes;
    rehearsal.written = written;
    rehearsal.copied = copied;
    scratch.close().await;
    drop(scratch_dir);
    Ok(rehearsal)
}

/// The next moment after `now` at which something can happen (at most `max_jump` on): how
/// a virtual clock skips the quiet stretches. `due` is when the store next has something
/// due ([`look::next_due`]).
pub(crate) async fn next_moment(
    store: &Store,
    plan: &Plan,
    now: DateTime<Utc>,
    max_jump: TimeDelta,
    due: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, SimulateError> {
    let mut next = now + max_jump;
    if let Some(t) = due {
        next = next.min(t);
    }
    let mut zones: Option<Vec<Tz>> = None;
    for wf in plan.workflows.iter().filter(|w| w.enabled) {
        let fixed;
        let candidates: &[Tz] = match &wf.trigger {
            Trigger::Schedule {
                zone: Zone::Fixed(tz),
                ..
            } => {
                fixed = [*tz];
                &fixed
            }
            Trigger::Schedule { .. } | Trigger::Date { .. } => {
                if zones.is_none() {
                    zones = Some(
                        store
                            .customer_zones()
                            .await?
                            .iter()
                            .map(|z| crate::time::zones::zone_named(z.as_deref()))
                            .collect(),
                    );
                }
                zones.as_deref().unwrap_or_default()
            }
            Trigger::Event { .. } => &[],
        };
        for tz in candidates {
            let t = match &wf.trigger {
                Trigger::Schedule { cron, .. } => cron.next_after(now, *tz),
                Trigger::Date { at, offset, .. } => {
                    Some(crate::time::zones::next_local_time(now - *offset, *at, *tz) + *offset)
                }
                Trigger::Event { .. } => None,
            };
            if let Some(t) = t.filter(|t| *t > now) {
                next = next.min(t);
            }
        }
    }
    Ok(next)
}

/// Counts the sends (by due time) and the journeys that entered or ended in the window —
/// what the rehearsal itself did, for the workflows it ran. What the store had already sent
/// in the window is counted apart, in `already_sent`.
async fn summarize(
    store: &Store,
    plan: &Plan,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Rehearsal, SimulateError> {
    let ran = |w: &str| plan.workflow(w).is_some();
    let mut rehearsal = Rehearsal::default();
    for d in copy::window_deliveries(store, from, to).await? {
        let Some(at) = DateTime::from_timestamp_millis(d.due_at) else {
            continue;
        };
        if !ran(&d.workflow) {
            continue;
        }
        if d.done_before {
            if d.channel == Channel::Email && d.state == DeliveryState::Sent {
                *rehearsal.already_sent.entry(d.workflow).or_default() += 1;
            }
            continue;
        }
        let day = rehearsal
            .days
            .entry((at.date_naive(), d.workflow.clone()))
            .or_default();
        match (d.channel, d.state) {
            (Channel::Webhook, _) => day.webhooks += 1,
            (_, DeliveryState::Skipped | DeliveryState::Suppressed | DeliveryState::Cancelled) => {
                day.skipped += 1
            }
            (_, DeliveryState::Failed) => day.failed += 1,
            _ => {
                day.emails += 1;
                *rehearsal
                    .steps
                    .entry((d.workflow.clone(), d.step))
                    .or_default() += 1;
                rehearsal.sends.push((d.workflow, at));
            }
        }
    }
    for j in copy::window_journeys(store, from, to).await? {
        if !ran(&j.workflow) {
            continue;
        }
        let o = rehearsal.workflows.entry(j.workflow.clone()).or_default();
        if let Some(at) = j.entered_at.and_then(DateTime::from_timestamp_millis) {
            o.enrolled += 1;
            rehearsal.entries.push((j.workflow.clone(), at));
            if let Some(v) = &j.variant {
                let key = (j.workflow.clone(), v.clone());
                *rehearsal.variants.entry(key).or_default() += 1;
            }
        }
        if j.ended_at.is_some() {
            match j.state {
                JourneyState::Completed => o.completed += 1,
                JourneyState::Converted => o.converted += 1,
                JourneyState::Failed => {
                    o.failed += 1;
                    let shown = rehearsal
                        .failures
                        .iter()
                        .filter(|f| f.0 == j.workflow)
                        .count();
                    if shown < 3 {
                        rehearsal.failures.push((
                            j.workflow,
                            j.customer_id,
                            j.error.unwrap_or_default(),
                        ));
                    }
                }
                _ => o.exited += 1,
            }
        }
    }
    Ok(rehearsal)
}
