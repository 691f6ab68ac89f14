//! The daemon's API as a client that nobody on the project wrote would use it: the same
//! answer on both stores, a 4xx (never "send it again") for what the client must change,
//! nothing stored from a refused body, and the OpenAPI document and the code in agreement —
//! checked by walking the document's schemas.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Act, SmtpServer, free_port};
use crate::daemon::{Daemon, count};
use crate::store::{Backend, backends, with_store};

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-token");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// One request on a fresh connection: the status, the head (status line and headers) and
/// the body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, head.to_string(), body.to_string())
}

fn post(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let (status, _, answer) = request(
        port,
        "POST",
        path,
        &[JSON, AUTH],
        body.to_string().as_bytes(),
    );
    let answer = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
    (status, answer)
}

/// The demo shop behind a daemon with the test token.
fn api_daemon(b: &Backend) -> (SmtpServer, u16, Daemon) {
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

/// What the store holds that a body could have written.
fn rows(b: &Backend) -> (i64, i64, i64, i64) {
    (
        count(b, "SELECT COUNT(*) FROM customers"),
        count(b, "SELECT COUNT(*) FROM events"),
        count(b, "SELECT COUNT(*) FROM suppressions"),
        count(
            b,
            "SELECT COUNT(*) FROM customers WHERE unsubscribed_at IS NOT NULL",
        ),
    )
}

/// Text no store can keep (a NUL character, anywhere), numbers beyond a double and values
/// of the wrong JSON type are the client's to change: 422 with the RFC 6901 pointer, the
/// same on SQLite and PostgreSQL, and nothing stored. The whole document's pointer is "".
#[test]
fn bodies_the_store_cannot_take_are_422_with_a_pointer_on_both_stores() {
    for b in backends("api-422") {
        let (_server, port, daemon) = api_daemon(&b);
        let before = rows(&b);
        for (path, body, pointer) in [
            (
                "/v1/customers",
                r#"{"id":"x1","email":"x1@example.com","first_name":"A\u0000"}"#,
                "/first_name",
            ),
            (
                "/v1/customers",
                r#"[{"id":"x1","email":"x1@example.com"},{"id":"x\u0000","email":"x2@example.com"}]"#,
                "/1/id",
            ),
            (
                "/v1/customers",
                r#"{"id":"x1","email":"x1@example.com","total_spent":1e400}"#,
                "/total_spent",
            ),
            (
                "/v1/customers",
                r#"[{"id":"x1","email":"x1@example.com","attributes":{"a/b~":"\u0000"}}]"#,
                "/0/attributes/a~1b~0",
            ),
            (
                "/v1/customers",
                r#"{"id":{"an":"object"},"email":"x1@example.com"}"#,
                "/id",
            ),
            (
                "/v1/customers",
                r#"{"id":"x1","email":"x1@example.com","birthday":""}"#,
                "/birthday",
            ),
            (
                "/v1/customers",
                r#"{"id":"x1","email":"x1@example.com","created_at":""}"#,
                "/created_at",
            ),
            ("/v1/customers", "1", ""),
            (
                "/v1/events",
                r#"{"customer_id":"c1","name":"a\u0000b"}"#,
                "/name",
            ),
            ("/v1/events", r#"{"customer_id":"c1","name":7}"#, "/name"),
            (
                "/v1/events",
                r#"{"customer_id":"c1","name":"x","id":"k\u0000"}"#,
                "/id",
            ),
            (
                "/v1/suppressions",
                r#"[{"email":"a@example.com","type":"bounce"},{"email":"b@example.com","type":"bounce","reason":"no\u0000"}]"#,
                "/1/reason",
            ),
            (
                "/v1/suppressions",
                r#"[{"email":"a@example.com","type":"bounce"},{"email":"ken@example.jp","type":"complaint","reason":"\u0000"}]"#,
                "/1/reason",
            ),
        ] {
            let (status, _, answer) = request(port, "POST", path, &[JSON, AUTH], body.as_bytes());
            assert_eq!(status, 422, "{}: {path} {body}: {answer}", b.label);
            let answer: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(answer["pointer"], pointer, "{}: {body}: {answer}", b.label);
            assert_eq!(rows(&b), before, "{}: {body} stored something", b.label);
        }
        // Malformed JSON is still a 400, and says so.
        let (status, _, answer) = request(port, "POST", "/v1/events", &[JSON, AUTH], b"{\"a\":");
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("not JSON"), "{answer}");
        assert!(daemon.stop().success());
    }
}

/// An address is needed only to create a customer: an update without one changes what it
/// gives and keeps the address; a new customer without one is the client's to fix (422 at
/// `/email`), and then nothing of the body is stored. A zone or a language of "" is refused
/// like " " (null says "none").
#[test]
fn an_update_needs_no_address_and_an_empty_zone_is_refused_on_both_stores() {
    for b in backends("api-update") {
        let (_server, port, daemon) = api_daemon(&b);
        let (status, answer) = post(
            port,
            "/v1/customers",
            &json!({"id": "c1", "orders_count": 3}),
        );
        assert_eq!(
            (status, &answer),
            (200, &json!({"stored": 1})),
            "{}",
            b.label
        );
        let kept = crate::store::text_pairs(
            &b,
            "SELECT email, CAST(orders_count AS TEXT) FROM customers WHERE id = 'c1'",
        );
        assert!(
            kept[0].0.contains('@') && kept[0].1 == "3",
            "{}: {kept:?}",
            b.label
        );
        let before = rows(&b);
        for (body, pointer, says) in [
            (
                json!({"id": "new-1", "orders_count": 3}),
                "/email",
                "a new customer needs an email address",
            ),
            (
                json!([{"id": "c1", "orders_count": 4}, {"id": "new-2"}]),
                "/1/email",
                "a new customer needs an email address",
            ),
            (json!({"id": "c1", "timezone": ""}), "/timezone", "empty"),
            (json!({"id": "c1", "locale": ""}), "/locale", "empty"),
            (json!({"id": "c1", "timezone": " "}), "/timezone", "IANA"),
        ] {
            let (status, answer) = post(port, "/v1/customers", &body);
            assert_eq!(status, 422, "{}: {body}: {answer}", b.label);
            assert_eq!(answer["pointer"], pointer, "{}: {body}: {answer}", b.label);
            assert!(answer.to_string().contains(says), "{}: {answer}", b.label);
            assert_eq!(rows(&b), before, "{}: {body} stored something", b.label);
        }
        let kept = crate::store::text_pairs(
            &b,
            "SELECT id, CAST(orders_count AS TEXT) FROM customers WHERE id = 'c1'",
        );
        assert_eq!(kept[0].1, "3", "{}: a refused list changed c1", b.label);
        assert!(daemon.stop().success());
    }
}

/// A body of reports is one transaction: when the store fails on the second report, the
/// first is not kept either (a complaint in that place left its customer unsubscribed).
/// The failure is caused inside the real database, by a trigger that refuses one address.
#[test]
fn a_refused_body_of_reports_stores_nothing() {
    for b in backends("api-one-tx") {
        let (_server, port, daemon) = api_daemon(&b);
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            // The list keeps the address's key, not the address.
            let boom = tidings::store::suppressions::address_key("boom@example.com");
            let statements: Vec<String> = if b.label == "sqlite" {
                vec![format!(
                    "CREATE TRIGGER refuse BEFORE INSERT ON suppressions WHEN NEW.email = '{boom}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )]
            } else {
                vec![
                    format!("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.email = '{boom}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"),
                    "CREATE TRIGGER refuse BEFORE INSERT ON suppressions FOR EACH ROW EXECUTE FUNCTION refuse()".to_string(),
                ]
            };
            for sql in statements {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                    .unwrap();
            }
        });
        let before = rows(&b);
        for first in [
            json!({"email": "gone@example.com", "type": "bounce"}),
            json!({"email": "ken@example.jp", "type": "complaint"}),
        ] {
            let body = json!([first, {"email": "boom@example.com", "type": "bounce"}]);
            let (status, answer) = post(port, "/v1/suppressions", &body);
            assert_eq!(status, 503, "{}: {answer}", b.label);
            assert_eq!(rows(&b), before, "{}: {first} was kept", b.label);
        }
        let (status, answer) = post(
            port,
            "/v1/suppressions",
            &json!([{"email": "gone@example.com", "type": "bounce"}, {"email": "ken@example.jp", "type": "complaint"}]),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["suppressed"], 1);
        assert_eq!(answer["unsubscribed"], 1);
        assert!(daemon.stop().success());
    }
}

/// Events are never merged in silence: without an id (or key) every event is new, however
/// alike; an `Idempotency-Key` is scoped to its customer and event name, and one reused for
/// a different body is refused with a 422 that says so.
#[test]
fn events_are_new_unless_keyed_and_a_reused_key_is_refused() {
    for b in backends("api-events") {
        let (_server, port, daemon) = api_daemon(&b);
        let count_of = |name: &'static str| {
            count(
                &b,
                match name {
                    "page_view" => "SELECT COUNT(*) FROM events WHERE name = 'page_view'",
                    _ => "SELECT COUNT(*) FROM events WHERE name = 'order_placed'",
                },
            )
        };
        // The demo shop's own events were there before.
        let (views, orders) = (count_of("page_view"), count_of("order_placed"));
        let events =
            |name: &'static str| count_of(name) - if name == "page_view" { views } else { orders };
        let (status, answer) = post(
            port,
            "/v1/events",
            &json!([
                {"customer_id": "c1", "name": "page_view", "properties": {"page": "/a"}},
                {"customer_id": "c1", "name": "page_view", "properties": {"page": "/b"}},
                {"customer_id": "c1", "name": "page_view", "properties": {"page": "/b"}},
                {"customer_id": "c1", "name": "order_placed", "at": "2026-06-01T10:00:00Z", "properties": {"order_id": "1"}},
                {"customer_id": "c1", "name": "order_placed", "at": "2026-06-01T10:00:00Z", "properties": {"order_id": "2"}},
            ]),
        );
        assert_eq!(status, 200, "{}: {answer}", b.label);
        assert_eq!(answer["stored"], 5, "{}: {answer}", b.label);
        assert_eq!(
            (events("page_view"), events("order_placed")),
            (3, 2),
            "{}",
            b.label
        );

        let keyed = |customer: &str, order: &str| {
            let body = json!({"customer_id": customer, "name": "order_placed", "properties": {"order_id": order}});
            let (status, _, answer) = request(
                port,
                "POST",
                "/v1/events",
                &[JSON, AUTH, ("Idempotency-Key", "order-77")],
                body.to_string().as_bytes(),
            );
            (status, answer)
        };
        assert_eq!(keyed("c1", "77").0, 200);
        assert_eq!(keyed("c1", "77").0, 200, "a retry");
        assert_eq!(
            events("order_placed"),
            3,
            "{}: the retry recorded once",
            b.label
        );
        // The same key from another customer is another event.
        assert_eq!(keyed("c2", "77").0, 200);
        assert_eq!(events("order_placed"), 4, "{}", b.label);
        let (status, answer) = keyed("c1", "78");
        assert_eq!(status, 422, "{}: {answer}", b.label);
        assert!(
            answer.contains("recorded before for a different event"),
            "{answer}"
        );
        assert_eq!(events("order_placed"), 4, "{}", b.label);
        assert!(daemon.stop().success());
    }
}

