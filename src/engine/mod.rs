//! The journey engine: events enroll customers, due enrollments run their steps, and every
//! email or webhook becomes an outbox row written in the same transaction that advances the
//! enrollment — so a crash either does both or neither.
//!
//! Time is passed in, never read: `run --once --now`, `simulate` and the daemon all drive
//! the same code with their own clocks.

pub mod deployed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use tera::Context;
use thiserror::Error;

use crate::config::Config;
use crate::customer::{CUSTOMER_FIELDS, Customer, Enrollment, Event};
use crate::store::journeys::{self, CustomerFilter, EnrollmentRow, NewDelivery};
use crate::store::stages as store_stages;
use crate::store::{Store, StoreError};
use crate::unsubscribe::{Signer, Unsubscribe};
use crate::workflow::expr::pushdown::SqlFilter;
use crate::workflow::expr::{EvalInput, EventHistory, Expr};
use crate::workflow::plan::{
    EmailStep, Plan, Reentry, Step, StepKind, Trigger, Wait, Workflow, Zone,
};
use crate::workflow::raw::{CatchUp, Deferral, DeliveryMode, MailClass};

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: for simulations and tests.
pub struct VirtualClock(Mutex<DateTime<Utc>>);

impl VirtualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        if let Ok(mut t) = self.0.lock() {
            *t = at;
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map_or_else(|e| *e.into_inner(), |t| *t)
    }
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Config(String),
}

/// One email as `preview` shows it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub step: String,
    pub to: String,
    pub locale: Option<String>,
    pub subject: String,
    pub html_file: String,
    pub html: String,
    pub text_file: Option<String>,
    pub text: Option<String>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub events: u64,
    pub enrolled: u64,
    pub steps: u64,
    pub emails: u64,
    pub webhooks: u64,
    pub completed: u64,
    pub converted: u64,
    pub exited: u64,
    pub failed: u64,
    /// Emails held back by quiet hours or the frequency cap, to run later.
    pub deferred: u64,
    /// Emails skipped by those rules (recorded in the outbox as `skipped`).
    pub skipped: u64,
    /// Schedule fire times that fell due while nothing ran and were not made up: all but
    /// the latest, and the latest too under `catch_up: skip`.
    pub missed_fires: u64,
}

/// Whether a marketing email may go now.
enum Fairness {
    Send,
    Hold {
        until: DateTime<Utc>,
        reason: &'static str,
    },
}

/// How the steps of one workflow follow each other, by id.
struct Program<'a> {
    nodes: HashMap<&'a str, Node<'a>>,
    first: Option<&'a str>,
}

struct Node<'a> {
    step: &'a Step,
    next: Option<&'a str>,
    then_first: Option<&'a str>,
    else_first: Option<&'a str>,
}

impl<'a> Program<'a> {
    fn of(workflow: &'a Workflow) -> Self {
        let mut nodes = HashMap::new();
        link(&workflow.steps, None, &mut nodes);
        Self {
            nodes,
            first: workflow.steps.first().map(|s| s.id.as_str()),
        }
    }
}

fn link<'a>(steps: &'a [Step], after: Option<&'a str>, nodes: &mut HashMap<&'a str, Node<'a>>) {
    for (i, step) in steps.iter().enumerate() {
        let next = steps.get(i + 1).map(|s| s.id.as_str()).or(after);
        let (mut then_first, mut else_first) = (None, None);
        if let StepKind::If { then, else_, .. } = &step.kind {
            link(then, next, nodes);
            link(else_, next, nodes);
            then_first = then.first().map(|s| s.id.as_str());
            else_first = else_.first().map(|s| s.id.as_str());
        }
        nodes.insert(
            step.id.as_str(),
            Node {
                step,
                next,
                then_first,
                else_first,
            },
        );
    }
}

/// Runs workflows against a store.
pub struct Engine {
    plan: Arc<Plan>,
    store: Store,
    config: Config,
    /// Signs unsubscribe links; set by the first pass (the key may live in the store).
    signer: std::sync::OnceLock<Signer>,
    /// Set once this engine's workflow set is recorded as the store's deployed set.
    recorded: std::sync::OnceLock<()>,
}

/// Whether this event starts the workflow (an enabled one, with this event as its trigger
/// and, for a stage trigger, this stage as the one entered).
fn triggers(wf: &Workflow, event: &Event) -> bool {
    let Trigger::Event { name, to_stage } = &wf.trigger else {
        return false;
    };
    wf.enabled
        && *name == event.name
        && to_stage.as_ref().is_none_or(|stage| {
            event.properties.get("to").and_then(|v| v.as_str()) == Some(stage.name.as_str())
        })
}

/// The deliveries a group of journeys queued, written together when the group ends — or
/// before a step reads the outbox back (the frequency cap), so that it counts them — and
/// the pass's moment, from which the links in them stay valid: a step that fell due long
/// ago (an old event, a missed fire time) is sent now, and its links must work when it
/// arrives.
struct Outgoing(Vec<NewDelivery>, DateTime<Utc>);

impl Outgoing {
    /// Writes what is queued and counts what was new (a key written before is not).
    async fn write(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let new = journeys::insert_deliveries(conn, &self.0).await?;
        for d in self.0.drain(..).filter(|d| new.contains(&d.id)) {
            if d.channel == "webhook" {
                report.webhooks += 1;
            } else {
                report.emails += 1;
                crate::progress::count(&crate::progress::METER.queued);
            }
        }
        Ok(())
    }
}

/// The customer's past events up to `at`, read only when an expression will use them.
async fn history_if(
    conn: &mut sqlx::AnyConnection,
    needed: bool,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<Arc<EventHistory>>, StoreError> {
    Ok(match needed {
        true => Some(Arc::new(journeys::history(conn, customer_id, at).await?)),
        false => None,
    })
}

/// Writes what `admit` decided — failed enrollments one by one, the others a hundred per
/// statement — and counts the customers who entered. One written before (a pass that died
/// after enrolling and before recording its fire) is skipped.
async fn enter(
    conn: &mut sqlx::AnyConnection,
    entries: Vec<Entry>,
    report: &mut PassReport,
) -> Result<(), StoreError> {
    let mut entering = Vec::new();
    for entry in entries {
        match entry {
            Entry::No => {}
            Entry::Failed(row) => {
                journeys::insert_failed_enrollment(conn, &row).await?;
            }
            Entry::Enters(row) => entering.push(row),
        }
    }
    let n = journeys::insert_enrollments(conn, &entering).await?;
    report.enrolled += n;
    crate::progress::add(&crate::progress::METER.enrolled, n);
    Ok(())
}

/// Whether a customer enters a workflow.
enum Entry {
    No,
    /// The audience failed for this customer: the enrollment is recorded as failed.
    Failed(EnrollmentRow),
    Enters(EnrollmentRow),
}

/// What decides whether a customer may enter a workflow, read before `enroll` — for a
/// whole page of customers at once where many enter together.
struct Admission<'a> {
    suppressions: &'a mut Suppressions,
    /// When the customer last entered this workflow, for the re-entry rule.
    last_entry: Option<DateTime<Utc>>,
    /// The customer's past events, read only for workflows that call `event_count`.
    history: Option<&'a Arc<EventHistory>>,
}

