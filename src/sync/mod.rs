//! `tidings sync` and the daemon's syncs: each source's feeds read from the shop's own
//! database after their cursors, a page at a time, checked as an import's rows are, and
//! written with the cursor in one transaction. A refused row is reported and holds the
//! cursor before it (the rows after it are still written, and read again next time), so
//! nothing the shop has is ever skipped; a source that fails is reported and the others
//! go on.

pub mod rows;
pub mod shop;

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::config::SourceConfig;
use crate::import::RowError;
use crate::store::orders::OrderCounts;
use crate::store::sources::{Position, SourcePage, SourceRows, SourceTx};
use crate::store::{Store, StoreError};
use shop::{Shop, ShopError};

/// What a sync of one source did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    pub source: String,
    pub feeds: Vec<FeedReport>,
    /// The error that stopped the source (the database is down, a query fails).
    pub error: Option<String>,
}

/// What a sync of one feed did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FeedReport {
    pub feed: &'static str,
    pub read: u64,
    pub customers: u64,
    pub orders: OrderCounts,
    /// Each refused row, as `source shop, orders row id=17: …`.
    pub refused: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Syncs one source: every feed from its cursor to the end. The shop's failures are in
/// the report; only the store's own failure is an error.
pub async fn sync_source(
    store: &Store,
    name: &str,
    source: &SourceConfig,
    url: &str,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport {
        source: name.to_string(),
        ..Default::default()
    };
    let failed = |e: ShopError| format!("source {name}: {e}");
    let mut shop = match Shop::open(url).await {
        Ok(s) => s,
        Err(e) => {
            let message = failed(e);
            for (feed, _) in source.feeds() {
                if !dry_run {
                    store
                        .source_run_ended(name, feed, false, Some(&message), Utc::now())
                        .await?;
                }
            }
            report.error = Some(message);
            return Ok(report);
        }
    };
    if let Err(e) = shop.begin().await {
        report.error = Some(failed(e));
        shop.end().await;
        return Ok(report);
    }
    // A dry run writes every page in one transaction and rolls it back at the end.
    let mut dry = match dry_run {
        true => Some(store.source_tx().await?),
        false => None,
    };
    for (feed, query) in source.feeds() {
        let mut feed_report = FeedReport {
            feed,
            ..Default::default()
        };
        let at = Feed {
            source: name,
            feed,
            query,
            page: source.page,
        };
        let result = sync_feed(store, &mut shop, &at, &mut dry, &mut feed_report).await;
        let error = match result {
            Ok(()) => None,
            Err(FeedError::Shop(e)) => Some(format!("source {name}, {feed}: {e}")),
            Err(FeedError::Store(e)) => {
                shop.end().await;
                return Err(e.into());
            }
        };
        let caught_up = error.is_none() && feed_report.refused.is_empty();
        if !dry_run {
            store
                .source_run_ended(name, feed, caught_up, error.as_deref(), Utc::now())
                .await?;
        }
        feed_report.error = error;
        report.feeds.push(feed_report);
    }
    shop.end().await;
    if let Some(tx) = dry {
        store.end_source_tx(tx, false).await?;
    }
    Ok(report)
}

/// Rows written in one store transaction: a transaction commits every page's rows and
/// cursor together, and a larger one writes each page of the store's indexes (which the
/// rows of a page touch at random: customers, their orders, their events) once for many
/// shop pages.
const COMMIT_ROWS: usize = 10_000;

/// The longest a store transaction of a sync stays open (a daemon's passes wait for it
/// on SQLite).
const COMMIT_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// Which feed of which source, and how it is read.
struct Feed<'a> {
    source: &'a str,
    feed: &'static str,
    query: &'a str,
    page: u32,
}

enum FeedError {
    Shop(ShopError),
    Store(StoreError),
}

impl From<ShopError> for FeedError {
    fn from(e: ShopError) -> Self {
        FeedError::Shop(e)
    }
}

impl From<StoreError> for FeedError {
    fn from(e: StoreError) -> Self {
        FeedError::Store(e)
    }
}

