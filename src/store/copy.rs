//! Copying one store into another, table by table and page by page: how `simulate` gets a
//! scratch store to rehearse on without touching the real one (which may be PostgreSQL).
//!
//! The column lists are the schema's, typed, because the `Any` driver decodes by the type
//! asked for; a migration that adds a column adds it here too (a test compares the lists
//! with the database's own).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::model::states::{Channel, DeliveryState, JourneyState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Real,
}

use Kind::{Int, Real, Text};

struct Table {
    name: &'static str,
    key: &'static str,
    columns: &'static [(&'static str, Kind)],
}

const CUSTOMERS: Table = Table {
    name: "customers",
    key: "id",
    columns: &[
        ("id", Text),
        ("email", Text),
        ("first_name", Text),
        ("last_name", Text),
        ("locale", Text),
        ("timezone", Text),
        ("birthday", Text),
        ("created_at", Int),
        ("last_order_at", Int),
        ("orders_count", Int),
        ("total_spent", Real),
        ("tags", Text),
        ("unsubscribed_at", Int),
        ("attributes", Text),
        ("updated_at", Int),
        ("stage", Text),
        ("stage_since", Int),
        ("first_order_at", Int),
    ],
};

const SUPPRESSIONS: Table = Table {
    name: "suppressions",
    key: "email",
    columns: &[("email", Text), ("reason", Text), ("created_at", Int)],
};

const EVENTS: Table = Table {
    name: "events",
    key: "id",
    columns: &[
        ("id", Text),
        ("customer_id", Text),
        ("name", Text),
        ("at", Int),
        ("properties", Text),
        ("changes", Text),
        ("recorded_at", Int),
        ("processed_at", Int),
        ("fingerprint", Text),
        ("too_old", Int),
    ],
};

const ENROLLMENTS: Table = Table {
    name: "enrollments",
    key: "id",
    columns: &[
        ("id", Text),
        ("workflow", Text),
        ("customer_id", Text),
        ("trigger_key", Text),
        ("state", Text),
        ("step", Text),
        ("due_at", Int),
        ("entered_at", Int),
        ("ended_at", Int),
        ("exit_reason", Text),
        ("event_id", Text),
        ("orders_count_at_entry", Int),
        ("total_spent_at_entry", Real),
        ("error", Text),
        ("version", Int),
        ("lease_until", Int),
        ("waiting_for", Text),
        ("waiting_since", Int),
        ("variant", Text),
    ],
};

const DELIVERIES: Table = Table {
    name: "deliveries",
    key: "id",
    columns: &[
        ("id", Text),
        ("channel", Text),
        ("enrollment_id", Text),
        ("workflow", Text),
        ("customer_id", Text),
        ("step", Text),
        ("class", Text),
        ("mode", Text),
        ("recipient", Text),
        ("subject", Text),
        ("coupon_code", Text),
        ("message_id", Text),
        ("state", Text),
        ("attempts", Int),
        ("due_at", Int),
        ("created_at", Int),
        ("sent_at", Int),
        ("last_error", Text),
        ("lease_until", Int),
        ("accepted_at", Int),
        ("variant", Text),
    ],
};

const DELIVERY_BODIES: Table = Table {
    name: "delivery_bodies",
    key: "delivery_id",
    columns: &[
        ("delivery_id", Text),
        ("html", Text),
        ("text", Text),
        ("payload", Text),
    ],
};

const COUPONS: Table = Table {
    name: "coupons",
    key: "code",
    columns: &[
        ("code", Text),
        ("delivery_id", Text),
        ("customer_id", Text),
        ("workflow", Text),
        ("expires_at", Int),
        ("state", Text),
        ("redeemed_at", Int),
    ],
};

const CONVERSIONS: Table = Table {
    name: "conversions",
    key: "event_id",
    columns: &[
        ("event_id", Text),
        ("enrollment_id", Text),
        ("workflow", Text),
        ("variant", Text),
        ("step", Text),
        ("customer_id", Text),
        ("value", Real),
        ("at", Int),
    ],
};

const ENGAGEMENTS: Table = Table {
    name: "engagements",
    key: "id",
    columns: &[
        ("id", Text),
        ("kind", Text),
        ("delivery_id", Text),
        ("enrollment_id", Text),
        ("workflow", Text),
        ("step", Text),
        ("customer_id", Text),
        ("detail", Text),
        ("value", Text),
        ("comment", Text),
        ("machine", Int),
        ("at", Int),
        ("client", Text),
    ],
};

/// What `simulate` copies, in an order that satisfies the foreign keys.
const TOPIC_OPTOUTS: Table = Table {
    name: "topic_optouts",
    key: "id",
    columns: &[
        ("id", Text),
        ("customer_id", Text),
        ("topic", Text),
        ("at", Int),
    ],
};

const TABLES: [&Table; 10] = [
    &CUSTOMERS,
    &SUPPRESSIONS,
    &EVENTS,
    &ENROLLMENTS,
    &DELIVERIES,
    &DELIVERY_BODIES,
    &COUPONS,
    &ENGAGEMENTS,
    &CONVERSIONS,
    &TOPIC_OPTOUTS,
];

enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
}

const PAGE: i64 = 1_000;

/// How many rows were copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub customers: u64,
    pub events: u64,
    pub enrollments: u64,
}

/// Copies `from` into the empty store `to` as a rehearsal starting at `start`: events at
/// or after `start` become unprocessed again (the rehearsal replays them in time order),
/// deliveries are copied while the frequency cap can still count them (`keep_sends_since`)
/// or while they are still waiting to leave, and schedule watermarks are not copied (the
/// rehearsal's first pass is at `start`).
pub async fn copy_for_rehearsal(
    from: &Store,
    to: &Store,
    start: DateTime<Utc>,
    keep_sends_since: DateTime<Utc>,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    super::known::customers_written();
    let since = keep_sends_since.timestamp_millis();
    for table in TABLES {
        let filter = match table.name {
            "deliveries" => Some(("(state = 'pending' OR due_at >= $2)", since)),
            "delivery_bodies" => Some((
                "delivery_id IN (SELECT id FROM deliveries WHERE state = 'pending' OR due_at >= $2)",
                since,
            )),
            _ => None,
        };
        let n = copy_table(from, to, table, filter).await?;
        match table.name {
            "customers" => report.customers = n,
            "events" => report.events = n,
            "enrollments" => report.enrollments = n,
            _ => {}
        }
    }
    super::sql::query("UPDATE events SET processed_at = NULL WHERE at >= $1")
        .bind(start.timestamp_millis())
        .execute(&to.pool)
        .await?;
    // What the store had done before the rehearsal, so that the rehearsal counts only what
    // it does itself (the scratch store is the rehearsal's own, so these tables are too).
    for sql in [
        "CREATE TABLE copied_deliveries AS SELECT id, state FROM deliveries",
        "CREATE UNIQUE INDEX copied_deliveries_id ON copied_deliveries (id)",
        "CREATE TABLE copied_enrollments AS SELECT id, state FROM enrollments",
        "CREATE UNIQUE INDEX copied_enrollments_id ON copied_enrollments (id)",
    ] {
        super::sql::query(sql).execute(&to.pool).await?;
    }
    Ok(report)
}

/// A delivery of the rehearsal's window, and whether the store had already sent (or
/// otherwise ended) it before the rehearsal began.
pub struct WindowDelivery {
    pub workflow: String,
    pub step: String,
    pub channel: Channel,
    pub state: DeliveryState,
    pub due_at: i64,
    pub done_before: bool,
}

