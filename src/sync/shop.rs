//! The shop's database, only ever read: one connection, one read-only transaction (a
//! snapshot where the database has them), and the user's query wrapped so that it is read
//! in pages after a cursor — `updated_at`, then the row id, so rows sharing a timestamp
//! across a page's edge are neither skipped nor read twice.
//!
//! Each row comes back as one JSON object built by the database itself (`to_jsonb`,
//! `JSON_OBJECT`, `json_object`), with its two keys as the database prints them: no column
//! type needs a decoder here, and a key goes back into the next page's statement cast to
//! its column's own type.

use std::str::FromStr;

use serde_json::{Map, Value};
use sqlx::{Column, Connection, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef};

use super::rows::plain;
use crate::config::sources::ShopKind;
use crate::store::sources::Position;

/// A connection to the shop's database.
pub enum Shop {
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
    Sqlite(sqlx::SqliteConnection),
}

/// What went wrong reading the shop.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("the query failed: {0}")]
    Query(String),
    #[error("the query returns no `{0}` column; it must return `id` and `updated_at`")]
    MissingKey(&'static str),
    #[error(
        "the `{column}` column is of type {kind}; a cursor needs a time, a date, a whole number or text"
    )]
    KeyType { column: &'static str, kind: String },
    #[error("reading a page failed: {0}")]
    Page(String),
}

/// One feed's query, ready to be read a page at a time.
pub struct Feed {
    /// The paged statement: `:since` and the cursor bound as described by `binds`.
    sql: String,
    /// Which key each placeholder takes, in order (`?` placeholders are positional).
    binds: Vec<Key>,
    /// The columns' names and the database's names for their types.
    pub columns: Vec<(String, String)>,
    /// The cursor of the first page: before every row.
    start: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    At,
    Id,
}

/// A row as read: the row as JSON, and its position.
pub struct ShopRow {
    pub data: Map<String, Value>,
    pub position: Position,
}

