//! `sources:` — the shop's own databases tidings reads its customers and orders from, with
//! the queries the user writes (`WHERE updated_at >= :since`), every `every` in the daemon
//! and once with `tidings sync`.

use std::collections::BTreeMap;

use chrono::TimeDelta;
use serde::Deserialize;

use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};

/// One source, as written (its `database` may hold `${ENV}` references).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SourceConfig {
    /// `database: ${SHOP_DATABASE_URL}` — `postgres://`, `mysql://` (MySQL, MariaDB) or
    /// `sqlite://`; only ever read.
    pub database: String,
    /// `every: 5m` — how often the daemon syncs.
    #[serde(default = "default_every")]
    pub every: String,
    /// The customers' query: columns named as customer fields (`id`, `email`, …), others
    /// become attributes; it must return `id` and `updated_at`.
    #[serde(default)]
    pub customers: Option<String>,
    /// The orders' query: `id, customer_id, total, currency, status, coupon, placed_at,
    /// lines`, and `updated_at`.
    #[serde(default)]
    pub orders: Option<String>,
    /// `page: 1000` — rows read and written at a time.
    #[serde(default = "default_page")]
    pub page: u32,
}

fn default_every() -> String {
    "5m".into()
}

fn default_page() -> u32 {
    1_000
}

/// The largest page a source may ask for: one page is held in memory at a time.
pub const MAX_PAGE: u32 = 10_000;

/// The kinds of database a source can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopKind {
    Postgres,
    MySql,
    Sqlite,
}

impl ShopKind {
    /// The kind a URL names, by its scheme.
    pub fn of(url: &str) -> Option<Self> {
        let scheme = url.split("://").next()?;
        match scheme {
            "postgres" | "postgresql" => Some(ShopKind::Postgres),
            "mysql" | "mariadb" => Some(ShopKind::MySql),
            "sqlite" => Some(ShopKind::Sqlite),
            _ => None,
        }
    }
}

impl SourceConfig {
    /// How often the daemon syncs (checked at load; the default when unreadable).
    pub fn interval(&self) -> TimeDelta {
        crate::time::duration::parse(&self.every).unwrap_or(TimeDelta::minutes(5))
    }

    /// The feeds it has, in the order a sync reads them (customers first: an order needs
    /// its customer).
    pub fn feeds(&self) -> Vec<(&'static str, &str)> {
        [("customers", &self.customers), ("orders", &self.orders)]
            .into_iter()
            .filter_map(|(name, q)| q.as_deref().map(|q| (name, q)))
            .collect()
    }
}

/// Each source checked where it is written: its interval, its page, a query at least, and
/// a database URL of a kind tidings reads.
pub fn check(
    sources: &BTreeMap<String, SourceConfig>,
    doc: &Document,
) -> Result<(), Box<Diagnostic>> {
    for (name, s) in sources {
        let at = |key: &str| doc.value_span(&Route::root().key("sources").key(name).key(key));
        let fail = |key: &str, message: String, help: &str| {
            let span = if key.is_empty() {
                doc.key_span(&Route::root().key("sources").key(name))
            } else {
                at(key)
            };
            Err(Box::new(
                Diagnostic::error("config-source", message)
                    .at(span)
                    .help(help.to_string()),
            ))
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return fail(
                "",
                format!("`{name}` is not a source name"),
                "name a source with letters, digits, `_` and `-`, e.g. `shop`",
            );
        }
        if crate::time::duration::parse(&s.every).map_or(true, |d| d <= TimeDelta::zero()) {
            return fail(
                "every",
                format!("`{}` is not an interval for source `{name}`", s.every),
                crate::time::duration::DURATION_HELP,
            );
        }
        if s.page == 0 || s.page > MAX_PAGE {
            return fail(
                "page",
                format!("a page of {} rows is not allowed", s.page),
                &format!("write a number from 1 to {MAX_PAGE}"),
            );
        }
        if s.feeds().is_empty() {
            return fail(
                "",
                format!("source `{name}` has no query"),
                "give it `customers:`, `orders:` or both: a SELECT that returns `id` and `updated_at`, e.g. `SELECT id, email, updated_at FROM customers WHERE updated_at >= :since`",
            );
        }
        let written = s.database.trim();
        if !written.starts_with("${") && ShopKind::of(written).is_none() {
            return fail(
                "database",
                format!("`{written}` is not a database tidings can read"),
                "write `postgres://…`, `mysql://…` (MySQL or MariaDB) or `sqlite://FILE`, or `${SHOP_DATABASE_URL}`",
            );
        }
    }
    Ok(())
}
