//! The shop's data over HTTP, on both stores: `POST /v1/orders` keeps each customer's
//! order figures and records each order's events once; `POST /v1/segment` takes Segment's
//! messages (as RudderStack or a Segment destination sends them, with HTTP Basic), and a
//! batch posted twice leaves the store as posting it once.

use serde_json::{Value, json};

use crate::common::{Act, SmtpServer, free_port};
use crate::daemon::{Daemon, count, http};
use crate::store::{Backend, backends, with_store};

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-token");
/// `s3cret-token:` in base64: Segment's write key as the user name, no password.
const BASIC: (&str, &str) = ("Authorization", "Basic czNjcmV0LXRva2VuOg==");
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn post(port: u16, path: &str, auth: (&str, &str), body: &Value) -> (u16, Value) {
    let (status, answer) = http(
        port,
        "POST",
        path,
        &[JSON, auth],
        body.to_string().as_bytes(),
    );
    (
        status,
        serde_json::from_str(&answer).unwrap_or(Value::String(answer)),
    )
}

fn daemon(b: &Backend) -> (SmtpServer, u16, Daemon) {
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    crate::smtp::project(
        b,
        server.port,
        "server:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
    );
    let port = free_port();
    let daemon = Daemon::start(b, port, "1h");
    (server, port, daemon)
}

/// `(orders_count, total_spent, first_order_at, last_order_at)` of a customer.
fn figures(b: &Backend, id: &str) -> (i64, f64, Option<String>, Option<String>) {
    with_store(b, async |s| {
        let c = s.customer(id).await.unwrap().unwrap();
        let at = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339());
        (
            c.orders_count,
            c.total_spent,
            at(c.first_order_at),
            at(c.last_order_at),
        )
    })
}

fn named(b: &Backend, name: &str) -> i64 {
    with_store(b, async |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM events WHERE name = '{name}'"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get::<i64, _>(0)
    })
}

/// Orders posted keep the customer's figures (a cancelled order does not count), each
/// order records `order_placed` once however often it is posted, a refund records
/// `order_refunded` once and takes the order out of the figures, and a body with an
/// order of an unknown customer is refused with a pointer and stores nothing.
#[test]
fn orders_posted_keep_each_customers_figures_on_both_stores() {
    for b in backends("shop-api-orders") {
        let (_server, port, daemon) = daemon(&b);
        let (demo_orders, demo_refunds) = (named(&b, "order_placed"), named(&b, "order_refunded"));
        let orders = json!([
            {"id": "o1", "customer_id": "c1", "total": 10.5, "currency": "eur", "status": "completed", "placed_at": "2026-05-01T10:00:00Z", "lines": [{"sku": "TEA-1", "quantity": 1}]},
            {"id": "o2", "customer_id": "c1", "total": 20, "status": "cancelled", "placed_at": "2026-05-02T10:00:00Z"},
            {"id": "o3", "customer_id": "c1", "total": 4.25, "placed_at": "2026-05-03T10:00:00Z"}
        ]);
        let (status, answer) = post(port, "/v1/orders", AUTH, &orders);
        assert_eq!(status, 200, "{}: {answer}", b.label);
        assert_eq!(
            answer,
            json!({"stored": 3, "new": 3, "changed": 0, "unchanged": 0, "events": 4}),
            "{}",
            b.label
        );
        let placed = (
            2,
            14.75,
            Some("2026-05-01T10:00:00+00:00".to_string()),
            Some("2026-05-03T10:00:00+00:00".to_string()),
        );
        assert_eq!(figures(&b, "c1"), placed, "{}", b.label);
        let (status, again) = post(port, "/v1/orders", AUTH, &orders);
        assert_eq!(status, 200, "{}: {again}", b.label);
        assert_eq!(again["unchanged"], 3, "{}: {again}", b.label);
        assert_eq!(again["events"], 0, "{}: {again}", b.label);
        assert_eq!(named(&b, "order_placed"), demo_orders + 3, "{}", b.label);
        let refund = json!({"id": "o3", "customer_id": "c1", "total": 4.25, "status": "Refunded", "placed_at": "2026-05-03T10:00:00Z", "updated_at": "2026-05-04T09:00:00Z"});
        for expected in [1, 0] {
            let (status, answer) = post(port, "/v1/orders", AUTH, &refund);
            assert_eq!(status, 200, "{}: {answer}", b.label);
            assert_eq!(answer["events"], expected, "{}: {answer}", b.label);
        }
        assert_eq!(named(&b, "order_refunded"), demo_refunds + 1, "{}", b.label);
        assert_eq!(
            figures(&b, "c1"),
            (1, 10.5, placed.2.clone(), placed.2.clone()),
            "{}",
            b.label
        );
        let before = count(&b, "SELECT COUNT(*) FROM orders");
        let bad = json!([
            {"id": "o4", "customer_id": "c1", "total": 1, "placed_at": "2026-05-05T10:00:00Z"},
            {"id": "o5", "customer_id": "nobody", "total": 1, "placed_at": "2026-05-05T10:00:00Z"}
        ]);
        let (status, answer) = post(port, "/v1/orders", AUTH, &bad);
        assert_eq!(status, 422, "{}: {answer}", b.label);
        assert_eq!(answer["pointer"], "/1/customer_id", "{}: {answer}", b.label);
        assert_eq!(answer["stored"], 0, "{}: {answer}", b.label);
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM orders"),
            before,
            "{}",
            b.label
        );
        assert!(daemon.stop().success());
    }
}