/// An event's `set` meets the rules of `POST /v1/customers`: a zone or locale that is not
/// one, a count that is not a number, and fields an event may not change are 422s naming
/// `/set/FIELD`, and nothing is stored.
#[test]
fn an_events_set_is_checked_like_a_customer() {
    for b in backends("api-set") {
        let (_server, port, daemon) = api_daemon(&b);
        let before = rows(&b);
        for (set, pointer) in [
            (json!({"timezone": "Mars/Olympus"}), "/set/timezone"),
            (json!({"locale": "!!"}), "/set/locale"),
            (json!({"orders_count": "two"}), "/set/orders_count"),
            (json!({"email": "new@example.com"}), "/set/email"),
            (json!({"id": "c9"}), "/set/id"),
            (json!({"birthday": "1990-02-30"}), "/set/birthday"),
        ] {
            let (status, answer) = post(
                port,
                "/v1/events",
                &json!({"customer_id": "c1", "name": "profile_changed", "set": set}),
            );
            assert_eq!(status, 422, "{}: {set}: {answer}", b.label);
            assert_eq!(answer["pointer"], pointer, "{}: {answer}", b.label);
            assert_eq!(rows(&b), before, "{}", b.label);
        }
        let (status, answer) = post(
            port,
            "/v1/events",
            &json!({"customer_id": "c1", "name": "profile_changed", "set": {"timezone": "Asia/Tokyo", "tier": "gold"}}),
        );
        assert_eq!(status, 200, "{}: {answer}", b.label);
        assert!(daemon.stop().success());
    }
}

