//! Reading customers, events and orders from CSV and JSONL, one row at a time, with every bad value
//! reported at its line and column. Nothing here touches the store; `store` writes what
//! this reads, and the command decides whether a bad row stops the import.

mod customer;
mod event;
mod order;
pub mod segment;
use customer::customer_from_cells;
use event::{event_from_cells, numbered};
use order::order_from_cells;

use std::io::BufRead;

use chrono::{DateTime, Utc};

use serde_json::{Map, Value};

use crate::model::customer::Customer;

/// A problem with one value of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based line in the file.
    pub line: u64,
    /// 1-based column (CSV) or `None` (JSONL, where the key names the place).
    pub column: Option<usize>,
    /// The column or key, e.g. `email`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(c) => write!(
                f,
                "line {}, column {c} (`{}`): {}",
                self.line, self.field, self.message
            ),
            None if self.field.is_empty() => write!(f, "line {}: {}", self.line, self.message),
            None => write!(f, "line {} (`{}`): {}", self.line, self.field, self.message),
        }
    }
}

/// The file formats `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Jsonl,
}

impl FileFormat {
    /// From the file's extension: `.jsonl`/`.ndjson` are JSONL, anything else CSV.
    pub fn of(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => FileFormat::Jsonl,
            _ => FileFormat::Csv,
        }
    }
}

/// A customer as read, and which fixed columns the row gave (an upsert leaves the others
/// as they were).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub line: u64,
    pub customer: Customer,
    pub present: Vec<&'static str>,
    /// `unsubscribed_topics`, when the row gives it: the topics the customer opted out of
    /// (all others they get).
    pub unsubscribed_topics: Option<Vec<String>>,
}

/// Where an event's id comes from, which decides when two events are one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventId {
    /// The row's `id`, or a POST's `Idempotency-Key` scoped to its customer and event name:
    /// the same id with the same fingerprint is a retry, recorded once; with another
    /// fingerprint it is refused.
    Given(String),
    /// The id a file row gets from its content and how often that content came before in
    /// the file: importing the file again records nothing new, and two equal rows are two
    /// events.
    Row(String),
    /// None given (an API event without a key): a new event, with an id of its own.
    None,
}

/// An event as read.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub line: u64,
    pub id: EventId,
    /// What the event says, hashed: see [`EventId::Given`].
    pub fingerprint: String,
    pub customer_id: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub properties: Map<String, Value>,
    /// Changes to apply to the customer when the event is processed (`{"set": {...}}`).
    pub set: Map<String, Value>,
}

/// An order as read.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub line: u64,
    pub order: crate::model::order::Order,
    /// When the shop last changed it, if the row says: the moment a cancellation or refund
    /// it carries happened.
    pub updated_at: Option<DateTime<Utc>>,
}

/// One value from either format.
enum Cell<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl Cell<'_> {
    /// The value for an open map (attributes, event properties); `None` for an empty cell.
    fn value(&self) -> Option<Value> {
        match self {
            Cell::Text("") => None,
            Cell::Text(t) => Some(Value::String((*t).to_string())),
            Cell::Json(v) => Some((*v).clone()),
        }
    }

    /// A text field: `None` for an empty CSV cell or a JSON null (the value is missing); a
    /// JSON value must be a string (as `docs/openapi.json` says), and no text may hold a
    /// NUL character, which PostgreSQL cannot store and no address or name contains.
    fn text(&self) -> Result<Option<&str>, String> {
        let text = match self {
            Cell::Text("") | Cell::Json(Value::Null) => return Ok(None),
            Cell::Text(t) => *t,
            Cell::Json(Value::String(s)) => s.as_str(),
            Cell::Json(v) => return Err(format!("must be text (a JSON string), found `{v}`")),
        };
        if text.contains('\0') {
            return Err("text may not contain a NUL character (\\u0000)".into());
        }
        Ok(Some(text))
    }
}

/// Reads customers; each item is a row or the errors of one row.
pub fn customers(
    reader: Box<dyn BufRead>,
    format: FileFormat,
) -> Box<dyn Iterator<Item = Result<CustomerRow, Vec<RowError>>>> {
    match format {
        FileFormat::Csv => csv_rows(reader, customer_from_cells),
        FileFormat::Jsonl => jsonl_rows(reader, customer_from_cells),
    }
}

