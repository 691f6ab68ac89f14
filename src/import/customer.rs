//! A customer row, field by field: each value checked as its column asks (an address, a
//! BCP 47 locale, an IANA zone, a date, a count), every problem of the row reported.

use super::{Cell, CustomerRow, RowError};
use crate::model::customer::{Customer, Field, FieldKind, NewValue};
use crate::time::parse_time;
use chrono::NaiveDate;
use serde_json::{Map, Value};
use std::str::FromStr;

pub(super) fn customer_from_cells(
    line: u64,
    cells: Vec<(String, Option<usize>, Cell<'_>)>,
) -> Result<CustomerRow, Vec<RowError>> {
    let mut c = Customer::new("", "");
    let mut present = Vec::new();
    let mut errors = Vec::new();
    let mut topics = None;
    for (field, column, cell) in &cells {
        let mut fail = |message: String| {
            errors.push(RowError {
                line,
                column: *column,
                field: field.clone(),
                message,
            })
        };
        if field == UNSUBSCRIBED_TOPICS {
            topics = Some(list(cell, field, &mut fail));
            continue;
        }
        let Some(fixed) = crate::model::customer::field(field) else {
            // Every other column is an attribute, kept as given.
            if let Some(value) = cell.value() {
                c.attributes.insert(field.clone(), value);
            }
            continue;
        };
        present.push(fixed.name);
        match fixed.kind {
            FieldKind::Count | FieldKind::Amount => set_number(&mut c, fixed, cell, &mut fail),
            FieldKind::Tags => set_tags(&mut c, cell, &mut fail),
            FieldKind::Attributes => set_attributes(&mut c, cell, &mut fail),
            _ => match cell.text() {
                Ok(text) => set_text(&mut c, fixed, text.map(str::to_string), &mut fail),
                Err(m) => fail(format!("`{field}` {m}")),
            },
        }
    }
    // An address is needed only for a new customer: the store knows which this is.
    if !cells.iter().any(|(f, _, _)| f == "id") {
        errors.push(RowError {
            line,
            column: None,
            field: "id".into(),
            message: "a customer needs an id".into(),
        });
    }
    if errors.is_empty() {
        Ok(CustomerRow {
            line,
            customer: c,
            present,
            unsubscribed_topics: topics,
        })
    } else {
        Err(errors)
    }
}

/// A column of text: an id, an address, a name, a locale, a zone, a date or a time.
fn set_text(c: &mut Customer, f: &Field, text: Option<String>, fail: &mut dyn FnMut(String)) {
    let name = |t: Option<String>| t.filter(|t| !t.is_empty());
    // Only a JSON string can be empty here (an empty CSV cell is no value): a zone or a
    // language of "" is a mistake, where null says "none".
    if matches!(f.kind, FieldKind::Locale | FieldKind::Zone) && text.as_deref() == Some("") {
        return fail(format!(
            "`{}` is empty; write a value, or null for none",
            f.name
        ));
    }
    let value = match f.kind {
        FieldKind::Id => match name(text) {
            Some(t) => NewValue::Text(Some(t)),
            None => return fail("a customer needs an id".into()),
        },
        FieldKind::Email => match name(text) {
            Some(t) if is_email(&t) => NewValue::Text(Some(t)),
            Some(t) => return fail(format!("`{t}` is not an email address")),
            None => return fail("a customer needs an email address".into()),
        },
        FieldKind::Text => NewValue::Text(name(text)),
        FieldKind::Locale => match name(text) {
            Some(t) if is_locale(&t) => NewValue::Text(Some(t)),
            Some(t) => {
                return fail(format!(
                    "`{t}` is not a locale; write a BCP 47 tag such as `ja-JP` or `en`"
                ));
            }
            None => NewValue::Text(None),
        },
        FieldKind::Zone => match name(text) {
            Some(t) if chrono_tz::Tz::from_str(&t).is_ok() => NewValue::Text(Some(t)),
            Some(t) => {
                let zones = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
                return fail(match crate::source::yaml::closest(&t, zones) {
                    Some(best) => format!("`{t}` is not an IANA time zone; did you mean `{best}`?"),
                    None => format!("`{t}` is not an IANA time zone such as `Asia/Tokyo`"),
                });
            }
            None => NewValue::Text(None),
        },
        FieldKind::Date => match text
            .as_deref()
            .map(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| t.to_string()))
        {
            Some(Ok(d)) => NewValue::Date(Some(d)),
            Some(Err(t)) => return fail(format!("`{t}` is not a date; write YYYY-MM-DD")),
            None => NewValue::Date(None),
        },
        FieldKind::Time => NewValue::Time(match text.as_deref().map(parse_time) {
            Some(Ok(t)) => Some(t),
            Some(Err(m)) => {
                fail(m);
                None
            }
            None => None,
        }),
        FieldKind::Count | FieldKind::Amount | FieldKind::Tags | FieldKind::Attributes => return,
    };
    (f.set)(c, value);
}

