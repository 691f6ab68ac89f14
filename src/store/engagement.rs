//! What comes back from sent emails: clicks, opens and survey answers through the public
//! endpoints, unsubscribes, bounces and complaints — each an `engagements` row credited to
//! the email (its workflow, step and enrollment) and, for clicks, opens and answers, an
//! event beside it in the same transaction, which workflows react to.

use super::events::{RaisedEvent, insert_events};
use super::{Store, StoreError, from_millis};
use crate::model::history::{Engaged, Engagement};
use crate::model::states::EngagementKind;
use crate::robots::{self, Seen};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;

use crate::model::customer::{
    EMAIL_CLICKED as CLICKED, EMAIL_OPENED as OPENED, SURVEY_ANSWERED as ANSWERED,
};

/// An email as the endpoints need it: whose, from which step, and when it left.
#[derive(Debug, Clone, PartialEq)]
pub struct SentEmail {
    pub delivery: String,
    pub customer_id: String,
    pub workflow: String,
    pub step: String,
    pub enrollment: String,
    pub locale: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// How a request reached an endpoint: its moment, its user agent, and (only when
/// `tracking.store_client` is on) what is kept of the client.
#[derive(Debug, Clone, Default)]
pub struct Visit {
    pub at: DateTime<Utc>,
    pub agent: Option<String>,
    /// The address and agent, kept only when configured.
    pub client: Option<String>,
}

/// One answer, as the answer page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub question: String,
    pub value: Value,
    pub comment: Option<String>,
}