impl Shop {
    /// Connects read-only where the driver can say so (SQLite opens the file read-only).
    pub async fn open(url: &str) -> Result<Self, ShopError> {
        let fail = |e: sqlx::Error| ShopError::Connect(e.to_string());
        Ok(match ShopKind::of(url) {
            Some(ShopKind::Postgres) => {
                Shop::Postgres(sqlx::PgConnection::connect(url).await.map_err(fail)?)
            }
            Some(ShopKind::MySql) => {
                let url = url.replacen("mariadb://", "mysql://", 1);
                let options = sqlx::mysql::MySqlConnectOptions::from_str(&url).map_err(fail)?;
                // TIMESTAMP columns are printed in the session's zone: UTC, as tidings reads it.
                let options = options.timezone(Some("+00:00".into()));
                Shop::MySql(
                    sqlx::MySqlConnection::connect_with(&options)
                        .await
                        .map_err(fail)?,
                )
            }
            Some(ShopKind::Sqlite) => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(fail)?
                    .read_only(true);
                Shop::Sqlite(
                    sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .map_err(fail)?,
                )
            }
            None => {
                return Err(ShopError::Connect(format!(
                    "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                    crate::store::redact(url)
                )));
            }
        })
    }

    /// Starts the read-only transaction every page is read in.
    pub async fn begin(&mut self) -> Result<(), ShopError> {
        let statements: &[&'static str] = match self {
            Shop::Postgres(_) => &[
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                "SET LOCAL TimeZone = 'UTC'",
                "SET LOCAL DateStyle = 'ISO'",
            ],
            Shop::MySql(_) => &["START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"],
            Shop::Sqlite(_) => &["BEGIN"],
        };
        for sql in statements {
            self.execute(sql)
                .await
                .map_err(|e| ShopError::Connect(e.to_string()))?;
        }
        Ok(())
    }

    /// Ends the transaction; nothing was written in it.
    pub async fn end(mut self) {
        let _ = self.execute("ROLLBACK").await;
        let _ = match self {
            Shop::Postgres(c) => c.close().await,
            Shop::MySql(c) => c.close().await,
            Shop::Sqlite(c) => c.close().await,
        };
    }

    async fn execute(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Shop::Postgres(c) => c.execute(sql).await.map(drop),
            Shop::MySql(c) => c.execute(sql).await.map(drop),
            Shop::Sqlite(c) => c.execute(sql).await.map(drop),
        }
    }

    /// The user's query as a paged statement: its columns described, its keys' types
    /// checked.
    pub async fn feed(&mut self, query: &str, page: u32) -> Result<Feed, ShopError> {
        let query = query.trim().trim_end_matches(';');
        let probe = format!("SELECT * FROM ({}) AS q", since(query, "NULL"));
        let columns = self.describe(probe).await?;
        let kind_of = |name: &'static str| {
            columns
                .iter()
                .find(|(c, _)| c == name)
                .map(|(_, k)| k.clone())
                .ok_or(ShopError::MissingKey(name))
        };
        let (at_kind, id_kind) = (kind_of("updated_at")?, kind_of("id")?);
        let (sql, binds, start) = match self {
            Shop::Postgres(_) => postgres(query, &at_kind, &id_kind, page)?,
            Shop::MySql(_) => mysql(query, &columns, &at_kind, &id_kind, page)?,
            Shop::Sqlite(_) => sqlite(query, &columns, page),
        };
        Ok(Feed {
            sql,
            binds,
            columns,
            start,
        })
    }

    /// The columns a statement returns, each with its database's name for its type.
    async fn describe(&mut self, sql: String) -> Result<Vec<(String, String)>, ShopError> {
        let fail = |e: sqlx::Error| ShopError::Query(e.to_string());
        let sql = sqlx::AssertSqlSafe(sql).into_sql_str();
        Ok(match self {
            Shop::Postgres(c) => columns_of(&c.prepare(sql).await.map_err(fail)?),
            Shop::MySql(c) => columns_of(&c.prepare(sql).await.map_err(fail)?),
            Shop::Sqlite(c) => columns_of(&c.prepare(sql).await.map_err(fail)?),
        })
    }

    /// The page after `after` (or the first), in key order.
    pub async fn page(
        &mut self,
        feed: &Feed,
        after: Option<&Position>,
    ) -> Result<Vec<ShopRow>, ShopError> {
        let after = after.unwrap_or(&feed.start);
        let fail = |e: sqlx::Error| ShopError::Page(e.to_string());
        let key = |k: &Key| match k {
            Key::At => &after.updated_at,
            Key::Id => &after.id,
        };
        let sql = sqlx::AssertSqlSafe(feed.sql.clone());
        let mut out = Vec::new();
        match self {
            // Keys go back as text, cast in the statement to their columns' types.
            Shop::Postgres(c) => {
                let q = feed
                    .binds
                    .iter()
                    .fold(sqlx::query(sql), |q, k| q.bind(plain(key(k))));
                for r in q.fetch_all(&mut *c).await.map_err(fail)? {
                    out.push(text_row(&r)?);
                }
            }
            Shop::MySql(c) => {
                let q = feed
                    .binds
                    .iter()
                    .fold(sqlx::query(sql), |q, k| q.bind(plain(key(k))));
                for r in q.fetch_all(&mut *c).await.map_err(fail)? {
                    out.push(text_row(&r)?);
                }
            }
            Shop::Sqlite(c) => {
                let mut q = sqlx::query(sql);
                for k in &feed.binds {
                    q = match key(k) {
                        Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
                        Value::Number(n) => q.bind(n.as_f64()),
                        v => q.bind(plain(v)),
                    };
                }
                for r in q.fetch_all(&mut *c).await.map_err(fail)? {
                    let row: String = r.try_get(0).map_err(fail)?;
                    out.push(shop_row(&row, sqlite_key(&r, 1)?, sqlite_key(&r, 2)?)?);
                }
            }
        }
        Ok(out)
    }
}