/// Reads events, defaulting a missing time to `now`.
pub fn events(
    reader: Box<dyn BufRead>,
    format: FileFormat,
    now: DateTime<Utc>,
) -> Box<dyn Iterator<Item = Result<EventRow, Vec<RowError>>>> {
    let build = move |line: u64, cells: Vec<(String, Option<usize>, Cell<'_>)>| {
        event_from_cells(line, cells, now)
    };
    let rows = match format {
        FileFormat::Csv => csv_rows(reader, build),
        FileFormat::Jsonl => jsonl_rows(reader, build),
    };
    let mut seen = std::collections::HashMap::new();
    Box::new(rows.map(move |row| row.map(|row| numbered(row, &mut seen))))
}

/// Reads orders; each item is a row or the errors of one row.
pub fn orders(
    reader: Box<dyn BufRead>,
    format: FileFormat,
) -> Box<dyn Iterator<Item = Result<OrderRow, Vec<RowError>>>> {
    match format {
        FileFormat::Csv => csv_rows(reader, order_from_cells),
        FileFormat::Jsonl => jsonl_rows(reader, order_from_cells),
    }
}

type Build<T> = dyn Fn(u64, Vec<(String, Option<usize>, Cell<'_>)>) -> Result<T, Vec<RowError>>;

fn csv_rows<T: 'static>(
    reader: Box<dyn BufRead>,
    build: impl Fn(u64, Vec<(String, Option<usize>, Cell<'_>)>) -> Result<T, Vec<RowError>> + 'static,
) -> Box<dyn Iterator<Item = Result<T, Vec<RowError>>>> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.iter().map(str::to_string).collect::<Vec<_>>(),
        Err(e) => {
            let err = RowError {
                line: 1,
                column: None,
                field: String::new(),
                message: format!("cannot read the header: {e}"),
            };
            return Box::new(std::iter::once(Err(vec![err])));
        }
    };
    // One column whose name holds `;` (or a tab): the file is separated by something else.
    if let [only] = &headers[..]
        && let Some(sep) = [';', '\t', '|'].into_iter().find(|c| only.contains(*c))
    {
        let shown = if sep == '\t' {
            "a tab".to_string()
        } else {
            format!("`{sep}`")
        };
        let err = RowError {
            line: 1,
            column: Some(1),
            field: String::new(),
            message: format!(
                "the header is one column, `{only}`: the file seems to separate its values with {shown}; save it with commas (`,`) between values"
            ),
        };
        return Box::new(std::iter::once(Err(vec![err])));
    }
    let build: Box<Build<T>> = Box::new(build);
    Box::new(csv.into_records().map(move |record| {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            vec![RowError {
                line,
                column: None,
                field: String::new(),
                message: format!("malformed CSV: {e}"),
            }]
        })?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != headers.len() {
            return Err(vec![RowError {
                line,
                column: None,
                field: String::new(),
                message: format!(
                    "the row has {} values but the header has {} columns",
                    record.len(),
                    headers.len()
                ),
            }]);
        }
        let cells = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .map(|(i, (h, v))| (h.clone(), Some(i + 1), Cell::Text(v)))
            .collect();
        build(line, cells)
    }))
}

fn jsonl_rows<T: 'static>(
    reader: Box<dyn BufRead>,
    build: impl Fn(u64, Vec<(String, Option<usize>, Cell<'_>)>) -> Result<T, Vec<RowError>> + 'static,
) -> Box<dyn Iterator<Item = Result<T, Vec<RowError>>>> {
    Box::new(
        reader
            .lines()
            .enumerate()
            .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
            .map(move |(i, line)| {
                let n = i as u64 + 1;
                let err = |message: String| {
                    vec![RowError {
                        line: n,
                        column: None,
                        field: String::new(),
                        message,
                    }]
                };
                let line = line.map_err(|e| err(format!("cannot read: {e}")))?;
                let value: Value = serde_json::from_str(&line)
                    .map_err(|e| err(format!("malformed JSON at character {}: {e}", e.column())))?;
                let Value::Object(map) = value else {
                    return Err(err("each line must be a JSON object".into()));
                };
                build(n, cells_of(&map))
            }),
    )
}

/// A JSON object's fields as cells.
fn cells_of(map: &Map<String, Value>) -> Vec<(String, Option<usize>, Cell<'_>)> {
    map.iter()
        .map(|(k, v)| (k.clone(), None, Cell::Json(v)))
        .collect()
}

/// Customers given as JSON objects (a test's fixtures, an API body), read as JSONL lines
/// would be: object `i` is line `i + 1`.
pub fn customers_of(objects: &[Map<String, Value>]) -> Vec<Result<CustomerRow, Vec<RowError>>> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| customer_from_cells(i as u64 + 1, cells_of(o)))
        .collect()
}

/// Orders given as JSON objects (an API body, a source's rows), read as JSONL lines would
/// be: object `i` is line `i + 1`.
pub fn orders_of(objects: &[Map<String, Value>]) -> Vec<Result<OrderRow, Vec<RowError>>> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| order_from_cells(i as u64 + 1, cells_of(o)))
        .collect()
}