/// The suppression list as far as one batch of work needs it: read for a page or a group
/// of customers in one query, and one address at a time for any other address.
#[derive(Default)]
struct Suppressions(HashMap<String, bool>);

impl Suppressions {
    async fn load(conn: &mut sqlx::AnyConnection, emails: Vec<&str>) -> Result<Self, StoreError> {
        let found = journeys::suppressed_among(conn, &emails).await?;
        Ok(Self(
            emails
                .into_iter()
                .map(|e| {
                    let e = e.to_lowercase();
                    let suppressed = found.contains_key(&e);
                    (e, suppressed)
                })
                .collect(),
        ))
    }

    async fn contains(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        email: &str,
    ) -> Result<bool, StoreError> {
        let email = email.to_lowercase();
        if let Some(known) = self.0.get(&email) {
            return Ok(*known);
        }
        let suppressed = journeys::is_suppressed(conn, &email).await?;
        self.0.insert(email, suppressed);
        Ok(suppressed)
    }
}

/// Enough steps for any sane journey; a longer run without a wait is cut off.
const MAX_STEPS_PER_RUN: usize = 1_000;
const BATCH: i64 = 500;
/// Journeys moved on per transaction: enough to spread a commit's wait for the disk, few
/// enough that the write lock (SQLite) is not held long against the API's imports.
const STEPS_PER_COMMIT: usize = 50;

/// A fire time this old when its pass runs was missed (nothing ran when it fell due) and
/// fires only under `catch_up: run_once`; a younger one is on time.
const CATCH_UP_GRACE: TimeDelta = TimeDelta::minutes(5);

impl Engine {
    pub fn new(plan: Arc<Plan>, store: Store, config: Config) -> Self {
        Self {
            plan,
            store,
            config,
            signer: std::sync::OnceLock::new(),
            recorded: std::sync::OnceLock::new(),
        }
    }

    /// How old a missed fire time may be and still be made up (`limits.catch_up_max_age`,
    /// checked when the config loads).
    fn catch_up_max_age(&self) -> TimeDelta {
        crate::time::duration::parse(&self.config.limits.catch_up_max_age)
            .unwrap_or(TimeDelta::days(7))
    }

    /// How long a claim on due journeys holds (`email.lease`, checked when the config
    /// loads): a replica that stops mid-batch leaves its journeys to the others after this.
    fn lease(&self) -> TimeDelta {
        crate::time::duration::parse(&self.config.email.lease).unwrap_or(TimeDelta::minutes(5))
    }

    /// Records this engine's workflows as the store's deployed set (what `plan` compares
    /// with), once: `run` and the daemon do, rehearsals and workflow tests do not.
    pub async fn record_deployed(&self, at: DateTime<Utc>) -> Result<(), EngineError> {
        if self.recorded.get().is_none() {
            crate::engine::deployed::record(&self.store, &self.plan, at).await?;
            let _ = self.recorded.set(());
        }
        Ok(())
    }

    /// The workflows this engine runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The unsubscribe signer: the configured secret, or the store's own key.
    async fn load_signer(&self) -> Result<(), EngineError> {
        if self.signer.get().is_some() {
            return Ok(());
        }
        let signer = crate::unsubscribe::project_signer(&self.config.unsubscribe, &self.store)
            .await
            .map_err(|e| match e {
                crate::unsubscribe::KeyError::Store(e) => EngineError::from(e),
                e => EngineError::Config(e.to_string()),
            })?;
        let _ = self.signer.set(signer);
        Ok(())
    }

