//! `sources:` and `tidings sync` against real shop databases: a SQLite file always, the
//! PostgreSQL server of `TIDINGS_TEST_DATABASE_URL` and the MySQL (MariaDB) server of
//! `TIDINGS_TEST_MYSQL_URL` when they are named (each skipped, and said so, when not).
//! The shop has 1,000 customers and 3,000 orders whose `updated_at` values are shared by
//! hundreds of rows, read in pages of 100, so rows sharing a timestamp cross every page's
//! edge.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{say_skipped, write};
use crate::store::{Backend, backends, runtime, tidings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// A shop's database for one test, dropped with it.
pub(crate) struct Shop {
    pub(crate) kind: Kind,
    /// What tidings.yaml names (and the test's own connections use).
    pub(crate) url: String,
    drop: Option<(String, String)>,
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Some((admin, sql)) = self.drop.take() {
            runtime().block_on(async {
                if let Ok(mut c) = any(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        }
    }
}

async fn any(url: &str) -> Result<sqlx::AnyConnection, sqlx::Error> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url).await
}

/// SQLite always; PostgreSQL and MySQL when the environment names a server.
pub(crate) fn shops(test: &str) -> Vec<Shop> {
    let name = format!("s_{}_{}", std::process::id(), test.replace('-', "_"));
    let dir = crate::common::scratch_dir(&format!("{test}-shop"));
    let mut out = vec![Shop {
        kind: Kind::Sqlite,
        url: format!("sqlite://{}?mode=rwc", dir.join("shop.db").display()),
        drop: None,
    }];
    match std::env::var("TIDINGS_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            run(
                &base,
                &[
                    &format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
                    &format!("CREATE SCHEMA {name}"),
                ],
            );
            let sep = if base.contains('?') { '&' } else { '?' };
            out.push(Shop {
                kind: Kind::Postgres,
                url: format!("{base}{sep}options=-c%20search_path%3D{name}"),
                drop: Some((
                    base.clone(),
                    format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
                )),
            });
        }
        _ => say_skipped(
            "skipping the PostgreSQL shop of the source tests: TIDINGS_TEST_DATABASE_URL is not set",
        ),
    }
    match std::env::var("TIDINGS_TEST_MYSQL_URL") {
        Ok(base) if !base.is_empty() => {
            run(
                &base,
                &[
                    &format!("DROP DATABASE IF EXISTS {name}"),
                    &format!("CREATE DATABASE {name}"),
                ],
            );
            let root = base.rsplit_once('/').map_or(base.as_str(), |(r, _)| r);
            out.push(Shop {
                kind: Kind::Mysql,
                url: format!("{root}/{name}"),
                drop: Some((base.clone(), format!("DROP DATABASE IF EXISTS {name}"))),
            });
        }
        _ => say_skipped(
            "skipping the MySQL (MariaDB) shop of the source tests: TIDINGS_TEST_MYSQL_URL is not set",
        ),
    }
    out
}

/// Runs statements on a database, in order.
pub(crate) fn run(url: &str, statements: &[&str]) {
    runtime().block_on(async {
        let mut c = any(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    });
}

/// A time as the shop's database takes it in a literal (UTC).
fn at(kind: Kind, hours_after: i64) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap()
        + chrono::TimeDelta::minutes(hours_after * 60);
    let text = t.format("%Y-%m-%d %H:%M:%S");
    match kind {
        Kind::Postgres => format!("'{text}+00'"),
        _ => format!("'{text}'"),
    }
}

fn status_of(j: i64) -> &'static str {
    if j % 10 == 0 {
        "cancelled"
    } else if j % 15 == 0 {
        "refunded"
    } else {
        "completed"
    }
}

