//! A test case's steps: clock advances, events, customer updates, and the expectations
//! (an email, no email, a coupon, an exit, a stage).

use super::reader::Reader;
use super::{Action, EMAIL_KEYS, EmailMatch, Engagement, STEP_KEYS};
use crate::import::{self, RowError};
use crate::source::yaml::{Route, closest};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

/// The route of a step's one key, for its position.
pub(super) fn step_route(step: &Value, route: &Route) -> Route {
    match step {
        Value::Mapping(m) => match m.keys().next().and_then(Value::as_str) {
            Some(k) => route.key(k),
            None => route.clone(),
        },
        _ => route.clone(),
    }
}

/// An event for the import reader: `customer` defaults to the only fixture customer.
pub(super) fn event_row(
    r: &mut Reader<'_>,
    value: &Value,
    route: &Route,
    ids: &[String],
    start: Option<DateTime<Utc>>,
) -> Option<Map<String, Json>> {
    let mut obj = r.json_object(value, route, "an event")?;
    r.time_field(&mut obj, "at", route, start)?;
    if let Some(start) = start {
        obj.entry("at")
            .or_insert_with(|| Json::String(start.to_rfc3339()));
    }
    r.owner(&mut obj, route, ids)?;
    if !obj.contains_key("name") {
        r.error(
            route,
            "an event needs a `name`",
            "e.g. `name: order_placed`",
        );
        return None;
    }
    let errors: Vec<RowError> =
        import::events_of(std::slice::from_ref(&obj), start.unwrap_or_default())
            .into_iter()
            .filter_map(Result::err)
            .flatten()
            .collect();
    r.clean(errors, route)?;
    Some(obj)
}

pub(super) fn read_step(
    r: &mut Reader<'_>,
    value: &Value,
    route: &Route,
    ids: &[String],
    start: Option<DateTime<Utc>>,
) -> Option<Action> {
    let map = r.mapping(value, route, "a step")?;
    if map.len() != 1 {
        r.error(
            route,
            "each step is one of `advance`, `event`, `update_customer` or an `expect_...`",
            "write one per list item: `- advance: 2d`",
        );
        return None;
    }
    let (key, arg) = map.iter().next()?;
    let key = key.as_str().unwrap_or("");
    let at = route.key(key);
    match key {
        "advance" => advance(r, arg, &at),
        "event" => {
            let mut obj = event_row(r, arg, &at, ids, None)?;
            obj.remove("at"); // now, on the case's clock
            Some(Action::Event(obj))
        }
        "order" => {
            let id = format!("order-step-{}", route.last_index().unwrap_or(0) + 1);
            super::orders::order_row(r, arg, &at, ids, start, id).map(Action::Order)
        }
        "update_customer" => update_customer(r, arg, &at, ids),
        "click" | "open" | "answer" => engage(r, key, arg, &at, start),
        "expect_goal" => expect_goal(r, arg, &at, ids),
        "expect_variant" => expect_variant(r, arg, &at, ids),
        "expect_email" => Some(Action::ExpectEmail(email_match(r, arg, &at, start, true)?)),
        "expect_no_email" => Some(Action::ExpectNoEmail(email_match(
            r, arg, &at, start, false,
        )?)),
        "expect_coupon" => expect_coupon(r, arg, &at, start),
        "expect_exit" => expect_exit(r, arg, &at),
        "expect_stage" => expect_stage(r, arg, &at, ids),
        other => {
            r.unknown_key(&at, other, &STEP_KEYS, "step or expectation");
            None
        }
    }
}

/// The longest a case's clock moves in one `advance:`: ten years of passes is a few
/// seconds of rehearsal, and longer is more likely a typo than a test.
const MAX_ADVANCE: TimeDelta = TimeDelta::days(3_660);

/// `advance: 2d`: the clock moves on, every pass due on the way running.
fn advance(r: &mut Reader<'_>, arg: &Value, at: &Route) -> Option<Action> {
    let text = r.string(arg, at, "advance")?;
    match crate::time::duration::parse(&text) {
        Ok(d) if d > MAX_ADVANCE => {
            r.error(
                at,
                format!("`{text}` is longer than a test advances at once"),
                "advance by at most 3660d (ten years) at a time",
            );
            None
        }
        Ok(d) if d > TimeDelta::zero() => Some(Action::Advance(d)),
        result => {
            let why = match result {
                Err(e) => format!(": {e}"),
                Ok(_) => String::new(),
            };
            r.error(
                at,
                format!("`{text}` is not a time to advance by{why}"),
                crate::time::duration::DURATION_HELP,
            );
            None
        }
    }
}