/// What a Segment batch could have written.
fn kept(b: &Backend) -> Value {
    let customer = with_store(b, async |s| s.customer("seg-1").await.unwrap());
    json!({
        "customers": count(b, "SELECT COUNT(*) FROM customers"),
        "events": count(b, "SELECT COUNT(*) FROM events"),
        "orders": count(b, "SELECT COUNT(*) FROM orders"),
        "customer": customer.map(|c| json!([c.email, c.first_name, c.locale, c.attributes, c.orders_count, c.total_spent])),
    })
}

/// A Segment batch of identify, track and `Order Completed` messages, sent with HTTP
/// Basic as RudderStack sends it: the customer, the events (snake_case names) and the
/// order are kept; the same batch again changes nothing; a batch with one bad message
/// keeps nothing and points at it; a wrong key is 401.
#[test]
fn a_segment_batch_posted_twice_leaves_the_store_as_once() {
    for b in backends("shop-api-segment") {
        let (_server, port, daemon) = daemon(&b);
        let batch = json!({"batch": [
            {"type": "identify", "userId": "seg-1", "messageId": "m-1", "timestamp": "2026-05-01T09:00:00Z",
             "traits": {"email": "ada@shop.example", "firstName": "Ada", "plan": "pro"}, "context": {"locale": "en-GB"}},
            {"type": "track", "userId": "seg-1", "event": "Product Viewed", "messageId": "m-2",
             "timestamp": "2026-05-01T09:05:00Z", "properties": {"sku": "TEA-1"}},
            {"type": "track", "userId": "seg-1", "event": "Order Completed", "messageId": "m-3",
             "timestamp": "2026-05-01T09:10:00Z",
             "properties": {"order_id": "5001", "total": 27.5, "currency": "EUR", "coupon": "HELLO",
                            "products": [{"product_id": "TEA-1", "quantity": 2, "price": 13.75}]}},
            {"type": "page", "userId": "seg-1", "name": "Home"}
        ]});
        let before = kept(&b);
        let (status, answer) = post(port, "/v1/segment", BASIC, &batch);
        assert_eq!(status, 200, "{}: {answer}", b.label);
        assert_eq!(
            answer,
            json!({"success": true, "customers": 1, "events": 2, "orders": 1, "ignored": 1}),
            "{}",
            b.label
        );
        let once = kept(&b);
        assert_eq!(
            once["customer"],
            json!(["ada@shop.example", "Ada", "en-GB", {"plan": "pro"}, 1, 27.5]),
            "{}",
            b.label
        );
        // Two events of the messages, and the order's `order_placed`.
        assert_eq!(
            once["events"],
            before["events"].as_i64().unwrap() + 3,
            "{}",
            b.label
        );
        assert_eq!(named(&b, "order_completed"), 1, "{}", b.label);
        assert_eq!(named(&b, "product_viewed"), 1, "{}", b.label);
        let (status, answer) = post(port, "/v1/segment", BASIC, &batch);
        assert_eq!(status, 200, "{}: {answer}", b.label);
        assert_eq!(answer["events"], 0, "{}: {answer}", b.label);
        assert_eq!(kept(&b), once, "{}", b.label);
        let bad = json!({"batch": [
            {"type": "track", "userId": "seg-1", "event": "Checkout Started", "messageId": "m-9"},
            {"type": "identify", "anonymousId": "a-1", "traits": {"email": "x@shop.example"}}
        ]});
        let (status, answer) = post(port, "/v1/segment", AUTH, &bad);
        assert_eq!(status, 422, "{}: {answer}", b.label);
        assert_eq!(
            answer["pointer"], "/batch/1/userId",
            "{}: {answer}",
            b.label
        );
        assert_eq!(kept(&b), once, "{}", b.label);
        let wrong = ("Authorization", "Basic d3Jvbmc6"); // "wrong:"
        assert_eq!(
            post(port, "/v1/segment", wrong, &batch).0,
            401,
            "{}",
            b.label
        );
        assert!(daemon.stop().success());
    }
}
