//! The customer record and the event record, as the store holds them and as expressions and
//! templates see them.
//!
//! [`FIELDS`] is the one description of the customer's fixed fields: the validator, the
//! importer, the store's upsert, an event's `set:`, the Rhai getters and the audience
//! pushdown all read it (Tera sees the record through serde).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// What a customer field holds: how the importer reads it, the store binds it, Rhai and
/// the audience pushdown compare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// The customer's key.
    Id,
    /// Their address.
    Email,
    /// Free text, or none.
    Text,
    /// A BCP 47 language tag, or none.
    Locale,
    /// An IANA time zone, or none.
    Zone,
    /// A calendar date (`YYYY-MM-DD`), or none.
    Date,
    /// An instant (RFC 3339), or none.
    Time,
    /// A whole number, 0 or more.
    Count,
    /// An amount of money.
    Amount,
    /// Tags.
    Tags,
    /// Everything else the shop sends, as JSON.
    Attributes,
}

/// A field's value as read from a customer.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Text(Option<&'a str>),
    Date(Option<NaiveDate>),
    Time(Option<DateTime<Utc>>),
    Count(i64),
    Amount(f64),
    Tags(&'a [String]),
    Attributes(&'a Map<String, Value>),
}

/// A field's new value, handed to a customer (of the field's kind).
#[derive(Debug, Clone, PartialEq)]
pub enum NewValue {
    Text(Option<String>),
    Date(Option<NaiveDate>),
    Time(Option<DateTime<Utc>>),
    Count(i64),
    Amount(f64),
    Tags(Vec<String>),
    Attributes(Map<String, Value>),
}

/// One fixed field of the customer: the one description every stage reads. A new field is a
/// member of [`Customer`], a line here, and a column in the store's migrations.
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Whether an event's `set:` may change it (the id, the address, consent and the
    /// attributes map are changed otherwise).
    pub set_by_events: bool,
    pub get: for<'a> fn(&'a Customer) -> FieldValue<'a>,
    /// Sets the field from a value of its kind (another kind changes nothing).
    pub set: fn(&mut Customer, NewValue),
}

/// The customer's fixed fields, in the order the store and the CSV header use.
pub const FIELDS: &[Field] = &[
    Field {
        name: "id",
        kind: FieldKind::Id,
        set_by_events: false,
        get: |c| FieldValue::Text(Some(&c.id)),
        set: |c, v| {
            if let NewValue::Text(Some(t)) = v {
                c.id = t;
            }
        },
    },
    Field {
        name: "email",
        kind: FieldKind::Email,
        set_by_events: false,
        get: |c| FieldValue::Text(Some(&c.email)),
        set: |c, v| {
            if let NewValue::Text(Some(t)) = v {
                c.email = t;
            }
        },
    },
    Field {
        name: "first_name",
        kind: FieldKind::Text,
        set_by_events: true,
        get: |c| FieldValue::Text(c.first_name.as_deref()),
        set: |c, v| {
            if let NewValue::Text(t) = v {
                c.first_name = t;
            }
        },
    },
    Field {
        name: "last_name",
        kind: FieldKind::Text,
        set_by_events: true,
        get: |c| FieldValue::Text(c.last_name.as_deref()),
        set: |c, v| {
            if let NewValue::Text(t) = v {
                c.last_name = t;
            }
        },
    },
    Field {
        name: "locale",
        kind: FieldKind::Locale,
        set_by_events: true,
        get: |c| FieldValue::Text(c.locale.as_deref()),
        set: |c, v| {
            if let NewValue::Text(t) = v {
                c.locale = t;
            }
        },
    },
    Field {
        name: "timezone",
        kind: FieldKind::Zone,
        set_by_events: true,
        get: |c| FieldValue::Text(c.timezone.as_deref()),
        set: |c, v| {
            if let NewValue::Text(t) = v {
                c.timezone = t;
            }
        },
    },
    Field {
        name: "birthday",
        kind: FieldKind::Date,
        set_by_events: true,
        get: |c| FieldValue::Date(c.birthday),
        set: |c, v| {
            if let NewValue::Date(d) = v {
                c.birthday = d;
            }
        },
    },
    Field {
        name: "created_at",
        kind: FieldKind::Time,
        set_by_events: true,
        get: |c| FieldValue::Time(c.created_at),
        set: |c, v| {
            if let NewValue::Time(t) = v {
                c.created_at = t;
            }
        },
    },
    Field {
        name: "last_order_at",
        kind: FieldKind::Time,
        set_by_events: true,
        get: |c| FieldValue::Time(c.last_order_at),
        set: |c, v| {
            if let NewValue::Time(t) = v {
                c.last_order_at = t;
            }
        },
    },
    Field {
        name: "first_order_at",
        kind: FieldKind::Time,
        set_by_events: true,
        get: |c| FieldValue::Time(c.first_order_at),
        set: |c, v| {
            if let NewValue::Time(t) = v {
                c.first_order_at = t;
            }
        },
    },
    Field {
        name: "orders_count",
        kind: FieldKind::Count,
        set_by_events: true,
        get: |c| FieldValue::Count(c.orders_count),
        set: |c, v| {
            if let NewValue::Count(n) = v {
                c.orders_count = n;
            }
        },
    },
    Field {
        name: "total_spent",
        kind: FieldKind::Amount,
        set_by_events: true,
        get: |c| FieldValue::Amount(c.total_spent),
        set: |c, v| {
            if let NewValue::Amount(n) = v {
                c.total_spent = n;
            }
        },
    },
    Field {
        name: "tags",
        kind: FieldKind::Tags,
        set_by_events: true,
        get: |c| FieldValue::Tags(&c.tags),
        set: |c, v| {
            if let NewValue::Tags(t) = v {
                c.tags = t;
            }
        },
    },
    Field {
        name: "unsubscribed_at",
        kind: FieldKind::Time,
        set_by_events: false,
        get: |c| FieldValue::Time(c.unsubscribed_at),
        set: |c, v| {
            if let NewValue::Time(t) = v {
                c.unsubscribed_at = t;
            }
        },
    },
    Field {
        name: "attributes",
        kind: FieldKind::Attributes,
        set_by_events: false,
        get: |c| FieldValue::Attributes(&c.attributes),
        set: |c, v| {
            if let NewValue::Attributes(m) = v {
                c.attributes = m;
            }
        },
    },
];

