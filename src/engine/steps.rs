//! Journeys moving on: due enrollments are claimed in batches under a lease, and each runs
//! its steps until a wait or the end — conditions, waits, emails and webhooks queued in the
//! outbox in the same commit, updates, exits — with consent, the frequency cap and quiet
//! hours checked at every email.

use super::compose::{Moment, delivery_key};
use super::group::{Consent, Group, Outgoing};

use super::{BATCH, CATCH_UP_GRACE, Engine, EngineError, PassReport, apply_set, customer_zone};
use crate::model::customer::{Customer, Enrollment, Event};
use crate::model::states::JourneyState;
use crate::store::enrollments::EnrollmentRow;
use crate::store::{deliveries, enrollments};
use crate::time::zones::next_local_time;
use crate::workflow::expr::{EvalInput, Expr};
use crate::workflow::plan::{Step, StepKind, StepLinks, Wait, Workflow};
use crate::workflow::raw::{Deferral, MailClass};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// Whether a marketing email may go now.
pub(super) enum Fairness {
    Send,
    Hold {
        until: DateTime<Utc>,
        reason: HoldReason,
    },
}

/// Why a marketing email is held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldReason {
    QuietHours,
    FrequencyCap,
}

impl HoldReason {
    /// As the outbox records a skipped email's reason.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::QuietHours => "quiet hours",
            Self::FrequencyCap => "frequency cap",
        }
    }
}

/// What a journey's steps share while it runs.
pub(super) struct Journey<'a> {
    wf: &'a Workflow,
    event: Option<&'a Event>,
    history: Option<Arc<crate::workflow::expr::EventHistory>>,
    /// When the step fell due: the moment every step of this run happens at.
    at: DateTime<Utc>,
    /// Whether this run queued an email: then a wait counts from when it actually left.
    emailed: std::sync::atomic::AtomicBool,
}

impl Journey<'_> {
    /// Where a wait starts counting. A journey that fell due long before this pass (an
    /// old event, a daemon that was down) and has just sent an email waits from now, so
    /// its emails keep their spacing and never two go in one pass.
    fn wait_from(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let late = now - self.at > CATCH_UP_GRACE;
        match self.emailed.load(std::sync::atomic::Ordering::Relaxed) && late {
            true => now,
            false => self.at,
        }
    }
}

/// What a journey's steps read and add to: the group's consent, the coupons of earlier
/// emails, the customers it changed and the deliveries it queued.
pub(super) struct Mail<'a> {
    consent: &'a mut Consent,
    coupons: &'a HashMap<String, (String, i64)>,
    changed: &'a mut HashMap<String, DateTime<Utc>>,
    outgoing: &'a mut Outgoing,
}

/// Whether a journey runs its next step now, or has stopped (a wait, the end, a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Stop,
}

/// An `update` step: fields set, tags removed and added.
fn apply_update(customer: &mut Customer, update: &crate::workflow::plan::UpdateStep) {
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
}

/// A step and what follows it, as its workflow's graph (computed when it compiled) says.
pub(super) struct Node<'a> {
    step: &'a Step,
    links: &'a StepLinks,
}

impl Node<'_> {
    fn next(&self) -> Option<String> {
        self.links.next.clone()
    }
}

/// Enough steps for any sane journey; a longer run without a wait is cut off.
pub(super) const MAX_STEPS_PER_RUN: usize = 1_000;

/// Journeys moved on per transaction: enough to spread a commit's wait for the disk, few
/// enough that the write lock (SQLite) is not held long against the API's imports.
pub(super) const STEPS_PER_COMMIT: usize = 50;

impl Engine {
    pub(super) async fn run_due(
        &self,
        now: DateTime<Utc>,
        report: &mut PassReport,
    ) -> Result<usize, EngineError> {
        let lease = self.journey_lease();
        let mut tx = self.store.write_tx().await?;
        let mut due =
            enrollments::claim_due(&mut tx, self.store.backend(), now, BATCH, lease).await?;
        tx.commit().await?;
        let count = due.len();
        for group in due.chunks_mut(STEPS_PER_COMMIT) {
            let claimed = group.to_vec();
            let before = report.clone();
            if self.move_group(group, now, report).await? {
                continue;
            }
            // Another worker took some of these journeys after our lease on them ran out:
            // the group's work was rolled back, and it moves again a journey at a time, so
            // that only the lost journeys drop theirs.
            *report = before;
            group.clone_from_slice(&claimed);
            self.move_one_by_one(group, now, report).await?;
        }
        Ok(count)
    }