/// The shop's schema and rows: customers 1..=`customers`, orders 1..=`orders`.
pub(crate) fn seed(shop: &Shop, customers: i64, orders: i64) {
    let k = shop.kind;
    let (int, money, text, time, json) = match k {
        Kind::Postgres => ("BIGINT", "NUMERIC(10,2)", "TEXT", "TIMESTAMPTZ", "JSONB"),
        Kind::Mysql => (
            "BIGINT",
            "DECIMAL(10,2)",
            "VARCHAR(200)",
            "DATETIME(6)",
            "JSON",
        ),
        Kind::Sqlite => ("INTEGER", "REAL", "TEXT", "TEXT", "TEXT"),
    };
    let mut statements = vec![
        format!(
            "CREATE TABLE customers (id {int} PRIMARY KEY, email {text}, first_name {text}, updated_at {time})"
        ),
        format!(
            "CREATE TABLE orders (id {int} PRIMARY KEY, customer_id {int}, total {money}, currency {text}, status {text}, coupon {text}, placed_at {time}, updated_at {time}, `lines` {json})"
        ),
    ];
    if k != Kind::Mysql {
        statements[1] = statements[1].replace('`', "\"");
    }
    let values: Vec<String> = (1..=customers)
        .map(|i| format!("({i}, 'c{i}@shop.example', 'N{i}', {})", at(k, i / 250)))
        .collect();
    for chunk in values.chunks(500) {
        statements.push(format!("INSERT INTO customers VALUES {}", chunk.join(", ")));
    }
    let values: Vec<String> = (1..=orders)
        .map(|j| {
            let placed = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").unwrap()
                + chrono::TimeDelta::minutes(j * 97);
            let placed = placed.format("%Y-%m-%d %H:%M:%S");
            let placed = if k == Kind::Postgres { format!("'{placed}+00'") } else { format!("'{placed}'") };
            format!(
                "({j}, {}, {}.{:02}, 'EUR', '{}', NULL, {placed}, {}, '[{{\"sku\": \"S{}\", \"quantity\": 1}}]')",
                (j * 7) % customers + 1,
                (j * 37) % 100,
                j % 100,
                status_of(j),
                at(k, j / 300),
                j % 5
            )
        })
        .collect();
    for chunk in values.chunks(500) {
        statements.push(format!("INSERT INTO orders VALUES {}", chunk.join(", ")));
    }
    let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
    run(&shop.url, &refs);
}

/// tidings.yaml for a store and one source reading `shop` in pages of `page`.
pub(crate) fn configure(b: &Backend, shop: &Shop, page: u32, extra: &str) {
    let lines = if shop.kind == Kind::Mysql {
        "`lines`"
    } else {
        "lines"
    };
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nsources:\n  shop:\n    database: {}\n    page: {page}\n    customers: SELECT id, email, first_name, updated_at FROM customers WHERE updated_at >= :since\n    orders: |\n      SELECT id, customer_id, total, currency, status, coupon, placed_at, updated_at, {lines}\n      FROM orders WHERE updated_at >= :since\n{extra}",
            shop.url
        ),
    );
}

/// Per customer id: counted orders, their sum, and the first and last order's Unix time,
/// computed by the shop's own database.
pub(crate) fn shop_figures(
    shop: &Shop,
) -> std::collections::BTreeMap<String, (i64, f64, i64, i64)> {
    let (id, sum, epoch) = match shop.kind {
        Kind::Postgres => (
            "CAST(customer_id AS TEXT)",
            "CAST(SUM(total) AS DOUBLE PRECISION)",
            "CAST(EXTRACT(EPOCH FROM {}) AS BIGINT)",
        ),
        Kind::Mysql => (
            "CAST(customer_id AS CHAR)",
            "CAST(SUM(total) AS DOUBLE)",
            "CAST(UNIX_TIMESTAMP({}) AS SIGNED)",
        ),
        Kind::Sqlite => (
            "CAST(customer_id AS TEXT)",
            "SUM(total)",
            "CAST(strftime('%s', {}) AS INTEGER)",
        ),
    };
    let sql = format!(
        "SELECT {id}, COUNT(*), {sum}, {}, {} FROM orders WHERE status NOT IN ('cancelled', 'refunded') GROUP BY customer_id",
        epoch.replace("{}", "MIN(placed_at)"),
        epoch.replace("{}", "MAX(placed_at)")
    );
    runtime().block_on(async {
        use sqlx::Row;
        let mut c = any(&shop.url).await.unwrap();
        if shop.kind == Kind::Mysql {
            sqlx::query("SET time_zone = '+00:00'")
                .execute(&mut c)
                .await
                .unwrap();
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    (r.get(1), r.get(2), r.get(3), r.get(4)),
                )
            })
            .collect()
    })
}

/// The store's figures for every customer, as `shop_figures` gives them (customers with
/// no counted order are left out).
pub(crate) fn store_figures(
    b: &Backend,
) -> std::collections::BTreeMap<String, (i64, f64, i64, i64)> {
    crate::store::with_store(b, async |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        sqlx::query("SELECT id, orders_count, total_spent, first_order_at, last_order_at FROM customers WHERE orders_count > 0")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let ms = |i: usize| r.get::<i64, _>(i) / 1000;
                (r.get::<String, _>(0), (r.get(1), r.get(2), ms(3), ms(4)))
            })
            .collect()
    })
}

