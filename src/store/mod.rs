//! The customer store: SQLite (embedded default) or PostgreSQL, through sqlx's `Any` driver
//! so that both run the same statements and the same tests.
//!
//! The schema is portable on purpose: times are `BIGINT` milliseconds since the epoch,
//! dates `TEXT` (`YYYY-MM-DD`), JSON `TEXT`, keys `TEXT`. Migrations are owned by the crate
//! and numbered; each runs once, in a transaction.
//!
//! A `LIMIT` is written into a statement as a number, never bound. SQLite (3.51, as
//! bundled) plans a bound `LIMIT` with its value, and a statement planned with a bound
//! value is prepared again every time that parameter is bound: every page read paid for a
//! parse and a plan, a tenth of a rehearsal's CPU.

use chrono::{DateTime, Utc};
use sqlx::{AnyPool, Row};
use std::sync::{Arc, Mutex};
use thiserror::Error;

use crate::model::customer::Customer;

mod consent;
pub mod copy;
pub mod customer_rows;
pub mod customers;
pub mod deliveries;
pub mod engagement;
pub mod enrollments;
pub mod events;
mod ingest;
mod known;
pub mod look;
mod migrations;
mod open;
pub mod orders;
pub mod outbox;
pub mod outcomes;
pub mod rates;
pub mod report;
pub mod results;
pub mod retention;
pub mod schedules;
mod settings;
pub mod sources;
mod sql;
pub mod stages;
pub mod status;
pub mod suppressions;
pub mod topics;
mod wake;

pub use consent::{MailReport, Unsubscribed};
pub use ingest::{BatchReport, ImportReport};
pub use open::{redact, try_lock_file};
pub(crate) use settings::{put_setting, setting};
pub use sql::statements;
pub(crate) use sql::{Lead, count_rows, fetch_in, for_rows};

/// A savepoint in the caller's transaction: one journey's work that can be dropped alone.
pub(crate) async fn savepoint(
    conn: &mut sqlx::AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    // Its SAVEPOINT, and the RELEASE or ROLLBACK TO that ends it.
    sql::count_statements(2);
    sqlx::Acquire::begin(conn).await
}

/// The file a `sqlite://FILE[?OPTIONS]` URL names; `None` for any other database.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite://")?;
    rest.split('?').next()
}

impl From<crate::model::states::UnknownState> for StoreError {
    fn from(e: crate::model::states::UnknownState) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the database `{url}`")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("`{0}` is not a database URL; use `sqlite://FILE` or `postgres://USER@HOST/DB`")]
    BadUrl(String),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Which engine a store runs on; the few statements that differ ask this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// How new events wake a running daemon.
    wake: wake::Wake,
    /// What a scratch store knows without asking (`None` for a shared store).
    known: Option<Arc<Mutex<known::Known>>>,
}

pub(crate) fn millis(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

pub(crate) fn from_millis(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

impl Store {
    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails at once,
    /// without waiting, when another writer committed in between (SQLITE_BUSY_SNAPSHOT) —
    /// as the API's imports did while the daemon's pass wrote.
    pub(crate) async fn write_tx(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        // Its BEGIN, and the COMMIT or ROLLBACK that ends it.
        sql::count_statements(2);
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        let row = sql::query("SELECT * FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| customers::from_row(&r)).transpose()
    }

    pub async fn customer_count(&self) -> Result<i64, StoreError> {
        Ok(sql::query("SELECT COUNT(*) FROM customers")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub async fn event_count(&self, customer_id: &str, name: &str) -> Result<i64, StoreError> {
        Ok(
            sql::query("SELECT COUNT(*) FROM events WHERE customer_id = $1 AND name = $2")
                .bind(customer_id)
                .bind(name)
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    /// A connection from the pool, for the journey queries.
    pub async fn connection(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{EventId, EventRow};
    use serde_json::Map;
    use sql::{anonymous, placeholders};

    #[test]
    fn passwords_never_appear_in_messages() {
        assert_eq!(redact("postgres://u:secret@db/x"), "postgres://u:***@db/x");
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(redact("sqlite://t.db"), "sqlite://t.db");
    }

    /// Only a statement whose parameters SQLite would number the same way loses its names.
    #[test]
    fn sequential_parameters_become_anonymous() {
        assert_eq!(
            anonymous("UPDATE t SET a = $1 WHERE id IN ($2, $3, $10)").as_deref(),
            None
        );
        assert_eq!(
            anonymous("UPDATE t SET a = $1, b = '$9?' WHERE id IN ($2, $3)").as_deref(),
            Some("UPDATE t SET a = ?, b = '$9?' WHERE id IN (?, ?)")
        );
        let many = format!("VALUES ({})", placeholders(1, 12));
        assert_eq!(
            anonymous(&many).unwrap(),
            format!("VALUES ({})", ["?"; 12].join(", "))
        );
        // Repeated, out of order or already anonymous: kept as written.
        assert_eq!(anonymous("SET a = $1 WHERE b = $1"), None);
        assert_eq!(anonymous("SET a = $2 WHERE b = $1"), None);
        assert_eq!(anonymous("SET a = ? WHERE b = $1"), None);
    }

    /// Writers that read first (events check their customer) run side by side without
    /// failing: a deferred SQLite transaction would get SQLITE_BUSY at once, without
    /// waiting, whenever the other committed between its read and its write.
    #[test]
    fn concurrent_writers_wait_for_each_other() {
        let dir = std::env::temp_dir().join(format!("tidings-writers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("w.db").display());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Store::open(&url).await.unwrap();
            let text: String = (0..4)
                .map(|i| format!("{{\"id\":\"c{i}\",\"email\":\"c{i}@example.com\"}}\n"))
                .collect();
            let rows: Vec<_> = crate::import::customers(
                Box::new(std::io::Cursor::new(text)),
                crate::import::FileFormat::Jsonl,
            )
            .collect();
            store
                .import_customers(rows.into_iter(), false)
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for w in 0..4 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for n in 0..40 {
                        let event = EventRow {
                            line: 1,
                            id: EventId::Given(format!("e{w}-{n}")),
                            fingerprint: String::new(),
                            customer_id: format!("c{w}"),
                            name: "ping".into(),
                            at: Utc::now(),
                            properties: Map::new(),
                            set: Map::new(),
                        };
                        store
                            .record_events(std::iter::once(Ok(event)), false)
                            .await?;
                    }
                    Ok::<_, StoreError>(())
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            assert_eq!(store.event_count("c0", "ping").await.unwrap(), 40);
            store.close().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store made by an older tidings is migrated on open and then reads its customers
    /// (sqlx-sqlite once read past the end of a row on connections opened before the
    /// schema changed).
    #[test]
    fn an_older_store_is_migrated_and_read() {
        let dir = std::env::temp_dir().join(format!("tidings-migrate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("old.db").display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Store::open(&url).await.unwrap();
            for sql in [
                "DROP INDEX customers_unstaged",
                "DELETE FROM tidings_migrations WHERE version = 17",
                "ALTER TABLE customers DROP COLUMN stage",
                "ALTER TABLE customers DROP COLUMN stage_since",
                "DELETE FROM tidings_migrations WHERE version = 5",
                "INSERT INTO customers (id, email, orders_count, total_spent, tags, attributes, updated_at) VALUES ('c1', 'a@example.com', 0, 0, '[]', '{}', 0)",
            ] {
                sql::query(sql).execute(&store.pool).await.unwrap();
            }
            store.close().await;
            let store = Store::open(&url).await.unwrap();
            let c = store.customer("c1").await.unwrap().unwrap();
            assert_eq!(c.email, "a@example.com");
            store.close().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