impl Store {
    /// The email a token names; `None` when it is gone (its customer forgotten).
    pub async fn sent_email(&self, delivery: &str) -> Result<Option<SentEmail>, StoreError> {
        let row = super::sql::query(
            "SELECT d.id, d.customer_id, d.workflow, d.step, d.enrollment_id, d.sent_at, c.locale FROM deliveries d JOIN customers c ON c.id = d.customer_id WHERE d.id = $1",
        )
        .bind(delivery)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SentEmail {
                delivery: r.try_get(0)?,
                customer_id: r.try_get(1)?,
                workflow: r.try_get(2)?,
                step: r.try_get(3)?,
                enrollment: r.try_get(4)?,
                sent_at: from_millis(r.try_get(5)?),
                locale: r.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Records a click and its `email_clicked` event; returns whether it looked like a
    /// machine's. A burst over the email's links marks the burst's earlier clicks too.
    pub async fn record_click(
        &self,
        email: &SentEmail,
        url: &str,
        visit: &Visit,
        window: TimeDelta,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        self.hold_email(&mut tx, email).await?;
        let since = (visit.at - robots::BURST).timestamp_millis();
        let others: i64 = super::sql::query(
            "SELECT COUNT(DISTINCT detail) FROM engagements WHERE delivery_id = $1 AND kind = 'click' AND at >= $2 AND detail <> $3",
        )
        .bind(&email.delivery)
        .bind(since)
        .bind(url)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let seen = Seen {
            at: visit.at,
            agent: visit.agent.as_deref(),
            sent_at: email.sent_at,
            other_links_in_burst: usize::try_from(others).unwrap_or(0),
        };
        let machine = robots::is_machine(&seen, window);
        if seen.other_links_in_burst >= robots::BURST_LINKS {
            super::sql::query("UPDATE engagements SET machine = 1 WHERE delivery_id = $1 AND kind = 'click' AND at >= $2")
                .bind(&email.delivery)
                .bind(since)
                .execute(&mut *tx)
                .await?;
        }
        let properties = json!({ "url": url, "machine": machine });
        let row = Columns {
            kind: EngagementKind::Click,
            detail: Some(url),
            value: None,
            machine,
        };
        record(&mut tx, email, visit, CLICKED, properties, row, None).await?;
        super::wake::announce_in(self, &mut tx).await?;
        tx.commit().await?;
        super::wake::announce_after(self);
        Ok(machine)
    }

    /// Holds the email's row until the transaction ends, so that visits of one email are
    /// judged one after the other: on PostgreSQL, clicks fetched at once would otherwise
    /// each see none of the others and none would make a burst. (On SQLite the write
    /// transaction already holds the one write lock.)
    async fn hold_email(
        &self,
        tx: &mut AnyConnection,
        email: &SentEmail,
    ) -> Result<(), StoreError> {
        if self.backend == super::Backend::Postgres {
            super::sql::query("SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE")
                .bind(&email.delivery)
                .fetch_optional(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Records an open and its `email_opened` event; returns whether it looked automatic
    /// (an image proxy, or too soon after the email left).
    pub async fn record_open(
        &self,
        email: &SentEmail,
        visit: &Visit,
        window: TimeDelta,
    ) -> Result<bool, StoreError> {
        let seen = Seen {
            at: visit.at,
            agent: visit.agent.as_deref(),
            sent_at: email.sent_at,
            other_links_in_burst: 0,
        };
        let machine = robots::is_machine(&seen, window);
        let mut tx = self.write_tx().await?;
        let row = Columns {
            kind: EngagementKind::Open,
            detail: None,
            value: None,
            machine,
        };
        let properties = json!({ "machine": machine });
        record(&mut tx, email, visit, OPENED, properties, row, None).await?;
        super::wake::announce_in(self, &mut tx).await?;
        tx.commit().await?;
        super::wake::announce_after(self);
        Ok(machine)
    }

    /// Records an answer and its `survey_answered` event. One answer per email and
    /// question: a later, different one replaces the earlier (its comment stays).
    ///
    /// An answer follows the rules a click does: one that looks like a link scanner's
    /// (too soon after the email left, a scanner's agent, a burst of answers) is kept
    /// with `machine: true`, which converts, resumes and counts nothing. The same answer
    /// again (a reload, the back button, a scanner after the person) records nothing new
    /// and keeps its comment; a person's answer replaces a machine's. Returns whether
    /// this answer is the one kept now, as a person's.
    pub async fn record_answer(
        &self,
        email: &SentEmail,
        question: &str,
        value: &Value,
        visit: &Visit,
        window: TimeDelta,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        self.hold_email(&mut tx, email).await?;
        let id = answer_id(&email.delivery, question);
        let kept = super::sql::query("SELECT value, machine FROM engagements WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
        let kept: Option<(Option<String>, bool)> = match kept {
            Some(r) => Some((r.try_get(0)?, r.try_get::<i64, _>(1)? != 0)),
            None => None,
        };
        let since = (visit.at - robots::BURST).timestamp_millis();
        let burst: i64 = super::sql::query(
            "SELECT COUNT(*) FROM events WHERE customer_id = $1 AND name = $2 AND at >= $3",
        )
        .bind(&email.customer_id)
        .bind(ANSWERED)
        .bind(since)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let seen = Seen {
            at: visit.at,
            agent: visit.agent.as_deref(),
            sent_at: email.sent_at,
            other_links_in_burst: usize::try_from(burst).unwrap_or(0),
        };
        let machine = robots::is_machine(&seen, window);
        let text = value.to_string();
        let unchanged = match &kept {
            // A person's answer stands against a machine's fetch, and against itself.
            Some((_, false)) if machine => true,
            Some((v, was_machine)) => {
                v.as_deref() == Some(text.as_str()) && *was_machine == machine
            }
            None => false,
        };
        if unchanged {
            return Ok(false);
        }
        let properties = json!({ "question": question, "value": value, "machine": machine });
        let row = Columns {
            kind: EngagementKind::Answer,
            detail: Some(question),
            value: Some(text),
            machine,
        };
        record(&mut tx, email, visit, ANSWERED, properties, row, Some(&id)).await?;
        super::wake::announce_in(self, &mut tx).await?;
        tx.commit().await?;
        super::wake::announce_after(self);
        Ok(!machine)
    }

    /// Adds a comment to an email's answer to a question; `false` when there is no answer.
    pub async fn comment_answer(
        &self,
        email: &SentEmail,
        question: &str,
        comment: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let n = super::sql::query("UPDATE engagements SET comment = $1 WHERE id = $2")
            .bind(comment)
            .bind(answer_id(&email.delivery, question))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// An email's answer to a question, if given.
    pub async fn answer(
        &self,
        delivery: &str,
        question: &str,
    ) -> Result<Option<Answered>, StoreError> {
        let row = super::sql::query("SELECT detail, value, comment FROM engagements WHERE id = $1")
            .bind(answer_id(delivery, question))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let value: Option<String> = r.try_get(1)?;
            Ok(Answered {
                question: r.try_get(0)?,
                value: value
                    .and_then(|v| serde_json::from_str(&v).ok())
                    .unwrap_or(Value::Null),
                comment: r.try_get(2)?,
            })
        })
        .transpose()
    }
}

fn answer_id(delivery: &str, question: &str) -> String {
    format!("answer\n{delivery}\n{question}")
}

/// The engagement row's own columns.
struct Columns<'a> {
    kind: EngagementKind,
    detail: Option<&'a str>,
    value: Option<String>,
    machine: bool,
}

/// The event and the engagement row, in the caller's transaction.
async fn record(
    conn: &mut AnyConnection,
    email: &SentEmail,
    visit: &Visit,
    name: &str,
    mut properties: Value,
    row: Columns<'_>,
    id: Option<&str>,
) -> Result<(), StoreError> {
    let event_id = super::events::fresh_event_id()?;
    if let Value::Object(map) = &mut properties {
        map.insert("workflow".into(), email.workflow.clone().into());
        map.insert("step".into(), email.step.clone().into());
        map.insert("delivery".into(), email.delivery.clone().into());
        map.entry("variant").or_insert(Value::Null);
    }
    let event = RaisedEvent {
        id: event_id.clone(),
        customer_id: &email.customer_id,
        name,
        at: visit.at,
        properties: properties.to_string(),
    };
    insert_events(conn, &[event]).await?;
    insert(conn, id.unwrap_or(&event_id), email, row, visit).await
}

/// Writes an engagement row (replacing one with the same id: a later answer).
async fn insert(
    conn: &mut AnyConnection,
    id: &str,
    email: &SentEmail,
    row: Columns<'_>,
    visit: &Visit,
) -> Result<(), StoreError> {
    super::sql::query("INSERT INTO engagements (id, kind, delivery_id, enrollment_id, workflow, step, customer_id, detail, value, machine, at, client) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO UPDATE SET value = excluded.value, at = excluded.at, client = excluded.client, machine = excluded.machine")
        .bind(id)
        .bind(row.kind.as_str())
        .bind(&email.delivery)
        .bind(&email.enrollment)
        .bind(&email.workflow)
        .bind(&email.step)
        .bind(&email.customer_id)
        .bind(row.detail)
        .bind(row.value)
        .bind(i64::from(row.machine))
        .bind(visit.at.timestamp_millis())
        .bind(visit.client.clone())
        .execute(conn)
        .await?;
    Ok(())
}

/// Credits an unsubscribe, bounce or complaint to an email: the one a link was in, or the
/// customer's latest sent one (a report names an address, not an email).
pub(super) async fn credit(
    conn: &mut AnyConnection,
    kind: EngagementKind,
    customer_id: &str,
    delivery: Option<&str>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let query = match delivery {
        Some(id) => super::sql::query("SELECT id, customer_id, workflow, step, enrollment_id FROM deliveries WHERE id = $1 AND customer_id = $2").bind(id),
        None => super::sql::query("SELECT id, customer_id, workflow, step, enrollment_id FROM deliveries WHERE customer_id = $1 AND channel = 'email' AND state = 'sent' ORDER BY sent_at DESC, id LIMIT 1"),
    };
    let row = query.bind(customer_id).fetch_optional(&mut *conn).await?;
    let Some(r) = row else {
        return Ok(());
    };
    let email = SentEmail {
        delivery: r.try_get(0)?,
        customer_id: r.try_get(1)?,
        workflow: r.try_get(2)?,
        step: r.try_get(3)?,
        enrollment: r.try_get(4)?,
        locale: None,
        sent_at: None,
    };
    let id = format!("{}\n{}", kind.as_str(), email.delivery);
    let row = Columns {
        kind,
        detail: None,
        value: None,
        machine: false,
    };
    let visit = Visit {
        at,
        ..Visit::default()
    };
    insert(conn, &id, &email, row, &visit).await
}

/// What one customer did — their events by name (`event_count`) and what they did with
/// their emails (`clicked`, `opened`, `answer`, `redeemed`) — as read for a page of
/// customers: each row with its moment, so that every journey of the page sees its past up
/// to its own moment.
#[derive(Debug, Default)]
pub struct Past {
    /// Events by name and moment, oldest first.
    events: Vec<(String, i64)>,
    /// A person's clicks, opens and answers, oldest first.
    engaged: Vec<EngagedAt>,
    /// Redeemed coupons' emails, with when they were redeemed.
    redeemed: Vec<(Engaged, i64)>,
}

/// A click, open or answer of a customer's past, with its moment.
#[derive(Debug)]
struct EngagedAt {
    kind: EngagementKind,
    engaged: Engaged,
    /// An answer's question and value (JSON).
    question: Option<String>,
    value: Option<String>,
    at: i64,
}

impl Past {
    /// The history an expression reads at `until`.
    pub fn until(&self, until: DateTime<Utc>) -> crate::model::history::EventHistory {
        let until = until.timestamp_millis();
        let mut by_name: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
        for (name, at) in self.events.iter().filter(|(_, at)| *at <= until) {
            if let Some(at) = from_millis(Some(*at)) {
                by_name.entry(name.clone()).or_default().push(at);
            }
        }
        let mut out = Engagement::default();
        for e in self.engaged.iter().filter(|e| e.at <= until) {
            if e.kind == EngagementKind::Answer {
                if let (Some(q), Some(v)) = (&e.question, &e.value) {
                    let v = serde_json::from_str(v).unwrap_or(Value::Null);
                    out.answers.insert(q.clone(), v);
                }
                continue;
            }
            out.engaged.push(e.engaged.clone());
        }
        out.redeemed = (self.redeemed.iter())
            .filter(|(_, at)| *at <= until)
            .map(|(e, _)| e.clone())
            .collect();
        crate::model::history::EventHistory(by_name, out)
    }
}

/// The pasts of a page of customers up to `until` (the latest moment any of them is read
/// at), in three statements per few hundred customers — not three per customer.
pub async fn pasts(
    conn: &mut AnyConnection,
    ids: &[&str],
    until: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, Past>, StoreError> {
    let mut pasts: std::collections::HashMap<String, Past> = Default::default();
    let lead = [super::Lead::Millis(until.timestamp_millis())];
    for r in super::fetch_in(conn, PAST_EVENTS_SQL, &lead, ids).await? {
        let past = pasts.entry(r.try_get(0)?).or_default();
        past.events.push((r.try_get(1)?, r.try_get(2)?));
    }
    for r in super::fetch_in(conn, ENGAGED_SQL, &lead, ids).await? {
        let kind: EngagementKind = r.try_get::<String, _>(1)?.parse()?;
        let engaged = Engaged {
            click: kind == EngagementKind::Click,
            workflow: r.try_get(2)?,
            step: r.try_get(3)?,
            enrollment: r.try_get(4)?,
        };
        let row = EngagedAt {
            kind,
            engaged,
            question: r.try_get(5)?,
            value: r.try_get(6)?,
            at: r.try_get(7)?,
        };
        pasts.entry(r.try_get(0)?).or_default().engaged.push(row);
    }
    for r in super::fetch_in(conn, REDEEMED_SQL, &lead, ids).await? {
        let engaged = Engaged {
            click: false,
            workflow: r.try_get(1)?,
            step: r.try_get(2)?,
            enrollment: r.try_get(3)?,
        };
        let row = (engaged, r.try_get(4)?);
        pasts.entry(r.try_get(0)?).or_default().redeemed.push(row);
    }
    Ok(pasts)
}

/// A page of customers' events up to a moment.
pub const PAST_EVENTS_SQL: &str = "SELECT customer_id, name, at FROM events WHERE at <= $1 AND customer_id IN ({list}) ORDER BY at";

/// A page of customers' clicks, opens and answers (a person's, not a scanner's).
pub const ENGAGED_SQL: &str = "SELECT customer_id, kind, workflow, step, enrollment_id, detail, value, at FROM engagements WHERE machine = 0 AND at <= $1 AND kind IN ('click', 'open', 'answer') AND customer_id IN ({list}) ORDER BY at, id";

/// A page of customers' coupons redeemed by a moment, with the emails that gave them:
/// read with every history, so it must find them by the customer
/// (`coupons_redeemed_by_customer`).
pub const REDEEMED_SQL: &str = "SELECT c.customer_id, d.workflow, d.step, d.enrollment_id, c.redeemed_at FROM coupons c JOIN deliveries d ON d.id = c.delivery_id WHERE c.redeemed_at IS NOT NULL AND c.redeemed_at <= $1 AND c.customer_id IN ({list})";

/// Unique emails per workflow, step and kind that a person engaged with (machine clicks
/// and opens left out), and every answer's value by question.
pub async fn counts(
    conn: &mut AnyConnection,
) -> Result<
    (
        BTreeMap<(String, String, EngagementKind), u64>,
        Vec<(String, Value)>,
    ),
    StoreError,
> {
    let rows = super::sql::query("SELECT workflow, step, kind, COUNT(DISTINCT delivery_id) FROM engagements WHERE machine = 0 AND kind <> 'answer' GROUP BY workflow, step, kind")
        .fetch_all(&mut *conn)
        .await?;
    let mut counts = BTreeMap::new();
    for r in rows {
        let kind: EngagementKind = r.try_get::<String, _>(2)?.parse()?;
        let n: i64 = r.try_get(3)?;
        counts.insert((r.try_get(0)?, r.try_get(1)?, kind), n.max(0) as u64);
    }
    let rows = super::sql::query("SELECT workflow, step, detail, value FROM engagements WHERE kind = 'answer' AND machine = 0 ORDER BY detail")
        .fetch_all(&mut *conn)
        .await?;
    let mut answers = Vec::new();
    for r in rows {
        let (workflow, step): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        *counts
            .entry((workflow, step, EngagementKind::Answer))
            .or_default() += 1;
        let question: Option<String> = r.try_get(2)?;
        let value: Option<String> = r.try_get(3)?;
        if let (Some(q), Some(v)) = (question, value) {
            answers.push((q, serde_json::from_str(&v).unwrap_or(Value::Null)));
        }
    }
    Ok((counts, answers))
}
