//! Reading a test file's YAML: strings, times (absolute or `+2d` from the start), maps,
//! fixture customers and events, each mistake reported at its line.

use crate::import::RowError;
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route, closest};
use crate::workflow::plan::Workflow;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

pub(super) struct Reader<'a> {
    pub(super) doc: &'a Document,
    pub(super) wf: &'a Workflow,
    pub(super) templates: Vec<String>,
    /// The names of the lifecycle stages, when the project has them.
    pub(super) stages: Option<Vec<String>>,
    pub(super) diagnostics: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    pub(super) fn error(
        &mut self,
        route: &Route,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.diagnostics.push(
            Diagnostic::error("test-invalid", message)
                .at(self.doc.value_span(route))
                .help(help),
        );
    }

    pub(super) fn unknown_key(&mut self, route: &Route, key: &str, known: &[&str], what: &str) {
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

    pub(super) fn string(&mut self, value: &Value, route: &Route, what: &str) -> Option<String> {
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

    pub(super) fn time(
        &mut self,
        value: &Value,
        route: &Route,
        start: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let text = self.string(value, route, "time")?;
        self.time_text(text, route, start)
    }

    /// RFC 3339, or `+2d` after the case's start where there is one.
    pub(super) fn time_text(
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

    pub(super) fn mapping<'v>(
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
    pub(super) fn json_object(
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
    pub(super) fn customer(
        &mut self,
        given: Option<Json>,
        route: &Route,
        ids: &[String],
    ) -> Option<String> {
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

    /// A row's `customer` (or `customer_id`) as its `customer_id`: the one named, or the
    /// only fixture customer.
    pub(super) fn owner(
        &mut self,
        obj: &mut Map<String, Json>,
        route: &Route,
        ids: &[String],
    ) -> Option<()> {
        let given = obj.remove("customer").or_else(|| obj.remove("customer_id"));
        let customer = self.customer(given, route, ids)?;
        obj.insert("customer_id".into(), Json::String(customer));
        Some(())
    }

    /// A time field of a row (RFC 3339, or `+2d` after `start`) as RFC 3339; `None` when it
    /// is not a time (reported).
    pub(super) fn time_field(
        &mut self,
        obj: &mut Map<String, Json>,
        key: &str,
        route: &Route,
        start: Option<DateTime<Utc>>,
    ) -> Option<()> {
        if let Some(value) = obj.get(key).cloned() {
            let text = match value {
                Json::String(t) => t,
                other => other.to_string(),
            };
            let t = self.time_text(text, &route.key(key), start)?;
            obj.insert(key.into(), Json::String(t.to_rfc3339()));
        }
        Some(())
    }

    /// One fixture row's import errors, reported at the fields they name: `None` when
    /// there were any.
    pub(super) fn clean(&mut self, errors: Vec<RowError>, route: &Route) -> Option<()> {
        if errors.is_empty() {
            return Some(());
        }
        self.row_errors(errors, std::slice::from_ref(route));
        None
    }

    /// A case's list under `key` (none: empty), each item read by `read` with its route
    /// and index; an item `read` refuses (reported) is left out.
    pub(super) fn items<T>(
        &mut self,
        list: Option<&Value>,
        route: &Route,
        key: &str,
        example: &str,
        mut read: impl FnMut(&mut Self, &Value, &Route, usize) -> Option<T>,
    ) -> Vec<T> {
        match list {
            None => Vec::new(),
            Some(Value::Sequence(list)) => (list.iter().enumerate())
                .filter_map(|(i, item)| read(self, item, &route.key(key).index(i), i))
                .collect(),
            Some(_) => {
                self.error(
                    &route.key(key),
                    format!("`{key}` must be a list"),
                    format!("write `- {example}` items"),
                );
                Vec::new()
            }
        }
    }

    /// Import errors of fixture rows, at the field they name.
    pub(super) fn row_errors(&mut self, errors: Vec<RowError>, routes: &[Route]) {
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
