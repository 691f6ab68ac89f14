//! What a workflow achieved: goal events credited to the journey whose email came last
//! before them (last touch), and coupons redeemed by an order that names them.

use chrono::{DateTime, Utc};
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

/// The workflow's latest touch of the customer in `[from, to]`: an email sent then, or a
/// holdout entry then, whichever is later.
pub async fn latest_touch(
    conn: &mut AnyConnection,
    customer_id: &str,
    workflow: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<Touch>, StoreError> {
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    let email = sqlx::query("SELECT enrollment_id, variant, step, sent_at FROM deliveries WHERE customer_id = $1 AND workflow = $2 AND channel = 'email' AND state = 'sent' AND sent_at >= $3 AND sent_at <= $4 ORDER BY sent_at DESC, id DESC LIMIT 1")
        .bind(customer_id)
        .bind(workflow)
        .bind(from)
        .bind(to)
        .fetch_optional(&mut *conn)
        .await?;
    let held = sqlx::query("SELECT id, variant, entered_at FROM enrollments WHERE customer_id = $1 AND workflow = $2 AND variant = 'holdout' AND entered_at >= $3 AND entered_at <= $4 ORDER BY entered_at DESC, id DESC LIMIT 1")
        .bind(customer_id)
        .bind(workflow)
        .bind(from)
        .bind(to)
        .fetch_optional(&mut *conn)
        .await?;
    let email = match email {
        Some(r) => Some(Touch {
            enrollment: r.try_get(0)?,
            workflow: workflow.to_string(),
            variant: r.try_get(1)?,
            step: r.try_get(2)?,
            at: from_millis(r.try_get(3)?).unwrap_or_default(),
        }),
        None => None,
    };
    let held = match held {
        Some(r) => Some(Touch {
            enrollment: r.try_get(0)?,
            workflow: workflow.to_string(),
            variant: r.try_get(1)?,
            step: None,
            at: from_millis(r.try_get(2)?).unwrap_or_default(),
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
    sqlx::query("INSERT INTO conversions (event_id, enrollment_id, workflow, variant, step, customer_id, value, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING")
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

/// Marks the customer's coupon with this code redeemed (the first order that names it).
pub async fn redeem_coupon(
    conn: &mut AnyConnection,
    customer_id: &str,
    code: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = sqlx::query("UPDATE coupons SET state = 'redeemed', redeemed_at = $1 WHERE code = $2 AND customer_id = $3 AND redeemed_at IS NULL")
        .bind(at.timestamp_millis())
        .bind(code.trim())
        .bind(customer_id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}
