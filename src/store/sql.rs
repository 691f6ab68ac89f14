//! Statement helpers that keep the number of statements down: multi-row `VALUES`, chunked
//! `IN` lists, and SQLite's parameters bound anonymously (sqlx looks each `$N` up by name,
//! which is quadratic in a statement's parameters).

use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;
use sqlx::any::AnyRow;

/// Statements sent to the database by this process. Every statement the store runs is made
/// by [`query`] or [`query_scalar`] (or is a transaction's `BEGIN` and its end, counted by
/// `Store::write_tx`), so the count is a fact about the code, not a sample: a test can hold
/// "statements per journey step" on a fixed scenario. It is the process's, not a store's,
/// because a process runs one store (tests that open several read it from a process of
/// their own).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Statements sent so far by this process.
pub fn statements() -> u64 {
    STATEMENTS.load(Ordering::Relaxed)
}

pub(crate) fn count_statements(n: u64) {
    STATEMENTS.fetch_add(n, Ordering::Relaxed);
}

/// A statement, counted.
pub(crate) fn query<'q>(
    sql: impl sqlx::SqlSafeStr,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    count_statements(1);
    sqlx::query(sql)
}

/// A statement that returns one column, counted.
pub(crate) fn query_scalar<'q, O>(
    sql: impl sqlx::SqlSafeStr,
) -> sqlx::query::QueryScalar<'q, sqlx::Any, O, sqlx::any::AnyArguments>
where
    (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    count_statements(1);
    sqlx::query_scalar(sql)
}

/// Values bound per `IN (...)` list: far below every backend's limit on parameters.
pub(crate) const IN_LIST: usize = 400;

/// `$first, $first+1, ...` — `n` bound parameters for an `IN` list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A statement being bound, as [`for_rows`] hands it to its caller's binder.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Runs `statement` for `rows`, a hundred a statement: its `{values}` becomes a multi-row
/// `VALUES` list of `columns` bound parameters a row, each row ending with `tail` (literals
/// the statement gives every row), and `bind` binds one row's values in that order.
/// Returns every row the statements return (`RETURNING`).
pub(crate) async fn for_rows<'q, T>(
    conn: &mut sqlx::AnyConnection,
    statement: &str,
    columns: usize,
    tail: &str,
    rows: &'q [T],
    bind: impl Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> Result<Vec<AnyRow>, StoreError> {
    let mut out = Vec::new();
    for q in multi_row(conn, statement, columns, tail, rows, bind) {
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Runs `statement` for `rows` as [`for_rows`] does, and returns how many rows it wrote. A
/// count needs no `RETURNING`: on SQLite each returned row is handed across threads.
pub(crate) async fn count_rows<'q, T>(
    conn: &mut sqlx::AnyConnection,
    statement: &str,
    columns: usize,
    tail: &str,
    rows: &'q [T],
    bind: impl Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> Result<u64, StoreError> {
    let mut written = 0;
    for q in multi_row(conn, statement, columns, tail, rows, bind) {
        written += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(written)
}

/// The bound statements [`for_rows`] and [`count_rows`] run.
pub(super) fn multi_row<'q, T>(
    conn: &sqlx::AnyConnection,
    statement: &str,
    columns: usize,
    tail: &str,
    rows: &'q [T],
    bind: impl Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> Vec<AnyQuery<'q>> {
    rows.chunks(100)
        .map(|chunk| {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({}{tail})", placeholders(1 + i * columns, columns)))
                .collect();
            // The statement's text comes from the caller's constant; every value is bound.
            let text = statement.replace("{values}", &values.join(", "));
            chunk
                .iter()
                .fold(query(sqlx::AssertSqlSafe(positional(conn, text))), &bind)
        })
        .collect()
}

/// A generated statement in the form its connection binds fastest. On SQLite, `$1 … $n`
/// used once each and in order become bare `?`: sqlx resolves every named parameter
/// through `sqlite3_bind_parameter_name`, which walks the statement's list of names, so a
/// statement of a few hundred `$N` costs quadratic time to bind (10% of a pass's CPU
/// before this). Any other text is returned as it is.
pub(crate) fn positional(conn: &sqlx::AnyConnection, sql: String) -> String {
    if conn.backend_name() != "SQLite" {
        return sql;
    }
    anonymous(&sql).unwrap_or(sql)
}

/// `sql` with its `$1 … $n` replaced by `?`, when they appear once each, in order, outside
/// quotes; `None` otherwise.
pub(super) fn anonymous(sql: &str) -> Option<String> {
    let mut out = String::with_capacity(sql.len());
    let mut next = 1;
    let mut quoted = false;
    let mut chars = sql.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '$' if !quoted => {
                let digits: String = sql[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.parse::<usize>().ok()? != next {
                    return None;
                }
                next += 1;
                for _ in 0..digits.len() {
                    chars.next();
                }
                out.push('?');
            }
            '?' if !quoted => return None,
            _ => out.push(c),
        }
    }
    Some(out)
}

/// A value bound ahead of an `IN` list.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lead<'a> {
    Text(&'a str),
    /// A moment, as the store keeps it (milliseconds since the epoch).
    Millis(i64),
}

/// Runs `sql`, whose `IN ({list})` takes `values`, once per few hundred of them — binding
/// `lead` first, as `$1`, `$2`, … — and returns every row (none for an `UPDATE`).
pub(crate) async fn fetch_in(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    lead: &[Lead<'_>],
    values: &[&str],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in values.chunks(IN_LIST) {
        // The statement's text comes from the caller's constant; every value is bound.
        let text = sql.replace("{list}", &placeholders(lead.len() + 1, chunk.len()));
        let mut q = query(sqlx::AssertSqlSafe(positional(conn, text)));
        for v in lead {
            q = match *v {
                Lead::Text(t) => q.bind(t),
                Lead::Millis(ms) => q.bind(ms),
            };
        }
        for v in chunk {
            q = q.bind(*v);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}