    /// Runs an enrollment's steps from its current one until a wait or the end. The
    /// deliveries its steps queue go to `outgoing`, which the caller writes.
    pub(super) async fn advance(
        &self,
        conn: &mut sqlx::AnyConnection,
        row: &mut EnrollmentRow,
        customer: Option<&mut Customer>,
        reads: &mut Group,
        outgoing: &mut Outgoing,
        report: &mut PassReport,
    ) -> Result<(), EngineError> {
        let at = row.due_at.unwrap_or(row.entered_at);
        let Some(wf) = self.plan.workflow(&row.workflow) else {
            let gone = format!("workflow `{}` no longer exists", row.workflow);
            end(row, JourneyState::Exited, Some(gone), at, report);
            return Ok(());
        };
        let Some(customer) = customer else {
            let gone = "customer no longer exists".to_string();
            end(row, JourneyState::Exited, Some(gone), at, report);
            return Ok(());
        };
        let event = row.event_id.as_ref().and_then(|id| reads.events.get(id));
        // Whether the event came or the time ran out, the wait is over.
        row.waiting = None;
        let history = match wf.reads_history() {
            true => reads.pasts.at(&customer.id, at),
            false => None,
        };
        let journey = Journey {
            wf,
            event,
            history,
            at,
            emailed: std::sync::atomic::AtomicBool::new(false),
        };
        let mut mail = Mail {
            consent: &mut reads.consent,
            coupons: &reads.coupons,
            changed: &mut reads.changed,
            outgoing,
        };
        for _ in 0..MAX_STEPS_PER_RUN {
            let Some(step_id) = row.step.clone() else {
                end(row, JourneyState::Completed, None, at, report);
                return Ok(());
            };
            let node = wf.graph.nodes.get(&step_id).and_then(|links| {
                let step = wf.step_at(&links.path)?;
                Some(Node { step, links })
            });
            let Some(node) = node else {
                let gone = format!("step `{step_id}` no longer exists");
                end(row, JourneyState::Exited, Some(gone), at, report);
                return Ok(());
            };
            if self.goal_reached(&journey, row, customer, report) {
                return Ok(());
            }
            report.steps += 1;
            crate::progress::count(&self.meter.steps);
            let flow = self
                .step(conn, &journey, &node, row, customer, &mut mail, report)
                .await?;
            if flow == Flow::Stop {
                return Ok(());
            }
        }
        let runaway = format!("more than {MAX_STEPS_PER_RUN} steps ran without a wait");
        fail(row, runaway, at, report);
        Ok(())
    }

    /// Whether `exit_when` ended the journey (met, or failing) before the next step.
    fn goal_reached(
        &self,
        journey: &Journey<'_>,
        row: &mut EnrollmentRow,
        customer: &Customer,
        report: &mut PassReport,
    ) -> bool {
        let Some(goal) = &journey.wf.exit_when else {
            return false;
        };
        match self.eval(journey, row, goal, customer) {
            Ok(true) => end(
                row,
                JourneyState::Converted,
                Some("goal met".into()),
                journey.at,
                report,
            ),
            Ok(false) => return false,
            Err(e) => fail(row, format!("`exit_when` failed: {e}"), journey.at, report),
        }
        true
    }

    /// An expression of the journey's workflow, for this customer at the journey's moment.
    fn eval(
        &self,
        journey: &Journey<'_>,
        row: &EnrollmentRow,
        expr: &Expr,
        customer: &Customer,
    ) -> Result<bool, crate::workflow::expr::EvalError> {
        let enrollment = Enrollment {
            id: row.id.clone(),
            workflow: row.workflow.clone(),
            entered_at: row.entered_at,
            step: row.step.clone(),
            orders_count_at_entry: row.orders_count_at_entry,
            total_spent_at_entry: row.total_spent_at_entry,
        };
        let input = EvalInput {
            customer,
            event: journey.event,
            enrollment: Some(&enrollment),
            now: journey.at,
            history: journey.history.clone(),
        };
        self.plan.engine.eval_bool(expr, &input)
    }

