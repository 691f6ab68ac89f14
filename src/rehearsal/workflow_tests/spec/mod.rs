//! Workflow tests as written — a `tests:` block in a workflow file, or `NAME.test.yaml` beside
//! it — read into cases with the position of every step, so that a failing expectation and a
//! mistake in the test itself are both reported at their line.

mod orders;
mod reader;
mod steps;
use reader::Reader;
use steps::{event_row, read_step, step_route};

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use crate::import::{self, RowError};
use crate::source::SourceFile;
use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::yaml::{Document, Route};
use crate::workflow::plan::{Plan, Workflow};

/// The cases of one workflow, from one file.
#[derive(Debug, Clone)]
pub struct Suite {
    pub workflow: String,
    pub file: SourceFile,
    pub cases: Vec<Case>,
}

/// One named scenario.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    /// Where the case starts (its `name:`).
    pub span: Span,
    pub start: DateTime<Utc>,
    /// Fixture customers as import rows (JSON objects), defaults filled in.
    pub customers: Vec<Map<String, Json>>,
    /// Fixture events as import rows, each with its `at`.
    pub events: Vec<Map<String, Json>>,
    /// Fixture orders as import rows (the customers' history): their figures follow.
    pub orders: Vec<Map<String, Json>>,
    pub steps: Vec<(Span, Action)>,
    /// Variants pinned for the case: (customer, split, variant).
    pub pins: Vec<(String, String, String)>,
}

/// What a step of a case does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Let virtual time pass, running every pass due on the way.
    Advance(TimeDelta),
    /// Record an event now (an import row without `at`).
    Event(Map<String, Json>),
    /// The shop reports an order (an import row; `placed_at` is now unless given).
    Order(Map<String, Json>),
    /// Change customer fields now: `set` on an event of its own.
    UpdateCustomer {
        customer: String,
        set: Map<String, Json>,
    },
    ExpectEmail(EmailMatch),
    ExpectNoEmail(EmailMatch),
    ExpectCoupon {
        email: EmailMatch,
        prefix: Option<String>,
    },
    ExpectExit {
        customer: Option<String>,
        reason: String,
    },
    ExpectStage {
        customer: String,
        stage: String,
    },
    /// A person clicks, opens or answers the latest email that matches, now.
    Engage {
        email: EmailMatch,
        act: Engagement,
    },
    /// Whether the workflow's goal converted the customer's journey, and for how much.
    ExpectGoal {
        customer: String,
        converted: bool,
        value: Option<f64>,
    },
    /// The customer's journey went down this variant (`SPLIT/VARIANT`, or `holdout`).
    ExpectVariant {
        customer: String,
        variant: String,
    },
}

/// What a test's customer does with an email.
#[derive(Debug, Clone, PartialEq)]
pub enum Engagement {
    /// `click: {url?}`: a tracked link (the one to `url`, else the first).
    Click { url: Option<String> },
    /// `open:`: the open pixel.
    Open,
    /// `answer: {question, value}`: the answer link the email offers for it.
    Answer {
        question: String,
        value: serde_json::Value,
    },
}

/// Which sent emails an expectation is about; an absent field matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailMatch {
    pub template: Option<String>,
    /// An address, or a customer id.
    pub to: Option<String>,
    pub at: Option<DateTime<Utc>>,
    pub subject_contains: Option<String>,
}

impl EmailMatch {
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.template {
            Some(t) => format!("email `{t}`"),
            None => "any email".to_string(),
        }];
        if let Some(to) = &self.to {
            parts.push(format!("to {to}"));
        }
        if let Some(at) = &self.at {
            parts.push(format!("at {}", at.format("%Y-%m-%d %H:%M UTC")));
        }
        if let Some(s) = &self.subject_contains {
            parts.push(format!("with \"{s}\" in the subject"));
        }
        parts.join(" ")
    }
}