pub(crate) fn same_figures(b: &Backend, shop: &Shop, what: &str) {
    let (want, got) = (shop_figures(shop), store_figures(b));
    assert_eq!(want.len(), got.len(), "{what}: customers with orders");
    for (id, w) in &want {
        let g = got
            .get(id)
            .unwrap_or_else(|| panic!("{what}: customer {id} has no orders in the store"));
        assert_eq!((w.0, w.2, w.3), (g.0, g.2, g.3), "{what}: customer {id}");
        assert!(
            (w.1 - g.1).abs() < 1e-6,
            "{what}: customer {id}: total {} != {}",
            w.1,
            g.1
        );
    }
}

pub(crate) fn store_count(b: &Backend, sql: &'static str) -> i64 {
    crate::daemon::count(b, sql)
}

/// How many events an order's status records: placed once each, cancelled or refunded.
fn order_events(orders: i64) -> i64 {
    orders
        + (1..=orders)
            .filter(|j| status_of(*j) != "completed")
            .count() as i64
}

/// Two syncs in a row (the second reads and records nothing), figures equal to the shop's
/// own aggregates, and one edited order: one change, its customer's figures again equal,
/// no new `order_placed` — for every shop on both stores.
#[test]
fn a_shops_database_is_synced_once_and_kept_current() {
    for shop in shops("sources-sync") {
        seed(&shop, 1_000, 3_000);
        for b in backends(&format!("sources-sync-{:?}", shop.kind).to_lowercase()) {
            let what = format!("{:?} shop, {} store", shop.kind, b.label);
            configure(&b, &shop, 100, "");
            let first = tidings(&b).args(["sync"]).run();
            assert_eq!(first.code, 0, "{what}: {}", first.transcript());
            assert!(
                first
                    .stdout
                    .contains("source shop, customers: 1000 rows read; 1000 customers written"),
                "{what}: {}",
                first.stdout
            );
            let orders_line = format!(
                "source shop, orders: 3000 rows read; 3000 new, 0 changed, 0 unchanged; {} events recorded",
                order_events(3_000)
            );
            assert!(
                first.stdout.contains(&orders_line),
                "{what}: {}",
                first.stdout
            );
            let events = store_count(&b, "SELECT COUNT(*) FROM events");
            assert_eq!(events, order_events(3_000), "{what}");
            same_figures(&b, &shop, &what);
            let second = tidings(&b).args(["sync"]).run();
            assert_eq!(second.code, 0, "{what}: {}", second.transcript());
            assert!(
                second.stdout.contains("customers: 0 rows read"),
                "{what}: {}",
                second.stdout
            );
            assert!(
                second.stdout.contains("orders: 0 rows read"),
                "{what}: {}",
                second.stdout
            );
            assert_eq!(
                store_count(&b, "SELECT COUNT(*) FROM events"),
                events,
                "{what}"
            );
            // One order edited in the shop, after every other row.
            let edit = format!(
                "UPDATE orders SET total = 99.99, updated_at = {} WHERE id = 42",
                at(shop.kind, 100 + b.label.len() as i64)
            );
            run(&shop.url, &[&edit]);
            let third = tidings(&b).args(["sync"]).run();
            assert_eq!(third.code, 0, "{what}: {}", third.transcript());
            assert!(
                third.stdout.contains(
                    "orders: 1 rows read; 0 new, 1 changed, 0 unchanged; 0 events recorded"
                ),
                "{what}: {}",
                third.stdout
            );
            assert_eq!(
                store_count(&b, "SELECT COUNT(*) FROM events"),
                events,
                "{what}"
            );
            same_figures(&b, &shop, &what);
            run(&shop.url, &["UPDATE orders SET total = 1.00 WHERE id = 42"]);
        }
    }
}

/// The store's count of a feed's rows read so far (0 before its first page).
fn rows_read(b: &Backend, feed: &str) -> i64 {
    runtime().block_on(async {
        use sqlx::Row;
        let Ok(mut c) = any(&b.url).await else {
            return 0;
        };
        let sql =
            format!("SELECT COALESCE(MAX(rows_read), 0) FROM source_cursors WHERE feed = '{feed}'");
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut c)
            .await
        {
            Ok(r) => r.try_get::<i64, _>(0).unwrap_or(0),
            Err(_) => 0,
        }
    })
}