/// The deliveries due in `[from, to]` of a rehearsal's scratch store.
pub async fn window_deliveries(
    scratch: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<WindowDelivery>, StoreError> {
    let select = "SELECT d.workflow, d.channel, d.state, d.due_at, c.state, d.step, d.id FROM deliveries d LEFT JOIN copied_deliveries c ON c.id = d.id WHERE d.id > $1 AND d.due_at >= $2 AND d.due_at <= $3 ORDER BY d.id";
    let mut out = Vec::new();
    window_rows(scratch, select, (from, to), |r| {
        let before: Option<DeliveryState> = r
            .try_get::<Option<String>, _>(4)?
            .map(|s| s.parse())
            .transpose()?;
        out.push(WindowDelivery {
            workflow: r.try_get(0)?,
            step: r.try_get(5)?,
            channel: r.try_get::<String, _>(1)?.parse()?,
            state: r.try_get::<String, _>(2)?.parse()?,
            due_at: r.try_get(3)?,
            done_before: before.is_some_and(|s| !s.is_waiting()),
        });
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Hands each row `select` finds in a rehearsal's window to `each`, a page at a time in id
/// order: a rehearsal of a large store has hundreds of thousands of them, and a row as the
/// driver hands it over is many times its few values. `select` takes the last id read as
/// `$1` and the window as `$2` and `$3`, and gives the row's id as its last column.
async fn window_rows(
    scratch: &Store,
    select: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    mut each: impl FnMut(&AnyRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = String::new();
    loop {
        // The statement is the caller's constant; the page's size is written in.
        let sql = format!("{select} LIMIT {PAGE}");
        let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
            .bind(after.clone())
            .bind(from.timestamp_millis())
            .bind(to.timestamp_millis())
            .fetch_all(&scratch.pool)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get(last.len() - 1)?;
        for r in &rows {
            each(r)?;
        }
    }
}

/// A journey that entered or ended in a rehearsal's window, as far as the rehearsal moved
/// it: `entered_at` only when the rehearsal enrolled it, `ended_at` only when the
/// rehearsal ended it.
pub struct WindowJourney {
    pub workflow: String,
    pub state: JourneyState,
    pub entered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub customer_id: String,
    pub error: Option<String>,
    /// `SPLIT/VARIANT` or `holdout`, as far as the journey got.
    pub variant: Option<String>,
}

/// The journeys a rehearsal enrolled or ended within `[from, to]`.
pub async fn window_journeys(
    scratch: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<WindowJourney>, StoreError> {
    let (a, b) = (from.timestamp_millis(), to.timestamp_millis());
    let select = "SELECT e.workflow, e.state, e.entered_at, e.ended_at, e.customer_id, e.error, c.state, e.variant, e.id FROM enrollments e LEFT JOIN copied_enrollments c ON c.id = e.id WHERE e.id > $1 AND ((e.entered_at >= $2 AND e.entered_at <= $3) OR (e.ended_at >= $2 AND e.ended_at <= $3)) ORDER BY e.id";
    let mut out = Vec::new();
    window_rows(scratch, select, (from, to), |r| {
        out.extend(window_journey(r, a, b)?);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// A journey of the window as a row gives it: `None` when it neither entered nor ended in
/// the window as far as the rehearsal moved it.
fn window_journey(r: &AnyRow, a: i64, b: i64) -> Result<Option<WindowJourney>, StoreError> {
    let before: Option<JourneyState> = r
        .try_get::<Option<String>, _>(6)?
        .map(|s| s.parse())
        .transpose()?;
    let entered: i64 = r.try_get(2)?;
    let ended: Option<i64> = r.try_get(3)?;
    let journey = WindowJourney {
        workflow: r.try_get(0)?,
        state: r.try_get::<String, _>(1)?.parse()?,
        entered_at: (before.is_none() && (a..=b).contains(&entered)).then_some(entered),
        ended_at: ended
            .filter(|e| (a..=b).contains(e) && before.is_none_or(|s| s == JourneyState::Active)),
        customer_id: r.try_get(4)?,
        error: r.try_get(5)?,
        variant: r.try_get(7)?,
    };
    Ok((journey.entered_at.is_some() || journey.ended_at.is_some()).then_some(journey))
}

async fn copy_table(
    from: &Store,
    to: &Store,
    table: &Table,
    filter: Option<(&str, i64)>,
) -> Result<u64, StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    // Table and column names come from the constants above, never from input.
    let select = format!(
        "SELECT {} FROM {} WHERE {} > $1{} ORDER BY {} LIMIT {PAGE}",
        names.join(", "),
        table.name,
        table.key,
        filter.map(|(f, _)| format!(" AND {f}")).unwrap_or_default(),
        table.key
    );
    let insert = format!(
        "INSERT INTO {} ({}) VALUES {{values}}",
        table.name,
        names.join(", ")
    );
    let key_index = names
        .iter()
        .position(|n| *n == table.key)
        .ok_or_else(|| StoreError::Corrupt(format!("{} has no key column", table.name)))?;
    let mut after = String::new();
    let mut copied = 0;
    loop {
        let mut q = super::sql::query(sqlx::AssertSqlSafe(select.clone())).bind(after.clone());
        if let Some((_, value)) = filter {
            q = q.bind(value);
        }
        let rows = q.fetch_all(&from.pool).await?;
        if rows.is_empty() {
            return Ok(copied);
        }
        let page = rows
            .iter()
            .map(|row| read_row(row, table).map(Cells))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(Cell::Text(Some(key))) = page.last().and_then(|cells| cells.0.get(key_index)) {
            after.clone_from(key);
        }
        // A hundred rows per statement.
        let mut tx = to.write_tx().await?;
        super::count_rows(&mut tx, &insert, names.len(), "", &page, bind_cells).await?;
        tx.commit().await?;
        copied += page.len() as u64;
    }
}

fn read_row(row: &AnyRow, table: &Table) -> Result<Vec<Cell>, StoreError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            Ok(match kind {
                Text => Cell::Text(row.try_get(i)?),
                Int => Cell::Int(row.try_get(i)?),
                Real => Cell::Real(row.try_get(i)?),
            })
        })
        .collect()
}

/// One row's values, in the order of its table's columns.
struct Cells(Vec<Cell>);

/// Binds one row's cells.
fn bind_cells<'q>(q: super::sql::AnyQuery<'q>, cells: &'q Cells) -> super::sql::AnyQuery<'q> {
    cells.0.iter().fold(q, |q, cell| match cell {
        Cell::Text(v) => q.bind(v.as_deref()),
        Cell::Int(v) => q.bind(*v),
        Cell::Real(v) => q.bind(*v),
    })
}

/// The columns a table has in the database, in order: what the test compares with the
/// lists above.
pub async fn table_columns(store: &Store, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = match store.backend() {
        super::Backend::Sqlite => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        super::Backend::Postgres => {
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 AND table_schema = current_schema() ORDER BY ordinal_position"
        }
    };
    let rows = super::sql::query(sql)
        .bind(table)
        .fetch_all(&store.pool)
        .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

/// The copied tables and their column lists, for that test.
pub fn copied_columns() -> Vec<(&'static str, Vec<&'static str>)> {
    TABLES
        .iter()
        .map(|t| (t.name, t.columns.iter().map(|(n, _)| *n).collect()))
        .collect()
}