    /// Runs one step: one small function per kind.
    #[allow(clippy::too_many_arguments)] // the journey's parts, each changed by some step
    async fn step(
        &self,
        conn: &mut sqlx::AnyConnection,
        journey: &Journey<'_>,
        node: &Node<'_>,
        row: &mut EnrollmentRow,
        customer: &mut Customer,
        mail: &mut Mail<'_>,
        report: &mut PassReport,
    ) -> Result<Flow, EngineError> {
        let at = journey.at;
        let next = node.next();
        match &node.step.kind {
            StepKind::Email(email) => {
                return self
                    .email_step(conn, journey, node, email, row, customer, mail, report)
                    .await;
            }
            StepKind::WaitFor(wait) => {
                row.step = next;
                row.due_at = Some(journey.wait_from(mail.outgoing.1) + wait.at_most);
                row.waiting = Some(crate::store::enrollments::Waiting {
                    event: wait.event.clone(),
                    since: at,
                });
                return Ok(Flow::Stop);
            }
            StepKind::Wait(wait) => {
                row.step = next;
                let from = journey.wait_from(mail.outgoing.1);
                row.due_at = Some(match wait {
                    Wait::For(d) => from + *d,
                    Wait::Until(t) => next_local_time(from, *t, customer_zone(customer)),
                });
                return Ok(Flow::Stop);
            }
            StepKind::If { condition, .. } => match self.eval(journey, row, condition, customer) {
                Ok(true) => row.step = node.links.then_first.clone().or(node.next()),
                Ok(false) => row.step = node.links.else_first.clone().or(node.next()),
                Err(e) => {
                    let why = format!("`if` of step `{}` failed: {e}", node.step.id);
                    fail(row, why, at, report);
                    return Ok(Flow::Stop);
                }
            },
            StepKind::Update(update) => {
                apply_update(customer, update);
                // Written with the group's other changes when it ends.
                mail.changed.insert(customer.id.clone(), at);
                row.step = next;
            }
            StepKind::Webhook(hook) => {
                let call = self.webhook(
                    journey.wf,
                    hook,
                    &node.step.id,
                    row,
                    customer,
                    journey.event,
                    at,
                );
                match call {
                    Ok(d) => mail.outgoing.0.push(d),
                    Err(e) => {
                        fail(row, format!("step `{}`: {e}", node.step.id), at, report);
                        return Ok(Flow::Stop);
                    }
                }
                row.step = next;
            }
            StepKind::Split(split) => self.split_step(split, journey.wf, node, row, customer),
            StepKind::Exit { reason } => {
                end(row, JourneyState::Exited, Some(reason.clone()), at, report);
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// A split: the customer's variant recorded on the journey, which goes on with the
    /// variant's first step.
    fn split_step(
        &self,
        split: &crate::workflow::plan::SplitStep,
        wf: &Workflow,
        node: &Node<'_>,
        row: &mut EnrollmentRow,
        customer: &Customer,
    ) {
        let k = self.variant_of(split, wf, customer);
        row.variant = Some(format!("{}/{}", split.name, split.variants[k].name));
        let first = node.links.variant_firsts.get(k).cloned().flatten();
        row.step = first.or(node.next());
    }

    /// An email step: composed, then sent only with consent, and for marketing mail only
    /// within the frequency cap and outside quiet hours (else held or skipped, as the step
    /// says).
    #[allow(clippy::too_many_arguments)] // the journey's parts, each changed here
    async fn email_step(
        &self,
        conn: &mut sqlx::AnyConnection,
        journey: &Journey<'_>,
        node: &Node<'_>,
        email: &crate::workflow::plan::EmailStep,
        row: &mut EnrollmentRow,
        customer: &mut Customer,
        mail: &mut Mail<'_>,
        report: &mut PassReport,
    ) -> Result<Flow, EngineError> {
        let at = journey.at;
        let moment = Moment {
            at,
            links_from: mail.outgoing.1,
            proof: false,
        };
        let earlier = earlier_coupons(journey.wf, email, row, customer, mail);
        let composed = self.email(
            journey.wf,
            email,
            &node.step.id,
            row,
            customer,
            journey.event,
            (moment, &earlier),
        );
        let d = match composed {
            Ok(d) => d,
            Err(e) => {
                fail(row, format!("step `{}`: {e}", node.step.id), at, report);
                return Ok(Flow::Stop);
            }
        };
        // Consent is checked at every email, not only at entry: an unsubscribe in the
        // middle of a series ends it for every workflow at once.
        if let Some(reason) = self
            .no_consent(conn, journey.wf, customer, mail.consent)
            .await?
        {
            end(row, JourneyState::Exited, Some(reason.into()), at, report);
            return Ok(Flow::Stop);
        }
        if journey.wf.class == MailClass::Marketing
            && let Fairness::Hold { until, reason } = self
                .fairness(conn, customer, at, mail.outgoing, report)
                .await?
        {
            let policy = if reason == HoldReason::QuietHours {
                email.in_quiet_hours
            } else {
                email.when_capped
            };
            if policy == Deferral::Wait {
                // The step stays where it is and runs again when allowed.
                row.due_at = Some(until);
                report.deferred += 1;
                return Ok(Flow::Stop);
            }
            enrollments::insert_skipped(conn, &d, reason.as_str()).await?;
            report.skipped += 1;
            row.step = node.next();
            return Ok(Flow::Continue);
        }
        mail.outgoing.0.push(d);
        (journey.emailed).store(true, std::sync::atomic::Ordering::Relaxed);
        row.step = node.next();
        Ok(Flow::Continue)
    }

    /// Why this customer may not be mailed by this workflow, if they may not: a suppressed
    /// address gets nothing, an unsubscribed customer only transactional mail, a customer
    /// who opted out of the workflow's topic nothing of that topic.
    pub(super) async fn no_consent(
        &self,
        conn: &mut sqlx::AnyConnection,
        wf: &Workflow,
        customer: &Customer,
        consent: &mut Consent,
    ) -> Result<Option<&'static str>, EngineError> {
        if consent.suppressed(conn, &customer.email).await? {
            return Ok(Some("suppressed"));
        }
        if wf.class == MailClass::Marketing && customer.unsubscribed_at.is_some() {
            return Ok(Some("unsubscribed"));
        }
        if let Some(topic) = &wf.topic
            && consent.opted_out(conn, &customer.id, topic).await?
        {
            return Ok(Some("unsubscribed from the topic"));
        }
        Ok(None)
    }

    /// The rules across all marketing workflows: quiet hours in the customer's zone, then
    /// the frequency cap.
    pub(super) async fn fairness(
        &self,
        conn: &mut sqlx::AnyConnection,
        customer: &Customer,
        at: DateTime<Utc>,
        outgoing: &mut Outgoing,
        report: &mut PassReport,
    ) -> Result<Fairness, EngineError> {
        if let Some((from, to)) = self.settings.quiet_hours {
            let local = at.with_timezone(&customer_zone(customer)).time();
            let quiet = if from <= to {
                local >= from && local < to
            } else {
                local >= from || local < to
            };
            if quiet {
                return Ok(Fairness::Hold {
                    until: next_local_time(at, to, customer_zone(customer)),
                    reason: HoldReason::QuietHours,
                });
            }
        }
        if let Some((count, per)) = self.settings.frequency_cap {
            // The cap counts this group's queued emails too: write them first.
            outgoing.write(conn, report).await?;
            let sends = deliveries::marketing_sends_since(conn, &customer.id, at - per).await?;
            if sends.len() >= count as usize {
                // The slot opens when the oldest send in the window leaves it.
                let until = sends[sends.len() - count as usize] + per;
                return Ok(Fairness::Hold {
                    until: until.max(at + TimeDelta::seconds(1)),
                    reason: HoldReason::FrequencyCap,
                });
            }
        }
        Ok(Fairness::Send)
    }
}

/// The coupons earlier steps reserved that this email shows (`coupons.deal.code`), found
/// by their emails' keys: stored before the group began (read with it), else queued by an
/// earlier step of this same run.
fn earlier_coupons(
    wf: &Workflow,
    email: &crate::workflow::plan::EmailStep,
    row: &EnrollmentRow,
    customer: &Customer,
    mail: &Mail<'_>,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for step in &email.earlier_coupons {
        let key = delivery_key(wf, &customer.id, &row.id, step);
        let queued = || {
            let d = mail.outgoing.0.iter().find(|d| d.id == key)?;
            let (code, expires) = d.coupon.as_ref()?;
            Some((code.clone(), expires.timestamp_millis()))
        };
        let Some((code, expires)) = mail.coupons.get(&key).cloned().or_else(queued) else {
            continue;
        };
        out.insert(step.clone(), deliveries::coupon_value(&code, expires));
    }
    serde_json::Value::Object(out)
}

pub(super) fn end(
    row: &mut EnrollmentRow,
    state: JourneyState,
    reason: Option<String>,
    at: DateTime<Utc>,
    report: &mut PassReport,
) {
    row.state = state;
    row.exit_reason = reason;
    row.ended_at = Some(at);
    row.step = None;
    row.due_at = None;
    match state {
        JourneyState::Completed => report.completed += 1,
        JourneyState::Converted => report.converted += 1,
        JourneyState::Active | JourneyState::Exited | JourneyState::Failed => report.exited += 1,
    }
}

/// One customer's journey fails with the error recorded; the others go on.
pub(super) fn fail(
    row: &mut EnrollmentRow,
    error: String,
    at: DateTime<Utc>,
    report: &mut PassReport,
) {
    row.state = JourneyState::Failed;
    row.error = Some(error);
    row.ended_at = Some(at);
    row.due_at = None;
    report.failed += 1;
}
