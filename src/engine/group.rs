//! A group of due journeys moves on together: what they read is read for the whole group
//! in a few statements, what they write (deliveries, changed customers, the journeys
//! themselves) is written together when the group ends, in one transaction. A journey lost
//! to another worker (its lease ran out) makes the group roll back and move again one
//! journey at a time, each in a savepoint, so that only the lost one drops its work.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::compose::delivery_key;
use super::{Engine, EngineError, PassReport, Pasts};
use crate::model::customer::{Customer, Event};
use crate::model::states::Channel;
use crate::store::StoreError;
use crate::store::deliveries::{self, NewDelivery};
use crate::store::enrollments::{self, EnrollmentRow};
use crate::store::{customer_rows, events, suppressions};
use crate::workflow::plan::{StepKind, Workflow};

/// A write transaction on the store.
type Transaction = sqlx::Transaction<'static, sqlx::Any>;

/// What a group of journeys reads, read for the whole group at once, and the customers its
/// `update` steps changed, written when it ends.
pub(super) struct Group {
    pub(super) consent: Consent,
    pub(super) pasts: Pasts,
    pub(super) events: HashMap<String, Event>,
    /// Coupons of earlier emails, by their email's key: code and expiry (milliseconds).
    pub(super) coupons: HashMap<String, (String, i64)>,
    /// Customers changed by `update` steps, with the moment of the last change.
    pub(super) changed: HashMap<String, DateTime<Utc>>,
}

/// The deliveries a group of journeys queued, written together when the group ends — or
/// before a step reads the outbox back (the frequency cap), so that it counts them — and
/// the pass's moment, from which the links in them stay valid: a step that fell due long
/// ago (an old event, a missed fire time) is sent now, and its links must work when it
/// arrives.
pub(super) struct Outgoing(
    pub(super) Vec<NewDelivery>,
    pub(super) DateTime<Utc>,
    pub(super) Arc<crate::progress::Meter>,
);

/// Consent as far as one batch of work needs it: the suppression list and the topic
/// opt-outs, read for a page or a group of customers in one query each, and one address or
/// customer at a time for any other.
#[derive(Default)]
pub(super) struct Consent {
    /// Whether each address is suppressed, by its lower-case form.
    addresses: HashMap<String, bool>,
    /// The topics each customer of the page opted out of, when read for the page.
    topics: Option<BTreeMap<String, BTreeSet<String>>>,
}