    /// One pass at `now`: every event up to `now`, then every step due by `now`, until
    /// nothing is left to do.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<PassReport, EngineError> {
        self.run_once_signalling(now, &std::sync::atomic::AtomicBool::new(false))
            .await
    }

    /// [`Engine::run_once`], setting `events_applied` once every event recorded before the
    /// pass is applied — an unsubscribe among them included — which is when a sender
    /// working beside the engine may start.
    pub async fn run_once_signalling(
        &self,
        now: DateTime<Utc>,
        events_applied: &std::sync::atomic::AtomicBool,
    ) -> Result<PassReport, EngineError> {
        let mut report = PassReport::default();
        self.load_signer().await?;
        self.sweep_stages(now).await?;
        self.fire_schedules(now, &mut report).await?;
        self.fire_dates(now, &mut report).await?;
        loop {
            let n = self.process_events(now, &mut report).await?;
            if n < BATCH as usize {
                // A short batch: no event recorded before this moment is left.
                events_applied.store(true, std::sync::atomic::Ordering::Release);
            }
            let m = self.run_due(now, &mut report).await?;
            if n == 0 && m == 0 {
                return Ok(report);
            }
        }
    }

    /// Moves the customer to the stage their rules give now, recording `stage_entered`.
    /// `known` is the stored stage when the caller has it. A rule that fails for this
    /// customer leaves the stage as it was.
    async fn restage(
        &self,
        conn: &mut sqlx::AnyConnection,
        customer: &Customer,
        known: Option<Option<String>>,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(next) = self.stage_for(customer, at) else {
            return Ok(());
        };
        let current = match known {
            Some(c) => c,
            None => store_stages::current(conn, &customer.id).await?,
        };
        if current.as_deref() != Some(next) {
            store_stages::enter(conn, &customer.id, current.as_deref(), next, at).await?;
        }
        Ok(())
    }

    /// The stage the rules give this customer at `at`; `None` without stages, or when a
    /// rule fails for this customer (their stage stays as it was).
    fn stage_for(&self, customer: &Customer, at: DateTime<Utc>) -> Option<&str> {
        let stages = self.plan.stages.as_ref()?;
        stages.stage_of(&self.plan.engine, customer, at).ok()?
    }

    /// At the first pass of each UTC day (of the pass clock), every customer's stage is
    /// recomputed: rules such as "no order in 180 days" change with time alone.
    async fn sweep_stages(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        const KEY: &str = "stages_swept_at";
        if self.plan.stages.is_none() {
            return Ok(());
        }
        // One connection at a time: a scratch store may have only one.
        let mut conn = self.store.pool.acquire().await?;
        let last = crate::store::setting(&mut conn, KEY)
            .await?
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        drop(conn);
        if last.is_some_and(|t| t <= now && t.date_naive() == now.date_naive()) {
            return Ok(());
        }
        let mut after = String::new();
        loop {
            let mut tx = self.store.write_tx().await?;
            let page = store_stages::page(&mut tx, &after, BATCH).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.id.clone();
            let moves: Vec<store_stages::Move> = page
                .iter()
                .filter_map(|(customer, stage)| {
                    let next = self.stage_for(customer, now)?;
                    (stage.as_deref() != Some(next)).then_some(store_stages::Move {
                        id: &customer.id,
                        from: stage.as_deref(),
                        to: next,
                    })
                })
                .collect();
            store_stages::enter_all(&mut tx, &moves, now).await?;
            tx.commit().await?;
        }
        let mut conn = self.store.pool.acquire().await?;
        crate::store::put_setting(&mut conn, KEY, &now.timestamp_millis().to_string()).await?;
        Ok(())
    }

    async fn process_events(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<usize, EngineError> {
        let mut conn = self.store.pool.acquire().await?;
        let events = journeys::pending_events(&mut conn, now, BATCH).await?;
        drop(conn);
        // Events that start nothing and change nothing (most `stage_entered` ones) are
        // only marked processed, all in one statement.
        let mut idle = Vec::new();
        for stored in &events {
            let triggered: Vec<&Arc<Workflow>> = self
                .plan
                .workflows
                .iter()
                .filter(|wf| triggers(wf, &stored.event))
                .collect();
            let unsubscribes = stored.event.name == crate::customer::UNSUBSCRIBED_EVENT;
            if triggered.is_empty() && stored.set.is_empty() && !unsubscribes {
                idle.push(stored.event.id.as_str());
                continue;
            }
            let mut tx = self.store.write_tx().await?;
            let Some(mut customer) =
                journeys::customer_for_update(&mut tx, self.store.backend(), &stored.customer_id)
                    .await?
            else {
                journeys::mark_event_processed(&mut tx, &stored.event.id, now).await?;
                tx.commit().await?;
                continue;
            };
            if !stored.set.is_empty() || unsubscribes {
                apply_set(&mut customer, &stored.set);
                if unsubscribes && customer.unsubscribed_at.is_none() {
                    customer.unsubscribed_at = Some(stored.event.at);
                }
                journeys::save_customer(&mut tx, &customer, stored.event.at).await?;
                self.restage(&mut tx, &customer, None, stored.event.at)
                    .await?;
            }
            let reads = triggered.iter().any(|w| w.reads_history());
            let history = history_if(&mut tx, reads, &customer.id, stored.event.at).await?;
            let mut suppressions = Suppressions::default();
            for wf in triggered {
                let key = stored.event.id.clone();
                let admission = Admission {
                    suppressions: &mut suppressions,
                    last_entry: journeys::last_entry(&mut tx, &wf.name, &customer.id).await?,
                    history: history.as_ref(),
                };
                let entry = self
                    .admit(
                        &mut tx,
                        wf,
                        &customer,
                        Some(&stored.event),
                        admission,
                        key,
                        stored.event.at,
                    )
                    .await?;
                enter(&mut tx, vec![entry], report).await?;
            }
            journeys::mark_event_processed(&mut tx, &stored.event.id, now).await?;
            tx.commit().await?;
            report.events += 1;
        }
        if !idle.is_empty() {
            let mut tx = self.store.write_tx().await?;
            journeys::mark_events_processed(&mut tx, &idle, now).await?;
            tx.commit().await?;
            report.events += idle.len() as u64;
        }
        Ok(events.len())
    }

    /// Whether a customer enters — if the audience, consent and the re-entry rule allow
    /// it — as the enrollment to write; [`enter`] writes it.
    #[allow(clippy::too_many_arguments)]
    async fn admit(
        &self,
        conn: &mut sqlx::AnyConnection,
        wf: &Workflow,
        customer: &Customer,
        event: Option<&Event>,
        admission: Admission<'_>,
        trigger_key: String,
        at: DateTime<Utc>,
    ) -> Result<Entry, EngineError> {
        if self
            .no_consent(conn, wf.class, customer, admission.suppressions)
            .await?
            .is_some()
        {
            return Ok(Entry::No);
        }
        match (wf.reentry, admission.last_entry) {
            (_, None) | (Reentry::Always, _) => {}
            (Reentry::Never, Some(_)) => return Ok(Entry::No),
            (Reentry::After(d), Some(last)) if at - last < d => return Ok(Entry::No),
            (Reentry::After(_), Some(_)) => {}
        }
        let audience_error = match &wf.audience {
            None => None,
            Some(audience) => {
                let input = EvalInput {
                    customer,
                    event,
                    enrollment: None,
                    now: at,
                    history: admission.history.cloned(),
                };
                match self.plan.engine.eval_bool(audience, &input) {
                    Ok(true) => None,
                    Ok(false) => return Ok(Entry::No),
                    Err(e) => Some(format!("`audience` failed: {e}")),
                }
            }
        };
        let program = Program::of(wf);
        let mut row = EnrollmentRow {
            id: format!("{}:{}:{}", wf.name, customer.id, trigger_key),
            workflow: wf.name.clone(),
            customer_id: customer.id.clone(),
            trigger_key,
            state: "active".into(),
            step: program.first.map(str::to_string),
            due_at: Some(at),
            entered_at: at,
            ended_at: None,
            exit_reason: None,
            event_id: event.map(|e| e.id.clone()),
            orders_count_at_entry: customer.orders_count,
            total_spent_at_entry: customer.total_spent,
            error: None,
            version: 0,
        };
        Ok(match audience_error {
            // This customer's enrollment fails with the error recorded; the others go on.
            Some(error) => {
                row.error = Some(error);
                Entry::Failed(row)
            }
            None => Entry::Enters(row),
        })
    }

    /// Cron triggers: every fire time after the last one recorded and up to `now` fires
    /// once (on a fresh store, only one exactly at `now`). A `timezone: customer` schedule
    /// fires per zone, for the customers in that zone.
    async fn fire_schedules(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        for wf in self.plan.workflows.clone() {
            let Trigger::Schedule { cron, zone, .. } = &wf.trigger else {
                continue;
            };
            if !wf.enabled {
                continue;
            }
            let zones: Vec<(String, Tz, CustomerFilter)> = match zone {
                Zone::Fixed(tz) => vec![(wf.name.clone(), *tz, CustomerFilter::All)],
                Zone::Customer => {
                    let mut conn = self.store.pool.acquire().await?;
                    journeys::customer_zones(&mut conn)
                        .await?
                        .into_iter()
                        .map(|z| {
                            let tz = zone_named(z.as_deref());
                            (
                                format!("{}@{}", wf.name, z.as_deref().unwrap_or("UTC")),
                                tz,
                                CustomerFilter::Zone(z),
                            )
                        })
                        .collect()
                }
            };
            for (key, tz, only_zone) in zones {
                let mut conn = self.store.pool.acquire().await?;
                let from = journeys::last_fire(&mut conn, &key)
                    .await?
                    .unwrap_or(now - TimeDelta::seconds(1));
                drop(conn);
                // Fire times older than the catch-up age never fire, so the search starts
                // there at the earliest: a store left for a year with a minutely schedule
                // does not walk half a million fire times.
                let mut cursor = from.max(now - self.catch_up_max_age() - TimeDelta::seconds(1));
                let mut latest = None;
                let mut missed = 0u64;
                let mut budget = 100_000;
                while let Some(fire) = cron.next_after(cursor, tz).filter(|t| *t <= now) {
                    cursor = fire;
                    missed += u64::from(latest.is_some());
                    latest = Some(fire);
                    budget -= 1;
                    if budget == 0 {
                        // A schedule of seconds: skip ahead; only the latest fires anyway.
                        cursor = cursor.max(now - TimeDelta::minutes(10));
                        budget = 100_000;
                    }
                }
                // Each pass fires a schedule once at most: its latest fire time. One that
                // is late (nothing ran when it fell due) fires under `catch_up` — once
                // (`run_once`, the default), or not at all (`skip`).
                let late = latest.is_some_and(|t| now - t > CATCH_UP_GRACE);
                let fire = match wf.catch_up {
                    CatchUp::Skip if late => None,
                    _ => latest,
                };
                report.missed_fires += missed + u64::from(late && fire.is_none());
                if let Some(fire) = fire {
                    // Enroll first, record the fire after: a pass that dies in between
                    // fires again on the next one, and the enrollments' unique key
                    // (workflow, customer, fire time) makes the second time add only those
                    // the first did not reach.
                    let trigger_key = fire.timestamp_millis().to_string();
                    self.enroll_all(&wf, report, &only_zone, |_| {
                        Some((trigger_key.clone(), fire))
                    })
                    .await?;
                    let mut conn = self.store.pool.acquire().await?;
                    journeys::record_fire(&mut conn, &key, fire, now).await?;
                }
                // The pass itself is the watermark: the next pass starts after it, even when
                // nothing fired (a fresh store's first pass).
                let mut conn = self.store.pool.acquire().await?;
                journeys::record_fire(&mut conn, &key, now, now).await?;
            }
        }
        Ok(())
    }

    /// Date triggers: customers whose anniversary (at the local time, with the offset)
    /// fell after the previous pass and by `now` enter, once per anniversary.
    async fn fire_dates(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        for wf in self.plan.workflows.clone() {
            let Trigger::Date { column, at, offset } = &wf.trigger else {
                continue;
            };
            if !wf.enabled {
                continue;
            }
            let key = format!("{}#date", wf.name);
            let mut conn = self.store.pool.acquire().await?;
            let from = journeys::last_fire(&mut conn, &key)
                .await?
                .unwrap_or(now - TimeDelta::seconds(1));
            drop(conn);
            if from >= now {
                continue;
            }
            let (column, at, offset) = (column.clone(), *at, *offset);
            let filter = if column == "birthday" {
                let mut conn = self.store.pool.acquire().await?;
                let zones = journeys::customer_zones(&mut conn).await?;
                birthdays_firing(&zones, at, offset, from, now)
            } else {
                CustomerFilter::All
            };
            self.enroll_all(&wf, report, &filter, |c| {
                let date = match column.as_str() {
                    "birthday" => c.birthday,
                    "created_at" => c.created_at.map(|t| t.date_naive()),
                    "last_order_at" => c.last_order_at.map(|t| t.date_naive()),
                    _ => None,
                }?;
                let fire = crate::workflow::plan::next_anniversary(
                    date,
                    at,
                    offset,
                    customer_zone(c),
                    from,
                )?;
                (fire <= now).then(|| (fire.timestamp_millis().to_string(), fire))
            })
            .await?;
            // Recorded once every customer was seen (see `fire_schedules`).
            let mut conn = self.store.pool.acquire().await?;
            journeys::record_fire(&mut conn, &key, now, now).await?;
        }
        Ok(())
    }

    /// Streams every customer the audience's pushed-down part keeps, page by page,
    /// enrolling those `key_of` gives a trigger key and a fire time.
    async fn enroll_all(
        &self,
        wf: &Workflow,
        report: &mut PassReport,
        filter: &CustomerFilter,
        key_of: impl Fn(&Customer) -> Option<(String, DateTime<Utc>)>,
    ) -> Result<(), EngineError> {
        let pushed = wf
            .audience
            .as_ref()
            .map(|a| SqlFilter::of(&a.source))
            .unwrap_or_default();
        let mut after = String::new();
        loop {
            let mut conn = self.store.pool.acquire().await?;
            let page = journeys::customers_page(&mut conn, &after, BATCH, filter, &pushed).await?;
            drop(conn);
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id.clone();
            let entering: Vec<(&Customer, (String, DateTime<Utc>))> = page
                .iter()
                .filter_map(|c| key_of(c).map(|k| (c, k)))
                .collect();
            let mut tx = self.store.write_tx().await?;
            // What decides entry, read for the whole page at once.
            let emails = entering.iter().map(|(c, _)| c.email.as_str()).collect();
            let mut suppressions = Suppressions::load(&mut tx, emails).await?;
            let ids: Vec<&str> = entering.iter().map(|(c, _)| c.id.as_str()).collect();
            let last_entries = journeys::last_entries(&mut tx, &wf.name, &ids).await?;
            let mut entries = Vec::new();
            for (customer, (trigger_key, at)) in entering {
                let history = history_if(&mut tx, wf.reads_history(), &customer.id, at).await?;
                let admission = Admission {
                    suppressions: &mut suppressions,
                    last_entry: last_entries.get(&customer.id).copied(),
                    history: history.as_ref(),
                };
                entries.push(
                    self.admit(&mut tx, wf, customer, None, admission, trigger_key, at)
                        .await?,
                );
            }
            enter(&mut tx, entries, report).await?;
            tx.commit().await?;
        }
    }

    async fn run_due(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<usize, EngineError> {
        let wall = Utc::now();
        let lease = journeys::Lease {
            now: wall,
            until: wall + self.lease(),
            sole: self.store.backend() == crate::store::Backend::Sqlite,
        };
        let mut tx = self.store.write_tx().await?;
        let mut due = journeys::claim_due(&mut tx, self.store.backend(), now, BATCH, lease).await?;
        tx.commit().await?;
        let count = due.len();
        // One commit for a group of journeys (a commit waits for the disk), each journey in
        // a savepoint of its own, so that one lost to another worker drops only its work.
        for group in due.chunks_mut(STEPS_PER_COMMIT) {
            let mut tx = self.store.write_tx().await?;
            // The group's customers and their suppressions, read at once.
            let ids: Vec<&str> = group.iter().map(|r| r.customer_id.as_str()).collect();
            let backend = self.store.backend();
            let mut customers = journeys::customers_for_update(&mut tx, backend, &ids).await?;
            let emails = customers.values().map(|c| c.email.as_str()).collect();
            let mut suppressions = Suppressions::load(&mut tx, emails).await?;
            if backend == crate::store::Backend::Sqlite {
                // One writer at a time on SQLite: a journey is lost to another worker only
                // when a second process runs beside this one. Then the whole group is rolled
                // back and claimed again, which spares every journey a savepoint.
                // The group's deliveries and journeys are written a few statements at a
                // time, not two per journey: on SQLite each statement is a round trip to
                // sqlx's worker thread, which cost more than the writing itself.
                let mut outgoing = Outgoing(Vec::new(), now);
                for row in group.iter_mut() {
                    let customer = customers.get_mut(&row.customer_id);
                    let out = &mut outgoing;
                    self.advance(&mut tx, row, customer, &mut suppressions, out, report)
                        .await?;
                }
                outgoing.write(&mut tx, report).await?;
                let saved = journeys::save_enrollments(&mut tx, group).await?;
                match saved == group.len() as u64 {
                    true => tx.commit().await?,
                    false => tx.rollback().await?,
                }
                continue;
            }
            for row in group {
                let mut journey = sqlx::Acquire::begin(&mut *tx).await?;
                let customer = customers.get_mut(&row.customer_id);
                let mut outgoing = Outgoing(Vec::new(), now);
                let out = &mut outgoing;
                self.advance(&mut journey, row, customer, &mut suppressions, out, report)
                    .await?;
                outgoing.write(&mut journey, report).await?;
                if journeys::save_enrollment(&mut journey, row).await? {
                    journey.commit().await?;
                } else {
                    // Another worker took it after our lease ran out; its work stands, and
                    // the customer as this journey changed it is forgotten.
                    journey.rollback().await?;
                    if let Some(c) =
                        journeys::customer_for_update(&mut tx, backend, &row.customer_id).await?
                    {
                        customers.insert(c.id.clone(), c);
                    }
                }
            }
            tx.commit().await?;
        }
        Ok(count)
    }

    /// Runs an enrollment's steps from its current one until a wait or the end. The
    /// deliveries its steps queue go to `outgoing`, which the caller writes.
    async fn advance(
        &self,
        conn: &mut sqlx::AnyConnection,
        row: &mut EnrollmentRow,
        customer: Option<&mut Customer>,
        suppressions: &mut Suppressions,
        outgoing: &mut Outgoing,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        let at = row.due_at.unwrap_or(row.entered_at);
        let Some(wf) = self.plan.workflow(&row.workflow).cloned() else {
            end(
                row,
                "exited",
                Some(format!("workflow `{}` no longer exists", row.workflow)),
                at,
                report,
            );
            return Ok(());
        };
        let Some(customer) = customer else {
            end(
                row,
                "exited",
                Some("customer no longer exists".into()),
                at,
                report,
            );
            return Ok(());
        };
        let event = match &row.event_id {
            Some(id) => journeys::event(conn, id).await?,
            None => None,
        };
        let history = history_if(conn, wf.reads_history(), &customer.id, at).await?;
        let program = Program::of(&wf);
        for _ in 0..MAX_STEPS_PER_RUN {
            let Some(step_id) = row.step.clone() else {
                end(row, "completed", None, at, report);
                return Ok(());
            };
            let Some(node) = program.nodes.get(step_id.as_str()) else {
                end(
                    row,
                    "exited",
                    Some(format!("step `{step_id}` no longer exists")),
                    at,
                    report,
                );
                return Ok(());
            };
            let enrollment = Enrollment {
                id: row.id.clone(),
                workflow: row.workflow.clone(),
                entered_at: row.entered_at,
                step: row.step.clone(),
                orders_count_at_entry: row.orders_count_at_entry,
                total_spent_at_entry: row.total_spent_at_entry,
            };
            let eval = |expr: &Expr, customer: &Customer| {
                let input = EvalInput {
                    customer,
                    event: event.as_ref(),
                    enrollment: Some(&enrollment),
                    now: at,
                    history: history.clone(),
                };
                self.plan.engine.eval_bool(expr, &input)
            };
            if let Some(goal) = &wf.exit_when {
                match eval(goal, customer) {
                    Ok(true) => {
                        end(row, "converted", Some("goal met".into()), at, report);
                        return Ok(());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        fail(row, format!("`exit_when` failed: {e}"), at, report);
                        return Ok(());
                    }
                }
            }
            report.steps += 1;
            crate::progress::count(&crate::progress::METER.steps);
            match &node.step.kind {
                StepKind::Email(email) => {
                    let moment = Moment {
                        at,
                        links_from: outgoing.1,
                    };
                    let delivery = self.email(
                        &wf,
                        email,
                        &node.step.id,
                        row,
                        customer,
                        event.as_ref(),
                        moment,
                    );
                    let d = match delivery {
                        Ok(d) => d,
                        Err(e) => {
                            fail(row, format!("step `{}`: {e}", node.step.id), at, report);
                            return Ok(());
                        }
                    };
                    // Consent is checked at every email, not only at entry: an unsubscribe
                    // in the middle of a series ends it for every workflow at once.
                    if let Some(reason) = self
                        .no_consent(conn, wf.class, customer, suppressions)
                        .await?
                    {
                        end(row, "exited", Some(reason.into()), at, report);
                        return Ok(());
                    }
                    if wf.class == MailClass::Marketing {
                        match self.fairness(conn, customer, at, outgoing, report).await? {
                            Fairness::Send => {}
                            Fairness::Hold { until, reason } => {
                                let policy = if reason == "quiet hours" {
                                    email.in_quiet_hours
                                } else {
                                    email.when_capped
                                };
                                if policy == Deferral::Wait {
                                    // The step stays where it is and runs again when allowed.
                                    row.due_at = Some(until);
                                    report.deferred += 1;
                                    return Ok(());
                                }
                                journeys::insert_skipped(conn, &d, reason).await?;
                                report.skipped += 1;
                                row.step = node.next.map(str::to_string);
                                continue;
                            }
                        }
                    }
                    outgoing.0.push(d);
                    row.step = node.next.map(str::to_string);
                }
                StepKind::Wait(wait) => {
                    row.step = node.next.map(str::to_string);
                    row.due_at = Some(match wait {
                        Wait::For(d) => at + *d,
                        Wait::Until(t) => next_local_time(at, *t, customer_zone(customer)),
                    });
                    return Ok(());
                }
                StepKind::If { condition, .. } => match eval(condition, customer) {
                    Ok(true) => row.step = node.then_first.or(node.next).map(str::to_string),
                    Ok(false) => row.step = node.else_first.or(node.next).map(str::to_string),
                    Err(e) => {
                        fail(
                            row,
                            format!("`if` of step `{}` failed: {e}", node.step.id),
                            at,
                            report,
                        );
                        return Ok(());
                    }
                },
                StepKind::Update(update) => {
                    apply_set(
                        customer,
                        &update
                            .set
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    );
                    customer.tags.retain(|t| !update.remove_tags.contains(t));
                    for tag in &update.add_tags {
                        if !customer.has_tag(tag) {
                            customer.tags.push(tag.clone());
                        }
                    }
                    journeys::save_customer(conn, customer, at).await?;
                    row.step = node.next.map(str::to_string);
                }
                StepKind::Webhook(hook) => {
                    let d = match self.webhook(
                        &wf,
                        hook,
                        &node.step.id,
                        row,
                        customer,
                        event.as_ref(),
                        at,
                    ) {
                        Ok(d) => d,
                        Err(e) => {
                            fail(row, format!("step `{}`: {e}", node.step.id), at, report);
                            return Ok(());
                        }
                    };
                    outgoing.0.push(d);
                    row.step = node.next.map(str::to_string);
                }
                StepKind::Exit { reason } => {
                    end(row, "exited", Some(reason.clone()), at, report);
                    return Ok(());
                }
            }
        }
        fail(
            row,
            format!("more than {MAX_STEPS_PER_RUN} steps ran without a wait"),
            at,
            report,
        );
        Ok(())
    }

    /// Why this customer may not be mailed by a workflow of this class, if they may not: a
    /// suppressed address gets nothing, an unsubscribed customer only transactional mail.
    async fn no_consent(
        &self,
        conn: &mut sqlx::AnyConnection,
        class: MailClass,
        customer: &Customer,
        suppressions: &mut Suppressions,
    ) -> Result<Option<&'static str>, EngineError> {
        if suppressions.contains(conn, &customer.email).await? {
            return Ok(Some("suppressed"));
        }
        if class == MailClass::Marketing && customer.unsubscribed_at.is_some() {
            return Ok(Some("unsubscribed"));
        }
        Ok(None)
    }

    /// The rules across all marketing workflows: quiet hours in the customer's zone, then
    /// the frequency cap.
    async fn fairness(
        &self,
        conn: &mut sqlx::AnyConnection,
        customer: &Customer,
        at: DateTime<Utc>,
        outgoing: &mut Outgoing,
        report: &mut PassReport,
    ) -> Result<Fairness, EngineError> {
        let limits = &self.config.limits;
        if let Some(q) = &limits.quiet_hours
            && let (Some(from), Some(to)) = (
                crate::time::duration::parse_time_of_day(&q.from),
                crate::time::duration::parse_time_of_day(&q.to),
            )
        {
            let local = at.with_timezone(&customer_zone(customer)).time();
            let quiet = if from <= to {
                local >= from && local < to
            } else {
                local >= from || local < to
            };
            if quiet {
                return Ok(Fairness::Hold {
                    until: next_local_time(at, to, customer_zone(customer)),
                    reason: "quiet hours",
                });
            }
        }
        if let Some(cap) = &limits.frequency_cap
            && let Ok(per) = crate::time::duration::parse(&cap.per)
            && cap.count > 0
        {
            // The cap counts this group's queued emails too: write them first.
            outgoing.write(conn, report).await?;
            let sends = journeys::marketing_sends_since(conn, &customer.id, at - per).await?;
            if sends.len() >= cap.count as usize {
                // The slot opens when the oldest send in the window leaves it.
                let until = sends[sends.len() - cap.count as usize] + per;
                return Ok(Fairness::Hold {
                    until: until.max(at + TimeDelta::seconds(1)),
                    reason: "frequency cap",
                });
            }
        }
        Ok(Fairness::Send)
    }

    fn context(
        &self,
        wf: &Workflow,
        customer: &Customer,
        event: Option<&Event>,
        moment: Moment,
    ) -> Context {
        let at = moment.at;
        let mut ctx = Context::new();
        ctx.insert("customer", customer);
        if let Some(e) = event {
            ctx.insert("event", e);
        }
        ctx.insert(
            "workflow",
            &serde_json::json!({ "name": wf.name, "description": wf.description }),
        );
        ctx.insert("now", &at.to_rfc3339());
        // A signed token (customer, workflow, expiry): the one-click endpoint (RFC 8058)
        // acts on it without a lookup, and a forged or altered link does nothing.
        let base = self.config.unsubscribe_base();
        let valid_for = crate::time::duration::parse(&self.config.unsubscribe.valid_for)
            .unwrap_or(TimeDelta::days(365));
        let token = self.signer.get().map(|s| {
            s.token(&Unsubscribe {
                customer_id: customer.id.clone(),
                workflow: wf.name.clone(),
                expires_at: at.max(moment.links_from) + valid_for,
            })
        });
        ctx.insert(
            "unsubscribe_url",
            &format!("{base}/{}", token.unwrap_or_default()),
        );
        ctx
    }

    /// The emails of a workflow (or one step) as this customer would get them at `at`:
    /// the same context as a real send, with a sample event for event-triggered workflows
    /// and a coupon code derived from the preview. `locale` overrides the customer's.
    pub async fn preview(
        &self,
        workflow: &str,
        step: Option<&str>,
        customer: &Customer,
        locale: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Rendered>, EngineError> {
        self.load_signer().await?;
        let wf = self
            .plan
            .workflow(workflow)
            .ok_or_else(|| EngineError::Config(self.plan.no_such_workflow(workflow)))?;
        let steps: Vec<_> = wf
            .all_steps()
            .into_iter()
            .filter(|s| matches!(s.kind, StepKind::Email(_)))
            .collect();
        if let Some(id) = step
            && !steps.iter().any(|s| s.id == id)
        {
            let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            return Err(EngineError::Config(format!(
                "workflow `{workflow}` has no email step `{id}`; its email steps are: {}",
                ids.join(", ")
            )));
        }
        let event = match &wf.trigger {
            Trigger::Event { name, .. } => Some(Event::sample(name, at)),
            _ => None,
        };
        let mut customer = customer.clone();
        if let Some(l) = locale {
            customer.locale = Some(l.to_string());
        }
        let mut out = Vec::new();
        for s in steps
            .into_iter()
            .filter(|s| step.is_none_or(|id| s.id == id))
        {
            let StepKind::Email(email) = &s.kind else {
                continue;
            };
            let mut ctx = self.context(wf, &customer, event.as_ref(), Moment::now(at));
            if let Some(c) = &email.coupon {
                let code = coupon_code(
                    &c.prefix,
                    &format!("preview/{}/{}/{}", wf.name, customer.id, s.id),
                );
                let expires = (at + c.valid_for).format("%Y-%m-%d").to_string();
                ctx.insert(
                    "coupon",
                    &serde_json::json!({ "code": code, "expires_at": expires }),
                );
            }
            let render = |name: &str| {
                self.plan.templates.tera().render(name, &ctx).map_err(|e| {
                    EngineError::Config(format!(
                        "`{name}`: {}",
                        crate::source::diagnostic::error_chain(&e)
                    ))
                })
            };
            let (html_file, text_file) = email.files.for_locale(customer.locale.as_deref());
            out.push(Rendered {
                step: s.id.clone(),
                to: customer.email.clone(),
                locale: customer.locale.clone(),
                subject: render(subject_for(&email.subjects, customer.locale.as_deref()))?,
                html_file: html_file.to_string(),
                html: render(html_file)?,
                text_file: text_file.map(str::to_string),
                text: text_file.map(render).transpose()?,
            });
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn email(
        &self,
        wf: &Workflow,
        email: &EmailStep,
        step: &str,
        row: &EnrollmentRow,
        customer: &Customer,
        event: Option<&Event>,
        moment: Moment,
    ) -> Result<NewDelivery, tera::Error> {
        let at = moment.at;
        let key = format!("{}/{}/{}/{}", wf.name, customer.id, row.id, step);
        let mut ctx = self.context(wf, customer, event, moment);
        let coupon = email
            .coupon
            .as_ref()
            .map(|c| (coupon_code(&c.prefix, &key), at + c.valid_for));
        if let Some((code, expires)) = &coupon {
            ctx.insert("coupon", &serde_json::json!({ "code": code, "expires_at": expires.format("%Y-%m-%d").to_string() }));
        }
        let unsubscribe = ctx.get("unsubscribe_url").cloned();
        let tera = self.plan.templates.tera();
        let (html, text) = email.files.for_locale(customer.locale.as_deref());
        let subject_template = subject_for(&email.subjects, customer.locale.as_deref());
        let subject = tera.render(subject_template, &ctx)?;
        if subject.contains(['\r', '\n']) {
            return Err(tera::Error::message(
                "the subject has a line break after rendering; remove it from the customer data or the template",
            ));
        }
        Ok(NewDelivery {
            id: key.clone(),
            channel: "email",
            enrollment_id: row.id.clone(),
            workflow: wf.name.clone(),
            customer_id: customer.id.clone(),
            step: step.to_string(),
            class: class_name(wf.class),
            mode: mode_name(wf.delivery),
            recipient: customer.email.clone(),
            subject: Some(subject),
            html: Some(tera.render(html, &ctx)?),
            text: text.map(|t| tera.render(t, &ctx)).transpose()?,
            payload: Some(
                serde_json::json!({ "unsubscribe_url": unsubscribe.map(|u| u.to_string()) })
                    .to_string(),
            ),
            coupon,
            message_id: crate::ids::message_id(&key, &self.config.email.from),
            due_at: at,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn webhook(
        &self,
        wf: &Workflow,
        hook: &crate::workflow::plan::WebhookStep,
        step: &str,
        row: &EnrollmentRow,
        customer: &Customer,
        event: Option<&Event>,
        at: DateTime<Utc>,
    ) -> Result<NewDelivery, tera::Error> {
        let key = format!("{}/{}/{}/{}", wf.name, customer.id, row.id, step);
        let ctx = self.context(wf, customer, event, Moment::now(at));
        // String values of the body are Tera templates; the URL's `${ENV}` is resolved at
        // send time, so no secret is ever stored in the outbox.
        let body = hook
            .json
            .as_ref()
            .map(|j| render_json(j, &ctx))
            .transpose()?;
        let payload = serde_json::json!({ "method": hook.method, "url": hook.url, "headers": hook.headers, "body": body, "timeout_s": hook.timeout.num_seconds() });
        Ok(NewDelivery {
            id: key.clone(),
            channel: "webhook",
            enrollment_id: row.id.clone(),
            workflow: wf.name.clone(),
            customer_id: customer.id.clone(),
            step: step.to_string(),
            class: class_name(wf.class),
            mode: mode_name(wf.delivery),
            recipient: hook.url.clone(),
            subject: None,
            html: None,
            text: None,
            payload: Some(payload.to_string()),
            coupon: None,
            message_id: crate::ids::message_id(&key, &self.config.email.from),
            due_at: at,
        })
    }
}

/// Renders the string values of a webhook body as templates; an error fails the step
/// rather than sending the template's text.
fn render_json(v: &Value, ctx: &Context) -> Result<Value, tera::Error> {
    Ok(match v {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            Value::String(tera::Tera::one_off(s, ctx, false)?)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, ctx)?)))
                .collect::<Result<_, tera::Error>>()?,
        ),
        other => other.clone(),
    })
}

fn end(
    row: &mut EnrollmentRow,
    state: &str,
    reason: Option<String>,
    at: DateTime<Utc>,
    report: &mut PassReport,
) {
    row.state = state.to_string();
    row.exit_reason = reason;
    row.ended_at = Some(at);
    row.step = None;
    row.due_at = None;
    match state {
        "completed" => report.completed += 1,
        "converted" => report.converted += 1,
        _ => report.exited += 1,
    }
}

/// One customer's journey fails with the error recorded; the others go on.
fn fail(row: &mut EnrollmentRow, error: String, at: DateTime<Utc>, report: &mut PassReport) {
    row.state = "failed".into();
    row.error = Some(error);
    row.ended_at = Some(at);
    row.due_at = None;
    report.failed += 1;
}

fn class_name(c: MailClass) -> &'static str {
    match c {
        MailClass::Marketing => "marketing",
        MailClass::Transactional => "transactional",
    }
}

