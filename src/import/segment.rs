//! Segment's Tracking API messages (what Segment, RudderStack and Jitsu send) as tidings'
//! own rows: `identify` is a customer, `track` an event, and e-commerce `Order Completed`
//! also an order. A problem is reported at the message's field (`traits/email`), with the
//! message's place in the body as its line.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::customer::customer_from_cells;
use super::event::event_from_cells;
use super::order::order_from_cells;
use super::{Cell, CustomerRow, EventId, EventRow, OrderRow, RowError};

/// Segment's trait names (camelCase as its spec writes them, or snake_case) for the
/// customer's fixed fields; every other trait is an attribute.
const TRAITS: &[(&str, &str)] = &[
    ("email", "email"),
    ("firstName", "first_name"),
    ("first_name", "first_name"),
    ("lastName", "last_name"),
    ("last_name", "last_name"),
    ("birthday", "birthday"),
    ("createdAt", "created_at"),
    ("created_at", "created_at"),
    ("timezone", "timezone"),
    ("locale", "locale"),
    ("tags", "tags"),
];

/// The e-commerce event that is also an order.
pub const ORDER_COMPLETED: &str = "Order Completed";

/// A body of Segment messages, read.
#[derive(Debug, Default)]
pub struct SegmentRows {
    pub customers: Vec<CustomerRow>,
    pub events: Vec<EventRow>,
    pub orders: Vec<OrderRow>,
    /// Messages of a type tidings does not keep (`page`, `screen`, `group`, `alias`).
    pub ignored: u64,
    /// Every problem; `line` is the message's index plus one, `field` its path in it.
    pub errors: Vec<RowError>,
}

/// Reads messages in order; `now` dates a message without a `timestamp`.
pub fn segment(messages: &[Value], now: DateTime<Utc>) -> SegmentRows {
    let mut out = SegmentRows::default();
    for (i, message) in messages.iter().enumerate() {
        let line = i as u64 + 1;
        let fail = |field: &str, message: String| RowError {
            line,
            column: None,
            field: field.to_string(),
            message,
        };
        let Value::Object(m) = message else {
            out.errors
                .push(fail("", "a message must be a JSON object".into()));
            continue;
        };
        let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "identify" | "track" => {}
            "page" | "screen" | "group" | "alias" => {
                out.ignored += 1;
                continue;
            }
            _ => {
                out.errors.push(fail(
                    "type",
                    "`type` must be one of identify, track, page, screen, group, alias".into(),
                ));
                continue;
            }
        }
        if let Some(e) = shapes(line, m) {
            out.errors.push(e);
            continue;
        }
        let user = match m.get("userId") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                out.errors.push(fail(
                    "userId",
                    "`userId` is missing: tidings keeps customers by the shop's own id; send the message once the visitor has one (anonymousId alone is not kept)".into(),
                ));
                continue;
            }
        };
        let at = match m.get("timestamp") {
            None | Some(Value::Null) => Ok(now),
            Some(Value::String(t)) => crate::time::parse_time(t),
            Some(other) => Err(format!("`{other}` is not a time")),
        };
        let at = match at {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(fail("timestamp", e));
                continue;
            }
        };
        if kind == "identify" {
            match identify(line, &user, m) {
                Ok(row) => out.customers.push(row),
                Err(mut e) => out.errors.append(&mut e),
            }
            continue;
        }
        match track(line, &user, m, at) {
            Ok((event, order)) => {
                out.events.push(event);
                out.orders.extend(order);
            }
            Err(mut e) => out.errors.append(&mut e),
        }
    }
    out
}

/// A key, whether its value fits, and what it must be.
type Shape = (&'static str, fn(&Value) -> bool, &'static str);

/// The first key of a message whose value is not of the type Segment's spec gives it.
fn shapes(line: u64, m: &Map<String, Value>) -> Option<RowError> {
    let object = |v: &Value| v.is_object() || v.is_null();
    let text = |v: &Value| v.is_string() || v.is_null();
    let checks: [Shape; 5] = [
        ("traits", object, "a JSON object"),
        ("properties", object, "a JSON object"),
        ("context", object, "a JSON object"),
        ("messageId", text, "text"),
        ("anonymousId", text, "text"),
    ];
    checks.into_iter().find_map(|(key, fits, what)| {
        let v = m.get(key)?;
        (!fits(v)).then(|| RowError {
            line,
            column: None,
            field: key.into(),
            message: format!("`{key}` must be {what}, found `{v}`"),
        })
    })
}

