//! How customers enter journeys: the events of a pass (their `set` changes applied, the
//! workflows they trigger), schedules that fire (catch-up included), and yearly dates such
//! as birthdays, each customer in their own zone. Entry is decided in pages and written
//! with its enrollments, keyed by the trigger, so a pass run twice enrolls nobody twice.

use super::group::Consent;
use super::{
    BATCH, CATCH_UP_GRACE, Engine, EngineError, PassReport, Pasts, apply_set, customer_zone,
};
use crate::model::customer::FieldValue;
use crate::model::customer::{Customer, Event};
use crate::store::StoreError;
use crate::store::customer_rows::CustomerFilter;
use crate::store::enrollments::EnrollmentRow;
use crate::store::{customer_rows, enrollments, events};
use crate::time::zones::zone_named;
use crate::workflow::expr::pushdown::pushed;
use crate::workflow::expr::{EvalInput, EventHistory};
use crate::workflow::plan::{Reentry, Trigger, Workflow, Zone};
use crate::workflow::raw::CatchUp;
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use std::sync::Arc;

/// Whether this event starts the workflow (an enabled one, with this event as its trigger
/// and, for a stage trigger, this stage as the one entered).
pub(super) fn triggers(wf: &Workflow, event: &Event) -> bool {
    let Trigger::Event { name, to_stage } = &wf.trigger else {
        return false;
    };
    wf.enabled
        && *name == event.name
        && to_stage.as_ref().is_none_or(|stage| {
            event.properties.get("to").and_then(|v| v.as_str()) == Some(stage.name.as_str())
        })
}

/// A schedule's latest fire time in `(start, now]`, and how many earlier ones in the window
/// were missed (only the latest fires).
fn latest_fire(
    cron: &crate::time::cron::CronSchedule,
    tz: Tz,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, u64) {
    let mut cursor = start;
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
    (latest, missed)
}

/// Writes what `admit` decided — failed enrollments one by one, the others a hundred per
/// statement — and counts the customers who entered. One written before (a pass that died
/// after enrolling and before recording its fire) is skipped.
pub(super) async fn enter(
    conn: &mut sqlx::AnyConnection,
    entries: Vec<Entry>,
    report: &mut PassReport,
    meter: &crate::progress::Meter,
) -> Result<(), StoreError> {
    let mut entering = Vec::new();
    for entry in entries {
        match entry {
            Entry::No => {}
            Entry::Failed(row) => {
                enrollments::insert_failed_enrollment(conn, &row).await?;
            }
            Entry::Enters(row) => entering.push(row),
        }
    }
    let n = enrollments::insert_enrollments(conn, &entering).await?;
    report.enrolled += n;
    crate::progress::add(&meter.enrolled, n);
    Ok(())
}

/// Whether a customer enters a workflow.
pub(super) enum Entry {
    No,
    /// The audience failed for this customer: the enrollment is recorded as failed.
    Failed(EnrollmentRow),
    Enters(EnrollmentRow),
}

/// Customers read per page when a trigger streams its audience: most pages of a large
/// audience enter nobody (the audience decides before anything else is read), so a page
/// costs its read alone, and fewer, larger pages cost fewer round trips.
const AUDIENCE_PAGE: i64 = 2_000;

/// A time trigger's key, under which its last fire is recorded, and what fires under it.
struct TimeKey {
    wf: Arc<Workflow>,
    key: String,
    timed: Timed,
}

enum Timed {
    /// A schedule in a zone, for the customers the filter keeps.
    Schedule(Tz, CustomerFilter),
    /// A date trigger, with the zones customers are in (for birthdays).
    Date(Vec<Option<String>>),
}

/// What decides whether a customer may enter a workflow, read before `enroll` — for a
/// whole page of customers at once where many enter together.
pub(super) struct Admission<'a> {
    pub(super) consent: &'a mut Consent,
    /// When the customer last entered this workflow, for the re-entry rule.
    pub(super) last_entry: Option<DateTime<Utc>>,
    /// The customer's past events, read only for workflows that call `event_count`.
    pub(super) history: Option<&'a Arc<EventHistory>>,
}

