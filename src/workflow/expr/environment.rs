//! What an expression sees: the customer, event and enrollment as Rhai types with getters
//! (faster than a map per row), and the helpers (`days_since`, `has_tag`, `event_count`…).

use super::{EventHistory, state_now};
use crate::model::customer::{Customer, Enrollment, Event};
use crate::model::customer::{FIELDS, FieldValue};
use crate::workflow::expr::STATE;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rhai::{Dynamic, Engine};

/// A timestamp as expressions see it. Compared with `<`, `>`, `==`; `days_since(t)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

/// A calendar date (a birthday), as expressions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

/// A length of time: `days(30)`, `hours(12)`; `now - days(30)` is a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub TimeDelta);

pub(super) fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(0.0).into(),
        },
        serde_json::Value::String(s) => s.clone().into(),
        serde_json::Value::Array(a) => a.iter().map(json_to_dynamic).collect::<Vec<_>>().into(),
        serde_json::Value::Object(o) => map_to_dynamic(o),
    }
}

pub(super) fn map_to_dynamic(o: &serde_json::Map<String, serde_json::Value>) -> Dynamic {
    let map: rhai::Map = o
        .iter()
        .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
        .collect();
    map.into()
}

pub(super) fn opt<T: Clone + Send + Sync + 'static>(v: Option<T>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from)
}

pub(super) fn opt_str(v: &Option<String>) -> Dynamic {
    v.clone().map_or(Dynamic::UNIT, Dynamic::from)
}

pub(super) fn whole_days(d: TimeDelta) -> i64 {
    d.num_seconds().div_euclid(86_400)
}