/// A JSON value for each JSON type, the string shaped as the property wants it.
fn samples(property: &Value, base: Option<&Value>) -> Vec<Value> {
    let string = base
        .filter(|v| v.is_string())
        .cloned()
        .or_else(|| property["examples"].get(0).cloned())
        .or_else(|| property["enum"].get(0).cloned())
        .unwrap_or_else(|| match property["format"].as_str() {
            Some("date") => json!("1990-06-02"),
            Some("date-time") => json!("2026-06-01T10:00:00Z"),
            Some("email") => json!("walk@example.com"),
            _ => json!("text"),
        });
    vec![
        Value::Null,
        json!(true),
        json!(3),
        json!(2.5),
        string,
        json!(["x"]),
        json!({}),
    ]
}

/// Whether a schema property admits a value, by JSON type (and `enum`).
fn admits(property: &Value, value: &Value) -> bool {
    if let Some(options) = property["enum"].as_array() {
        return options.contains(value);
    }
    let types: Vec<&str> = match &property["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return true,
    };
    types.iter().any(|t| match *t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    })
}

/// The OpenAPI document and the code agree: for every property of the Customer, Event,
/// Suppression, Order and Segment message schemas and a value of every JSON type, the daemon takes (200) what the
/// schema admits and refuses (422, pointing at the property) what it does not — and an
/// empty string where the schema asks for a format or a length.
#[test]
fn the_api_takes_exactly_what_its_schema_admits() {
    let b = backends("api-schema").remove(0);
    let (_server, port, daemon) = api_daemon(&b);
    let document: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::common::repo_root().join("docs/openapi.json")).unwrap(),
    )
    .unwrap();
    let schemas = &document["components"]["schemas"];
    let mut checked = 0;
    for (schema, path, base) in [
        (
            "Customer",
            "/v1/customers",
            json!({"id": "w1", "email": "w1@example.com"}),
        ),
        (
            "Event",
            "/v1/events",
            json!({"customer_id": "c1", "name": "walked"}),
        ),
        (
            "Suppression",
            "/v1/suppressions",
            json!({"email": "walk@example.com", "type": "bounce"}),
        ),
        (
            "Order",
            "/v1/orders",
            json!({"id": "w1", "customer_id": "c1", "total": 10, "placed_at": "2026-06-01T10:00:00Z"}),
        ),
        (
            "SegmentMessage",
            "/v1/segment",
            json!({"type": "track", "userId": "c1", "event": "Walked"}),
        ),
    ] {
        let properties = schemas[schema]["properties"].as_object().unwrap();
        for (name, property) in properties {
            let mut values = samples(property, base.get(name));
            if property.get("format").is_some() || property.get("minLength").is_some() {
                values.push(json!(""));
            }
            for value in values {
                let admitted = admits(property, &value)
                    && !(value == json!("")
                        && (property.get("format").is_some()
                            || property.get("minLength").is_some()));
                let mut body = base.clone();
                body[name.as_str()] = value.clone();
                let (status, answer) = post(port, path, &body);
                if admitted {
                    assert_eq!(status, 200, "{schema}.{name} = {value}: {answer}");
                } else {
                    assert_eq!(status, 422, "{schema}.{name} = {value}: {answer}");
                    assert_eq!(
                        answer["pointer"],
                        format!("/{name}"),
                        "{schema}.{name} = {value}: {answer}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "{checked} values checked");
    assert!(daemon.stop().success());
}

/// `TIDINGS_API_TOKEN=... tidings daemon`, as the README shows it, turns the write
/// endpoints on without `server.token` in tidings.yaml; the scheme is case-insensitive, and
/// a 401 carries `WWW-Authenticate` (RFC 7235).
#[test]
fn the_readmes_daemon_command_takes_the_token_from_the_environment() {
    let b = backends("api-env-token").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    crate::smtp::project(&b, server.port, "");
    let port = free_port();
    let log = std::fs::File::create(b.dir.join("daemon.log")).unwrap();
    let daemon = Daemon::start_env(
        &b,
        port,
        "1h",
        &[("TIDINGS_API_TOKEN", "from-env")],
        log.into(),
    );
    let customer = br#"{"id":"e1","email":"e1@example.com"}"#;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let token = format!("{scheme} from-env");
        let (status, _, answer) = request(
            port,
            "POST",
            "/v1/customers",
            &[JSON, ("Authorization", &token)],
            customer,
        );
        assert_eq!(status, 200, "{scheme}: {answer}");
    }
    for (auth, error) in [
        (None, "invalid_request"),
        (Some("Bearer wrong"), "invalid_token"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let (status, head, _) = request(port, "POST", "/v1/customers", &headers, customer);
        assert_eq!(status, 401);
        let challenge = head
            .lines()
            .find_map(|l| l.strip_prefix("www-authenticate: "))
            .unwrap_or_else(|| panic!("no WWW-Authenticate in {head}"));
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains(error),
            "{challenge}"
        );
    }
    assert!(daemon.stop().success());
    let log = std::fs::read_to_string(b.dir.join("daemon.log")).unwrap();
    assert!(
        log.contains("take the bearer token of TIDINGS_API_TOKEN"),
        "{log}"
    );
}