/// A count (a whole number, 0 or more) or an amount (a finite number).
fn set_number(c: &mut Customer, f: &Field, cell: &Cell<'_>, fail: &mut dyn FnMut(String)) {
    if f.kind == FieldKind::Count {
        match number(cell, |t| t.parse::<i64>().ok(), Value::as_i64) {
            Some(Ok(n)) if n >= 0 => (f.set)(c, NewValue::Count(n)),
            Some(Ok(n)) => fail(format!("`{n}` is negative; an order count is 0 or more")),
            Some(Err(t)) => fail(format!("`{t}` is not a whole number")),
            None => (f.set)(c, NewValue::Count(0)),
        }
        return;
    }
    match number(cell, |t| t.parse::<f64>().ok(), Value::as_f64) {
        Some(Ok(n)) if n.is_finite() => (f.set)(c, NewValue::Amount(n)),
        Some(Ok(n)) => fail(format!("`{n}` is not a number; write e.g. `149.50`")),
        Some(Err(t)) => fail(format!("`{t}` is not a number; write e.g. `149.50`")),
        None => (f.set)(c, NewValue::Amount(0.0)),
    }
}

/// Tags: `;`-separated in CSV, an array of text in JSON.
/// The column that says which topics (of tidings.yaml's `topics:`) a customer opted out of.
pub const UNSUBSCRIBED_TOPICS: &str = "unsubscribed_topics";

fn set_tags(c: &mut Customer, cell: &Cell<'_>, fail: &mut dyn FnMut(String)) {
    c.tags = list(cell, "tags", fail);
}

/// A list of text: `a;b` in CSV, an array in JSON; null is empty.
fn list(cell: &Cell<'_>, name: &str, fail: &mut dyn FnMut(String)) -> Vec<String> {
    match cell {
        Cell::Text(t) => t
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Cell::Json(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => fail(format!("{name} must be text, found `{item}`")),
                }
            }
            out
        }
        Cell::Json(Value::Null) => Vec::new(),
        Cell::Json(other) => {
            fail(format!("{name} must be an array of text, found `{other}`"));
            Vec::new()
        }
    }
}

/// `attributes`: a JSON object, merged into those the customer has.
fn set_attributes(c: &mut Customer, cell: &Cell<'_>, fail: &mut dyn FnMut(String)) {
    match cell {
        Cell::Json(Value::Object(m)) => c.attributes.extend(m.clone()),
        Cell::Text("") => {}
        Cell::Text(t) => match serde_json::from_str::<Map<String, Value>>(t) {
            Ok(m) => c.attributes.extend(m),
            Err(_) => fail("attributes must be a JSON object".into()),
        },
        _ => fail("attributes must be a JSON object".into()),
    }
}

/// A numeric field: CSV text parsed by `parse`, a JSON number read by `read` (a string,
/// even of digits, is not a number in JSON); `None` when the value is missing, else the
/// number or the text shown in the error.
pub(super) fn number<T>(
    cell: &Cell<'_>,
    parse: impl Fn(&str) -> Option<T>,
    read: impl Fn(&Value) -> Option<T>,
) -> Option<Result<T, String>> {
    match cell {
        Cell::Text("") | Cell::Json(Value::Null) => None,
        Cell::Text(t) => Some(parse(t.trim()).ok_or_else(|| (*t).to_string())),
        Cell::Json(v) => Some(read(v).ok_or_else(|| v.to_string())),
    }
}

/// A pragmatic address check: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

pub(super) fn is_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let lang = parts.next().unwrap_or("");
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}