fn mode_name(m: DeliveryMode) -> &'static str {
    match m {
        DeliveryMode::AtLeastOnce => "at_least_once",
        DeliveryMode::AtMostOnce => "at_most_once",
    }
}

/// The subject for a locale: `ja-JP` tries `ja-JP`, then `ja`, then the default.
fn subject_for<'a>(
    subjects: &'a std::collections::BTreeMap<String, String>,
    locale: Option<&str>,
) -> &'a str {
    let mut tag = locale.unwrap_or("").to_string();
    while !tag.is_empty() {
        if let Some(name) = subjects
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&tag))
            .map(|(_, v)| v)
        {
            return name;
        }
        match tag.rfind('-') {
            Some(i) => tag.truncate(i),
            None => tag.clear(),
        }
    }
    subjects.get("").map_or("", String::as_str)
}

/// The birthdays whose anniversary can fall between two instants, in any zone: the UTC
/// days of the window widened by a day each side (no zone is more than 14 hours off UTC,
/// and a DST jump adds one), with Feb 29 wherever Feb 28 or Mar 1 is in. A window longer
/// than a year needs every customer (`None`).
fn birthdays_between(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Vec<String>> {
    let (first, last) = (
        from.date_naive() - TimeDelta::days(2),
        to.date_naive() + TimeDelta::days(2),
    );
    if last - first > TimeDelta::days(366) {
        return None;
    }
    let mut days: Vec<String> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| d.format("%m-%d").to_string())
        .collect();
    if days.iter().any(|d| d == "02-28" || d == "03-01") {
        days.push("02-29".into());
    }
    days.sort();
    days.dedup();
    Some(days)
}