/// A sync killed with SIGKILL part-way through the orders and run again records every
/// row once: every order, one `order_placed` each, and figures equal to the shop's.
#[test]
fn a_sync_killed_mid_run_and_run_again_records_every_row_once() {
    for shop in shops("sources-kill") {
        seed(&shop, 1_000, 3_000);
        let mut stores = backends(&format!("sources-kill-{:?}", shop.kind).to_lowercase());
        // The PostgreSQL shop on the PostgreSQL store, the others on SQLite.
        let b = match shop.kind {
            Kind::Postgres => stores.pop().unwrap(),
            _ => stores.remove(0),
        };
        let what = format!("{:?} shop, {} store", shop.kind, b.label);
        // A row a page: the store commits every half second, so the orders take several
        // commits and the kill lands after one of them.
        configure(&b, &shop, 1, "");
        let mut child = crate::common::spawn(&b.dir, &b.url, &["sync"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while rows_read(&b, "orders") == 0 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{what}: the sync ended before it was killed"
            );
            assert!(Instant::now() < deadline, "{what}: the sync read no orders");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let kept = store_count(&b, "SELECT COUNT(*) FROM orders");
        assert!(kept < 3_000, "{what}: killed after {kept} orders");
        let again = tidings(&b).args(["sync"]).run();
        assert_eq!(again.code, 0, "{what}: {}", again.transcript());
        assert_eq!(
            store_count(&b, "SELECT COUNT(*) FROM orders"),
            3_000,
            "{what}"
        );
        assert_eq!(
            store_count(
                &b,
                "SELECT COUNT(*) FROM events WHERE name = 'order_placed'"
            ),
            3_000,
            "{what}"
        );
        assert_eq!(
            store_count(&b, "SELECT COUNT(*) FROM events"),
            order_events(3_000),
            "{what}"
        );
        same_figures(&b, &shop, &what);
    }
}

/// `tidings status --json`'s record of the shop's feeds.
pub(crate) fn feeds(b: &Backend) -> Value {
    let status = tidings(b).args(["status", "--json"]).run();
    assert_eq!(status.code, 0, "{}", status.transcript());
    let doc: Value = serde_json::from_str(&status.stdout).unwrap();
    doc["sources"].clone()
}

/// What a shop gets wrong is refused row by row, each with a clear line: a new customer
/// without an address, a total that is not a number, an order of a customer nobody
/// imported. The good rows are kept, the cursor stays before the first refused row (so
/// the next sync reads it again), and once the shop fixes the rows a sync takes them.
#[test]
fn bad_rows_are_refused_one_by_one_and_hold_the_cursor_before_them() {
    let shop = shops("sources-bad").remove(0);
    seed(&shop, 20, 40);
    run(
        &shop.url,
        &[
            "UPDATE customers SET email = NULL WHERE id = 7",
            "UPDATE orders SET total = 'lots' WHERE id = 12",
            "INSERT INTO orders VALUES (41, 999, 5.00, 'EUR', 'completed', NULL, '2025-02-01 00:00:00', '2026-01-01 00:00:00', '[]')",
        ],
    );
    for b in backends("sources-bad") {
        configure(&b, &shop, 1, "");
        let first = tidings(&b).args(["sync"]).run();
        assert_eq!(first.code, 1, "{}: {}", b.label, first.transcript());
        for line in [
            "error: source shop, customers row id=7: `email`: a customer needs an email address",
            "error: source shop, orders row id=12: `total`: `\"lots\"` is not a number; write e.g. `149.50`",
            "error: source shop, orders row id=41: `customer_id`: order `41`: no customer has the id `999`; import the customer first",
        ] {
            assert!(
                first.stderr.contains(line),
                "{}: {line}\n{}",
                b.label,
                first.stderr
            );
        }
        // Four orders of 41 are refused (below); the rest are kept.
        assert_eq!(
            store_count(&b, "SELECT COUNT(*) FROM customers"),
            19,
            "{}",
            b.label
        );
        let kept = store_count(&b, "SELECT COUNT(*) FROM orders");
        assert_eq!(kept, 37, "{}: {}", b.label, first.transcript());
        let sources = feeds(&b);
        let cursor = |feed: &str| {
            let f = sources
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["feed"] == feed)
                .unwrap();
            (
                f["cursor"]["id"].clone(),
                f["rows_refused"].clone(),
                f["lag_seconds"].clone(),
            )
        };
        // Customers 1..=20 share one `updated_at`: the cursor stops at customer 6.
        assert_eq!(
            cursor("customers"),
            (Value::from(6), Value::from(1), Value::Null),
            "{}",
            b.label
        );
        // The orders share one `updated_at` too: 12 (its total), 18 and 38 (customer 7's)
        // and 41 (customer 999's) are refused, and the cursor stays before 12.
        assert_eq!(cursor("orders").0, Value::from(11), "{}", b.label);
        // The shop fixes its rows: the next sync reads from the cursors and takes them.
        run(
            &shop.url,
            &[
                "UPDATE customers SET email = 'c7@shop.example' WHERE id = 7",
                "UPDATE orders SET total = 12.00 WHERE id = 12",
                "DELETE FROM orders WHERE id = 41",
            ],
        );
        let fixed = tidings(&b).args(["sync"]).run();
        assert_eq!(fixed.code, 0, "{}: {}", b.label, fixed.transcript());
        assert_eq!(
            store_count(&b, "SELECT COUNT(*) FROM orders"),
            40,
            "{}",
            b.label
        );
        assert_eq!(
            store_count(
                &b,
                "SELECT COUNT(*) FROM events WHERE name = 'order_placed'"
            ),
            40,
            "{}",
            b.label
        );
        same_figures(&b, &shop, b.label);
        assert!(feeds(&b)[1]["lag_seconds"].is_number(), "{}", b.label);
        run(
            &shop.url,
            &[
                "UPDATE customers SET email = NULL WHERE id = 7",
                "UPDATE orders SET total = 'lots' WHERE id = 12",
                "INSERT INTO orders VALUES (41, 999, 5.00, 'EUR', 'completed', NULL, '2025-02-01 00:00:00', '2026-01-01 00:00:00', '[]')",
            ],
        );
    }
}