/// Events given as JSON objects, read as JSONL lines would be, a missing time being `now`;
/// events without an id are numbered as a file's rows are (a test's fixtures).
pub fn events_of(
    objects: &[Map<String, Value>],
    now: DateTime<Utc>,
) -> Vec<Result<EventRow, Vec<RowError>>> {
    let mut seen = std::collections::HashMap::new();
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| event_from_cells(i as u64 + 1, cells_of(o), now))
        .map(|row| row.map(|row| numbered(row, &mut seen)))
        .collect()
}

/// Events POSTed to the API: an event without an `id` is a new event, unless the request's
/// `Idempotency-Key` names it (a single event), which is scoped to its customer and event
/// name.
pub fn events_posted(
    objects: &[Map<String, Value>],
    now: DateTime<Utc>,
    idempotency_key: Option<&str>,
) -> Vec<Result<EventRow, Vec<RowError>>> {
    objects
        .iter()
        .enumerate()
        .map(|(i, o)| event_from_cells(i as u64 + 1, cells_of(o), now))
        .map(|row| {
            row.map(|mut row| {
                if let (EventId::None, Some(key)) = (&row.id, idempotency_key) {
                    row.id = EventId::Given(format!("key:{}:{}:{key}", row.customer_id, row.name));
                }
                row
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn read_csv(text: &str) -> Vec<Result<CustomerRow, Vec<RowError>>> {
        customers(
            Box::new(std::io::Cursor::new(text.to_string())),
            FileFormat::Csv,
        )
        .collect()
    }

    #[test]
    fn csv_rows_with_attributes_tags_and_nulls() {
        let rows = read_csv(
            "id,email,first_name,tags,orders_count,tier\n1,a@example.com,山田,vip; new,2,gold\n2,b@example.com,,,,\n",
        );
        let a = rows[0].as_ref().unwrap();
        assert_eq!(a.customer.first_name.as_deref(), Some("山田"));
        assert_eq!(a.customer.tags, ["vip", "new"]);
        assert_eq!(a.customer.orders_count, 2);
        assert_eq!(a.customer.attributes["tier"], "gold");
        assert_eq!(a.line, 2);
        let b = rows[1].as_ref().unwrap();
        assert_eq!(b.customer.first_name, None);
        assert!(!b.customer.attributes.contains_key("tier"));
    }

    #[test]
    fn each_bad_value_is_reported_with_line_and_column() {
        let rows = read_csv(
            "id,email,birthday,orders_count,timezone,total_spent,created_at\n1,bob@,1990-02-30,two,Mars/Base,1.2.3,yesterday\n",
        );
        let errors = rows[0].as_ref().unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "line 2, column 2 (`email`): `bob@` is not an email address",
                "line 2, column 3 (`birthday`): `1990-02-30` is not a date; write YYYY-MM-DD",
                "line 2, column 4 (`orders_count`): `two` is not a whole number",
                "line 2, column 5 (`timezone`): `Mars/Base` is not an IANA time zone such as `Asia/Tokyo`",
                "line 2, column 6 (`total_spent`): `1.2.3` is not a number; write e.g. `149.50`",
                "line 2, column 7 (`created_at`): `yesterday` is not a time; write RFC 3339, e.g. `2026-05-01T10:00:00Z`",
            ]
        );
    }

    #[test]
    fn jsonl_rows_and_malformed_lines() {
        let text = "{\"id\":\"1\",\"email\":\"a@example.com\",\"tags\":[\"vip\"],\"vip_since\":2020}\nnot json\n\n{\"id\":\"2\"}\n";
        let rows: Vec<_> = customers(
            Box::new(std::io::Cursor::new(text.to_string())),
            FileFormat::Jsonl,
        )
        .collect();
        assert_eq!(
            rows[0].as_ref().unwrap().customer.attributes["vip_since"],
            2020
        );
        assert!(
            rows[1].as_ref().unwrap_err()[0]
                .to_string()
                .starts_with("line 2: malformed JSON")
        );
        // Whether an address is needed depends on the store: only a new customer needs one.
        let update = rows[2].as_ref().unwrap();
        assert_eq!((update.line, &update.present[..]), (4, &["id"][..]));
    }

    #[test]
    fn ragged_csv_rows_are_errors() {
        let rows = read_csv("id,email\n1,a@example.com,extra\n");
        assert_eq!(
            rows[0].as_ref().unwrap_err()[0].to_string(),
            "line 2: the row has 3 values but the header has 2 columns"
        );
    }

    /// A file's rows without an id: the same file read again gives the same ids (an import
    /// run twice records nothing new), and rows that differ only in their properties, or
    /// not at all, are separate events — none is merged into another.
    #[test]
    fn file_events_without_an_id_are_never_merged() {
        let now = parse_time("2026-06-01T00:00:00Z").unwrap();
        let text = "customer_id,name,at,order_id\n1,order_placed,2026-05-01T10:00:00Z,1001\n1,order_placed,2026-05-01T10:00:00Z,1002\n1,page_view,2026-05-01T10:00:00Z,\n1,page_view,2026-05-01T10:00:00Z,\n";
        let read = || -> Vec<EventRow> {
            events(
                Box::new(std::io::Cursor::new(text.to_string())),
                FileFormat::Csv,
                now,
            )
            .map(Result::unwrap)
            .collect()
        };
        let (first, again) = (read(), read());
        assert_eq!(first[0].properties["order_id"], "1001");
        let ids: std::collections::BTreeSet<&EventId> = first.iter().map(|e| &e.id).collect();
        assert_eq!(ids.len(), 4, "{ids:?}");
        assert!(first.iter().all(|e| matches!(e.id, EventId::Row(_))));
        assert_eq!(
            first.iter().map(|e| &e.id).collect::<Vec<_>>(),
            again.iter().map(|e| &e.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn api_events_are_new_unless_keyed_and_keys_are_scoped() {
        let now = parse_time("2026-06-01T00:00:00Z").unwrap();
        let obj = |v: Value| v.as_object().unwrap().clone();
        let a = obj(serde_json::json!({"customer_id": "c1", "name": "page_view"}));
        let b = obj(serde_json::json!({"customer_id": "c1", "name": "order_placed"}));
        let rows = events_posted(&[a.clone(), a.clone()], now, None);
        assert!(rows.iter().all(|r| r.as_ref().unwrap().id == EventId::None));
        let keyed = |o: &Map<String, Value>| {
            events_posted(std::slice::from_ref(o), now, Some("k1"))
                .remove(0)
                .unwrap()
        };
        assert_eq!(keyed(&a).id, EventId::Given("key:c1:page_view:k1".into()));
        assert_ne!(keyed(&a).id, keyed(&b).id);
        assert_eq!(keyed(&a).fingerprint, keyed(&a).fingerprint);
        let mut other = a.clone();
        other.insert("properties".into(), serde_json::json!({"page": "/x"}));
        assert_ne!(keyed(&a).fingerprint, keyed(&other).fingerprint);
    }

    #[test]
    fn an_events_set_follows_the_customer_rules() {
        let now = parse_time("2026-06-01T00:00:00Z").unwrap();
        let row = serde_json::json!({"customer_id": "c1", "name": "moved", "set": {
            "timezone": "Mars/Olympus", "locale": "!!", "orders_count": "two",
            "email": "x@y.z", "id": "c2", "tier": "gold"
        }});
        let errors = events_of(&[row.as_object().unwrap().clone()], now)
            .remove(0)
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "set/email",
                "set/id",
                "set/locale",
                "set/orders_count",
                "set/timezone"
            ]
        );
        assert!(
            errors[3]
                .message
                .contains("`\"two\"` is not a whole number"),
            "{}",
            errors[3].message
        );
    }

    #[test]
    fn json_fields_must_have_the_schemas_types() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        let problems = |v: Value| -> Vec<String> {
            match customers_of(&[obj(v)]).remove(0) {
                Ok(_) => Vec::new(),
                Err(e) => e.into_iter().map(|e| e.field).collect(),
            }
        };
        let base = |extra: Value| {
            let mut o = obj(serde_json::json!({"id": "1", "email": "a@b.co"}));
            o.extend(obj(extra));
            Value::Object(o)
        };
        assert_eq!(
            problems(serde_json::json!({"id": {"a": 1}, "email": "a@b.co"})),
            ["id"]
        );
        assert_eq!(
            problems(base(serde_json::json!({"birthday": ""}))),
            ["birthday"]
        );
        assert_eq!(
            problems(base(serde_json::json!({"created_at": ""}))),
            ["created_at"]
        );
        assert_eq!(
            problems(base(serde_json::json!({"orders_count": "2"}))),
            ["orders_count"]
        );
        assert_eq!(
            problems(base(serde_json::json!({"first_name": "A\u{0}"}))),
            ["first_name"]
        );
        assert!(problems(base(serde_json::json!({"orders_count": 2, "tags": null}))).is_empty());
        let event = events_of(
            &[obj(serde_json::json!({"customer_id": "1", "name": 5}))],
            Utc::now(),
        );
        assert_eq!(event[0].as_ref().unwrap_err()[0].field, "name");
    }
}