/// The customers whose birthday trigger (at `at` local time, moved by `offset`) fires in
/// `(from, now]`: for each zone customers are in, the days of [`birthdays_between`] whose
/// anniversary in that zone falls in the window — exactly what a pass then checks for each
/// customer, so that an hourly pass reads the few customers due rather than five days'
/// worth of birthdays in every zone.
fn birthdays_firing(
    zones: &[Option<String>],
    at: NaiveTime,
    offset: TimeDelta,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CustomerFilter {
    let Some(days) = birthdays_between(from - offset, now - offset) else {
        return CustomerFilter::All;
    };
    let firing = zones
        .iter()
        .filter_map(|zone| {
            let tz = zone_named(zone.as_deref());
            let due: Vec<String> = days
                .iter()
                .filter(|day| {
                    // A leap year, so that Feb 29 is a date; only the month and day count.
                    let Ok(date) =
                        chrono::NaiveDate::parse_from_str(&format!("2000-{day}"), "%Y-%m-%d")
                    else {
                        return true;
                    };
                    crate::workflow::plan::next_anniversary(date, at, offset, tz, from)
                        .is_some_and(|fire| fire <= now)
                })
                .cloned()
                .collect();
            (!due.is_empty()).then(|| (zone.clone(), due))
        })
        .collect();
    CustomerFilter::BirthdayOn(firing)
}

fn customer_zone(c: &Customer) -> Tz {
    zone_named(c.timezone.as_deref())
}

/// The zone a customer's stored `timezone` names: UTC when it names none, or none known.
pub(crate) fn zone_named(name: Option<&str>) -> Tz {
    name.and_then(|z| z.parse().ok()).unwrap_or(Tz::UTC)
}

/// The next time the clock shows `time` in `tz`, strictly after `after`.
pub fn next_local_time(after: DateTime<Utc>, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let local = after.with_timezone(&tz).date_naive();
    for day in 0..3 {
        let date = local + TimeDelta::days(day);
        let naive = date.and_time(time);
        let instant = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                Some(t.with_timezone(&Utc))
            }
            chrono::LocalResult::None => crate::time::cron::jump_after_gap(naive, tz),
        };
        if let Some(t) = instant.filter(|t| *t > after) {
            return t;
        }
    }
    after + TimeDelta::days(1)
}