/// `click: {template?, to?, url?}`, `open: {template?, to?}`,
/// `answer: {question, value, template?, to?}`: what a person does with the latest email
/// that matches.
fn engage(
    r: &mut Reader<'_>,
    key: &str,
    arg: &Value,
    at: &Route,
    start: Option<DateTime<Utc>>,
) -> Option<Action> {
    let mut rest = match arg {
        Value::Mapping(m) => m.clone(),
        Value::Null => Default::default(),
        _ => {
            let example = match key {
                "answer" => "`answer: { question: nps, value: 9 }`",
                "click" => "`click: { template: reactivation/deal }`",
                _ => "`open: { template: reactivation/deal }`",
            };
            r.error(
                at,
                format!("`{key}` takes a mapping"),
                format!("e.g. {example}"),
            );
            return None;
        }
    };
    let act = match key {
        "click" => Engagement::Click {
            url: match rest.remove("url") {
                Some(u) => Some(r.string(&u, &at.key("url"), "url")?),
                None => None,
            },
        },
        "open" => Engagement::Open,
        _ => {
            let question = rest.remove("question");
            let value = rest.remove("value");
            let (Some(question), Some(value)) = (question, value) else {
                r.error(
                    at,
                    "`answer` needs a `question` and a `value`",
                    "e.g. `answer: { question: nps, value: 9 }`",
                );
                return None;
            };
            let question = r.string(&question, &at.key("question"), "question")?;
            let value = serde_json::to_value(&value).unwrap_or(Json::Null);
            Engagement::Answer { question, value }
        }
    };
    let email = email_match(r, &Value::Mapping(rest), at, start, false)?;
    Some(Action::Engage { email, act })
}

/// The workflow's splits and their variants' names.
fn splits(r: &Reader<'_>) -> Vec<(String, Vec<String>)> {
    r.wf.all_steps()
        .iter()
        .filter_map(|s| match &s.kind {
            crate::workflow::plan::StepKind::Split(split) => Some((
                split.name.clone(),
                split.variants.iter().map(|v| v.name.clone()).collect(),
            )),
            _ => None,
        })
        .collect()
}

/// Checks that `split/variant` names one of the workflow's, or is `holdout` of a workflow
/// with one; the error's message and help otherwise.
fn known_variant(r: &Reader<'_>, split: &str, variant: &str) -> Result<(), (String, String)> {
    if split == crate::workflow::plan::HOLDOUT {
        return match r.wf.holdout {
            Some(_) => Ok(()),
            None => Err((
                format!("workflow `{}` has no holdout", r.wf.name),
                "add `holdout: 10%` to the workflow, or expect a split's variant".into(),
            )),
        };
    }
    let splits = splits(r);
    let Some((_, variants)) = splits.iter().find(|(s, _)| s == split) else {
        let names: Vec<&str> = splits.iter().map(|(s, _)| s.as_str()).collect();
        return Err((
            format!("workflow `{}` has no split `{split}`", r.wf.name),
            match closest(split, names.iter().copied()) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("its splits are: {}", names.join(", ")),
            },
        ));
    };
    if variants.iter().any(|v| v == variant) {
        return Ok(());
    }
    Err((
        format!("split `{split}` has no variant `{variant}`"),
        format!("its variants are: {}", variants.join(", ")),
    ))
}

/// `expect_goal: {converted: true|false, value?, customer?}`: whether the workflow's goal
/// converted the customer's journey, and the revenue it counted.
fn expect_goal(r: &mut Reader<'_>, arg: &Value, at: &Route, ids: &[String]) -> Option<Action> {
    let mut obj = r.json_object(arg, at, "`expect_goal`")?;
    let given = obj.remove("customer");
    let customer = r.customer(given, at, ids)?;
    let converted = obj.remove("converted");
    let value = obj.remove("value");
    if let Some(other) = obj.keys().next().cloned() {
        r.unknown_key(
            &at.key(&other),
            &other,
            &["converted", "value", "customer"],
            "key in `expect_goal`",
        );
        return None;
    }
    let example = "e.g. `expect_goal: { converted: true, value: 59.9 }`";
    let Some(converted) = converted.as_ref().and_then(Json::as_bool) else {
        r.error(
            at,
            "`expect_goal` needs `converted: true` or `false`",
            example,
        );
        return None;
    };
    let value = match value {
        None => None,
        Some(v) => match v.as_f64() {
            Some(n) if converted => Some(n),
            Some(_) => {
                r.error(at, "a journey that did not convert has no `value`", example);
                return None;
            }
            None => {
                r.error(at, "`value` in `expect_goal` is a number", example);
                return None;
            }
        },
    };
    Some(Action::ExpectGoal {
        customer,
        converted,
        value,
    })
}

