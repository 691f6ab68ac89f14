//! Workflow tests as written — a `tests:` block in a workflow file, or `NAME.test.yaml` beside
//! it — read into cases with the position of every step, so that a failing expectation and a
//! mistake in the test itself are both reported at their line.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use crate::import::{self, RowError};
use crate::source::SourceFile;
use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::yaml::{Document, Route, closest};
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
    pub steps: Vec<(Span, Action)>,
}

/// What a step of a case does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Let virtual time pass, running every pass due on the way.
    Advance(TimeDelta),
    /// Record an event now (an import row without `at`).
    Event(Map<String, Json>),
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

const CASE_KEYS: [&str; 5] = ["name", "start", "customers", "events", "steps"];
const STEP_KEYS: [&str; 8] = [
    "advance",
    "event",
    "update_customer",
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
            let file = match SourceFile::read(&sibling) {
                Ok(f) => f,
                Err(e) => {
                    diagnostics.push(Diagnostic::error(
                        "test-unreadable",
                        format!("cannot read `{}`: {e}", sibling.display()),
                    ));
                    continue;
                }
            };
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

struct Reader<'a> {
    doc: &'a Document,
    wf: &'a Workflow,
    templates: Vec<String>,
    /// The names of the lifecycle stages, when the project has them.
    stages: Option<Vec<String>>,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, route: &Route, message: impl Into<String>, help: impl Into<String>) {
        self.diagnostics.push(
            Diagnostic::error("test-invalid", message)
                .at(self.doc.value_span(route))
                .help(help),
        );
    }

    fn unknown_key(&mut self, route: &Route, key: &str, known: &[&str], what: &str) {
        let help = match closest(key, known.iter().copied()) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!("use one of: {}", known.join(", ")),
        };
        self.diagnostics.push(
            Diagnostic::error("test-invalid", format!("unknown {what} `{key}`"))
                .at(self.doc.key_span(route))
                .help(help),
        );
    }

    fn string(&mut self, value: &Value, route: &Route, what: &str) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    route,
                    format!("`{what}` must be text"),
                    "write a single value",
                );
                None
            }
        }
    }

    fn time(
        &mut self,
        value: &Value,
        route: &Route,
        start: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let text = self.string(value, route, "time")?;
        self.time_text(text, route, start)
    }

    /// RFC 3339, or `+2d` after the case's start where there is one.
    fn time_text(
        &mut self,
        text: String,
        route: &Route,
        start: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        if let (Some(rest), Some(start)) = (text.strip_prefix('+'), start)
            && let Ok(d) = crate::time::duration::parse(rest)
        {
            return Some(start + d);
        }
        match crate::time::parse_time(&text) {
            Ok(t) => Some(t),
            Err(m) => {
                let relative = if start.is_some() {
                    ", or a time after the case's start such as `+2d`"
                } else {
                    ""
                };
                self.error(
                    route,
                    m,
                    format!("write RFC 3339 with a zone, e.g. `2026-06-01T08:00:00Z`{relative}"),
                );
                None
            }
        }
    }

    fn mapping<'v>(
        &mut self,
        value: &'v Value,
        route: &Route,
        what: &str,
    ) -> Option<&'v yaml_serde::Mapping> {
        match value {
            Value::Mapping(m) => Some(m),
            _ => {
                self.error(
                    route,
                    format!("{what} must be a mapping of `key: value`"),
                    "see README.md, \"Testing workflows\"",
                );
                None
            }
        }
    }

    /// A YAML mapping as a JSON object, for the import row readers.
    fn json_object(
        &mut self,
        value: &Value,
        route: &Route,
        what: &str,
    ) -> Option<Map<String, Json>> {
        self.mapping(value, route, what)?;
        match serde_json::to_value(value) {
            Ok(Json::Object(m)) => Some(m),
            _ => {
                self.error(
                    route,
                    format!("{what} must have text keys"),
                    "write `field: value` pairs",
                );
                None
            }
        }
    }

    /// The customer a step or event is about: the one named, which must be a fixture, or
    /// the only fixture customer.
    fn customer(&mut self, given: Option<Json>, route: &Route, ids: &[String]) -> Option<String> {
        match given {
            Some(Json::String(c)) if ids.contains(&c) => Some(c),
            Some(c) => {
                let c = c.as_str().map_or_else(|| c.to_string(), str::to_string);
                self.error(
                    &route.key("customer"),
                    format!("no fixture customer has the id `{c}`"),
                    format!("the case's customers are: {}", ids.join(", ")),
                );
                None
            }
            None if ids.len() == 1 => Some(ids[0].clone()),
            None => {
                self.error(
                    route,
                    "say which customer: there is more than one",
                    "add `customer: ID`",
                );
                None
            }
        }
    }

    /// Import errors of fixture rows, at the field they name.
    fn row_errors(&mut self, errors: Vec<RowError>, routes: &[Route]) {
        for e in errors {
            let route = routes
                .get((e.line as usize).saturating_sub(1))
                .cloned()
                .unwrap_or_else(Route::root);
            let field = route.key(&e.field);
            let route = if self.doc.node(&field).is_some() {
                field
            } else {
                route
            };
            self.error(
                &route,
                e.message,
                "fixture rows take the same fields as `tidings import`",
            );
        }
    }
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

    let mut customers = Vec::new();
    let mut customer_routes = Vec::new();
    match map.get("customers") {
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
    let ids: Vec<String> = customers
        .iter()
        .filter_map(|c| c.get("id").and_then(Json::as_str).map(str::to_string))
        .collect();

    let mut events = Vec::new();
    if let Some(list) = map.get("events") {
        match list {
            Value::Sequence(list) => {
                for (i, e) in list.iter().enumerate() {
                    let at = route.key("events").index(i);
                    if let Some(row) = event_row(r, e, &at, &ids, start) {
                        events.push(row);
                    }
                }
            }
            _ => r.error(
                &route.key("events"),
                "`events` must be a list",
                "write `- { name: customer_created, at: ... }` items",
            ),
        }
    }

    let mut steps = Vec::new();
    match map.get("steps") {
        Some(Value::Sequence(list)) if !list.is_empty() => {
            for (i, s) in list.iter().enumerate() {
                let at = route.key("steps").index(i);
                if let Some(action) = read_step(r, s, &at, &ids, start) {
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
    if r.diagnostics.len() > errors_before {
        return None;
    }
    Some(Case {
        name: name?,
        span: r.doc.value_span(&route.key("name")),
        start: start?,
        customers,
        events,
        steps,
    })
}

/// The route of a step's one key, for its position.
fn step_route(step: &Value, route: &Route) -> Route {
    match step {
        Value::Mapping(m) => match m.keys().next().and_then(Value::as_str) {
            Some(k) => route.key(k),
            None => route.clone(),
        },
        _ => route.clone(),
    }
}

/// An event for the import reader: `customer` defaults to the only fixture customer.
fn event_row(
    r: &mut Reader<'_>,
    value: &Value,
    route: &Route,
    ids: &[String],
    start: Option<DateTime<Utc>>,
) -> Option<Map<String, Json>> {
    let mut obj = r.json_object(value, route, "an event")?;
    if let Some(at) = obj.get("at").cloned() {
        let text = match at {
            Json::String(t) => t,
            other => other.to_string(),
        };
        let t = r.time_text(text, &route.key("at"), start)?;
        obj.insert("at".into(), Json::String(t.to_rfc3339()));
    } else if let Some(start) = start {
        obj.insert("at".into(), Json::String(start.to_rfc3339()));
    }
    let given = obj.remove("customer").or_else(|| obj.remove("customer_id"));
    let customer = r.customer(given, route, ids)?;
    obj.insert("customer_id".into(), Json::String(customer));
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
    if !errors.is_empty() {
        r.row_errors(errors, std::slice::from_ref(route));
        return None;
    }
    Some(obj)
}

fn read_step(
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
        "advance" => {
            let text = r.string(arg, &at, "advance")?;
            match crate::time::duration::parse(&text) {
                Ok(d) if d > TimeDelta::zero() => Some(Action::Advance(d)),
                _ => {
                    r.error(
                        &at,
                        format!("`{text}` is not a time to advance by"),
                        crate::time::duration::DURATION_HELP,
                    );
                    None
                }
            }
        }
        "event" => {
            let mut obj = event_row(r, arg, &at, ids, None)?;
            obj.remove("at"); // now, on the case's clock
            Some(Action::Event(obj))
        }
        "update_customer" => {
            let mut obj = r.json_object(arg, &at, "`update_customer`")?;
            let given = obj.remove("customer").or_else(|| obj.remove("id"));
            let customer = r.customer(given, &at, ids)?;
            if obj.is_empty() {
                r.error(
                    &at,
                    "`update_customer` changes nothing",
                    "give the fields to set, e.g. `{ orders_count: 1 }`",
                );
                return None;
            }
            Some(Action::UpdateCustomer { customer, set: obj })
        }
        "expect_email" => Some(Action::ExpectEmail(email_match(r, arg, &at, start, true)?)),
        "expect_no_email" => Some(Action::ExpectNoEmail(email_match(
            r, arg, &at, start, false,
        )?)),
        "expect_coupon" => {
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
                    &at,
                    "`expect_coupon` takes `{ prefix?, template?, to? }`",
                    "e.g. `expect_coupon: { prefix: WELCOME }`",
                );
                return None;
            }
            Some(Action::ExpectCoupon {
                email: email_match(r, &filtered, &at, start, false)?,
                prefix,
            })
        }
        "expect_exit" => {
            let obj = r.mapping(arg, &at, "`expect_exit`")?;
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
                    r.error(&at, "`expect_exit` needs a `reason`", "`converted` (exit_when met), `completed`, `failed`, or an `exit:` step's reason");
                    None
                }
            }
        }
        "expect_stage" => {
            let mut obj = r.json_object(arg, &at, "`expect_stage`")?;
            let given = obj.remove("customer");
            let customer = r.customer(given, &at, ids)?;
            let stage = match obj.remove("stage") {
                Some(Json::String(s)) => s,
                _ => {
                    r.error(
                        &at,
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
        other => {
            r.unknown_key(&at, other, &STEP_KEYS, "step or expectation");
            None
        }
    }
}

fn email_match(
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
