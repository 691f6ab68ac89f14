//! What a workflow achieved: goal events credited to the journey whose email came last
//! before them (last touch), and coupons redeemed by an order that names them.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, from_millis};

/// The journey a goal event may be credited to: its workflow's latest email to the
/// customer before the event, or (for the holdout) its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    pub enrollment: String,
    pub workflow: String,
    pub variant: Option<String>,
    /// The email step; `None` for the holdout, which got no email.
    pub step: Option<String>,
    pub at: DateTime<Utc>,
}

/// What a goal event is matched against: the workflow's journeys of the customer.
pub struct GoalEvent<'a> {
    pub id: &'a str,
    pub customer_id: &'a str,
    pub workflow: &'a str,
    /// The window's start (the event's moment less the goal's `within`) and end.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// How long after entry the holdout's first email would have gone: its window opens
    /// then, as an arm's opens at its email.
    pub holdout_after: TimeDelta,
}

/// The workflow's latest touch of the customer in `[from, to]`: an email sent then, or
/// the moment a holdout journey's first email would have gone, whichever is later. A
/// journey the event itself started is never touched by it: the order that enrolls a
/// customer in an order-triggered workflow is not that journey's conversion.
pub async fn latest_touch(
    conn: &mut AnyConnection,
    goal: &GoalEvent<'_>,
) -> Result<Option<Touch>, StoreError> {
    let (from, to) = (goal.from.timestamp_millis(), goal.to.timestamp_millis());
    let after = goal.holdout_after.num_milliseconds();
    let email = super::sql::query("SELECT d.enrollment_id, d.variant, d.step, d.sent_at FROM deliveries d JOIN enrollments e ON e.id = d.enrollment_id WHERE d.customer_id = $1 AND d.workflow = $2 AND d.channel = 'email' AND d.state = 'sent' AND d.sent_at >= $3 AND d.sent_at <= $4 AND (e.event_id IS NULL OR e.event_id <> $5) ORDER BY d.sent_at DESC, d.id DESC LIMIT 1")
        .bind(goal.customer_id)
        .bind(goal.workflow)
        .bind(from)
        .bind(to)
        .bind(goal.id)
        .fetch_optional(&mut *conn)
        .await?;
    let held = super::sql::query("SELECT id, variant, entered_at FROM enrollments WHERE customer_id = $1 AND workflow = $2 AND variant = 'holdout' AND entered_at >= $3 AND entered_at <= $4 AND (event_id IS NULL OR event_id <> $5) ORDER BY entered_at DESC, id DESC LIMIT 1")
        .bind(goal.customer_id)
        .bind(goal.workflow)
        .bind(from.saturating_sub(after))
        .bind(to.saturating_sub(after))
        .bind(goal.id)
        .fetch_optional(&mut *conn)
        .await?;
    let email = match email {
        Some(r) => Some(Touch {
            enrollment: r.try_get(0)?,
            workflow: goal.workflow.to_string(),
            variant: r.try_get(1)?,
            step: r.try_get(2)?,
            at: from_millis(r.try_get(3)?).unwrap_or_default(),
        }),
        None => None,
    };
    let held = match held {
        Some(r) => Some(Touch {
            enrollment: r.try_get(0)?,
            workflow: goal.workflow.to_string(),
            variant: r.try_get(1)?,
            step: None,
            at: from_millis(
                r.try_get::<Option<i64>, _>(2)?
                    .map(|t| t.saturating_add(after)),
            )
            .unwrap_or_default(),
        }),
        None => None,
    };
    Ok(match (email, held) {
        (Some(e), Some(h)) => Some(if h.at > e.at { h } else { e }),
        (e, h) => e.or(h),
    })
}

/// Credits a goal event to a journey, once per event.
pub async fn insert_conversion(
    conn: &mut AnyConnection,
    event_id: &str,
    customer_id: &str,
    touch: &Touch,
    value: f64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::sql::query("INSERT INTO conversions (event_id, enrollment_id, workflow, variant, step, customer_id, value, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING")
        .bind(event_id)
        .bind(&touch.enrollment)
        .bind(&touch.workflow)
        .bind(touch.variant.clone())
        .bind(touch.step.clone())
        .bind(customer_id)
        .bind(value)
        .bind(at.timestamp_millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// The values of the conversions credited to the customer's journeys of a workflow.
pub async fn conversions_of(
    conn: &mut AnyConnection,
    workflow: &str,
    customer_id: &str,
) -> Result<Vec<f64>, StoreError> {
    let rows = super::sql::query(
        "SELECT value FROM conversions WHERE workflow = $1 AND customer_id = $2 ORDER BY at",
    )
    .bind(workflow)
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get::<f64, _>(0).map_err(StoreError::from))
        .collect()
}

/// Marks the customer's coupon with this code redeemed (the first order that names it).
pub async fn redeem_coupon(
    conn: &mut AnyConnection,
    customer_id: &str,
    code: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = super::sql::query("UPDATE coupons SET state = 'redeemed', redeemed_at = $1 WHERE code = $2 AND customer_id = $3 AND redeemed_at IS NULL")
        .bind(at.timestamp_millis())
        .bind(code.trim())
        .bind(customer_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}