/// `expect_variant: {split, variant, customer?}`; `{variant: holdout}` for the holdout.
fn expect_variant(r: &mut Reader<'_>, arg: &Value, at: &Route, ids: &[String]) -> Option<Action> {
    let mut obj = r.json_object(arg, at, "`expect_variant`")?;
    let given = obj.remove("customer");
    let customer = r.customer(given, at, ids)?;
    let text = |v: Option<Json>| v.and_then(|v| v.as_str().map(str::to_string));
    let variant = text(obj.remove("variant"));
    let split = text(obj.remove("split"));
    if let Some(other) = obj.keys().next().cloned() {
        r.unknown_key(
            &at.key(&other),
            &other,
            &["split", "variant", "customer"],
            "key in `expect_variant`",
        );
        return None;
    }
    let Some(variant) = variant else {
        r.error(
            at,
            "`expect_variant` needs a `variant`",
            "e.g. `expect_variant: { split: subject-test, variant: b }`",
        );
        return None;
    };
    let holdout = variant == crate::workflow::plan::HOLDOUT;
    let split = match (split, holdout) {
        (Some(s), _) => s,
        (None, true) => variant.clone(),
        (None, false) => {
            r.error(
                at,
                "`expect_variant` needs the `split`",
                "e.g. `expect_variant: { split: subject-test, variant: b }`",
            );
            return None;
        }
    };
    if let Err((message, help)) = known_variant(r, &split, &variant) {
        r.error(at, message, help);
        return None;
    }
    let variant = if holdout {
        variant
    } else {
        format!("{split}/{variant}")
    };
    Some(Action::ExpectVariant { customer, variant })
}

/// A case's `pin: { CUSTOMER: { SPLIT: VARIANT } }`: those customers go down those
/// variants, whatever the hash says, so that a test can walk each branch.
pub(super) fn pins(
    r: &mut Reader<'_>,
    value: Option<&Value>,
    at: &Route,
    ids: &[String],
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let Some(value) = value else {
        return out;
    };
    let Some(map) = r.mapping(value, at, "`pin`") else {
        return out;
    };
    for (customer, splits) in map.clone() {
        let customer = customer.as_str().unwrap_or("").to_string();
        let cat = at.key(&customer);
        if !ids.contains(&customer) {
            r.error(
                &cat,
                format!("no fixture customer `{customer}`"),
                format!("the case's customers are: {}", ids.join(", ")),
            );
            continue;
        }
        let Some(splits) = r.mapping(&splits, &cat, "a customer's pinned variants") else {
            continue;
        };
        for (split, variant) in splits.clone() {
            let split = split.as_str().unwrap_or("").to_string();
            let variant = variant.as_str().unwrap_or("").to_string();
            match known_variant(r, &split, &variant) {
                Ok(()) => out.push((customer.clone(), split, variant)),
                Err((message, help)) => r.error(&cat.key(&split), message, help),
            }
        }
    }
    out
}

/// `update_customer: {customer?, FIELD: VALUE}`.
fn update_customer(r: &mut Reader<'_>, arg: &Value, at: &Route, ids: &[String]) -> Option<Action> {
    let mut obj = r.json_object(arg, at, "`update_customer`")?;
    let given = obj.remove("customer").or_else(|| obj.remove("id"));
    let customer = r.customer(given, at, ids)?;
    if obj.is_empty() {
        r.error(
            at,
            "`update_customer` changes nothing",
            "give the fields to set, e.g. `{ orders_count: 1 }`",
        );
        return None;
    }
    Some(Action::UpdateCustomer { customer, set: obj })
}

/// `expect_coupon: {prefix?, template?, to?}`.
fn expect_coupon(
    r: &mut Reader<'_>,
    arg: &Value,
    at: &Route,
    start: Option<DateTime<Utc>>,
) -> Option<Action> {
    let mut prefix = None;
    let mut filtered = Value::Mapping(Default::default());
    if let Value::Mapping(m) = arg {
        let mut rest = m.clone();
        if let Some(p) = rest.remove("prefix") {
            prefix = r.string(&p, &at.key("prefix"), "prefix");
        }
        filtered = Value::Mapping(rest);
    } else if !matches!(arg, Value::Null) {
        r.error(
            at,
            "`expect_coupon` takes `{ prefix?, template?, to? }`",
            "e.g. `expect_coupon: { prefix: WELCOME }`",
        );
        return None;
    }
    Some(Action::ExpectCoupon {
        email: email_match(r, &filtered, at, start, false)?,
        prefix,
    })
}