async fn sync_feed(
    store: &Store,
    shop: &mut Shop,
    at: &Feed<'_>,
    dry: &mut Option<SourceTx>,
    report: &mut FeedReport,
) -> Result<(), FeedError> {
    let (name, feed, page) = (at.source, at.feed, at.page);
    let plan = shop.feed(at.query, page).await?;
    let mut after: Option<Position> = store.source_position(name, feed).await?;
    // Once a row is refused, the cursor stays before it for the rest of the run.
    let mut held = false;
    // Pages written and not yet committed (a dropped one rolls back with its cursor).
    let mut open: Option<(SourceTx, usize, Instant)> = None;
    loop {
        let rows = shop.page(&plan, after.as_ref()).await?;
        if rows.is_empty() {
            break;
        }
        let full = rows.len() == page as usize;
        report.read += rows.len() as u64;
        let (mut positions, data): (Vec<Position>, Vec<_>) =
            rows.into_iter().map(|r| (r.position, r.data)).unzip();
        let (checked, mut refused) = check(feed, data);
        let page_rows = SourcePage {
            source: name,
            feed,
            rows: checked,
            positions: &positions,
            refused: refused.iter().map(|(i, _)| *i).collect(),
            held,
            now: Utc::now(),
        };
        let written = match dry {
            Some(tx) => store.write_source_page(tx, page_rows).await?,
            None => {
                let (tx, held_rows, since) = match &mut open {
                    Some(o) => o,
                    None => open.insert((store.source_tx().await?, 0, Instant::now())),
                };
                let written = store.write_source_page(tx, page_rows).await?;
                *held_rows += positions.len();
                if (*held_rows >= COMMIT_ROWS || since.elapsed() >= COMMIT_AFTER)
                    && let Some((tx, _, _)) = open.take()
                {
                    store.end_source_tx(tx, true).await?;
                }
                written
            }
        };
        held |= written.held;
        // The store's refusals (an unknown customer) by the row they came from.
        for e in &written.errors {
            refused.push((e.line.saturating_sub(1) as usize, e.clone()));
        }
        report.customers += written.customers;
        report.orders.add(&written.orders);
        refused.sort_by_key(|(i, _)| *i);
        for (i, e) in refused {
            let id = rows::plain(&positions[i].id);
            report.refused.push(format!(
                "source {name}, {feed} row id={id}: {}",
                describe(&e)
            ));
        }
        after = positions.pop();
        if !full {
            break;
        }
    }
    if let Some((tx, _, _)) = open {
        store.end_source_tx(tx, true).await?;
    }
    Ok(())
}

/// A page's rows as the importer reads them: the good ones, and each refused row's index
/// and problem. A row's `line` is its index plus one.
fn check(feed: &str, data: Vec<Map<String, Value>>) -> (SourceRows, Vec<(usize, RowError)>) {
    let objects: Vec<_> = data
        .into_iter()
        .map(|row| rows::normalized(feed, row))
        .collect();
    let mut refused = Vec::new();
    let checked = if feed == "orders" {
        SourceRows::Orders(good(crate::import::orders_of(&objects), &mut refused))
    } else {
        SourceRows::Customers(good(crate::import::customers_of(&objects), &mut refused))
    };
    (checked, refused)
}

/// The good rows; each bad row's problems into `refused` with its index.
fn good<T>(read: Vec<Result<T, Vec<RowError>>>, refused: &mut Vec<(usize, RowError)>) -> Vec<T> {
    let mut out = Vec::new();
    for (i, row) in read.into_iter().enumerate() {
        match row {
            Ok(r) => out.push(r),
            Err(errors) => refused.extend(errors.into_iter().map(|e| (i, e))),
        }
    }
    out
}

fn describe(e: &RowError) -> String {
    if e.field.is_empty() {
        e.message.clone()
    } else {
        format!("`{}`: {}", e.field, e.message)
    }
}

/// The moment a cursor's `updated_at` names, when it is a time (a number is not).
pub fn cursor_time(p: &Position) -> Option<DateTime<Utc>> {
    let Value::String(s) = &p.updated_at else {
        return None;
    };
    crate::time::parse_time(&rows::time_text(s)).ok()
}

/// How far behind a feed is: the time since it last caught up.
pub fn lag(caught_up_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    caught_up_at.map(|t| now - t)
}