fn columns_of<S: Statement>(s: &S) -> Vec<(String, String)> {
    s.columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_info().name().to_string()))
        .collect()
}

/// A row as PostgreSQL and MySQL give it: the row as JSON and its two keys, as text.
fn text_row<R: Row>(r: &R) -> Result<ShopRow, ShopError>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let get = |i: usize| {
        r.try_get::<String, _>(i)
            .map_err(|e| ShopError::Page(e.to_string()))
    };
    shop_row(&get(0)?, Value::String(get(1)?), Value::String(get(2)?))
}

fn shop_row(row: &str, at: Value, id: Value) -> Result<ShopRow, ShopError> {
    let data = serde_json::from_str::<Map<String, Value>>(row).map_err(|e| {
        ShopError::Page(format!(
            "a row the database printed as JSON does not read back: {e}"
        ))
    })?;
    Ok(ShopRow {
        data,
        position: Position { updated_at: at, id },
    })
}

/// A SQLite key as stored: an integer, a real or a text, bound back as the same.
fn sqlite_key(r: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value, ShopError> {
    let fail = |e: sqlx::Error| ShopError::Page(e.to_string());
    let raw = r.try_get_raw(i).map_err(fail)?;
    let kind = raw.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INTEGER" => Value::from(r.try_get::<i64, _>(i).map_err(fail)?),
        "REAL" => Value::from(r.try_get::<f64, _>(i).map_err(fail)?),
        _ => Value::String(r.try_get::<String, _>(i).map_err(fail)?),
    })
}

