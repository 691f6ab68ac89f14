//! What an event achieves for the workflows: a goal event converts the journey whose
//! workflow touched the customer last before it (its latest email within the goal's
//! `within`, or for the holdout its entry) — one journey per event, the latest touch across
//! workflows winning — and an order naming a coupon redeems it.

use super::{Engine, EngineError};
use crate::model::customer::{Customer, Event};
use crate::store::outcomes::{self, Touch};
use crate::workflow::expr::EvalInput;

use crate::model::order::ORDER_PLACED;

impl Engine {
    /// Whether an event converts or redeems anything: some workflow's goal is its name,
    /// or it is an order that names a coupon.
    pub(super) fn has_outcome(&self, event: &Event) -> bool {
        coupon_of(event).is_some()
            || !event.by_machine()
                && self
                    .plan
                    .workflows
                    .iter()
                    .any(|wf| wf.goal.as_ref().is_some_and(|g| g.event == event.name))
    }

    /// Credits the event to the journey that touched the customer last, and redeems the
    /// coupon an order names.
    pub(super) async fn record_outcomes(
        &self,
        conn: &mut sqlx::AnyConnection,
        event: &Event,
        customer: &Customer,
    ) -> Result<(), EngineError> {
        if let Some(code) = coupon_of(event) {
            outcomes::redeem_coupon(conn, &customer.id, code, event.at).await?;
        }
        if event.by_machine() {
            return Ok(());
        }
        let mut best: Option<(Touch, &crate::workflow::plan::Goal)> = None;
        for wf in &self.plan.workflows {
            let Some(goal) = wf.goal.as_ref().filter(|g| g.event == event.name) else {
                continue;
            };
            let goal_event = outcomes::GoalEvent {
                id: &event.id,
                customer_id: &customer.id,
                workflow: &wf.name,
                from: event.at.checked_sub_signed(goal.within).unwrap_or(event.at),
                to: event.at,
                holdout_after: wf.first_email_after(),
            };
            let touch = outcomes::latest_touch(conn, &goal_event).await?;
            if let Some(t) = touch
                && best.as_ref().is_none_or(|(b, _)| t.at > b.at)
            {
                best = Some((t, goal));
            }
        }
        let Some((touch, goal)) = best else {
            return Ok(());
        };
        let value = match &goal.value {
            Some(expr) => {
                let input = EvalInput {
                    customer,
                    event: Some(event),
                    enrollment: None,
                    now: event.at,
                    history: None,
                };
                self.plan.engine.eval_number(expr, &input).unwrap_or_else(|e| {
                    tracing::warn!(workflow = %touch.workflow, event = %event.id, error = %e, "a goal's value could not be read; the conversion counts with 0");
                    0.0
                })
            }
            None => 0.0,
        };
        outcomes::insert_conversion(conn, &event.id, &customer.id, &touch, value, event.at).await?;
        Ok(())
    }
}

/// The coupon code an order names, if it is an order and names one.
fn coupon_of(event: &Event) -> Option<&str> {
    (event.name == ORDER_PLACED)
        .then(|| event.properties.get("coupon")?.as_str())
        .flatten()
        .filter(|c| !c.trim().is_empty())
}