impl Engine {
    pub(super) async fn process_events(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<usize, EngineError> {
        let mut conn = self.store.connection().await?;
        let events = events::pending_events(&mut conn, now, BATCH).await?;
        drop(conn);
        // Events that start nothing and change nothing (most `stage_entered` ones) are
        // only marked processed, all in one statement.
        let mut idle = Vec::new();
        for stored in &events {
            let Some((mut triggered, resumes)) = self.what_it_does(stored, now) else {
                idle.push(stored.event.id.as_str());
                continue;
            };
            // History imported in bulk, or a backlog: starting journeys now would send
            // them late (`tidings enroll --since` backfills on purpose).
            let too_old =
                !triggered.is_empty() && now - stored.event.at > self.settings.max_event_age;
            if too_old {
                triggered.clear();
            }
            let what = (triggered, resumes, too_old);
            if self.handle_event(stored, what, now, report).await? {
                report.events += 1;
            }
        }
        if !idle.is_empty() {
            let mut tx = self.store.write_tx().await?;
            events::mark_events_processed(&mut tx, &idle, now).await?;
            tx.commit().await?;
            report.events += idle.len() as u64;
        }
        Ok(events.len())
    }

    /// One event that does something, in a transaction of its own: the customer's
    /// changes, the journeys it starts (none when too old), the waits it ends, the goals
    /// it reaches. `false` when its customer is gone (it is only marked processed).
    async fn handle_event(
        &self,
        stored: &events::StoredEvent,
        (triggered, resumes, too_old): (Vec<&Arc<Workflow>>, bool, bool),
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<bool, EngineError> {
        let unsubscribes = stored.event.name == crate::model::customer::UNSUBSCRIBED_EVENT;
        let mut tx = self.store.write_tx().await?;
        let Some(mut customer) =
            customer_rows::customer_for_update(&mut tx, self.store.backend(), &stored.customer_id)
                .await?
        else {
            events::mark_event_processed(&mut tx, &stored.event.id, now).await?;
            tx.commit().await?;
            return Ok(false);
        };
        if !stored.set.is_empty() || unsubscribes {
            apply_set(&mut customer, &stored.set);
            if unsubscribes && customer.unsubscribed_at.is_none() {
                customer.unsubscribed_at = Some(stored.event.at);
            }
            customer_rows::save_customer(&mut tx, &customer, stored.event.at).await?;
            self.restage(&mut tx, &customer, None, stored.event.at)
                .await?;
        } else if self.order_restages(stored, now) {
            self.restage(&mut tx, &customer, None, stored.event.at)
                .await?;
        }
        let reads = triggered.iter().any(|w| w.reads_history());
        let at = stored.event.at;
        let history = Pasts::of_one(&mut tx, reads, &customer.id, at).await?;
        let mut consent = Consent::default();
        for wf in triggered {
            let key = stored.event.id.clone();
            let admission = Admission {
                consent: &mut consent,
                last_entry: enrollments::last_entry(&mut tx, &wf.name, &customer.id).await?,
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
            enter(&mut tx, vec![entry], report, &self.meter).await?;
        }
        if resumes {
            let (name, at) = (&stored.event.name, stored.event.at);
            enrollments::resume_waiting(&mut tx, &customer.id, name, at).await?;
        }
        self.record_outcomes(&mut tx, &stored.event, &customer)
            .await?;
        match too_old {
            true => events::mark_processed_too_old(&mut tx, &stored.event.id, now).await?,
            false => events::mark_event_processed(&mut tx, &stored.event.id, now).await?,
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The workflows an event starts and whether it may end a wait; `None` when it does
    /// nothing at all (no trigger, no change to its customer, no wait for it).
    /// Whether an event moves its customer's stage because it is an order's: the order
    /// changed their figures when it came in. An old order's stage is left to the daily
    /// sweep (the rules read the figures as of now), as a bulk import's are.
    fn order_restages(&self, stored: &events::StoredEvent, now: DateTime<Utc>) -> bool {
        self.plan.stages.is_some()
            && crate::model::order::changes_figures(&stored.event.name)
            && now - stored.event.at <= self.settings.max_event_age
    }

    fn what_it_does(
        &self,
        stored: &events::StoredEvent,
        now: DateTime<Utc>,
    ) -> Option<(Vec<&Arc<Workflow>>, bool)> {
        let triggered: Vec<&Arc<Workflow>> = self
            .plan
            .workflows
            .iter()
            .filter(|wf| !stored.event.by_machine() && triggers(wf, &stored.event))
            .collect();
        let unsubscribes = stored.event.name == crate::model::customer::UNSUBSCRIBED_EVENT;
        let resumes = self.resumes(&stored.event);
        let idle = triggered.is_empty()
            && !self.order_restages(stored, now)
            && stored.set.is_empty()
            && !unsubscribes
            && !resumes
            && !self.has_outcome(&stored.event);
        (!idle).then_some((triggered, resumes))
    }

    /// Whether an event may end a `wait: {for: ...}`: some workflow waits for its name, and
    /// it is a person's doing (a link scanner's click resumes nothing).
    fn resumes(&self, event: &Event) -> bool {
        !event.by_machine()
            && self
                .plan
                .workflows
                .iter()
                .any(|wf| wf.waits_for.contains(&event.name))
    }

    /// Whether a customer enters — if the audience, consent and the re-entry rule allow
    /// it — as the enrollment to write; [`enter`] writes it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn admit(
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
            .no_consent(conn, wf, customer, admission.consent)
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
        let mut row = EnrollmentRow {
            id: format!("{}:{}:{}", wf.name, customer.id, trigger_key),
            workflow: wf.name.clone(),
            customer_id: customer.id.clone(),
            trigger_key,
            state: crate::model::states::JourneyState::Active,
            step: wf.graph.first.clone(),
            due_at: Some(at),
            entered_at: at,
            ended_at: None,
            exit_reason: None,
            event_id: event.map(|e| e.id.clone()),
            orders_count_at_entry: customer.orders_count,
            total_spent_at_entry: customer.total_spent,
            error: None,
            version: 0,
            waiting: None,
            variant: None,
        };
        // The holdout enters, is recorded, and gets nothing: the control group.
        if let Some(share) = wf.holdout
            && audience_error.is_none()
            && crate::workflow::plan::held_out(share, &customer.id, &wf.name)
        {
            row.variant = Some(crate::workflow::plan::HOLDOUT.to_string());
            row.state = crate::model::states::JourneyState::Exited;
            row.exit_reason = Some(crate::workflow::plan::HOLDOUT.to_string());
            row.ended_at = Some(at);
            row.step = None;
            row.due_at = None;
        }
        Ok(match audience_error {
            // This customer's enrollment fails with the error recorded; the others go on.
            Some(error) => {
                row.error = Some(error);
                Entry::Failed(row)
            }
            None => Entry::Enters(row),
        })
    }

    /// Time triggers: schedules, then yearly dates. When each key last fired is read for
    /// all of them in one statement, and the pass's mark written for all in one, once every
    /// enrollment they caused is: a pass that dies in between fires them again on the next
    /// one, and the enrollments' unique key (workflow, customer, fire time) makes the second
    /// time add only those the first did not reach.
    pub(super) async fn fire_time_triggers(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        let keys = self.time_keys().await?;
        if keys.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = keys.iter().map(|k| k.key.as_str()).collect();
        let last = self.store.last_fires(&names).await?;
        // A key is marked when its window held a fire time (fired, or skipped as late) or
        // it had no mark yet; a window with none is read again from the same mark next
        // pass and holds none there either, so most passes write nothing.
        let mut marked = Vec::new();
        for key in &keys {
            // A fresh store fires only what falls exactly on its first pass.
            let mark = last.get(&key.key).copied();
            let from = mark.unwrap_or(now - TimeDelta::seconds(1));
            let held = match &key.timed {
                Timed::Schedule(tz, only_zone) => {
                    self.fire_schedule(&key.wf, *tz, only_zone, from, now, report)
                        .await?
                }
                Timed::Date(zones) => self.fire_date(&key.wf, zones, from, now, report).await?,
            };
            if held || mark.is_none() {
                marked.push(key.key.as_str());
            }
        }
        if !marked.is_empty() {
            self.store.record_fires(&marked, now).await?;
        }
        Ok(())
    }

    /// The keys of the enabled time triggers: a schedule in a fixed zone is one, a
    /// `timezone: customer` schedule one per zone customers are in, a date trigger one.
    async fn time_keys(&self) -> Result<Vec<TimeKey>, EngineError> {
        let mut zones: Option<Vec<Option<String>>> = None;
        let mut keys = Vec::new();
        for wf in self.plan.workflows.iter().filter(|w| w.enabled) {
            let customer_zones = matches!(
                &wf.trigger,
                Trigger::Schedule {
                    zone: Zone::Customer,
                    ..
                }
            ) || matches!(&wf.trigger, Trigger::Date { column, .. } if column == "birthday");
            if customer_zones && zones.is_none() {
                zones = Some(self.store.customer_zones().await?);
            }
            let known = zones.as_deref().unwrap_or_default();
            match &wf.trigger {
                Trigger::Schedule { zone, .. } => match zone {
                    Zone::Fixed(tz) => keys.push(TimeKey {
                        wf: wf.clone(),
                        key: wf.name.clone(),
                        timed: Timed::Schedule(*tz, CustomerFilter::All),
                    }),
                    Zone::Customer => keys.extend(known.iter().map(|z| TimeKey {
                        wf: wf.clone(),
                        key: format!("{}@{}", wf.name, z.as_deref().unwrap_or("UTC")),
                        timed: Timed::Schedule(
                            zone_named(z.as_deref()),
                            CustomerFilter::Zone(z.clone()),
                        ),
                    })),
                },
                Trigger::Date { .. } => keys.push(TimeKey {
                    wf: wf.clone(),
                    key: format!("{}#date", wf.name),
                    timed: Timed::Date(known.to_vec()),
                }),
                Trigger::Event { .. } => {}
            }
        }
        Ok(keys)
    }

    /// A cron trigger: every fire time after the last one recorded and up to `now` fires
    /// once (on a fresh store, only one exactly at `now`). A `timezone: customer` schedule
    /// fires per zone, for the customers in that zone.
    async fn fire_schedule(
        &self,
        wf: &Workflow,
        tz: Tz,
        only_zone: &CustomerFilter,
        from: DateTime<Utc>,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<bool, EngineError> {
        let Trigger::Schedule { cron, .. } = &wf.trigger else {
            return Ok(false);
        };
        // Fire times older than the catch-up age never fire, so the search starts there at
        // the earliest: a store left for a year with a minutely schedule does not walk half
        // a million fire times.
        let start = from.max(now - self.catch_up_max_age() - TimeDelta::seconds(1));
        let (latest, missed) = latest_fire(cron, tz, start, now);
        // Each pass fires a schedule once at most: its latest fire time. One that is late
        // (nothing ran when it fell due) fires under `catch_up` — once (`run_once`, the
        // default), or not at all (`skip`).
        let late = latest.is_some_and(|t| now - t > CATCH_UP_GRACE);
        let fire = match wf.catch_up {
            CatchUp::Skip if late => None,
            _ => latest,
        };
        report.missed_fires += missed + u64::from(late && fire.is_none());
        if let Some(fire) = fire {
            let trigger_key = fire.timestamp_millis().to_string();
            self.enroll_all(wf, report, only_zone, |_| Some((trigger_key.clone(), fire)))
                .await?;
        }
        Ok(latest.is_some() || missed > 0)
    }

    /// A date trigger: customers whose anniversary (at the local time, with the offset)
    /// fell after the previous pass and by `now` enter, once per anniversary.
    async fn fire_date(
        &self,
        wf: &Workflow,
        zones: &[Option<String>],
        from: DateTime<Utc>,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<bool, EngineError> {
        let Trigger::Date { column, at, offset } = &wf.trigger else {
            return Ok(false);
        };
        if from >= now {
            return Ok(false);
        }
        let (at, offset) = (*at, *offset);
        let filter = if column == "birthday" {
            birthdays_firing(zones, at, offset, from, now)
        } else {
            CustomerFilter::All
        };
        let dated = crate::model::customer::field(column);
        self.enroll_all(wf, report, &filter, |c| {
            let date = match dated.map(|f| (f.get)(c)) {
                Some(FieldValue::Date(d)) => d,
                Some(FieldValue::Time(t)) => t.map(|t| t.date_naive()),
                _ => None,
            }?;
            let fire =
                crate::workflow::plan::next_anniversary(date, at, offset, customer_zone(c), from)?;
            (fire <= now).then(|| (fire.timestamp_millis().to_string(), fire))
        })
        .await?;
        // Any other date column may fall due for someone in any window.
        Ok(!filter.is_nobody())
    }

    /// Streams every customer the audience's pushed-down part keeps, page by page,
    /// enrolling those `key_of` gives a trigger key and a fire time.
    pub(super) async fn enroll_all(
        &self,
        wf: &Workflow,
        report: &mut PassReport,
        filter: &CustomerFilter,
        key_of: impl Fn(&Customer) -> Option<(String, DateTime<Utc>)>,
    ) -> Result<(), EngineError> {
        let pushed = wf
            .audience
            .as_ref()
            .map(|a| pushed(&a.source))
            .unwrap_or_default();
        if filter.is_nobody() {
            return Ok(());
        }
        let mut after = String::new();
        loop {
            let mut conn = self.store.connection().await?;
            let page =
                customer_rows::customers_page(&mut conn, &after, AUDIENCE_PAGE, filter, &pushed)
                    .await?;
            drop(conn);
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id.clone();
            // A page shorter than asked for is the last: no statement to find none after.
            let more = page.len() as i64 == AUDIENCE_PAGE;
            let entering: Vec<(&Customer, (String, DateTime<Utc>))> = page
                .iter()
                .filter_map(|c| key_of(c).map(|k| (c, k)))
                .collect();
            // What decides entry, read for the whole page at once: the pasts first, for
            // the audience, which then keeps out those who enter in no case — their
            // consent and last entry need not be read, and a page nobody enters from
            // writes nothing.
            let ids: Vec<&str> = entering.iter().map(|(c, _)| c.id.as_str()).collect();
            let until = entering.iter().map(|(_, (_, at))| *at).max();
            let pasts = match until {
                Some(until) if wf.reads_history() => {
                    let mut conn = self.store.connection().await?;
                    Pasts::load(&mut conn, true, &ids, until).await?
                }
                _ => Pasts(None),
            };
            let entering: Vec<_> = (entering.into_iter())
                .filter(|(c, (_, at))| !self.kept_out(wf, c, pasts.at(&c.id, *at), *at))
                .collect();
            if entering.is_empty() {
                if more {
                    continue;
                }
                return Ok(());
            }
            let mut tx = self.store.write_tx().await?;
            let emails = entering.iter().map(|(c, _)| c.email.as_str()).collect();
            let ids: Vec<&str> = entering.iter().map(|(c, _)| c.id.as_str()).collect();
            let topics = wf.topic.is_some().then_some(&ids[..]);
            let mut consent = Consent::load(&mut tx, emails, topics).await?;
            let last_entries = enrollments::last_entries(&mut tx, &wf.name, &ids).await?;
            let mut entries = Vec::new();
            for (customer, (trigger_key, at)) in entering {
                let history = pasts.at(&customer.id, at);
                let admission = Admission {
                    consent: &mut consent,
                    last_entry: last_entries.get(&customer.id).copied(),
                    history: history.as_ref(),
                };
                entries.push(
                    self.admit(&mut tx, wf, customer, None, admission, trigger_key, at)
                        .await?,
                );
            }
            enter(&mut tx, entries, report, &self.meter).await?;
            tx.commit().await?;
            if !more {
                return Ok(());
            }
        }
    }
}

impl Engine {
    /// Whether the workflow's audience keeps this customer out at `at` (an audience that
    /// fails for them does not: [`Engine::admit`] records the failure).
    fn kept_out(
        &self,
        wf: &Workflow,
        customer: &Customer,
        history: Option<Arc<EventHistory>>,
        at: DateTime<Utc>,
    ) -> bool {
        let Some(audience) = &wf.audience else {
            return false;
        };
        let input = EvalInput {
            customer,
            event: None,
            enrollment: None,
            now: at,
            history,
        };
        matches!(self.plan.engine.eval_bool(audience, &input), Ok(false))
    }
}

/// The birthdays whose anniversary can fall between two instants, in any zone: the UTC
/// days of the window widened by a day each side (no zone is more than 14 hours off UTC,
/// and a DST jump adds one), with Feb 29 wherever Feb 28 or Mar 1 is in. A window longer
/// than a year needs every customer (`None`).
pub(super) fn birthdays_between(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<Vec<String>> {
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
pub(super) fn birthdays_firing(
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
