//! Unsubscribes and the mail provider's bounce and complaint reports, each body in one
//! transaction.

use super::{Store, StoreError};
use crate::model::states::EngagementKind;
use crate::store::{engagement, events, outbox};
use chrono::{DateTime, Utc};
use sqlx::Row;

impl Store {
    /// Unsubscribes a customer from all marketing mail at once, and records an
    /// `unsubscribed` event (so workflows can react to it) — in one transaction, and only
    /// once however often the link is used. The unsubscribe is credited to the email whose
    /// link was used (`delivery`), else to the customer's latest email.
    pub async fn unsubscribe(
        &self,
        customer_id: &str,
        source: &str,
        delivery: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Unsubscribed, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = unsubscribe_in(&mut tx, customer_id, source, at).await?;
        if done == Unsubscribed::Now {
            let kind = EngagementKind::Unsubscribe;
            engagement::credit(&mut tx, kind, customer_id, delivery, at).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Records a mail provider's bounce and complaint reports in one transaction: all of
    /// them, or — when the store fails half-way — none. A bounce suppresses the address; a
    /// complaint unsubscribes the customers with that address from marketing, or suppresses
    /// an address no customer has. Returns (addresses newly suppressed, customers newly
    /// unsubscribed).
    pub async fn record_reports(
        &self,
        reports: &[MailReport],
        at: DateTime<Utc>,
    ) -> Result<(usize, usize), StoreError> {
        let (mut suppressed, mut unsubscribed) = (0, 0);
        let mut tx = self.write_tx().await?;
        for r in reports {
            let customers = customers_with_email_in(&mut tx, &r.email).await?;
            if !r.complaint || customers.is_empty() {
                let new = outbox::suppress(&mut tx, &r.email, &r.reason, at).await?;
                suppressed += usize::from(new);
                for id in customers.iter().filter(|_| new && !r.complaint) {
                    let kind = EngagementKind::Bounce;
                    engagement::credit(&mut tx, kind, id, None, at).await?;
                }
                continue;
            }
            for id in customers {
                let done = unsubscribe_in(&mut tx, &id, &r.reason, at).await?;
                unsubscribed += usize::from(done == Unsubscribed::Now);
                if done == Unsubscribed::Now {
                    let kind = EngagementKind::Complaint;
                    engagement::credit(&mut tx, kind, &id, None, at).await?;
                }
            }
        }
        tx.commit().await?;
        Ok((suppressed, unsubscribed))
    }

    /// Forgets a customer: their record and everything tidings kept about them — events,
    /// journeys, emails and their bodies, coupons, and what they did with the emails —
    /// in one transaction. `false` when there is no such customer. Suppressions are
    /// addresses, not customers, and stay (a bounced address stays unmailable).
    pub async fn forget_customer(&self, customer_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM topic_optouts WHERE customer_id = $1",
            "DELETE FROM engagements WHERE customer_id = $1",
            "DELETE FROM conversions WHERE customer_id = $1",
            "DELETE FROM delivery_bodies WHERE delivery_id IN (SELECT id FROM deliveries WHERE customer_id = $1)",
            "DELETE FROM coupons WHERE customer_id = $1",
            "DELETE FROM orders WHERE customer_id = $1",
            "DELETE FROM deliveries WHERE customer_id = $1",
            "DELETE FROM enrollments WHERE customer_id = $1",
            "DELETE FROM events WHERE customer_id = $1",
        ] {
            super::sql::query(sql)
                .bind(customer_id)
                .execute(&mut *tx)
                .await?;
        }
        super::known::customers_written();
        let gone = super::sql::query("DELETE FROM customers WHERE id = $1")
            .bind(customer_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone == 1)
    }

    /// The ids of the customers with this address (compared without case).
    pub async fn customers_with_email(&self, email: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        customers_with_email_in(&mut conn, email).await
    }

    /// Why an address is on the suppression list, if it is.
    pub async fn suppression_reason(&self, email: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        super::suppressions::reason(&mut conn, email).await
    }

    /// Adds an address to the suppression list (a hard bounce, a 5xx): nothing more is
    /// sent to it. Returns whether it is new.
    pub async fn suppress(
        &self,
        email: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        outbox::suppress(&mut conn, email, reason, at).await
    }
}

/// One bounce or complaint from the mail provider, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailReport {
    pub email: String,
    pub complaint: bool,
    /// What is recorded: the kind, and the provider's reason when it gave one.
    pub reason: String,
}

pub(super) async fn unsubscribe_in(
    conn: &mut sqlx::AnyConnection,
    customer_id: &str,
    source: &str,
    at: DateTime<Utc>,
) -> Result<Unsubscribed, StoreError> {
    let changed = super::sql::query(
        "UPDATE customers SET unsubscribed_at = $1, updated_at = $1 WHERE id = $2 AND unsubscribed_at IS NULL",
    )
    .bind(at.timestamp_millis())
    .bind(customer_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        let known = super::sql::query("SELECT 1 FROM customers WHERE id = $1")
            .bind(customer_id)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        return Ok(if known {
            Unsubscribed::Already
        } else {
            Unsubscribed::NoSuchCustomer
        });
    }
    events::insert_event(
        conn,
        &format!("unsubscribed:{customer_id}:{}", at.timestamp_millis()),
        customer_id,
        crate::model::customer::UNSUBSCRIBED_EVENT,
        at,
        &serde_json::json!({ "source": source }),
    )
    .await?;
    Ok(Unsubscribed::Now)
}

pub(super) async fn customers_with_email_in(
    conn: &mut sqlx::AnyConnection,
    email: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = super::sql::query("SELECT id FROM customers WHERE LOWER(email) = $1 ORDER BY id")
        .bind(email.to_lowercase())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

/// What an unsubscribe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    Now,
    Already,
    NoSuchCustomer,
}
