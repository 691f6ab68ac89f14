//! The README's worked `sources:` (`examples/shops/*.yaml`, shown in the README as they
//! are) against databases shaped as those shops are: a PostgreSQL shop with its own
//! `customers`, `orders` and `order_lines`, and WooCommerce's tables (HPOS) in MariaDB.

use crate::common::{repo_root, say_skipped, write};
use crate::sources::run;
use crate::store::{backends, tidings, with_store};

/// An example as the README shows it, with the store the test names.
fn project(example: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/shops").join(example)).unwrap();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&text),
        "README.md shows examples/shops/{example} as it is"
    );
    format!("database: ${{TIDINGS_DB}}\n{text}")
}

/// A customer's figures, and the lines the first `order_placed` event of an order carries.
fn figures(b: &crate::store::Backend, id: &str) -> (i64, f64) {
    with_store(b, async |s| {
        let c = s.customer(id).await.unwrap().unwrap();
        (c.orders_count, c.total_spent)
    })
}

fn lines_of(b: &crate::store::Backend, order: &str) -> serde_json::Value {
    let props = crate::store::text_pairs(
        b,
        "SELECT id, properties FROM events WHERE name = 'order_placed' ORDER BY id",
    );
    let (_, p) = props
        .into_iter()
        .find(|(id, _)| id == &format!("order:{order}:order_placed"))
        .unwrap();
    serde_json::from_str::<serde_json::Value>(&p).unwrap()["lines"].clone()
}

#[test]
fn the_readmes_postgresql_shop_syncs_as_written() {
    let Ok(base) = std::env::var("TIDINGS_TEST_DATABASE_URL") else {
        say_skipped("skipping the README's PostgreSQL shop: TIDINGS_TEST_DATABASE_URL is not set");
        return;
    };
    let Some(shop) = crate::sources::shops("readme-pg")
        .into_iter()
        .find(|s| s.kind == crate::sources::Kind::Postgres)
    else {
        return;
    };
    let _ = base;
    run(
        &shop.url,
        &[
            "CREATE TABLE customers (id TEXT PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT, locale TEXT, timezone TEXT, birthday DATE, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)",
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id TEXT, total NUMERIC(10,2), currency CHAR(3), status TEXT, coupon TEXT, placed_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)",
            "CREATE TABLE order_lines (order_id BIGINT, sku TEXT, name TEXT, quantity INT, price NUMERIC(10,2))",
            "INSERT INTO customers VALUES ('u1', 'ada@shop.example', 'Ada', 'Lovelace', 'en-GB', 'Europe/London', '1990-06-02', '2025-01-01 10:00+00', '2026-01-01 10:00+00'), ('u2', 'ken@shop.example', '健', '山田', 'ja-JP', 'Asia/Tokyo', NULL, '2025-02-01 10:00+00', '2026-01-01 10:00+00')",
            "INSERT INTO orders VALUES (1, 'u1', 30.00, 'EUR', 'completed', NULL, '2025-06-01 10:00+00', '2025-06-01 10:00+00'), (2, 'u1', 12.50, 'EUR', 'completed', 'HELLO', '2025-09-01 10:00+00', '2025-09-01 10:00+00'), (3, 'u1', 99.00, 'EUR', 'cancelled', NULL, '2025-10-01 10:00+00', '2025-10-02 10:00+00'), (4, 'u2', 4000.00, 'JPY', 'completed', NULL, '2025-11-01 10:00+00', '2025-11-01 10:00+00')",
            "INSERT INTO order_lines VALUES (1, 'TEA-1', 'Sencha', 2, 15.00), (2, 'CUP-2', 'Yunomi', 1, 12.50)",
        ],
    );
    for b in backends("readme-pg") {
        write(&b.dir, "tidings.yaml", &project("postgres.yaml"));
        let sync = tidings(&b)
            .env("SHOP_DATABASE_URL", &shop.url)
            .args(["sync"])
            .run();
        assert_eq!(sync.code, 0, "{}: {}", b.label, sync.transcript());
        assert_eq!(figures(&b, "u1"), (2, 42.5), "{}", b.label);
        assert_eq!(figures(&b, "u2"), (1, 4000.0), "{}", b.label);
        let c = with_store(&b, async |s| s.customer("u2").await.unwrap().unwrap());
        assert_eq!(
            (c.first_name.as_deref(), c.timezone.as_deref()),
            (Some("健"), Some("Asia/Tokyo"))
        );
        assert_eq!(
            lines_of(&b, "1"),
            serde_json::json!([{"sku": "TEA-1", "name": "Sencha", "quantity": 2, "price": 15.00}]),
            "{}",
            b.label
        );
        assert_eq!(lines_of(&b, "4"), serde_json::json!([]), "{}", b.label);
    }
}

