//! What a scratch store knows without asking. Every pass of a rehearsal asks which zones
//! customers are in, when each schedule last fired and whether anyone is still without a
//! stage, and the answer rarely changes. Nobody but this process opens a scratch store (its
//! connection holds the file's lock), so an answer stays true until this process writes
//! what it depends on; a shared store, which other processes write, asks every time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Store, StoreError, schedules, stages};

/// Statements this process ran that may have changed a customer (any store: a count that
/// moves too often costs a question asked again, never a wrong answer).
static CUSTOMER_WRITES: AtomicU64 = AtomicU64::new(0);

/// Called by every statement that inserts, changes or deletes customers but for their stage.
pub(crate) fn customers_written() {
    CUSTOMER_WRITES.fetch_add(1, Ordering::Relaxed);
}

fn customer_writes() -> u64 {
    CUSTOMER_WRITES.load(Ordering::Relaxed)
}

#[derive(Default)]
pub(super) struct Known {
    /// Customer zones, as read when the customer writes stood at `.0`.
    zones: Option<(u64, Vec<Option<String>>)>,
    /// The customer writes at which every customer was found in a stage.
    all_staged: Option<u64>,
    /// Each schedule key's last mark as read or written (`None`: it has none).
    fires: HashMap<String, Option<DateTime<Utc>>>,
}

impl Store {
    fn known(&self) -> Option<std::sync::MutexGuard<'_, Known>> {
        self.known.as_ref().and_then(|k| k.lock().ok())
    }

    /// The distinct zones customers are in (`None` for customers without one).
    pub async fn customer_zones(&self) -> Result<Vec<Option<String>>, StoreError> {
        let seen = customer_writes();
        if let Some(known) = self.known()
            && let Some((at, zones)) = &known.zones
            && *at == seen
        {
            return Ok(zones.clone());
        }
        let zones = customer_zones(&mut *self.connection().await?).await?;
        if let Some(mut known) = self.known() {
            known.zones = Some((seen, zones.clone()));
        }
        Ok(zones)
    }

    /// Whether some customer has no stage yet (or may have: a shared store is asked).
    pub async fn anyone_unstaged(&self) -> Result<bool, StoreError> {
        let seen = customer_writes();
        if self.known().is_some_and(|k| k.all_staged == Some(seen)) {
            return Ok(false);
        }
        let mut conn = self.connection().await?;
        let anyone = !stages::unplaced_page(&mut conn, "", 1).await?.is_empty();
        if !anyone && let Some(mut known) = self.known() {
            known.all_staged = Some(seen);
        }
        Ok(anyone)
    }

    /// The last mark recorded for each of `keys` ([`schedules::last_fires`]).
    pub async fn last_fires(
        &self,
        keys: &[&str],
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        if let Some(known) = self.known()
            && keys.iter().all(|k| known.fires.contains_key(*k))
        {
            let marks = keys
                .iter()
                .filter_map(|k| Some((k.to_string(), known.fires[*k]?)));
            return Ok(marks.collect());
        }
        let marks = schedules::last_fires(&mut *self.connection().await?, keys).await?;
        if let Some(mut known) = self.known() {
            for key in keys {
                known
                    .fires
                    .insert(key.to_string(), marks.get(*key).copied());
            }
        }
        Ok(marks)
    }

    /// Records that a pass saw every fire time of `keys` up to `now`
    /// ([`schedules::record_fires`]).
    pub async fn record_fires(&self, keys: &[&str], now: DateTime<Utc>) -> Result<(), StoreError> {
        // A scratch store keeps every mark of its window (a row per key and fire time,
        // thrown away with it) and reads the latest from memory: deleting the older ones
        // would cost a statement a write for nothing.
        let forget_older = self.known.is_none();
        schedules::record_fires(&mut *self.connection().await?, keys, now, forget_older).await?;
        if let Some(mut known) = self.known() {
            for key in keys {
                known.fires.insert(key.to_string(), Some(now));
            }
        }
        Ok(())
    }
}

/// The distinct zones customers are in (`None` for customers without one).
async fn customer_zones(conn: &mut AnyConnection) -> Result<Vec<Option<String>>, StoreError> {
    // Zone by zone along the `customers (timezone)` index, a seek each, where `DISTINCT`
    // read the whole index: every pass asks, and a store holds few zones and many customers.
    let rows = super::sql::query(
        "WITH RECURSIVE zones (tz) AS (
            SELECT (SELECT timezone FROM customers WHERE timezone IS NOT NULL ORDER BY timezone LIMIT 1)
            UNION ALL
            SELECT (SELECT timezone FROM customers WHERE timezone > zones.tz ORDER BY timezone LIMIT 1) FROM zones WHERE zones.tz IS NOT NULL
        )
        SELECT tz FROM zones WHERE tz IS NOT NULL
        UNION ALL
        SELECT NULL WHERE EXISTS (SELECT 1 FROM customers WHERE timezone IS NULL)",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<Option<String>, _>(0)?))
        .collect()
}
