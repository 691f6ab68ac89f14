//! The workflow file as written: serde structs and nothing else.
//!
//! Every check and every conversion happens in `compile`, which turns these into a
//! `Plan`. Strings that need parsing (cron lines, durations, zones, Rhai, templates) stay
//! strings here so that the compiler can report all of their problems in one pass, each at
//! its own position, instead of stopping at the first one serde meets.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One file in `workflows/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct WorkflowFile {
    /// `name: reactivation-deal` — lowercase letters, digits and dashes; matches the file name.
    pub name: String,
    /// `description: Win back customers who have not ordered in 90 days.`
    #[serde(default)]
    pub description: Option<String>,
    /// `enabled: false` keeps the workflow validated but never run. Default `true`.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `class: transactional` exempts the workflow from caps, quiet hours and the
    /// unsubscribe rule. Default `marketing`.
    #[serde(default)]
    pub class: MailClass,
    /// Exactly one of `schedule:`, `event:` or `date:`.
    pub trigger: Trigger,
    /// `audience: customer.orders_count >= 1` — a Rhai expression; absent means everyone.
    #[serde(default)]
    pub audience: Option<String>,
    /// `reentry: never` (default), `always`, or `{ after: 180d }`.
    #[serde(default)]
    pub reentry: Reentry,
    /// `exit_when: days_since(customer.last_order_at) < 1` — the goal, checked before
    /// every step; meeting it ends the enrollment as converted.
    #[serde(default)]
    pub exit_when: Option<String>,
    /// `delivery: at_most_once` for promotions whose duplicate costs more than a loss.
    /// Default `at_least_once`.
    #[serde(default)]
    pub delivery: DeliveryMode,
    /// `catch_up: skip` drops fire times missed while no daemon ran. Default `run_once`.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// `tracking: { clicks: false, opens: true, utm: { campaign: spring } }` — overrides
    /// the project's `tracking:` for this workflow's emails.
    #[serde(default)]
    pub tracking: crate::config::WorkflowTracking,
    /// `topic: offers` — the kind of mail (of `topics:` in tidings.yaml) a customer can opt
    /// out of without leaving the rest.
    #[serde(default)]
    pub topic: Option<String>,
    /// `holdout: 10%` — that share of those who enter get nothing and are the control.
    #[serde(default)]
    pub holdout: Option<String>,
    /// `goal: { event: order_placed, within: 7d, value: event.properties.total }` — a
    /// conversion (and its revenue) credited to this workflow's latest email before it.
    #[serde(default)]
    pub goal: Option<Goal>,
    /// The journey, in order.
    pub steps: Vec<Step>,
    /// Behaviour tests for this workflow (see `tidings test`).
    #[serde(default)]
    pub tests: Option<yaml_serde::Value>,
}

/// A workflow's class and delivery mode are the store's vocabulary too (a delivery row
/// carries them); the YAML reads them from there.
pub use crate::model::states::{DeliveryMode, MailClass};

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    #[default]
    RunOnce,
    Skip,
}

/// When customers enter. The compiler checks that exactly one kind is given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Trigger {
    /// `schedule: "0 10 * * MON"` — standard 5-field cron (6 or 7 fields with seconds
    /// and year also accepted), or `@daily`, `@weekly`, `@monthly`, `@yearly`, `@hourly`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// `timezone: Europe/Berlin` for a schedule, or `customer` for each customer's own zone.
    /// Default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `event: order_delivered` — each such event enrolls its customer.
    #[serde(default)]
    pub event: Option<String>,
    /// `stage_entered: lapsed` — each move into this lifecycle stage enrolls the customer
    /// (the `stage_entered` event whose `to` is that stage).
    #[serde(default)]
    pub stage_entered: Option<String>,
    /// `date: birthday` — a date column; fires yearly on its anniversary.
    #[serde(default)]
    pub date: Option<String>,
    /// `at: "09:00"` — the customer's local time for a date trigger. Default `09:00`.
    #[serde(default)]
    pub at: Option<String>,
    /// `offset: -3d` — fire this long before (negative) or after the anniversary.
    #[serde(default)]
    pub offset: Option<String>,
}

/// `never`, `always`, or `{ after: 180d }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reentry {
    #[default]
    Never,
    Always,
    After(String),
}