fn identify(line: u64, user: &str, m: &Map<String, Value>) -> Result<CustomerRow, Vec<RowError>> {
    let empty = Map::new();
    let traits = match m.get("traits") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(t)) => t,
        Some(_) => {
            return Err(vec![RowError {
                line,
                column: None,
                field: "traits".into(),
                message: "`traits` must be a JSON object".into(),
            }]);
        }
    };
    let mut row = Map::new();
    // Where each of the row's fields came from, to name it in an error.
    let mut paths: Vec<(String, String)> = vec![("id".into(), "userId".into())];
    row.insert("id".into(), Value::String(user.to_string()));
    let context = m.get("context").and_then(Value::as_object);
    for key in ["locale", "timezone"] {
        if let Some(v) = context.and_then(|c| c.get(key)).filter(|v| !v.is_null()) {
            row.insert(key.into(), v.clone());
            paths.push((key.into(), format!("context/{key}")));
        }
    }
    let mut attributes = Map::new();
    for (k, v) in traits {
        match TRAITS.iter().find(|(t, _)| t == k) {
            Some((_, field)) => {
                let v = match (*field, v) {
                    // Segment's spec allows a birthday as a full ISO 8601 time.
                    ("birthday", Value::String(s)) if s.len() > 10 && s.is_char_boundary(10) => {
                        Value::String(s[..10].to_string())
                    }
                    _ => v.clone(),
                };
                row.insert((*field).to_string(), v);
                paths.push(((*field).to_string(), format!("traits/{k}")));
            }
            None if k == "id" || k == "userId" => {}
            None => {
                attributes.insert(k.clone(), v.clone());
            }
        }
    }
    if !attributes.is_empty() {
        row.insert("attributes".into(), Value::Object(attributes));
    }
    let cells: Vec<(String, Option<usize>, Cell<'_>)> = row
        .iter()
        .map(|(k, v)| (k.clone(), None, Cell::Json(v)))
        .collect();
    customer_from_cells(line, cells).map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                if let Some((_, path)) = paths.iter().find(|(f, _)| *f == e.field) {
                    e.field = path.clone();
                }
                e
            })
            .collect()
    })
}

/// A track message as an event (its name in tidings' form: `Order Completed` is
/// `order_completed`), and the order an `Order Completed` is.
fn track(
    line: u64,
    user: &str,
    m: &Map<String, Value>,
    at: DateTime<Utc>,
) -> Result<(EventRow, Option<OrderRow>), Vec<RowError>> {
    let fail = |field: &str, message: &str| {
        vec![RowError {
            line,
            column: None,
            field: field.into(),
            message: message.into(),
        }]
    };
    let Some(name) = m.get("event").and_then(Value::as_str) else {
        return Err(fail("event", "a track message needs `event`, its name"));
    };
    let properties = match m.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(fail("properties", "`properties` must be a JSON object")),
    };
    let event_name = snake_case(name);
    if event_name.is_empty() {
        return Err(fail("event", "the event's name has no letters or digits"));
    }
    let mut row = Map::new();
    row.insert("customer_id".into(), Value::String(user.to_string()));
    row.insert("name".into(), Value::String(event_name));
    row.insert("properties".into(), Value::Object(properties.clone()));
    let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    row.insert("at".into(), Value::String(stamp.clone()));
    let cells: Vec<(String, Option<usize>, Cell<'_>)> = row
        .iter()
        .map(|(k, v)| (k.clone(), None, Cell::Json(v)))
        .collect();
    let mut event = event_from_cells(line, cells, at)?;
    // A retry carries the same messageId; without one, what the event says decides.
    event.id = match m.get("messageId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => EventId::Given(format!("segment:{id}")),
        _ => EventId::Given(format!("segment:{}", event.fingerprint)),
    };
    if name != ORDER_COMPLETED {
        return Ok((event, None));
    }
    Ok((event, Some(order_of(line, user, &properties, stamp)?)))
}