pub(super) fn date_start(d: Date) -> DateTime<Utc> {
    d.0.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A customer field's value as Rhai sees it: a missing one is `()`.
fn dynamic(v: FieldValue<'_>) -> Dynamic {
    match v {
        FieldValue::Text(t) => t.map_or(Dynamic::UNIT, |t| Dynamic::from(t.to_string())),
        FieldValue::Date(d) => opt(d.map(Date)),
        FieldValue::Time(t) => opt(t.map(Timestamp)),
        FieldValue::Count(n) => Dynamic::from(n),
        FieldValue::Amount(n) => Dynamic::from(n),
        FieldValue::Tags(t) => Dynamic::from(
            t.iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>(),
        ),
        FieldValue::Attributes(m) => map_to_dynamic(m),
    }
}

pub(super) fn register_types(engine: &mut Engine) {
    engine
        .register_type_with_name::<Customer>("Customer")
        .register_fn("has_tag", |c: &mut Customer, tag: &str| c.has_tag(tag));
    // Every fixed field, as the one description of them reads it.
    for f in FIELDS {
        let get = f.get;
        engine.register_get(f.name, move |c: &mut Customer| dynamic(get(c)));
    }
    register_event_and_enrollment(engine);
    register_time(engine);
}

/// `event` and `enrollment`, with getters.
fn register_event_and_enrollment(engine: &mut Engine) {
    engine
        .register_type_with_name::<Event>("Event")
        .register_get("id", |e: &mut Event| e.id.clone())
        .register_get("name", |e: &mut Event| e.name.clone())
        .register_get("at", |e: &mut Event| Timestamp(e.at))
        .register_get("properties", |e: &mut Event| map_to_dynamic(&e.properties));

    engine
        .register_type_with_name::<Enrollment>("Enrollment")
        .register_get("id", |e: &mut Enrollment| e.id.clone())
        .register_get("workflow", |e: &mut Enrollment| e.workflow.clone())
        .register_get("entered_at", |e: &mut Enrollment| Timestamp(e.entered_at))
        .register_get("step", |e: &mut Enrollment| opt_str(&e.step))
        .register_get("orders_count_at_entry", |e: &mut Enrollment| {
            e.orders_count_at_entry
        })
        .register_get("total_spent_at_entry", |e: &mut Enrollment| {
            e.total_spent_at_entry
        });
}

/// Times, dates and durations: their arithmetic, comparisons and the helpers that count
/// days and past events.
fn register_time(engine: &mut Engine) {
    engine
        .register_type_with_name::<Timestamp>("Timestamp")
        .register_type_with_name::<Date>("Date")
        .register_type_with_name::<Span>("Duration")
        .register_fn("to_string", |t: &mut Timestamp| t.0.to_rfc3339())
        .register_fn("to_string", |d: &mut Date| d.0.to_string())
        .register_fn("days", |n: i64| Span(saturating(TimeDelta::try_days(n), n)))
        .register_fn("hours", |n: i64| {
            Span(saturating(TimeDelta::try_hours(n), n))
        })
        .register_fn("-", |t: Timestamp, d: Span| Timestamp(shifted(t.0, -d.0)))
        .register_fn("+", |t: Timestamp, d: Span| Timestamp(shifted(t.0, d.0)))
        .register_fn("days_since", |t: Timestamp| whole_days(state_now() - t.0))
        .register_fn("days_since", |d: Date| {
            whole_days(state_now() - date_start(d))
        })
        .register_fn("days_since", |_: ()| ())
        .register_fn("days_until", |t: Timestamp| whole_days(t.0 - state_now()))
        .register_fn("days_until", |d: Date| {
            whole_days(date_start(d) - state_now())
        })
        .register_fn("days_until", |_: ()| ())
        .register_fn("event_count", |name: &str, days: i64| {
            let back = saturating(TimeDelta::try_days(days), days);
            event_count(name, shifted(state_now(), -back))
        })
        .register_fn("event_count", |name: &str, since: Timestamp| {
            event_count(name, since.0)
        })
        .register_fn("clicked", |step: &str| engaged(true, step))
        .register_fn("opened", |step: &str| engaged(false, step))
        .register_fn("redeemed", |step: &str| {
            in_history(|h, enrollment| h.redeemed(step, enrollment))
        })
        .register_fn("answer", |question: &str| {
            STATE.with(|s| {
                s.borrow()
                    .as_ref()
                    .and_then(|s| s.history.as_ref()?.1.answers.get(question).cloned())
                    .map_or(Dynamic::UNIT, |v| json_to_dynamic(&v))
            })
        });

    macro_rules! compare {
        ($t:ty) => {
            engine
                .register_fn("<", |a: $t, b: $t| a < b)
                .register_fn(">", |a: $t, b: $t| a > b)
                .register_fn("<=", |a: $t, b: $t| a <= b)
                .register_fn(">=", |a: $t, b: $t| a >= b)
                .register_fn("==", |a: $t, b: $t| a == b)
                .register_fn("!=", |a: $t, b: $t| a != b);
        };
    }
    compare!(Timestamp);
    compare!(Date);
    compare!(Span);
}

/// A moment moved by a span that a customer's number may have made huge: past the
/// calendar's ends it stays at the end (events "since 100,000,000 days ago" are all of
/// them), never an overflow that would stop the process.
fn shifted(t: DateTime<Utc>, by: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(by)
        .unwrap_or(if by < TimeDelta::zero() {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

/// A span of `n` units, or the longest span of `n`'s sign when `n` units do not fit.
fn saturating(span: Option<TimeDelta>, n: i64) -> TimeDelta {
    span.unwrap_or(if n < 0 {
        TimeDelta::MIN
    } else {
        TimeDelta::MAX
    })
}

/// `clicked` and `opened`: a person's click or open of a step's email.
fn engaged(click: bool, step: &str) -> bool {
    in_history(|h, enrollment| h.engaged(click, step, enrollment))
}

/// Asks the evaluation's history, with its enrollment (id, workflow); false without one.
fn in_history(ask: impl Fn(&EventHistory, Option<(&str, &str)>) -> bool) -> bool {
    STATE.with(|s| {
        let state = s.borrow();
        let Some(state) = state.as_ref() else {
            return false;
        };
        let enrollment = state
            .enrollment
            .as_ref()
            .map(|(id, w)| (id.as_str(), w.as_str()));
        state.history.as_ref().is_some_and(|h| ask(h, enrollment))
    })
}

pub(super) fn event_count(name: &str, since: DateTime<Utc>) -> i64 {
    STATE.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|s| s.history.as_ref().map(|h| h.count_since(name, since)))
            .unwrap_or(0)
    })
}