/// `expect_exit: {reason, customer?}`.
fn expect_exit(r: &mut Reader<'_>, arg: &Value, at: &Route) -> Option<Action> {
    let obj = r.mapping(arg, at, "`expect_exit`")?;
    let mut reason = None;
    let mut customer = None;
    for (k, v) in obj {
        let k = k.as_str().unwrap_or("");
        match k {
            "reason" => reason = r.string(v, &at.key("reason"), "reason"),
            "customer" => customer = r.string(v, &at.key("customer"), "customer"),
            other => r.unknown_key(
                &at.key(other),
                other,
                &["reason", "customer"],
                "key in `expect_exit`",
            ),
        }
    }
    match reason {
        Some(reason) => Some(Action::ExpectExit { customer, reason }),
        None => {
            r.error(
                at,
                "`expect_exit` needs a `reason`",
                "`exit_when` (its condition met), `completed`, `failed`, or an `exit:` step's reason",
            );
            None
        }
    }
}

/// `expect_stage: {stage, customer?}`, the stage one that `stages.yaml` names.
fn expect_stage(r: &mut Reader<'_>, arg: &Value, at: &Route, ids: &[String]) -> Option<Action> {
    let mut obj = r.json_object(arg, at, "`expect_stage`")?;
    let given = obj.remove("customer");
    let customer = r.customer(given, at, ids)?;
    let stage = match obj.remove("stage") {
        Some(Json::String(s)) => s,
        _ => {
            r.error(
                at,
                "`expect_stage` needs a `stage`",
                "e.g. `expect_stage: { stage: first-time }`",
            );
            return None;
        }
    };
    if let Some(other) = obj.keys().next() {
        let other = other.clone();
        r.unknown_key(
            &at.key(&other),
            &other,
            &["stage", "customer"],
            "key in `expect_stage`",
        );
        return None;
    }
    match &r.stages {
        None => {
            r.error(
                &at.key("stage"),
                "there are no lifecycle stages to expect",
                "define them in `stages.yaml` (see README.md, \"Lifecycle stages\")",
            );
            None
        }
        Some(names) if !names.contains(&stage) => {
            let help = match closest(&stage, names.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`?"),
                None => format!("the stages are: {}", names.join(", ")),
            };
            r.error(
                &at.key("stage"),
                format!("there is no stage `{stage}`"),
                help,
            );
            None
        }
        Some(_) => Some(Action::ExpectStage { customer, stage }),
    }
}

pub(super) fn email_match(
    r: &mut Reader<'_>,
    arg: &Value,
    route: &Route,
    start: Option<DateTime<Utc>>,
    needs_template: bool,
) -> Option<EmailMatch> {
    let mut m = EmailMatch::default();
    let errors_before = r.diagnostics.len();
    match arg {
        Value::Null => {}
        Value::Mapping(map) => {
            for (k, v) in map {
                let k = k.as_str().unwrap_or("");
                let at = route.key(k);
                match k {
                    "template" => m.template = r.string(v, &at, "template"),
                    "to" => m.to = r.string(v, &at, "to"),
                    "at" => m.at = r.time(v, &at, start),
                    "subject_contains" => m.subject_contains = r.string(v, &at, "subject_contains"),
                    other => r.unknown_key(&at, other, &EMAIL_KEYS, "key in an email expectation"),
                }
            }
        }
        _ => {
            r.error(
                route,
                "an email expectation is a mapping",
                "e.g. `{ template: welcome/hello, to: ada@example.com }`",
            );
            return None;
        }
    }
    if let Some(t) = &m.template
        && !r.templates.contains(t)
    {
        let sent = r.templates.clone();
        let help = match closest(t, sent.iter().map(String::as_str)) {
            Some(c) => format!("did you mean `{c}`?"),
            None if sent.is_empty() => "this workflow sends no email".to_string(),
            None => format!("it sends: {}", sent.join(", ")),
        };
        r.error(
            &route.key("template"),
            format!(
                "workflow `{}` sends no email from template `{t}`",
                r.wf.name
            ),
            help,
        );
    }
    if needs_template && m.template.is_none() && r.diagnostics.len() == errors_before {
        r.error(
            route,
            "`expect_email` needs a `template`",
            "e.g. `expect_email: { template: welcome/hello }`",
        );
    }
    (r.diagnostics.len() == errors_before).then_some(m)
}