/// The fixed field of this name.
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The fixed fields' names, in the order of [`FIELDS`].
pub const CUSTOMER_FIELDS: &[&str] = &{
    let mut out = [""; FIELDS.len()];
    let mut i = 0;
    while i < FIELDS.len() {
        out[i] = FIELDS[i].name;
        i += 1;
    }
    out
};

const fn is_dated(kind: FieldKind) -> bool {
    matches!(kind, FieldKind::Date | FieldKind::Time)
}

const DATED: usize = {
    let (mut n, mut i) = (0, 0);
    while i < FIELDS.len() {
        if is_dated(FIELDS[i].kind) && FIELDS[i].set_by_events {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The fields that hold a date or a time a `date:` trigger may name (consent's own time
/// aside).
pub const DATE_FIELDS: &[&str] = &{
    let mut out = [""; DATED];
    let (mut n, mut i) = (0, 0);
    while i < FIELDS.len() {
        if is_dated(FIELDS[i].kind) && FIELDS[i].set_by_events {
            out[n] = FIELDS[i].name;
            n += 1;
        }
        i += 1;
    }
    out
};

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
    super::order::ORDER_PLACED,
    super::order::ORDER_CANCELLED,
    super::order::ORDER_REFUNDED,
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
    /// Derived from the orders the store keeps (as are the two below), unless the shop
    /// sets them itself and keeps no orders here.
    pub first_order_at: Option<DateTime<Utc>>,
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
            first_order_at: None,
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
            first_order_at: Some(now - chrono::TimeDelta::days(380)),
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
        properties.insert("currency".into(), Value::from("EUR"));
        properties.insert(
            "lines".into(),
            serde_json::json!([{"sku": "TEA-1", "name": "Sencha", "quantity": 2, "price": 29.95}]),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each line of the description reads and writes its own member: a value set through a
    /// field comes back through it, and changes no other field.
    #[test]
    fn every_field_reads_what_it_writes() {
        let now = DateTime::parse_from_rfc3339("2026-06-01T09:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let sample = Customer::sample(now);
        for f in FIELDS {
            let value = match f.kind {
                FieldKind::Id | FieldKind::Email | FieldKind::Text => {
                    NewValue::Text(Some(format!("new-{}", f.name)))
                }
                FieldKind::Locale => NewValue::Text(Some("pt-BR".into())),
                FieldKind::Zone => NewValue::Text(Some("America/Sao_Paulo".into())),
                FieldKind::Date => NaiveDate::from_ymd_opt(1990, 2, 3)
                    .map(Some)
                    .map(NewValue::Date)
                    .unwrap(),
                FieldKind::Time => NewValue::Time(Some(now - chrono::TimeDelta::days(3))),
                FieldKind::Count => NewValue::Count(42),
                FieldKind::Amount => NewValue::Amount(12.5),
                FieldKind::Tags => NewValue::Tags(vec!["x".into()]),
                FieldKind::Attributes => {
                    let mut m = Map::new();
                    m.insert("k".into(), Value::from(1));
                    NewValue::Attributes(m)
                }
            };
            let mut c = sample.clone();
            (f.set)(&mut c, value.clone());
            let back = match (f.get)(&c) {
                FieldValue::Text(t) => NewValue::Text(t.map(str::to_string)),
                FieldValue::Date(d) => NewValue::Date(d),
                FieldValue::Time(t) => NewValue::Time(t),
                FieldValue::Count(n) => NewValue::Count(n),
                FieldValue::Amount(n) => NewValue::Amount(n),
                FieldValue::Tags(t) => NewValue::Tags(t.to_vec()),
                FieldValue::Attributes(m) => NewValue::Attributes(m.clone()),
            };
            assert_eq!(back, value, "{}", f.name);
            for other in FIELDS.iter().filter(|o| o.name != f.name) {
                assert_eq!(
                    (other.get)(&c),
                    (other.get)(&sample),
                    "{} changed {}",
                    f.name,
                    other.name
                );
            }
        }
        assert_eq!(
            DATE_FIELDS,
            ["birthday", "created_at", "last_order_at", "first_order_at"]
        );
        assert_eq!(CUSTOMER_FIELDS.len(), FIELDS.len());
        assert_eq!(CUSTOMER_FIELDS[8], "last_order_at");
    }
}
