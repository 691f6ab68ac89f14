//! A backfill (`tidings enroll`): the customers a workflow would have taken had it been
//! running, entered through the same admission as a live trigger (consent, audience,
//! re-entry, holdout) and keyed the same way, so a backfill run twice, or one that meets a
//! pass processing the same events, enrolls nobody twice.
//!
//! An event-triggered workflow replays its trigger's stored events: each customer enters
//! as of their event, so a "14 days after the first order" journey deployed today sends
//! to last week's buyers on their own fourteenth day, and its templates read the event.
//! Other workflows have no event to replay: the customers an audience keeps enter at one
//! moment.

use super::group::Consent;
use super::triggers::{Admission, Entry, enter, triggers};
use super::{BATCH, Engine, EngineError, PassReport, Pasts};
use crate::model::customer::Customer;
use crate::store::customer_rows::{self, CustomerFilter};
use crate::store::{enrollments, events};
use crate::workflow::expr::pushdown::pushed;
use crate::workflow::expr::{EvalInput, EventHistory, Expr};
use crate::workflow::plan::{Trigger, Workflow};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Who a backfill considers.
#[derive(Debug, Clone, Copy)]
pub enum BackfillFrom {
    /// The trigger's events in `[since, now]`, each customer entering as of their event.
    Events { since: DateTime<Utc> },
    /// Every customer (the audiences decide), entering at this moment.
    Customers { at: DateTime<Utc> },
}

/// What a backfill is asked to do.
pub struct Backfill<'a> {
    pub workflow: &'a Workflow,
    pub from: BackfillFrom,
    /// Kept only where this holds too, besides the workflow's own audience.
    pub audience: Option<&'a Expr>,
    /// Decide and report, then roll every write back.
    pub dry_run: bool,
}

/// One customer who enters (or would).
#[derive(Debug, Clone)]
pub struct Entrant {
    pub customer_id: String,
    pub entered_at: DateTime<Utc>,
    /// The event they enter by, for an event-triggered workflow.
    pub event_id: Option<String>,
    /// In the holdout: entered and recorded, sent nothing.
    pub held_out: bool,
}

/// What a backfill found and did.
#[derive(Debug, Default)]
pub struct BackfillReport {
    /// Events replayed, or customers read.
    pub considered: u64,
    /// Who enters (or would), in order.
    pub admitted: Vec<Entrant>,
    /// Newly enrolled (or that would be, in a dry run).
    pub enrolled: u64,
    /// Admitted, but enrolled by that same trigger already (by a pass or an earlier
    /// backfill): not entered twice.
    pub already: u64,
}

impl Engine {
    /// Runs a backfill: a transaction per page, rolled back in a dry run.
    pub async fn backfill(
        &self,
        job: &Backfill<'_>,
        now: DateTime<Utc>,
    ) -> Result<BackfillReport, EngineError> {
        let mut out = BackfillReport::default();
        match job.from {
            BackfillFrom::Events { since } => {
                self.backfill_events(job, since, now, &mut out).await?
            }
            BackfillFrom::Customers { at } => self.backfill_customers(job, at, &mut out).await?,
        }
        Ok(out)
    }

    async fn backfill_events(
        &self,
        job: &Backfill<'_>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        out: &mut BackfillReport,
    ) -> Result<(), EngineError> {
        let wf = job.workflow;
        let Trigger::Event { name, .. } = &wf.trigger else {
            return Ok(());
        };
        let reads = wf.reads_history() || job.audience.is_some_and(Expr::reads_history);
        let mut after: Option<(DateTime<Utc>, String)> = None;
        loop {
            let mut tx = self.store.write_tx().await?;
            let cursor = after.as_ref().map(|(at, id)| (*at, id.as_str()));
            let page = events::named_between(&mut tx, name, since, now, cursor, BATCH).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some((last.event.at, last.event.id.clone()));
            let mut entries = Vec::new();
            for stored in page.iter().filter(|s| triggers(wf, &s.event)) {
                out.considered += 1;
                let Some(customer) = customer_rows::customer(&mut tx, &stored.customer_id).await?
                else {
                    continue;
                };
                let at = stored.event.at;
                let event = Some(&stored.event);
                let history = Pasts::of_one(&mut tx, reads, &customer.id, at).await?;
                if !self.keeps(job.audience, &customer, event, &history, at) {
                    continue;
                }
                let mut consent = Consent::default();
                let admission = Admission {
                    consent: &mut consent,
                    last_entry: enrollments::last_entry(&mut tx, &wf.name, &customer.id).await?,
                    history: history.as_ref(),
                };
                let key = stored.event.id.clone();
                let entry = self
                    .admit(&mut tx, wf, &customer, event, admission, key, at)
                    .await?;
                entries.push(entry);
            }
            self.finish_page(tx, entries, job.dry_run, out).await?;
        }
    }

