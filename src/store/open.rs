//! Opening a store (SQLite or PostgreSQL), its pool and pragmas, the migrations, and the
//! lock files that keep one daemon, and one sole sender, on a SQLite file.

use super::migrations::MIGRATIONS;
use super::{Backend, Store, StoreError};
use chrono::Utc;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

/// Set on every SQLite connection. A new store's pages are 16 KiB: an email's body (a few
/// KiB) then shares a page with the next one's instead of taking overflow pages of its
/// own, so a commit writes (and a checkpoint copies) a fraction of the pages; an existing
/// store keeps the size it was made with. Temporary tables and statement journals stay in
/// memory rather than in files made and removed per transaction.
const SQLITE_PRAGMAS: [&str; 2] = ["PRAGMA page_size = 16384", "PRAGMA temp_store = MEMORY"];

/// Set on a scratch store's one connection. Commits are not synced (the file is deleted
/// afterwards), and the connection takes the file's lock once and keeps it: no other
/// process opens a scratch store, so every transaction need not lock and unlock the file
/// and read its header again to learn whether another connection changed it.
const SCRATCH_PRAGMAS: [&str; 2] = [
    "PRAGMA synchronous = OFF",
    "PRAGMA locking_mode = EXCLUSIVE",
];

impl Store {
    /// Opens (and for SQLite creates) the database and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, true).await
    }

    /// A throwaway SQLite store (a rehearsal's scratch copy): commits are not synced to
    /// disk, which a store that is deleted afterwards does not need.
    pub async fn open_scratch(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, false).await
    }

    pub(super) async fn open_with(url: &str, durable: bool) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let memory = url
            .strip_prefix("sqlite:")
            .is_some_and(|r| r.contains(":memory:"));
        let (backend, connect_url, max) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            let u = if memory || rest.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            // One connection for a memory database (each connection would get its own),
            // and for a scratch store, which nobody else opens: it keeps the file's lock
            // and its pages for the whole rehearsal (see `SCRATCH_PRAGMAS`).
            (Backend::Sqlite, u, if memory || !durable { 1 } else { 4 })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string(), 8)
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let connect = || async {
            Self::pool(backend, &connect_url, max, durable)
                .await
                .map_err(|source| StoreError::Open {
                    url: redact(url),
                    source,
                })
        };
        let mut store = Self {
            pool: connect().await?,
            backend,
            wake: super::wake::Wake::of(backend, url),
            known: (!durable).then(Default::default),
        };
        if backend == Backend::Sqlite {
            super::sql::query("PRAGMA journal_mode = WAL")
                .execute(&store.pool)
                .await?;
        }
        // (A memory database lives and dies with its one connection, which ran the
        // migrations itself.)
        if store.migrate().await? && !memory {
            // Connections opened before a schema change keep the old schema in their
            // statement caches (sqlx-sqlite then reads past the end of a row): start afresh.
            store.pool.close().await;
            store.pool = connect().await?;
        }
        Ok(store)
    }

    pub(super) async fn pool(
        backend: Backend,
        connect_url: &str,
        max: u32,
        durable: bool,
    ) -> Result<AnyPool, sqlx::Error> {
        AnyPoolOptions::new()
            .max_connections(max)
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Per connection: a writer waits for another instead of failing.
                        super::sql::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        for pragma in SQLITE_PRAGMAS {
                            super::sql::query(pragma).execute(&mut *conn).await?;
                        }
                        if !durable {
                            for pragma in SCRATCH_PRAGMAS {
                                super::sql::query(pragma).execute(&mut *conn).await?;
                            }
                        }
                    } else {
                        // Plans made for the values of each execution: a store's tables
                        // grow from nothing within one run, and a generic plan cached while
                        // they were empty (a sequential scan) was kept for the whole run.
                        super::sql::query("SET plan_cache_mode = force_custom_plan")
                            .execute(&mut *conn)
                            .await?;
                        // No JIT: every statement here is short, and a table that grew
                        // within the run (a sync's orders) has estimates high enough for
                        // the planner to compile each statement first, which then takes
                        // longer than running it.
                        super::sql::query("SET jit = off")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(connect_url)
            .await
    }

    /// Applies the migrations this store lacks; returns whether it applied any.
    pub(super) async fn migrate(&self) -> Result<bool, StoreError> {
        // A read first: a command opening the store beside a busy daemon must not wait for
        // the daemon's write lock (SQLite) when there is nothing to migrate.
        if let Ok(rows) = super::sql::query("SELECT version FROM tidings_migrations")
            .fetch_all(&self.pool)
            .await
        {
            let done: Vec<i64> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
            if MIGRATIONS.iter().all(|(v, _, _)| done.contains(v)) {
                return Ok(false);
            }
        }
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            // Replicas starting together take turns; the second finds the work done.
            super::sql::query("SELECT pg_advisory_xact_lock(7301846401)")
                .execute(&mut *tx)
                .await?;
        }
        super::sql::query("CREATE TABLE IF NOT EXISTS tidings_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let done: Vec<i64> = super::sql::query("SELECT version FROM tidings_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let mut applied = false;
        for (version, name, statements) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            applied = true;
            for statement in *statements {
                super::sql::query(*statement).execute(&mut *tx).await?;
            }
            if *version == super::migrations::HASHED_SUPPRESSIONS {
                super::suppressions::hash_stored_addresses(&mut tx).await?;
            }
            super::sql::query(
                "INSERT INTO tidings_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// Takes the lock file at `path` without waiting; `None` while another process holds it.
/// The OS releases it when its holder ends, however it ends: how one SQLite store keeps one
/// daemon and one sender that may take back another's emails in flight.
pub fn try_lock_file(path: &str) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// A URL for messages: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