impl Engine {
    /// Moves a group of journeys on in one transaction, a few statements for the whole
    /// group; `false`, rolled back, when another worker took one of them.
    pub(super) async fn move_group(
        &self,
        group: &mut [EnrollmentRow],
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<bool, EngineError> {
        let (mut tx, mut customers, mut reads) = self.open_group(group).await?;
        let mut outgoing = Outgoing(Vec::new(), now, self.meter.clone());
        for row in group.iter_mut() {
            let customer = customers.get_mut(&row.customer_id);
            let out = &mut outgoing;
            self.advance(&mut tx, row, customer, &mut reads, out, report)
                .await?;
        }
        outgoing.write(&mut tx, report).await?;
        save_changed(&mut tx, &mut reads, &customers).await?;
        let saved = enrollments::save_enrollments(&mut tx, group).await?;
        if saved == group.len() as u64 {
            tx.commit().await?;
            return Ok(true);
        }
        tx.rollback().await?;
        Ok(false)
    }

    /// Moves a group of journeys on a journey at a time, each in a savepoint: one lost to
    /// another worker after our lease ran out drops its work, and its customer as it
    /// changed them is forgotten.
    pub(super) async fn move_one_by_one(
        &self,
        group: &mut [EnrollmentRow],
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        let (mut tx, mut customers, mut reads) = self.open_group(group).await?;
        for row in group {
            let mut journey = crate::store::savepoint(&mut tx).await?;
            let customer = customers.get_mut(&row.customer_id);
            let mut outgoing = Outgoing(Vec::new(), now, self.meter.clone());
            let out = &mut outgoing;
            self.advance(&mut journey, row, customer, &mut reads, out, report)
                .await?;
            outgoing.write(&mut journey, report).await?;
            save_changed(&mut journey, &mut reads, &customers).await?;
            if enrollments::save_enrollment(&mut journey, row).await? {
                journey.commit().await?;
                continue;
            }
            journey.rollback().await?;
            let backend = self.store.backend();
            if let Some(c) =
                customer_rows::customer_for_update(&mut tx, backend, &row.customer_id).await?
            {
                customers.insert(c.id.clone(), c);
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The group's write transaction, its customers (locked on PostgreSQL) and what its
    /// journeys read.
    async fn open_group(
        &self,
        group: &[EnrollmentRow],
    ) -> Result<(Transaction, HashMap<String, Customer>, Group), EngineError> {
        let mut tx = self.store.write_tx().await?;
        let ids: Vec<&str> = group.iter().map(|r| r.customer_id.as_str()).collect();
        let backend = self.store.backend();
        let customers = customer_rows::customers_for_update(&mut tx, backend, &ids).await?;
        let reads = self.group_reads(&mut tx, group, &customers).await?;
        Ok((tx, customers, reads))
    }

    /// What a group of journeys reads, in a few statements for the whole group: its
    /// customers' suppressions and topic opt-outs, their pasts up to the latest due moment
    /// (when a workflow of the group reads history), the events the journeys answer, and the
    /// coupons of earlier emails that their emails may show.
    async fn group_reads(
        &self,
        conn: &mut sqlx::AnyConnection,
        group: &[EnrollmentRow],
        customers: &HashMap<String, Customer>,
    ) -> Result<Group, EngineError> {
        let workflows: Vec<&Workflow> = (group.iter())
            .filter_map(|r| self.plan.workflow(&r.workflow))
            .map(|w| &**w)
            .collect();
        let emails = customers.values().map(|c| c.email.as_str()).collect();
        let ids: Vec<&str> = customers.keys().map(String::as_str).collect();
        let topics = workflows.iter().any(|w| w.topic.is_some());
        let consent = Consent::load(conn, emails, topics.then_some(&ids[..])).await?;
        let reads = workflows.iter().any(|w| w.reads_history());
        let until = group.iter().map(|r| r.due_at.unwrap_or(r.entered_at)).max();
        let pasts = match until {
            Some(until) => Pasts::load(conn, reads, &ids, until).await?,
            None => Pasts(None),
        };
        let event_ids: Vec<&str> = group.iter().filter_map(|r| r.event_id.as_deref()).collect();
        let events = match event_ids.is_empty() {
            true => HashMap::new(),
            false => events::events_by_id(conn, &event_ids).await?,
        };
        let coupons = self.coupons_shown(conn, group).await?;
        Ok(Group {
            consent,
            pasts,
            events,
            coupons,
            changed: HashMap::new(),
        })
    }

    /// The coupons earlier emails of the group's journeys reserved, for the emails that
    /// show them (`coupons.deal.code`), by their emails' keys.
    async fn coupons_shown(
        &self,
        conn: &mut sqlx::AnyConnection,
        group: &[EnrollmentRow],
    ) -> Result<HashMap<String, (String, i64)>, StoreError> {
        let mut keys = Vec::new();
        for row in group {
            let Some(wf) = self.plan.workflow(&row.workflow) else {
                continue;
            };
            for step in shown_coupons(wf) {
                keys.push(delivery_key(wf, &row.customer_id, &row.id, step));
            }
        }
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        deliveries::coupons_by_key(conn, &keys).await
    }
}

/// The steps whose coupons some email of the workflow shows.
fn shown_coupons(wf: &Workflow) -> BTreeSet<&str> {
    (wf.graph.nodes.values())
        .filter_map(|links| wf.step_at(&links.path))
        .filter_map(|step| match &step.kind {
            StepKind::Email(email) => Some(email.earlier_coupons.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Writes the customers `update` steps changed, all in one statement.
async fn save_changed(
    conn: &mut sqlx::AnyConnection,
    reads: &mut Group,
    customers: &HashMap<String, Customer>,
) -> Result<(), StoreError> {
    let changed: Vec<(&Customer, DateTime<Utc>)> = (reads.changed.drain())
        .filter_map(|(id, at)| Some((customers.get(&id)?, at)))
        .collect();
    customer_rows::save_customers(conn, &changed).await
}

impl Outgoing {
    /// Writes what is queued and counts what was new (a key written before is not).
    pub(super) async fn write(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let new = deliveries::insert_deliveries(conn, &self.0).await?;
        for d in self.0.drain(..).filter(|d| new.contains(&d.id)) {
            if d.channel == Channel::Webhook {
                report.webhooks += 1;
            } else {
                report.emails += 1;
                crate::progress::count(&self.2.queued);
            }
        }
        Ok(())
    }
}

impl Consent {
    /// Reads the suppressions of `emails` and, for `topics_of` when given, the topics
    /// those customers opted out of.
    pub(super) async fn load(
        conn: &mut sqlx::AnyConnection,
        emails: Vec<&str>,
        topics_of: Option<&[&str]>,
    ) -> Result<Self, StoreError> {
        let found = suppressions::suppressed_among(conn, &emails).await?;
        let addresses = emails
            .into_iter()
            .map(|e| {
                let e = e.to_lowercase();
                let suppressed = found.contains_key(&e);
                (e, suppressed)
            })
            .collect();
        let topics = match topics_of {
            Some(ids) => Some(crate::store::topics::opted_out_among(conn, ids).await?),
            None => None,
        };
        Ok(Self { addresses, topics })
    }

    pub(super) async fn suppressed(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        email: &str,
    ) -> Result<bool, StoreError> {
        let email = email.to_lowercase();
        if let Some(known) = self.addresses.get(&email) {
            return Ok(*known);
        }
        let suppressed = suppressions::is_suppressed(conn, &email).await?;
        self.addresses.insert(email, suppressed);
        Ok(suppressed)
    }

    /// Whether the customer opted out of `topic`: from the page's opt-outs when they were
    /// read for it, else asked.
    pub(super) async fn opted_out(
        &mut self,
        conn: &mut sqlx::AnyConnection,
        customer_id: &str,
        topic: &str,
    ) -> Result<bool, StoreError> {
        if let Some(topics) = &self.topics {
            return Ok(topics.get(customer_id).is_some_and(|t| t.contains(topic)));
        }
        let topics = crate::store::topics::opted_out(conn, customer_id).await?;
        Ok(topics.contains(topic))
    }
}