    async fn backfill_customers(
        &self,
        job: &Backfill<'_>,
        at: DateTime<Utc>,
        out: &mut BackfillReport,
    ) -> Result<(), EngineError> {
        let wf = job.workflow;
        let pushed = wf
            .audience
            .as_ref()
            .map(|a| pushed(&a.source))
            .unwrap_or_default();
        let key = format!("backfill:{}", at.timestamp_millis());
        let reads = wf.reads_history() || job.audience.is_some_and(Expr::reads_history);
        let mut after = String::new();
        loop {
            let mut tx = self.store.write_tx().await?;
            let page = customer_rows::customers_page(
                &mut tx,
                &after,
                BATCH,
                &CustomerFilter::All,
                &pushed,
            )
            .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id.clone();
            out.considered += page.len() as u64;
            let mut kept = Vec::new();
            let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
            let pasts = Pasts::load(&mut tx, reads, &ids, at).await?;
            for customer in &page {
                let history = pasts.at(&customer.id, at);
                if self.keeps(job.audience, customer, None, &history, at) {
                    kept.push((customer, history));
                }
            }
            let emails = kept.iter().map(|(c, _)| c.email.as_str()).collect();
            let ids: Vec<&str> = kept.iter().map(|(c, _)| c.id.as_str()).collect();
            let topics = wf.topic.is_some().then_some(&ids[..]);
            let mut consent = Consent::load(&mut tx, emails, topics).await?;
            let last_entries = enrollments::last_entries(&mut tx, &wf.name, &ids).await?;
            let mut entries = Vec::new();
            for (customer, history) in kept {
                let admission = Admission {
                    consent: &mut consent,
                    last_entry: last_entries.get(&customer.id).copied(),
                    history: history.as_ref(),
                };
                let entry = self
                    .admit(&mut tx, wf, customer, None, admission, key.clone(), at)
                    .await?;
                entries.push(entry);
            }
            self.finish_page(tx, entries, job.dry_run, out).await?;
        }
    }

    /// Whether the backfill's own audience keeps a customer (an error keeps nobody).
    fn keeps(
        &self,
        audience: Option<&Expr>,
        customer: &Customer,
        event: Option<&crate::model::customer::Event>,
        history: &Option<Arc<EventHistory>>,
        at: DateTime<Utc>,
    ) -> bool {
        let Some(expr) = audience else {
            return true;
        };
        let input = EvalInput {
            customer,
            event,
            enrollment: None,
            now: at,
            history: history.clone(),
        };
        self.plan.engine.eval_bool(expr, &input).unwrap_or(false)
    }

    /// Records who was admitted, writes the page's enrollments, and commits them — or, in
    /// a dry run, rolls them back.
    async fn finish_page(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        entries: Vec<Entry>,
        dry_run: bool,
        out: &mut BackfillReport,
    ) -> Result<(), EngineError> {
        let ids: Vec<&str> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Enters(row) => Some(row.id.as_str()),
                _ => None,
            })
            .collect();
        let existing = enrollments::existing(&mut tx, &ids).await?;
        out.already += existing.len() as u64;
        for entry in &entries {
            if let Entry::Enters(row) = entry
                && !existing.contains(&row.id)
            {
                out.admitted.push(Entrant {
                    customer_id: row.customer_id.clone(),
                    entered_at: row.entered_at,
                    event_id: row.event_id.clone(),
                    held_out: row.variant.as_deref() == Some(crate::workflow::plan::HOLDOUT),
                });
            }
        }
        let mut report = PassReport::default();
        enter(&mut tx, entries, &mut report, &self.meter).await?;
        out.enrolled += report.enrolled;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(())
    }
}