#[test]
fn the_readmes_woocommerce_shop_syncs_as_written() {
    let Some(shop) = crate::sources::shops("readme-woo")
        .into_iter()
        .find(|s| s.kind == crate::sources::Kind::Mysql)
    else {
        return;
    };
    run(
        &shop.url,
        &[
            "CREATE TABLE wp_wc_customer_lookup (customer_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, user_id BIGINT UNSIGNED NULL, username VARCHAR(60) NOT NULL DEFAULT '', first_name VARCHAR(255) NOT NULL, last_name VARCHAR(255) NOT NULL, email VARCHAR(100) NULL, date_last_active TIMESTAMP NULL, date_registered TIMESTAMP NULL, country CHAR(2) NOT NULL DEFAULT '')",
            "CREATE TABLE wp_wc_orders (id BIGINT UNSIGNED PRIMARY KEY, status VARCHAR(20), currency VARCHAR(10), type VARCHAR(20), tax_amount DECIMAL(26,8), total_amount DECIMAL(26,8), customer_id BIGINT UNSIGNED, billing_email VARCHAR(320), date_created_gmt DATETIME, date_updated_gmt DATETIME)",
            "CREATE TABLE wp_wc_order_product_lookup (order_item_id BIGINT UNSIGNED PRIMARY KEY, order_id BIGINT UNSIGNED, product_id BIGINT UNSIGNED, variation_id BIGINT UNSIGNED, customer_id BIGINT UNSIGNED, date_created DATETIME, product_qty INT, product_net_revenue DOUBLE)",
            "INSERT INTO wp_wc_customer_lookup (user_id, first_name, last_name, email, date_last_active, date_registered) VALUES (7, 'María', 'García', 'maria@shop.example', '2026-01-02 10:00:00', '2025-01-01 10:00:00'), (8, 'Wei', 'Li', 'wei@shop.example', NULL, '2025-03-01 10:00:00'), (NULL, 'Guest', 'Buyer', 'guest@shop.example', '2026-01-02 10:00:00', NULL)",
            "INSERT INTO wp_wc_orders VALUES (101, 'wc-completed', 'EUR', 'shop_order', 0, 25.50, 7, 'maria@shop.example', '2025-12-01 10:00:00', '2025-12-01 10:00:00'), (102, 'wc-refunded', 'EUR', 'shop_order', 0, 80.00, 7, 'maria@shop.example', '2025-12-05 10:00:00', '2025-12-09 10:00:00'), (103, 'wc-processing', 'EUR', 'shop_order', 0, 10.00, 8, 'wei@shop.example', '2025-12-07 10:00:00', '2025-12-07 10:00:00'), (104, 'wc-completed', 'EUR', 'shop_order', 0, 5.00, 0, 'guest@shop.example', '2025-12-08 10:00:00', '2025-12-08 10:00:00'), (105, 'wc-completed', 'EUR', 'shop_order_refund', 0, -80.00, 7, '', '2025-12-09 10:00:00', '2025-12-09 10:00:00')",
            "INSERT INTO wp_wc_order_product_lookup VALUES (1, 101, 55, 0, 7, '2025-12-01 10:00:00', 2, 25.50)",
        ],
    );
    for b in backends("readme-woo") {
        write(&b.dir, "tidings.yaml", &project("woocommerce.yaml"));
        let sync = tidings(&b)
            .env("WOO_DATABASE_URL", &shop.url)
            .args(["sync"])
            .run();
        assert_eq!(sync.code, 0, "{}: {}", b.label, sync.transcript());
        assert!(
            sync.stdout.contains("source woo, customers: 2 rows read"),
            "{}: {}",
            b.label,
            sync.stdout
        );
        assert!(
            sync.stdout
                .contains("source woo, orders: 3 rows read; 3 new"),
            "{}: {}",
            b.label,
            sync.stdout
        );
        // The refunded order does not count; the guest's and the refund record are not read.
        assert_eq!(figures(&b, "7"), (1, 25.5), "{}", b.label);
        assert_eq!(figures(&b, "8"), (1, 10.0), "{}", b.label);
        assert_eq!(
            lines_of(&b, "101"),
            serde_json::json!([{"product_id": 55, "quantity": 2, "price": 25.5}]),
            "{}",
            b.label
        );
        assert_eq!(
            crate::sources::store_count(
                &b,
                "SELECT COUNT(*) FROM events WHERE name = 'order_refunded'"
            ),
            1,
            "{}",
            b.label
        );
    }
}