const CASE_KEYS: [&str; 7] = [
    "name",
    "start",
    "customers",
    "orders",
    "events",
    "pin",
    "steps",
];
const STEP_KEYS: [&str; 14] = [
    "advance",
    "event",
    "order",
    "update_customer",
    "click",
    "open",
    "answer",
    "expect_goal",
    "expect_variant",
    "expect_email",
    "expect_no_email",
    "expect_coupon",
    "expect_exit",
    "expect_stage",
];
const EMAIL_KEYS: [&str; 4] = ["template", "to", "at", "subject_contains"];

/// The test files of the workflows in `plan`: each workflow file's `tests:` block, and
/// `NAME.test.yaml` (or `.yml`) beside it. Problems in them are diagnostics.
pub fn load(plan: &Plan, diagnostics: &mut Vec<Diagnostic>) -> Vec<Suite> {
    let mut suites = Vec::new();
    for wf in &plan.workflows {
        let doc = Document::index(&wf.file);
        if let Ok(value) = yaml_serde::from_str::<Value>(wf.file.text())
            && let Some(tests) = value.get("tests")
        {
            suites.push(read(
                plan,
                wf,
                &doc,
                tests,
                Route::root().key("tests"),
                diagnostics,
            ));
        }
        for sibling in sibling_files(wf.file.path()) {
            let file = match SourceFile::read_text(&sibling, "test-unreadable") {
                Ok(f) => f,
                Err(d) => {
                    diagnostics.push(*d);
                    continue;
                }
            };
            if let Err(d) = crate::source::yaml::shape::check(&file) {
                diagnostics.push(*d);
                continue;
            }
            let doc = Document::index(&file);
            match yaml_serde::from_str::<Value>(file.text()) {
                Ok(value) => match value.get("tests") {
                    Some(tests) => {
                        suites.push(read(plan, wf, &doc, tests, Route::root().key("tests"), diagnostics))
                    }
                    None => diagnostics.push(
                        Diagnostic::error("test-shape", "a test file holds a `tests:` list")
                            .at(Span::file_start(&file))
                            .help("start the file with `tests:` and a list of cases, each with `name:`, `start:` and `steps:`"),
                    ),
                },
                Err(_) => {
                    // The structural error, with its position, as for a workflow file.
                    if let Err(d) = crate::source::yaml::parse_typed::<Value>(&file) {
                        diagnostics.push(*d);
                    }
                }
            }
        }
    }
    suites
}

/// `welcome-series.test.yaml` and `.test.yml` beside `welcome-series.yaml`.
fn sibling_files(workflow: &Path) -> Vec<PathBuf> {
    let Some(stem) = workflow.file_stem().and_then(|s| s.to_str()) else {
        return Vec::new();
    };
    ["test.yaml", "test.yml"]
        .iter()
        .map(|ext| workflow.with_file_name(format!("{stem}.{ext}")))
        .filter(|p| p.is_file())
        .collect()
}

fn read(
    plan: &Plan,
    wf: &Workflow,
    doc: &Document,
    tests: &Value,
    route: Route,
    diagnostics: &mut Vec<Diagnostic>,
) -> Suite {
    let mut r = Reader {
        doc,
        wf,
        templates: wf.email_templates().into_iter().map(|(_, t)| t).collect(),
        stages: plan
            .stages
            .as_ref()
            .map(|s| s.names().map(str::to_string).collect()),
        diagnostics,
    };
    let mut cases = Vec::new();
    match tests {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(case) = read_case(&mut r, item, &route.index(i)) {
                    cases.push(case);
                }
            }
        }
        _ => r.error(
            &route,
            "`tests` must be a list of cases",
            "write `- name: ...` items with `start:` and `steps:`",
        ),
    }
    Suite {
        workflow: wf.name.clone(),
        file: doc.file.clone(),
        cases,
    }
}

