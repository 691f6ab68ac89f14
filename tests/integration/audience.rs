//! The audience pushdown agrees with Rhai: on random audiences and random customers (quotes,
//! NULLs, Unicode, `'; DROP` in values), the customers the database keeps and Rhai then
//! accepts — or fails on — are exactly those Rhai accepts or fails on when it sees every
//! customer; and a fully pushed audience is decided by the database alone.

use std::collections::BTreeSet;

use chrono::Utc;
use tidings::import::CustomerRow;
use tidings::model::customer::{CUSTOMER_FIELDS, Customer};
use tidings::model::filter::ColumnFilter as SqlFilter;
use tidings::store::Store;
use tidings::store::customer_rows::CustomerFilter;
use tidings::store::customer_rows::customers_page;
use tidings::workflow::expr::pushdown::pushed;
use tidings::workflow::expr::{EvalInput, ExprEngine, Vars};

use crate::common::Rng;
use crate::store::{backends, runtime};

const TEXTS: &[&str] = &[
    "Ada",
    "ada",
    "O'Brien",
    "'; DROP TABLE customers; --",
    "Zoë",
    "日本",
    "",
    "en-GB",
    "Europe/London",
    "a\"b",
    "M",
];
const TEXT_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "locale",
    "timezone",
    "email",
    "id",
];
const NUMBERS: &[&str] = &["0", "1", "2", "-1", "2.5", "0.0", "100", "99.99", "1_000"];
const OPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

fn customer(rng: &mut Rng, i: usize) -> Customer {
    let text = |rng: &mut Rng| match rng.below(4) {
        0 => None,
        _ => Some(rng.pick(TEXTS).to_string()),
    };
    let mut c = Customer::new(format!("c{i:03}"), format!("c{i}@example.com"));
    c.first_name = text(rng);
    c.last_name = text(rng);
    c.locale = text(rng);
    c.timezone = text(rng);
    c.orders_count = rng.below(6) as i64 - 1;
    c.total_spent = *rng.pick(&[0.0, 0.5, 2.5, 10.0, 99.99, -1.0, 1e9]);
    if rng.below(3) == 0 {
        c.tags = vec!["vip".into()];
    }
    c
}

/// A literal in Rhai's syntax; strings never hold a backslash except as an escape.
fn text_literal(rng: &mut Rng) -> String {
    let t = rng.pick(TEXTS);
    format!("\"{}\"", t.replace('"', "\\\""))
}

/// One condition: mostly comparisons the pushdown reads, some it must leave to Rhai.
fn term(rng: &mut Rng) -> String {
    let numeric = *rng.pick(&["orders_count", "total_spent"]);
    match rng.below(10) {
        0..=2 => format!("customer.{numeric} {} {}", rng.pick(OPS), rng.pick(NUMBERS)),
        3..=4 => format!(
            "customer.{} {} {}",
            rng.pick(TEXT_FIELDS),
            rng.pick(&["==", "!=", "==", "!=", "<"]),
            text_literal(rng)
        ),
        5 => format!("{} {} customer.{numeric}", rng.pick(NUMBERS), rng.pick(OPS)),
        6 => "has_tag(customer, \"vip\")".into(),
        7 => format!("customer.first_name.len() > {}", rng.below(4)),
        8 => format!("customer.{numeric} {} {}", rng.pick(OPS), text_literal(rng)),
        _ => format!("customer.orders_count + 1 > {}", rng.pick(NUMBERS)),
    }
}

fn audience(rng: &mut Rng) -> String {
    let n = 1 + rng.below(4);
    let terms: Vec<String> = (0..n).map(|_| term(rng)).collect();
    match rng.below(8) {
        0 => terms.join(" || "),
        1 => format!("!({})", terms.join(" && ")),
        2 => format!("({}) && {}", terms.join(" || "), term(rng)),
        _ => terms.join(" && "),
    }
}

/// Ids Rhai accepts or fails on, among these customers.
fn decided(
    engine: &ExprEngine,
    expr: &tidings::workflow::expr::Expr,
    customers: &[Customer],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut accepted, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for c in customers {
        let input = EvalInput {
            customer: c,
            event: None,
            enrollment: None,
            now: Utc::now(),
            history: None,
        };
        match engine.eval_bool(expr, &input) {
            Ok(true) => {
                accepted.insert(c.id.clone());
            }
            Ok(false) => {}
            Err(_) => {
                failed.insert(c.id.clone());
            }
        }
    }
    (accepted, failed)
}

async fn all_pages(store: &Store, filter: &SqlFilter) -> Vec<Customer> {
    let mut conn = store.connection().await.unwrap();
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let page = customers_page(&mut conn, &after, 37, &CustomerFilter::All, filter)
            .await
            .unwrap();
        let Some(last) = page.last() else { return out };
        after = last.id.clone();
        out.extend(page);
    }
}

#[test]
fn pushed_down_and_in_memory_audiences_agree() {
    let seed: u64 = std::env::var("TIDINGS_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7d1d_1a65);
    for b in backends("audience-pushdown") {
        let mut rng = Rng(seed);
        let customers: Vec<Customer> = (0..240).map(|i| customer(&mut rng, i)).collect();
        let engine = ExprEngine::new();
        let (mut pushed_any, mut fully) = (0, 0);
        runtime().block_on(async {
            let store = Store::open(&b.url).await.unwrap();
            let rows = customers.iter().enumerate().map(|(i, c)| {
                Ok(CustomerRow {
                    line: i as u64 + 2,
                    customer: c.clone(),
                    present: CUSTOMER_FIELDS.to_vec(),
                    unsubscribed_topics: None,
                })
            });
            store.import_customers(rows, false).await.unwrap();
            let stored = all_pages(&store, &SqlFilter::default()).await;
            assert_eq!(stored.len(), customers.len());
            for case in 0..300 {
                let text = audience(&mut rng);
                let vars = Vars {
                    event: false,
                    enrollment: false,
                };
                let Ok(expr) = engine.compile(&text, vars) else {
                    continue;
                };
                let filter = pushed(&text);
                let kept = all_pages(&store, &filter).await;
                let everyone = decided(&engine, &expr, &stored);
                let after_pushdown = decided(&engine, &expr, &kept);
                assert_eq!(
                    after_pushdown, everyone,
                    "{}: seed {seed}, case {case}: `{text}` pushed as `{:?}`",
                    b.label, filter.conditions
                );
                if !filter.is_empty() {
                    pushed_any += 1;
                    // Everything before `&&`s, all pushed: the database decides alone.
                    let whole = pushed(&text).conditions.len();
                    if whole == text.split(" && ").count()
                        && !text.contains("||")
                        && !text.starts_with('!')
                        && !text.starts_with('(')
                    {
                        fully += 1;
                        let ids: BTreeSet<String> = kept.iter().map(|c| c.id.clone()).collect();
                        assert_eq!(
                            ids, everyone.0,
                            "{}: seed {seed}, case {case}: `{text}` decided by SQL alone",
                            b.label
                        );
                        assert!(everyone.1.is_empty(), "`{text}` failed in Rhai");
                    }
                }
            }
            store.close().await;
        });
        eprintln!(
            "{}: {pushed_any} of 300 audiences pushed something, {fully} entirely",
            b.label
        );
        assert!(
            pushed_any > 60 && fully > 30,
            "{pushed_any} pushed, {fully} fully"
        );
    }
}
