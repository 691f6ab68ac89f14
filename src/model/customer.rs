//! The customer record and the event record, as the store holds them and as expressions and
//! templates see them.
//!
//! The field lists here are the single source of truth for "does `customer.x` exist": the
//! validator, the Rhai getters, the Tera context and the CSV importer all read them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Fixed customer columns, in the order the store and the CSV header use.
pub const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "email",
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "birthday",
    "created_at",
    "last_order_at",
    "orders_count",
    "total_spent",
    "tags",
    "unsubscribed_at",
    "attributes",
];

/// Customer columns that hold a date or a timestamp (what a `date:` trigger may name).
pub const DATE_FIELDS: &[&str] = &["birthday", "created_at", "last_order_at"];

/// The event that unsubscribes its customer from marketing mail when processed (what the
/// unsubscribe endpoint records, and what a simulation timeline can carry).
pub const UNSUBSCRIBED_EVENT: &str = "unsubscribed";

/// The event a change of stage records, with `from` and `to` in its properties.
pub const STAGE_ENTERED: &str = "stage_entered";

/// The events tidings records itself, which workflows may trigger on or wait for.
pub const RAISED_EVENTS: &[&str] = &[
    UNSUBSCRIBED_EVENT,
    STAGE_ENTERED,
    EMAIL_CLICKED,
    EMAIL_OPENED,
    SURVEY_ANSWERED,
];

/// A person (or a link scanner: `machine: true`) followed a tracked link.
pub const EMAIL_CLICKED: &str = "email_clicked";
/// An email's open pixel was fetched.
pub const EMAIL_OPENED: &str = "email_opened";
/// A survey answer link was followed.
pub const SURVEY_ANSWERED: &str = "survey_answered";

/// What an event carries.
pub const EVENT_FIELDS: &[&str] = &["id", "name", "at", "properties"];

/// What an enrollment exposes to `exit_when` and `if`.
pub const ENROLLMENT_FIELDS: &[&str] = &[
    "id",
    "workflow",
    "entered_at",
    "step",
    "orders_count_at_entry",
    "total_spent_at_entry",
];

/// A coupon attached to an email step.
pub const COUPON_FIELDS: &[&str] = &["code", "expires_at"];

/// The workflow, as templates see it.
pub const WORKFLOW_FIELDS: &[&str] = &["name", "description"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub birthday: Option<NaiveDate>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_order_at: Option<DateTime<Utc>>,
    pub orders_count: i64,
    pub total_spent: f64,
    pub tags: Vec<String>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub attributes: Map<String, Value>,
}

impl Customer {
    /// A customer with only an id and an address; every other field is empty.
    pub fn new(id: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            email: email.into(),
            first_name: None,
            last_name: None,
            locale: None,
            timezone: None,
            birthday: None,
            created_at: None,
            last_order_at: None,
            orders_count: 0,
            total_spent: 0.0,
            tags: Vec::new(),
            unsubscribed_at: None,
            attributes: Map::new(),
        }
    }

    /// A customer with every field filled in, for validation trial runs and `preview --sample`.
    pub fn sample(now: DateTime<Utc>) -> Self {
        let mut attributes = Map::new();
        attributes.insert("loyalty_tier".into(), Value::from("gold"));
        Self {
            id: "sample-1".into(),
            email: "ada@example.com".into(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            locale: Some("en-GB".into()),
            timezone: Some("Europe/London".into()),
            birthday: NaiveDate::from_ymd_opt(1990, 12, 10),
            created_at: Some(now - chrono::TimeDelta::days(400)),
            last_order_at: Some(now - chrono::TimeDelta::days(120)),
            orders_count: 3,
            total_spent: 149.5,
            tags: vec!["newsletter".into()],
            unsubscribed_at: None,
            attributes,
        }
    }

    /// A customer with only what every customer has (an id and an address): what a
    /// template must also render for.
    pub fn bare() -> Self {
        Self::new("sample-2", "someone@example.com")
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// Something a customer did, as ingested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub properties: Map<String, Value>,
    /// When tidings accepted it (not shown to templates): where the latency of the email
    /// it triggers is measured from.
    #[serde(skip)]
    pub recorded_at: Option<DateTime<Utc>>,
}

impl Event {
    /// Whether a link scanner or an image proxy caused it (`properties.machine`, as the
    /// click, open and answer endpoints record it): such an event starts, resumes and
    /// converts nothing.
    pub fn by_machine(&self) -> bool {
        self.properties.get("machine") == Some(&Value::Bool(true))
    }

    pub fn sample(name: &str, now: DateTime<Utc>) -> Self {
        let mut properties = Map::new();
        properties.insert("order_id".into(), Value::from("1001"));
        properties.insert("total".into(), Value::from(59.9));
        Self {
            id: "sample-event".into(),
            name: name.to_string(),
            at: now,
            properties,
            recorded_at: None,
        }
    }
}

/// What `exit_when` and `if` know about the enrollment they run in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enrollment {
    pub id: String,
    pub workflow: String,
    pub entered_at: DateTime<Utc>,
    pub step: Option<String>,
    pub orders_count_at_entry: i64,
    pub total_spent_at_entry: f64,
}

impl Enrollment {
    pub fn sample(workflow: &str, customer: &Customer, now: DateTime<Utc>) -> Self {
        Self {
            id: "sample-enrollment".into(),
            workflow: workflow.to_string(),
            entered_at: now,
            step: None,
            orders_count_at_entry: customer.orders_count,
            total_spent_at_entry: customer.total_spent,
        }
    }
}