impl<'de> Deserialize<'de> for Reentry {
    /// Read by a visitor, not an untagged enum: serde's untagged enums buffer the value
    /// and lose its place in the file, so a mistake would be reported at 1:1.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        const EXPECTED: &str = "`never`, `always`, or `{ after: DURATION }`";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Reentry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Reentry, E> {
                match v {
                    "never" => Ok(Reentry::Never),
                    "always" => Ok(Reentry::Always),
                    other => Err(E::custom(format!(
                        "invalid value `{other}`: expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Reentry, A::Error> {
                let mut after = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "after" if after.is_none() => after = Some(map.next_value::<String>()?),
                        _ => {
                            return Err(serde::de::Error::custom(format!(
                                "unknown key `{key}`: expected {EXPECTED}"
                            )));
                        }
                    }
                }
                after
                    .map(Reentry::After)
                    .ok_or_else(|| serde::de::Error::custom(format!("expected {EXPECTED}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One step of the journey. Exactly one of `email`, `wait`, `if`, `webhook`, `update`,
/// `exit` is given; the compiler checks it and the modifiers that go with it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Step {
    /// `id: deal` — a stable name; enrollments remember it, so an edited workflow resumes
    /// where each customer was.
    #[serde(default)]
    pub id: Option<String>,

    /// `email: reactivation/deal` — `templates/reactivation/deal.html`, with an optional
    /// `deal.txt`, and locale variants such as `deal.ja.html`.
    #[serde(default)]
    pub email: Option<String>,
    /// `subject: "Hi {{ customer.first_name }}"`, or a map by locale with a `default`.
    #[serde(default)]
    pub subject: Option<Subject>,
    /// `coupon: { prefix: COMEBACK, valid_for: 14d }` — a unique code per recipient.
    #[serde(default)]
    pub coupon: Option<Coupon>,
    /// `when_capped: skip` — what to do when the frequency cap is reached. Default `wait`.
    #[serde(default)]
    pub when_capped: Option<Deferral>,
    /// `in_quiet_hours: skip` — what to do during quiet hours. Default `wait`.
    #[serde(default)]
    pub in_quiet_hours: Option<Deferral>,

    /// `wait: 7d`, or `wait: { until: "09:00" }` for a local time of day.
    #[serde(default)]
    pub wait: Option<Wait>,

    /// `if: customer.orders_count == 0` — a Rhai condition, with `then:` and `else:`.
    #[serde(default, rename = "if")]
    pub if_: Option<String>,
    #[serde(default)]
    pub then: Option<Vec<Step>>,
    #[serde(default, rename = "else")]
    pub else_: Option<Vec<Step>>,

    /// `webhook: { url: "${CRM_URL}/hooks", method: POST, json: { id: "{{ customer.id }}" } }`
    #[serde(default)]
    pub webhook: Option<Webhook>,

    /// `update: { set: { vip: true }, tags: { add: [winback], remove: [lapsed] } }`
    #[serde(default)]
    pub update: Option<Update>,

    /// `exit: reviewed` — end the enrollment here, with this reason.
    #[serde(default)]
    pub exit: Option<String>,

    /// `split: { name, variants: [{ name, weight, steps }] }` — an experiment.
    #[serde(default)]
    pub split: Option<Split>,
}

/// `goal:` on a workflow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Goal {
    /// The event that converts: `order_placed`.
    pub event: String,
    /// How long after the email (or, for the holdout, the entry) it still counts: `7d`.
    pub within: String,
    /// A Rhai expression for the revenue: `event.properties.total` (none: 0).
    #[serde(default)]
    pub value: Option<String>,
}

/// `split:` — customers sent down named branches by weight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Split {
    pub name: String,
    pub variants: Vec<Variant>,
}

/// One branch of a split.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Variant {
    pub name: String,
    /// Relative: weights 1 and 3 send a quarter and three quarters.
    pub weight: f64,
    pub steps: Vec<Step>,
}

/// A subject line, the same for everyone or chosen by locale.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Subject {
    One(String),
    /// `{ default: "Happy birthday", ja: "お誕生日おめでとう" }`
    ByLocale(BTreeMap<String, String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Coupon {
    /// `prefix: BDAY` — codes look like `BDAY-7KQ2-M9XD`.
    pub prefix: String,
    /// `valid_for: 14d` — the code's lifetime from the send.
    pub valid_for: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deferral {
    Wait,
    Skip,
}

/// `7d`, or `{ until: "09:00" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    For(String),
    Until(String),
    /// `{ for: email_clicked, at_most: 3d }`: until the event comes or the time runs out.
    ForEvent {
        event: String,
        at_most: String,
    },
}

impl<'de> Deserialize<'de> for Wait {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Until {
            until: String,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ForEvent {
            #[serde(rename = "for")]
            event: String,
            at_most: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            For(String),
            Until(Until),
            ForEvent(ForEvent),
        }
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "invalid value: expected a duration such as `7d`, `{ until: \"09:00\" }` or `{ for: email_clicked, at_most: 3d }` for `wait`",
            )
        })? {
            Either::For(s) => Ok(Wait::For(s)),
            Either::Until(u) => Ok(Wait::Until(u.until)),
            Either::ForEvent(f) => Ok(Wait::ForEvent {
                event: f.event,
                at_most: f.at_most,
            }),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Webhook {
    /// `url: "${CRM_URL}/hooks/reactivated"` — may use `${ENV}` and Tera.
    pub url: String,
    /// `method: POST` (default) or `PUT`, `PATCH`, `GET`, `DELETE`.
    #[serde(default)]
    pub method: Option<String>,
    /// `json: { id: "{{ customer.id }}" }` — string values are rendered with Tera.
    #[serde(default)]
    pub json: Option<yaml_serde::Value>,
    /// `headers: { Authorization: "Bearer ${CRM_TOKEN}" }`
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `timeout: 10s`. Default 10 seconds.
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Update {
    /// `set: { loyalty_tier: gold }` — attributes to set (or fixed columns such as `locale`).
    #[serde(default)]
    pub set: BTreeMap<String, yaml_serde::Value>,
    /// `tags: { add: [vip], remove: [lapsed] }`
    #[serde(default)]
    pub tags: TagChanges,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TagChanges {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}
