//! An event row: who, what, when, its properties and the customer fields it sets (checked
//! as a customer's are), and the id that tells a retry from a new event.

use super::customer::customer_from_cells;
use super::{Cell, EventId, EventRow, RowError};
use crate::time::parse_time;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// An event without an id gets [`EventId::Row`]: what it says, when it happened, and how
/// many rows saying the same at the same moment came before it.
pub(super) fn numbered(
    mut row: EventRow,
    seen: &mut std::collections::HashMap<String, u32>,
) -> EventRow {
    if row.id == EventId::None {
        let content = format!("row:{}:{}", row.fingerprint, row.at.timestamp_millis());
        let n = seen.entry(content.clone()).or_insert(0);
        row.id = EventId::Row(format!("{content}:{n}"));
        *n += 1;
    }
    row
}

pub(super) fn event_from_cells(
    line: u64,
    cells: Vec<(String, Option<usize>, Cell<'_>)>,
    now: DateTime<Utc>,
) -> Result<EventRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut parts = Parts::default();
    for (field, column, cell) in &cells {
        parts.read(field, cell, line, *column, &mut errors);
    }
    let Parts {
        id,
        customer_id,
        name,
        at,
        properties,
        set,
    } = parts;
    for (field, missing) in [
        ("customer_id", customer_id.is_none()),
        ("name", name.is_none()),
    ] {
        if missing {
            errors.push(RowError {
                line,
                column: None,
                field: field.into(),
                message: format!("an event needs a `{field}`"),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (customer_id, name) = (customer_id.unwrap_or_default(), name.unwrap_or_default());
    let fingerprint = fingerprint(&customer_id, &name, at, &properties, &set);
    Ok(EventRow {
        line,
        id: id.map_or(EventId::None, EventId::Given),
        fingerprint,
        customer_id,
        name,
        at: at.unwrap_or(now),
        properties,
        set,
    })
}

/// An event row's fields as its cells give them.
#[derive(Default)]
struct Parts {
    id: Option<String>,
    customer_id: Option<String>,
    name: Option<String>,
    at: Option<DateTime<Utc>>,
    properties: Map<String, Value>,
    set: Map<String, Value>,
}

impl Parts {
    /// One cell into its place; each problem into `errors`, at the cell's line and column.
    fn read(
        &mut self,
        field: &str,
        cell: &Cell<'_>,
        line: u64,
        column: Option<usize>,
        errors: &mut Vec<RowError>,
    ) {
        let problem = |message: String| RowError {
            line,
            column,
            field: field.to_string(),
            message,
        };
        let text = match field {
            "id" => Some(&mut self.id),
            "customer_id" | "customer" => Some(&mut self.customer_id),
            "name" | "event" => Some(&mut self.name),
            _ => None,
        };
        if let Some(slot) = text {
            match cell.text() {
                // A JSON "" is given, and names nothing: not a key, customer or event.
                Ok(Some("")) => errors.push(problem(format!("`{field}` is empty"))),
                Ok(t) => *slot = t.map(str::to_string),
                Err(m) => errors.push(problem(format!("`{field}` {m}"))),
            }
            return;
        }
        match field {
            "at" => match cell.text() {
                Ok(None) => {}
                Ok(Some(t)) => match parse_time(t) {
                    Ok(t) => self.at = Some(t),
                    Err(m) => errors.push(problem(m)),
                },
                Err(m) => errors.push(problem(format!("`at` {m}"))),
            },
            "properties" | "set" => match object_of(cell) {
                Some(m) if field == "set" => {
                    errors.extend(set_errors(line, column, &m));
                    self.set = m;
                }
                Some(m) => self.properties.extend(m),
                None => errors.push(problem(format!("`{field}` must be a JSON object"))),
            },
            other => {
                if let Some(value) = cell.value() {
                    self.properties.insert(other.to_string(), value);
                }
            }
        }
    }
}

/// A JSON object given as JSON or as the text of a CSV cell; empty or null is none.
fn object_of(cell: &Cell<'_>) -> Option<Map<String, Value>> {
    match cell {
        Cell::Json(Value::Object(m)) => Some(m.clone()),
        Cell::Json(Value::Null) => Some(Map::new()),
        Cell::Text("") => Some(Map::new()),
        Cell::Text(t) => serde_json::from_str::<Map<String, Value>>(t).ok(),
        Cell::Json(_) => None,
    }
}

/// Customer fields an event's `set` may not change: who the customer is and their consent
/// belong to `POST /v1/customers` and the unsubscribe link; `attributes` are set by name.
pub(super) const NOT_SETTABLE: [&str; 4] = ["id", "email", "unsubscribed_at", "attributes"];

/// An event's `set`, checked by the rules of a customer row (the same messages as
/// `POST /v1/customers`), each problem named `set/FIELD`.
pub(super) fn set_errors(
    line: u64,
    column: Option<usize>,
    set: &Map<String, Value>,
) -> Vec<RowError> {
    let at = |field: &str, message: String| RowError {
        line,
        column,
        field: format!("set/{field}"),
        message,
    };
    let mut errors: Vec<RowError> = set
        .keys()
        .filter(|k| NOT_SETTABLE.contains(&k.as_str()))
        .map(|k| {
            at(
                k,
                format!("an event cannot set `{k}`; change it with `POST /v1/customers`"),
            )
        })
        .collect();
    let (id, email) = (Value::from("-"), Value::from("set@example.com"));
    let mut cells: Vec<(String, Option<usize>, Cell<'_>)> = vec![
        ("id".into(), None, Cell::Json(&id)),
        ("email".into(), None, Cell::Json(&email)),
    ];
    cells.extend(
        set.iter()
            .filter(|(k, _)| !NOT_SETTABLE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), None, Cell::Json(v))),
    );
    if let Err(found) = customer_from_cells(line, cells) {
        errors.extend(found.into_iter().map(|e| at(&e.field, e.message)));
    }
    errors.sort_by(|a, b| a.field.cmp(&b.field));
    errors
}

/// What tells a recorded event from another, as given: a retry of the same event has the
/// same fingerprint, a different event under a reused key does not. `at` counts only when
/// given (a retry without it arrives at another moment).
pub(super) fn fingerprint(
    customer_id: &str,
    name: &str,
    at: Option<DateTime<Utc>>,
    properties: &Map<String, Value>,
    set: &Map<String, Value>,
) -> String {
    let canonical = serde_json::json!([
        customer_id,
        name,
        at.map(|t| t.timestamp_millis()),
        properties,
        set
    ])
    .to_string();
    let (a, b) = (
        crate::model::ids::fnv(&canonical),
        crate::model::ids::fnv(&format!("{canonical}#2")),
    );
    format!("{a:016x}{b:016x}")
}