/// Applies `set` values: fixed columns by name, everything else to `attributes`.
fn apply_set(c: &mut Customer, set: &Map<String, Value>) {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| (!v.is_null()).then(|| v.to_string()))
    };
    let time = |v: &Value| v.as_str().and_then(|s| crate::import::parse_time(s).ok());
    for (k, v) in set {
        match k.as_str() {
            "first_name" => c.first_name = text(v),
            "last_name" => c.last_name = text(v),
            "locale" => c.locale = text(v),
            "timezone" => c.timezone = text(v),
            "birthday" => {
                c.birthday = v
                    .as_str()
                    .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            }
            "created_at" => c.created_at = time(v),
            "last_order_at" => c.last_order_at = time(v),
            "orders_count" => c.orders_count = v.as_i64().unwrap_or(c.orders_count),
            "total_spent" => c.total_spent = v.as_f64().unwrap_or(c.total_spent),
            "tags" => {
                if let Some(a) = v.as_array() {
                    c.tags = a
                        .iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect();
                }
            }
            "id" | "email" | "unsubscribed_at" | "attributes" => {}
            other if !CUSTOMER_FIELDS.contains(&other) => {
                c.attributes.insert(other.to_string(), v.clone());
            }
            _ => {}
        }
    }
}

/// When a step runs (`at`, when it fell due) and from when the links it writes must stay
/// valid (the pass's moment, later when the step fell due long ago).
#[derive(Debug, Clone, Copy)]
struct Moment {
    at: DateTime<Utc>,
    links_from: DateTime<Utc>,
}

