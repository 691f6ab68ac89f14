//! An order row: its id, its customer, its total and time, each checked, every problem of
//! the row reported; the columns tidings does not know are kept with the order.

use super::customer::number;
use super::{Cell, OrderRow, RowError};
use crate::model::order::Order;
use crate::time::parse_time;
use serde_json::{Map, Value};

pub(super) fn order_from_cells(
    line: u64,
    cells: Vec<(String, Option<usize>, Cell<'_>)>,
) -> Result<OrderRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut parts = Parts::default();
    for (field, column, cell) in &cells {
        let mut fail = |message: String| {
            errors.push(RowError {
                line,
                column: *column,
                field: field.clone(),
                message,
            })
        };
        parts.read(field, cell, &mut fail);
    }
    for (field, missing) in [
        ("id", parts.id.is_none()),
        ("customer_id", parts.customer_id.is_none()),
        ("total", parts.total.is_none()),
        ("placed_at", parts.placed_at.is_none()),
    ] {
        let already = errors.iter().any(|e| e.field == field);
        if missing && !already {
            errors.push(RowError {
                line,
                column: None,
                field: field.into(),
                message: format!("an order needs `{field}`"),
            });
        }
    }
    let Parts {
        id: Some(id),
        customer_id: Some(customer_id),
        total: Some(total),
        currency,
        status,
        coupon,
        placed_at: Some(placed_at),
        updated_at,
        lines,
        extra,
    } = parts
    else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(OrderRow {
        line,
        order: Order {
            id,
            customer_id,
            total,
            currency,
            status: status.unwrap_or_else(|| "placed".into()),
            coupon,
            placed_at,
            lines: lines.unwrap_or_else(|| Value::Array(Vec::new())),
            extra,
        },
        updated_at,
    })
}

/// An order row's fields as its cells give them.
#[derive(Default)]
struct Parts {
    id: Option<String>,
    customer_id: Option<String>,
    total: Option<f64>,
    currency: Option<String>,
    status: Option<String>,
    coupon: Option<String>,
    placed_at: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    lines: Option<Value>,
    extra: Map<String, Value>,
}

impl Parts {
    fn read(&mut self, field: &str, cell: &Cell<'_>, fail: &mut dyn FnMut(String)) {
        let text = |fail: &mut dyn FnMut(String)| match cell.text() {
            Ok(Some(t)) if t.trim().is_empty() => None,
            Ok(t) => t.map(|t| t.trim().to_string()),
            Err(m) => {
                fail(format!("`{field}` {m}"));
                None
            }
        };
        match field {
            "id" | "order_id" => self.id = text(fail),
            "customer_id" => self.customer_id = text(fail),
            "total" => match number(cell, |t| t.parse::<f64>().ok(), Value::as_f64) {
                Some(Ok(n)) if n.is_finite() => self.total = Some(n),
                Some(Ok(n)) => fail(format!("`{n}` is not a number; write e.g. `149.50`")),
                Some(Err(t)) => fail(format!("`{t}` is not a number; write e.g. `149.50`")),
                None => {}
            },
            "currency" => match text(fail) {
                Some(c) if c.len() == 3 && c.chars().all(|c| c.is_ascii_alphabetic()) => {
                    self.currency = Some(c.to_ascii_uppercase());
                }
                Some(c) => fail(format!(
                    "`{c}` is not a currency; write its ISO 4217 code, e.g. `EUR`"
                )),
                None => {}
            },
            "status" => self.status = text(fail).map(|s| s.to_lowercase()),
            "coupon" => self.coupon = text(fail),
            "placed_at" | "updated_at" => {
                if matches!(cell, Cell::Json(Value::String(t)) if t.trim().is_empty()) {
                    return fail(format!("`{field}` is empty; write a time, or leave it out"));
                }
                let Some(t) = text(fail) else { return };
                match parse_time(&t) {
                    Ok(t) if field == "placed_at" => self.placed_at = Some(t),
                    Ok(t) => self.updated_at = Some(t),
                    Err(m) => fail(m),
                }
            }
            "lines" => self.lines = lines(cell, fail),
            _ => {
                if let Some(v) = cell.value() {
                    self.extra.insert(field.to_string(), v);
                }
            }
        }
    }
}

/// An order's lines: a JSON array, or a text holding one (a CSV cell, a database's text
/// column); none is no lines.
fn lines(cell: &Cell<'_>, fail: &mut dyn FnMut(String)) -> Option<Value> {
    let parsed;
    let value = match cell {
        Cell::Text("") | Cell::Json(Value::Null) => return None,
        Cell::Text(t) => {
            parsed = serde_json::from_str::<Value>(t);
            parsed.as_ref().ok()
        }
        Cell::Json(Value::String(t)) => {
            parsed = serde_json::from_str::<Value>(t);
            parsed.as_ref().ok()
        }
        Cell::Json(v) => Some(*v),
    };
    match value {
        Some(v @ Value::Array(_)) => Some(v.clone()),
        _ => {
            fail("`lines` must be a JSON array of the order's lines, e.g. `[{\"sku\": \"TEA-1\", \"quantity\": 2, \"price\": 12.5}]`".into());
            None
        }
    }
}