/// An `Order Completed` message's order, each problem named by the property it came from.
fn order_of(
    line: u64,
    user: &str,
    properties: &Map<String, Value>,
    stamp: String,
) -> Result<OrderRow, Vec<RowError>> {
    let mut order = Map::new();
    order.insert("customer_id".into(), Value::String(user.to_string()));
    order.insert("placed_at".into(), Value::String(stamp));
    order.insert("status".into(), Value::String("completed".into()));
    let mut paths: Vec<(&str, &str)> = Vec::new();
    for (from, to) in [
        ("order_id", "id"),
        ("total", "total"),
        ("currency", "currency"),
        ("coupon", "coupon"),
        ("products", "lines"),
    ] {
        let value = match (from, properties.get(from)) {
            // Segment's spec: `total` is revenue with shipping and tax; `revenue` without.
            ("total", None) => properties.get("revenue"),
            (_, v) => v,
        };
        if let Some(v) = value.filter(|v| !v.is_null()) {
            let v = match v {
                Value::Number(n) if from == "order_id" => Value::String(n.to_string()),
                v => v.clone(),
            };
            order.insert(to.into(), v);
            paths.push((to, from));
        }
    }
    let cells: Vec<(String, Option<usize>, Cell<'_>)> = order
        .iter()
        .map(|(k, v)| (k.clone(), None, Cell::Json(v)))
        .collect();
    order_from_cells(line, cells).map_err(|errors| {
        errors
            .into_iter()
            .map(|mut e| {
                let from = paths.iter().find(|(to, _)| *to == e.field).map(|p| p.1);
                e.field = format!("properties/{}", from.unwrap_or(e.field.as_str()));
                if e.field == "properties/id" {
                    e.field = "properties/order_id".into();
                }
                e
            })
            .collect::<Vec<_>>()
    })
}

/// `Order Completed` → `order_completed`: the form workflows name events in.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if (gap || (c.is_uppercase() && prev_lower)) && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            prev_lower = c.is_lowercase() || c.is_numeric();
            out.extend(c.to_lowercase());
        } else {
            gap = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_become_the_form_workflows_use() {
        assert_eq!(snake_case("Order Completed"), "order_completed");
        assert_eq!(snake_case("Product Viewed"), "product_viewed");
        assert_eq!(snake_case("checkoutStarted"), "checkout_started");
        assert_eq!(snake_case("signed_up"), "signed_up");
        assert_eq!(snake_case("  --  "), "");
    }

    #[test]
    fn a_batch_becomes_customers_events_and_orders() {
        let now = crate::time::parse_time("2026-06-01T00:00:00Z").unwrap();
        let batch = json!([
            {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com", "firstName": "Ada", "plan": "pro"}, "context": {"locale": "en-GB"}},
            {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "m1", "timestamp": "2026-05-31T10:00:00.000Z",
             "properties": {"order_id": 50, "total": 27.5, "currency": "eur", "coupon": "HELLO", "products": [{"sku": "T1", "quantity": 1}]}},
            {"type": "page", "userId": "u1"},
            {"type": "identify", "anonymousId": "x"},
            {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"total": "lots"}}
        ]);
        let rows = segment(batch.as_array().unwrap(), now);
        let c = &rows.customers[0].customer;
        assert_eq!(
            (c.id.as_str(), c.first_name.as_deref()),
            ("u1", Some("Ada"))
        );
        assert_eq!(c.locale.as_deref(), Some("en-GB"));
        assert_eq!(c.attributes["plan"], "pro");
        assert_eq!(rows.events[0].name, "order_completed");
        assert_eq!(rows.events[0].id, EventId::Given("segment:m1".into()));
        let o = &rows.orders[0].order;
        assert_eq!((o.id.as_str(), o.total), ("50", 27.5));
        assert_eq!(o.currency.as_deref(), Some("EUR"));
        assert_eq!(o.lines[0]["sku"], "T1");
        assert_eq!(rows.ignored, 1);
        let at: Vec<(u64, &str)> = rows
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (4, "userId"),
                (5, "properties/total"),
                (5, "properties/order_id")
            ]
        );
    }
}