impl Moment {
    fn now(at: DateTime<Utc>) -> Self {
        Self { at, links_from: at }
    }
}

/// `PREFIX-XXXX-XXXX`, derived from the delivery key: each delivery (and so each
/// re-entry) gets its own code, and a retried step gets the same one.
fn coupon_code(prefix: &str, key: &str) -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut h = crate::ids::fnv(key);
    let mut code = String::new();
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        code.push(ALPHABET[(h % 32) as usize] as char);
        h /= 32;
    }
    format!("{prefix}-{code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coupons_are_stable_and_distinct() {
        let c = coupon_code("BDAY", "k1");
        assert_eq!(c.len(), "BDAY-XXXX-XXXX".len());
        assert_ne!(c, coupon_code("BDAY", "k2"));
    }

    #[test]
    fn subjects_fall_back_by_locale() {
        let s = std::collections::BTreeMap::from([
            (String::new(), "d".to_string()),
            ("ja".to_string(), "j".to_string()),
        ]);
        assert_eq!(subject_for(&s, Some("ja-JP")), "j");
        assert_eq!(subject_for(&s, Some("fr")), "d");
        assert_eq!(subject_for(&s, None), "d");
    }

    #[test]
    fn birthday_windows_cover_every_zone_and_feb_29() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let days = birthdays_between(t("2027-02-28T08:00:00Z"), t("2027-02-28T09:00:00Z"));
        let days = days.expect("a one-hour window is filtered");
        assert_eq!(days, ["02-26", "02-27", "02-28", "02-29", "03-01", "03-02"]);
        let days = birthdays_between(t("2026-12-31T23:00:00Z"), t("2027-01-01T01:00:00Z"));
        let days = days.expect("a year's turn is filtered");
        assert_eq!(days, ["01-01", "01-02", "01-03", "12-29", "12-30", "12-31"]);
        assert_eq!(
            birthdays_between(t("2025-01-01T00:00:00Z"), t("2026-06-01T00:00:00Z")),
            None
        );
    }

    /// Per zone, only the days whose 09:00 local falls in the hour: Tokyo's June 6 at
    /// 00:00Z; not New York's (13:00Z) nor UTC's (09:00Z), which read nothing. Feb 29
    /// birthdays fire on Feb 28 in a common year.
    #[test]
    fn an_hourly_pass_reads_only_the_birthdays_firing_in_each_zone() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let zones = [
            Some("Asia/Tokyo".to_string()),
            Some("America/New_York".to_string()),
            None,
        ];
        let window = (t("2026-06-05T23:30:00Z"), t("2026-06-06T00:30:00Z"));
        assert_eq!(
            birthdays_firing(&zones, nine, TimeDelta::zero(), window.0, window.1),
            CustomerFilter::BirthdayOn(vec![(zones[0].clone(), vec!["06-06".to_string()])])
        );
        let utc = (t("2027-02-28T08:30:00Z"), t("2027-02-28T09:30:00Z"));
        assert_eq!(
            birthdays_firing(&zones, nine, TimeDelta::zero(), utc.0, utc.1),
            CustomerFilter::BirthdayOn(vec![(None, vec!["02-28".into(), "02-29".into()])])
        );
        // A week before: the offset moves the window, not the zones.
        assert_eq!(
            birthdays_firing(&zones, nine, TimeDelta::days(-7), utc.0, utc.1),
            CustomerFilter::BirthdayOn(vec![(None, vec!["03-07".to_string()])])
        );
    }

    #[test]
    fn waits_until_a_local_time() {
        let after = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = next_local_time(
            after,
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            Tz::Asia__Tokyo,
        );
        // 10:00Z is 19:00 in Tokyo: the next 09:00 is tomorrow, 00:00Z.
        assert_eq!(t.to_rfc3339(), "2026-06-02T00:00:00+00:00");
    }
}