fn read_case(r: &mut Reader<'_>, item: &Value, route: &Route) -> Option<Case> {
    let map = r.mapping(item, route, "a test case")?;
    let errors_before = r.diagnostics.len();
    for key in map.keys() {
        let key = key.as_str().unwrap_or("");
        if !CASE_KEYS.contains(&key) {
            r.unknown_key(&route.key(key), key, &CASE_KEYS, "key in a test case");
        }
    }
    let name = match map.get("name") {
        Some(v) => r.string(v, &route.key("name"), "name"),
        None => {
            r.error(
                route,
                "a test case needs a `name:`",
                "say what the case shows, e.g. `name: stops at the first order`",
            );
            None
        }
    };
    let start = match map.get("start") {
        Some(v) => r.time(v, &route.key("start"), None),
        None => {
            r.error(
                route,
                "a test case needs a `start:` time",
                "e.g. `start: 2026-06-01T08:00:00Z`",
            );
            None
        }
    };
    let customers = fixture_customers(r, map.get("customers"), route);
    let ids: Vec<String> = customers
        .iter()
        .filter_map(|c| c.get("id").and_then(Json::as_str).map(str::to_string))
        .collect();
    let orders = orders::fixture_orders(r, map.get("orders"), route, &ids, start);
    let events = fixture_events(r, map.get("events"), route, &ids, start);
    let steps = case_steps(r, map.get("steps"), route, &ids, start);
    let pins = steps::pins(r, map.get("pin"), &route.key("pin"), &ids);
    if r.diagnostics.len() > errors_before {
        return None;
    }
    Some(Case {
        name: name?,
        span: r.doc.value_span(&route.key("name")),
        start: start?,
        customers,
        events,
        orders,
        steps,
        pins,
    })
}

/// A case's `customers:` (one default customer when none is given), each with an id and an
/// address, checked as an import checks a row.
fn fixture_customers(
    r: &mut Reader<'_>,
    list: Option<&Value>,
    route: &Route,
) -> Vec<Map<String, Json>> {
    let mut customers = Vec::new();
    let mut customer_routes = Vec::new();
    match list {
        None => customers.push(Map::new()),
        Some(Value::Sequence(list)) => {
            for (i, c) in list.iter().enumerate() {
                let at = route.key("customers").index(i);
                if let Some(obj) = r.json_object(c, &at, "a fixture customer") {
                    customers.push(obj);
                    customer_routes.push(at);
                }
            }
        }
        Some(_) => r.error(
            &route.key("customers"),
            "`customers` must be a list",
            "write `- { id: c1, first_name: Ada }` items",
        ),
    }
    for (i, c) in customers.iter_mut().enumerate() {
        let id = c
            .get("id")
            .and_then(Json::as_str)
            .map_or_else(|| format!("c{}", i + 1), str::to_string);
        c.entry("email")
            .or_insert_with(|| Json::String(format!("{id}@example.com")));
        c.insert("id".into(), Json::String(id));
    }
    let errors: Vec<RowError> = import::customers_of(&customers)
        .into_iter()
        .filter_map(Result::err)
        .flatten()
        .collect();
    r.row_errors(errors, &customer_routes);
    customers
}

/// A case's `events:`, recorded before its first step.
fn fixture_events(
    r: &mut Reader<'_>,
    list: Option<&Value>,
    route: &Route,
    ids: &[String],
    start: Option<DateTime<Utc>>,
) -> Vec<Map<String, Json>> {
    let example = "{ name: customer_created, at: ... }";
    r.items(list, route, "events", example, |r, e, at, _| {
        event_row(r, e, at, ids, start)
    })
}

/// A case's `steps:`, each with the span its report points at.
fn case_steps(
    r: &mut Reader<'_>,
    list: Option<&Value>,
    route: &Route,
    ids: &[String],
    start: Option<DateTime<Utc>>,
) -> Vec<(Span, Action)> {
    let mut steps = Vec::new();
    match list {
        Some(Value::Sequence(list)) if !list.is_empty() => {
            for (i, s) in list.iter().enumerate() {
                let at = route.key("steps").index(i);
                if let Some(action) = read_step(r, s, &at, ids, start) {
                    steps.push((r.doc.key_span(&step_route(s, &at)), action));
                }
            }
        }
        _ => r.error(
            &route.key("steps"),
            "a test case needs a list of `steps:`",
            "e.g. `- expect_email: { template: welcome/hello }` then `- advance: 2d`",
        ),
    }
    steps
}
