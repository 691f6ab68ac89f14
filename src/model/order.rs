//! An order as tidings keeps it: the shop's own record, from which each customer's
//! `orders_count`, `total_spent`, `first_order_at` and `last_order_at` are derived, and the
//! events an order records when it is first seen and when it is called off.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The event a new order records (once per order id, however often the order is seen);
/// its `properties.coupon` redeems a coupon.
pub const ORDER_PLACED: &str = "order_placed";
/// The event an order records when its status becomes `cancelled` (once).
pub const ORDER_CANCELLED: &str = "order_cancelled";
/// The event an order records when its status becomes `refunded` (once).
pub const ORDER_REFUNDED: &str = "order_refunded";

/// Whether an event is one an order records (its customer's figures changed with it).
pub fn changes_figures(event: &str) -> bool {
    [ORDER_PLACED, ORDER_CANCELLED, ORDER_REFUNDED].contains(&event)
}

/// The columns of an order, in the order the store, the CSV header and an event's
/// properties use (`id` is `order_id` in the event).
pub const ORDER_FIELDS: &[&str] = &[
    "id",
    "customer_id",
    "total",
    "currency",
    "status",
    "coupon",
    "placed_at",
    "lines",
];

/// What an order's status means for the customer's figures: the shop's statuses are its
/// own words, and only two of them take an order out of the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Counted in `orders_count`, `total_spent` and the order times.
    Counted,
    Cancelled,
    Refunded,
}

impl Standing {
    /// The standing of a status as the shop writes it (case and spaces do not matter).
    pub fn of(status: &str) -> Self {
        match status.trim().to_ascii_lowercase().as_str() {
            "cancelled" | "canceled" => Standing::Cancelled,
            "refunded" => Standing::Refunded,
            _ => Standing::Counted,
        }
    }

    /// The event a change into this standing records, if any.
    pub fn event(self) -> Option<&'static str> {
        match self {
            Standing::Counted => None,
            Standing::Cancelled => Some(ORDER_CANCELLED),
            Standing::Refunded => Some(ORDER_REFUNDED),
        }
    }
}

/// The statuses that take an order out of the counts, as SQL lists them (lowercase).
pub const UNCOUNTED_STATUSES: &[&str] = &["cancelled", "canceled", "refunded"];

/// An order as read from a file, the API, Segment or the shop's database.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub total: f64,
    pub currency: Option<String>,
    /// The shop's status, lowercase; `placed` when none is given.
    pub status: String,
    pub coupon: Option<String>,
    pub placed_at: DateTime<Utc>,
    /// The order's lines (products, quantities, prices) as the shop gives them: a JSON
    /// array, shown to templates as `event.properties.lines`.
    pub lines: Value,
    /// Every other column the shop gave, kept with the order and its events.
    pub extra: Map<String, Value>,
}

impl Order {
    pub fn standing(&self) -> Standing {
        Standing::of(&self.status)
    }

    /// The properties of the events this order records: its columns, `id` as `order_id`,
    /// then whatever else the shop gave.
    pub fn properties(&self) -> Map<String, Value> {
        let mut p = self.extra.clone();
        let text = |t: &Option<String>| t.clone().map_or(Value::Null, Value::String);
        p.insert("order_id".into(), Value::String(self.id.clone()));
        p.insert("total".into(), number(self.total));
        p.insert("currency".into(), text(&self.currency));
        p.insert("status".into(), Value::String(self.status.clone()));
        p.insert("coupon".into(), text(&self.coupon));
        p.insert(
            "placed_at".into(),
            Value::String(
                self.placed_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
        );
        p.insert("lines".into(), self.lines.clone());
        p
    }

    /// A fingerprint of everything the order says, given its [`Order::properties`] as
    /// JSON text: an order seen again unchanged writes nothing.
    pub fn fingerprint(&self, properties: &str) -> String {
        let canonical = format!("{}\n{properties}", self.customer_id);
        let (a, b) = (
            super::ids::fnv(&canonical),
            super::ids::fnv(&format!("{canonical}#2")),
        );
        format!("{a:016x}{b:016x}")
    }
}

fn number(n: f64) -> Value {
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cancelled_and_refunded_orders_leave_the_counts() {
        assert_eq!(Standing::of("Cancelled "), Standing::Cancelled);
        assert_eq!(Standing::of("canceled"), Standing::Cancelled);
        assert_eq!(Standing::of("REFUNDED"), Standing::Refunded);
        for counted in ["placed", "completed", "processing", "wc-on-hold", ""] {
            assert_eq!(Standing::of(counted), Standing::Counted, "{counted}");
        }
        for s in UNCOUNTED_STATUSES {
            assert_ne!(Standing::of(s), Standing::Counted);
        }
    }
}