/// A query that fails, a query that would write, and a database that is down: each a
/// clear line naming the source and the feed, nothing written to the shop (its
/// transaction is read-only), the other feeds and sources synced, exit status 1.
#[test]
fn a_failing_query_a_writing_query_and_a_database_that_is_down_are_reported() {
    for shop in shops("sources-fail") {
        let b = backends(&format!("sources-fail-{:?}", shop.kind).to_lowercase()).remove(0);
        seed(&shop, 10, 10);
        if shop.kind == Kind::Postgres {
            run(&shop.url, &["CREATE SEQUENCE touches"]);
        }
        let writing = match shop.kind {
            // A sequence's `nextval` writes: refused in a read-only transaction.
            Kind::Postgres => {
                "SELECT id, updated_at FROM orders WHERE updated_at >= :since AND nextval('touches') > 0"
            }
            _ => "SELECT * FROM orders WHERE updated_at >= :since; DELETE FROM orders",
        };
        write(
            &b.dir,
            "tidings.yaml",
            &format!(
                "database: ${{TIDINGS_DB}}\nsources:\n  down:\n    database: postgres://nobody@127.0.0.1:1/shop\n    orders: SELECT id, updated_at FROM orders WHERE updated_at >= :since\n  shop:\n    database: {}\n    customers: SELECT id, email, updated_at FROM customers WHERE updated_at >= :since\n    orders: \"{writing}\"\n  typo:\n    database: {}\n    orders: SELECT id, updated_at, totl FROM orders WHERE updated_at >= :since\n",
                shop.url, shop.url
            ),
        );
        let what = format!("{:?}", shop.kind);
        let sync = tidings(&b).args(["sync"]).run();
        assert_eq!(sync.code, 1, "{what}: {}", sync.transcript());
        assert!(
            sync.stderr
                .contains("error: source down: cannot connect to the database:"),
            "{what}: {}",
            sync.stderr
        );
        assert!(
            sync.stderr
                .contains("error: source typo, orders: the query failed:"),
            "{what}: {}",
            sync.stderr
        );
        assert!(sync.stderr.contains("totl"), "{what}: {}", sync.stderr);
        assert!(
            sync.stderr.contains("error: source shop, orders:"),
            "{what}: {}",
            sync.stderr
        );
        assert!(
            sync.stdout.contains("source shop, customers: 10 rows read"),
            "{what}: {}",
            sync.stdout
        );
        let left = runtime().block_on(async {
            use sqlx::Row;
            let mut c = any(&shop.url).await.unwrap();
            sqlx::query("SELECT COUNT(*) FROM orders")
                .fetch_one(&mut c)
                .await
                .unwrap()
                .get::<i64, _>(0)
        });
        assert_eq!(left, 10, "{what}: the shop's orders were written to");
        if shop.kind == Kind::Postgres {
            assert!(
                sync.stderr.contains("read-only transaction"),
                "{what}: {}",
                sync.stderr
            );
            let touched = runtime().block_on(async {
                use sqlx::Row;
                let mut c = any(&shop.url).await.unwrap();
                let r = sqlx::query("SELECT is_called FROM touches")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                r.get::<bool, _>(0)
            });
            assert!(!touched, "{what}: the shop's sequence was advanced");
        }
        let status = feeds(&b);
        let down = status
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["source"] == "down")
            .unwrap();
        assert!(
            down["last_error"]
                .as_str()
                .unwrap()
                .contains("cannot connect"),
            "{what}: {down}"
        );
    }
}