/// The user's query with each `:since` replaced (a `::since` cast is left alone).
fn since(query: &str, with: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(i) = rest.find(":since") {
        let before = rest[..i].chars().last();
        let after = rest[i + 6..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        if before == Some(':') || word(after) {
            out.push_str(":since");
        } else {
            out.push_str(with);
        }
        rest = &rest[i + 6..];
    }
    out.push_str(rest);
    out
}

fn occurrences(query: &str) -> usize {
    since(query, "\u{1}").matches('\u{1}').count()
}

/// What `?` placeholders take, in order: the cursor's `updated_at` at each `:since`, then
/// the wrapper's `updated_at > ? OR (updated_at = ? AND id > ?)`.
fn positional_binds(query: &str) -> Vec<Key> {
    let mut binds = vec![Key::At; occurrences(query)];
    binds.extend([Key::At, Key::At, Key::Id]);
    binds
}

/// The arguments of a JSON object function for every column: `'name', q.name`, with the
/// database's own quoting of a name as text and as an identifier.
fn object_arguments(
    columns: &[(String, String)],
    identifier: impl Fn(&str) -> String,
    text: impl Fn(&str) -> String,
) -> String {
    columns
        .iter()
        .map(|(name, _)| format!("{}, q.{}", text(name), identifier(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// PostgreSQL: the key's type as PostgreSQL names it (a valid cast target), and the value
/// before every other.
fn postgres_key(column: &'static str, kind: &str) -> Result<&'static str, ShopError> {
    Ok(match kind {
        "TIMESTAMPTZ" | "TIMESTAMP" | "DATE" => "-infinity",
        "INT2" => "-32768",
        "INT4" => "-2147483648",
        "INT8" => "-9223372036854775808",
        "NUMERIC" => "-1e100",
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => "",
        "UUID" => "00000000-0000-0000-0000-000000000000",
        _ => {
            return Err(ShopError::KeyType {
                column,
                kind: kind.into(),
            });
        }
    })
}

fn postgres(
    query: &str,
    at_kind: &str,
    id_kind: &str,
    page: u32,
) -> Result<(String, Vec<Key>, Position), ShopError> {
    let at_min = postgres_key("updated_at", at_kind)?;
    let id_min = postgres_key("id", id_kind)?;
    let at = format!("CAST($1 AS {at_kind})");
    let id = format!("CAST($2 AS {id_kind})");
    let sql = format!(
        "SELECT to_jsonb(q)::text, q.updated_at::text, q.id::text FROM ({}) AS q \
         WHERE (q.updated_at > {at} OR (q.updated_at = {at} AND q.id > {id})) \
         ORDER BY q.updated_at, q.id LIMIT {page}",
        since(query, &at)
    );
    let start = Position {
        updated_at: Value::from(at_min),
        id: Value::from(id_min),
    };
    Ok((sql, vec![Key::At, Key::Id], start))
}

/// MySQL and MariaDB: the cast a key's text takes back to its column's type, and the
/// value before every other.
fn mysql_key(column: &'static str, kind: &str) -> Result<(&'static str, &'static str), ShopError> {
    Ok(match kind {
        "DATETIME" | "TIMESTAMP" => ("CAST(? AS DATETIME(6))", "0001-01-01 00:00:00"),
        "DATE" => ("CAST(? AS DATE)", "0001-01-01"),
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
            ("CAST(? AS SIGNED)", "-9223372036854775808")
        }
        k if k.ends_with("UNSIGNED") => ("CAST(? AS UNSIGNED)", "0"),
        "DECIMAL" => ("CAST(? AS DECIMAL(65,30))", "-1e30"),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" => ("?", ""),
        _ => {
            return Err(ShopError::KeyType {
                column,
                kind: kind.into(),
            });
        }
    })
}

fn mysql(
    query: &str,
    columns: &[(String, String)],
    at_kind: &str,
    id_kind: &str,
    page: u32,
) -> Result<(String, Vec<Key>, Position), ShopError> {
    let (at, at_min) = mysql_key("updated_at", at_kind)?;
    let (id, id_min) = mysql_key("id", id_kind)?;
    let object = object_arguments(
        columns,
        |name| format!("`{}`", name.replace('`', "``")),
        |name| format!("'{}'", name.replace('\\', "\\\\").replace('\'', "''")),
    );
    let sql = format!(
        "SELECT CAST(JSON_OBJECT({}) AS CHAR), CAST(q.`updated_at` AS CHAR), CAST(q.`id` AS CHAR) FROM ({}) AS q \
         WHERE (q.`updated_at` > {at} OR (q.`updated_at` = {at} AND q.`id` > {id})) \
         ORDER BY q.`updated_at`, q.`id` LIMIT {page}",
        object,
        since(query, at)
    );
    let binds = positional_binds(query);
    let start = Position {
        updated_at: Value::from(at_min),
        id: Value::from(id_min),
    };
    Ok((sql, binds, start))
}

/// SQLite: keys are bound back as the values they were; an integer before every other
/// value comes first (SQLite orders numbers before text).
fn sqlite(query: &str, columns: &[(String, String)], page: u32) -> (String, Vec<Key>, Position) {
    let object = object_arguments(
        columns,
        |name| format!("\"{}\"", name.replace('"', "\"\"")),
        |name| format!("'{}'", name.replace('\'', "''")),
    );
    let sql = format!(
        "SELECT json_object({}), q.updated_at, q.id FROM ({}) AS q \
         WHERE (q.updated_at > ? OR (q.updated_at = ? AND q.id > ?)) \
         ORDER BY q.updated_at, q.id LIMIT {page}",
        object,
        since(query, "?")
    );
    let binds = positional_binds(query);
    let start = Position {
        updated_at: Value::from(i64::MIN),
        id: Value::from(i64::MIN),
    };
    (sql, binds, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_replaced_where_it_is_a_parameter() {
        assert_eq!(
            since(
                "SELECT * FROM t WHERE a >= :since AND b::since_x = 1 OR c = :sinceX",
                "$1"
            ),
            "SELECT * FROM t WHERE a >= $1 AND b::since_x = 1 OR c = :sinceX"
        );
        assert_eq!(occurrences("x >= :since OR y >= :since"), 2);
        assert_eq!(occurrences("SELECT 1"), 0);
    }
}
