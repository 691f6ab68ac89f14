//! New events wake a running daemon at once, instead of waiting for its next timer: a
//! daemon beside the one that took the event (another replica, or `tidings event` run by
//! hand) hears of it through the store — PostgreSQL's `NOTIFY`, delivered when the events
//! commit, or on SQLite a file beside the database that is touched after they commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Backend, Store, StoreError};

/// The channel every replica listens on.
const CHANNEL: &str = "tidings_events";

/// How often a daemon on SQLite looks at the wake file: a `stat`, nothing more.
const FILE_POLL: Duration = Duration::from_millis(100);

/// How the store tells daemons that events arrived.
#[derive(Debug, Clone)]
pub(crate) enum Wake {
    /// PostgreSQL: `NOTIFY tidings_events` in the transaction that records them.
    Notify,
    /// SQLite: this file's modification time.
    File(PathBuf),
    /// A memory database: nobody else can be listening.
    Nobody,
}

impl Wake {
    pub(crate) fn of(backend: Backend, url: &str) -> Self {
        match backend {
            Backend::Postgres => Wake::Notify,
            Backend::Sqlite => match super::sqlite_file(url) {
                Some(path) if !path.is_empty() && !path.starts_with(":memory:") => {
                    Wake::File(PathBuf::from(format!("{path}.wake")))
                }
                _ => Wake::Nobody,
            },
        }
    }
}

/// Inside the transaction that records new events: on PostgreSQL the notification goes out
/// when (and only if) it commits.
pub(crate) async fn announce_in(
    store: &Store,
    conn: &mut sqlx::AnyConnection,
) -> Result<(), StoreError> {
    if let Wake::Notify = store.wake {
        super::sql::query(sqlx::AssertSqlSafe(format!("NOTIFY {CHANNEL}")))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// After the events committed: on SQLite the wake file is touched. A daemon that cannot
/// see it still finds the events at its next timer, so a failure to write is no error.
pub(crate) fn announce_after(store: &Store) {
    if let Wake::File(path) = &store.wake {
        let _ = std::fs::write(path, b"");
    }
}

impl Store {
    /// Wakes `wake` whenever events arrive through another process or replica, for as
    /// long as the daemon runs (a task in the background).
    pub async fn listen_for_events(
        &self,
        url: &str,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<(), StoreError> {
        match &self.wake {
            Wake::Nobody => {}
            Wake::Notify => {
                let mut listener = sqlx::postgres::PgListener::connect(url).await?;
                listener.listen(CHANNEL).await?;
                tokio::spawn(async move {
                    // A lost connection is taken up again by `recv`; should that fail, the
                    // timer still runs, and the operator hears why the wake-ups stopped.
                    loop {
                        match listener.recv().await {
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(
                                    "no longer hearing of events from other replicas ({e}); they are found at the next timer"
                                );
                                break;
                            }
                        }
                    }
                });
            }
            Wake::File(path) => {
                let path = path.clone();
                tokio::spawn(async move {
                    let modified = |p: &PathBuf| -> Option<SystemTime> {
                        std::fs::metadata(p).and_then(|m| m.modified()).ok()
                    };
                    let mut seen = modified(&path);
                    loop {
                        tokio::time::sleep(FILE_POLL).await;
                        let now = modified(&path);
                        if now != seen {
                            seen = now;
                            wake.notify_one();
                        }
                    }
                });
            }
        }
        Ok(())
    }
}