/// `--dry-run` reads and checks every row and keeps nothing: no customer, no order, no
/// cursor.
#[test]
fn a_dry_run_reads_everything_and_keeps_nothing() {
    let shop = shops("sources-dry").remove(0);
    seed(&shop, 30, 60);
    let b = backends("sources-dry").remove(0);
    configure(&b, &shop, 25, "");
    let dry = tidings(&b).args(["sync", "shop", "--dry-run"]).run();
    assert_eq!(dry.code, 0, "{}", dry.transcript());
    assert!(
        dry.stdout.contains(
            "source shop, customers: 30 rows read; 30 customers written (dry run: nothing kept)"
        ),
        "{}",
        dry.stdout
    );
    assert_eq!(store_count(&b, "SELECT COUNT(*) FROM customers"), 0);
    assert_eq!(store_count(&b, "SELECT COUNT(*) FROM source_cursors"), 0);
    let unknown = tidings(&b).args(["sync", "shopp"]).run();
    assert_eq!(unknown.code, 2, "{}", unknown.transcript());
    assert!(
        unknown
            .stderr
            .contains("no source `shopp`; its sources are: shop"),
        "{}",
        unknown.stderr
    );
}

/// The daemon syncs every `every`: a new order in the shop reaches the store by itself,
/// `/metrics` shows each feed's rows read, lag and cursor, and a source that is down is
/// failing there while the daemon and the other source go on.
#[test]
fn the_daemon_syncs_every_interval_and_shows_each_feed() {
    let shop = shops("sources-daemon").remove(0);
    seed(&shop, 10, 10);
    let b = backends("sources-daemon").remove(0);
    configure(
        &b,
        &shop,
        100,
        "    every: 1s\n  down:\n    database: postgres://nobody@127.0.0.1:1/shop\n    every: 1s\n    orders: SELECT id, updated_at FROM orders WHERE updated_at >= :since\nserver:\n  token: t0ken\n",
    );
    let port = crate::common::free_port();
    let daemon = crate::daemon::Daemon::start(&b, port, "1h");
    let metric = |name: &str| {
        let (_, body) = crate::daemon::http(port, "GET", "/metrics", &[], b"");
        body.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
    };
    let wait = |name: &str, want: f64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(name) != Some(want) {
            assert!(Instant::now() < deadline, "{name}: {:?}", metric(name));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(
        "tidings_source_rows_read_total{source=\"shop\",feed=\"orders\"}",
        10.0,
    );
    wait(
        "tidings_source_failing{source=\"down\",feed=\"orders\"}",
        1.0,
    );
    assert!(metric("tidings_source_lag_seconds{source=\"shop\",feed=\"orders\"}").is_some());
    let cursor = metric("tidings_source_cursor_timestamp_seconds{source=\"shop\",feed=\"orders\"}");
    assert_eq!(cursor, Some(1_767_225_600.0), "2026-01-01T00:00:00Z");
    run(
        &shop.url,
        &[
            "INSERT INTO orders VALUES (11, 3, 5.00, 'EUR', 'completed', NULL, '2026-01-02 00:00:00', '2026-01-02 00:00:00', '[]')",
        ],
    );
    wait(
        "tidings_source_rows_read_total{source=\"shop\",feed=\"orders\"}",
        11.0,
    );
    assert_eq!(store_count(&b, "SELECT COUNT(*) FROM orders"), 11);
    assert_eq!(
        crate::daemon::http(port, "GET", "/healthz", &[], b"").0,
        200
    );
    assert!(daemon.stop().success());
}
