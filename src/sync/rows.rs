//! A shop's row as tidings' importer reads it: the database's own spellings of ids, times
//! and amounts put in the forms a file or the API would give.

use serde_json::{Map, Value};

use crate::model::customer::FieldKind;

/// How a column is read, by the feed and the column's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Text,
    Time,
    Date,
    Number,
    /// Left as the database gave it (an attribute, an order's extra column, its lines).
    AsIs,
}

fn want(feed: &str, column: &str) -> Want {
    if feed == "orders" {
        return match column {
            "id" | "order_id" | "customer_id" | "currency" | "status" | "coupon" => Want::Text,
            "placed_at" | "updated_at" => Want::Time,
            "total" => Want::Number,
            _ => Want::AsIs,
        };
    }
    match crate::model::customer::field(column).map(|f| f.kind) {
        Some(
            FieldKind::Id
            | FieldKind::Email
            | FieldKind::Text
            | FieldKind::Locale
            | FieldKind::Zone,
        ) => Want::Text,
        Some(FieldKind::Time) => Want::Time,
        Some(FieldKind::Date) => Want::Date,
        Some(FieldKind::Count | FieldKind::Amount) => Want::Number,
        _ => Want::AsIs,
    }
}

/// The row in the importer's forms. A customer's `updated_at` is the cursor's, not a
/// field: it is left out.
pub fn normalized(feed: &str, mut row: Map<String, Value>) -> Map<String, Value> {
    if feed == "customers" {
        row.remove("updated_at");
    }
    for (column, value) in row.iter_mut() {
        let new = match (want(feed, column), &*value) {
            (Want::Text, Value::Number(n)) => Some(Value::String(n.to_string())),
            (Want::Time, Value::String(s)) => Some(Value::String(time_text(s))),
            (Want::Date, Value::String(s)) if s.len() > 10 && s.is_char_boundary(10) => {
                Some(Value::String(s[..10].to_string()))
            }
            (Want::Number, Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number),
            _ => None,
        };
        if let Some(new) = new {
            *value = new;
        }
    }
    row
}

/// A key or value as plain text: a text as it is, anything else as JSON writes it.
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A time as databases print it (`2026-05-01 10:00:00`, `2026-05-01T10:00:00.5`,
/// `2026-05-01 10:00:00+00`, `2026-05-01`) in RFC 3339; a time without a zone is UTC.
pub fn time_text(s: &str) -> String {
    let s = s.trim();
    if s.len() == 10 {
        return format!("{s}T00:00:00Z");
    }
    let mut t = s.replacen(' ', "T", 1);
    let zone_at = t
        .get(19..)
        .and_then(|rest| rest.find(['Z', 'z', '+', '-']).map(|i| i + 19));
    match zone_at {
        None => t.push('Z'),
        // `+00` (PostgreSQL's short offset) is `+00:00`.
        Some(i) if t.len() - i == 3 && !t[i..].starts_with(['Z', 'z']) => t.push_str(":00"),
        Some(_) => {}
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_spellings_become_the_importers() {
        for (given, want) in [
            ("2026-05-01 10:00:00", "2026-05-01T10:00:00Z"),
            ("2026-05-01 10:00:00.123456", "2026-05-01T10:00:00.123456Z"),
            ("2026-05-01T10:00:00+00:00", "2026-05-01T10:00:00+00:00"),
            ("2026-05-01 10:00:00+00", "2026-05-01T10:00:00+00:00"),
            ("2026-05-01 10:00:00.5-05", "2026-05-01T10:00:00.5-05:00"),
            ("2026-05-01", "2026-05-01T00:00:00Z"),
        ] {
            assert_eq!(time_text(given), want, "{given}");
            assert!(crate::time::parse_time(want).is_ok(), "{want}");
        }
        let row = normalized(
            "orders",
            json!({"id": 7, "customer_id": 3, "total": "12.50", "placed_at": "2026-05-01 10:00:00", "lines": "[]", "updated_at": "2026-05-02 00:00:00", "note": 5})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            Value::Object(row),
            json!({"id": "7", "customer_id": "3", "total": 12.5, "placed_at": "2026-05-01T10:00:00Z", "lines": "[]", "updated_at": "2026-05-02T00:00:00Z", "note": 5})
        );
        let row = normalized(
            "customers",
            json!({"id": 1, "email": "a@b.co", "birthday": "1990-06-02T00:00:00", "created_at": "2026-01-01", "updated_at": "x"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            Value::Object(row),
            json!({"id": "1", "email": "a@b.co", "birthday": "1990-06-02", "created_at": "2026-01-01T00:00:00Z"})
        );
    }
}
