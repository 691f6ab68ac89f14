//! Lifecycle stages kept current: a customer's stage after an event changed them, and the
//! daily sweep for rules that change with time alone.

use super::{BATCH, Engine, EngineError};
use crate::model::customer::Customer;
use crate::store::stages as store_stages;
use chrono::{DateTime, Utc};

impl Engine {
    /// Moves the customer to the stage their rules give now, recording `stage_entered`.
    /// `known` is the stored stage when the caller has it. A rule that fails for this
    /// customer leaves the stage as it was.
    pub(super) async fn restage(
        &self,
        conn: &mut sqlx::AnyConnection,
        customer: &Customer,
        known: Option<Option<String>>,
        at: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let Some(next) = self.stage_for(customer, at) else {
            return Ok(());
        };
        let current = match known {
            Some(c) => c,
            None => store_stages::current(conn, &customer.id).await?,
        };
        if current.as_deref() != Some(next) {
            store_stages::enter(conn, &customer.id, current.as_deref(), next, at).await?;
        }
        Ok(())
    }

    /// The stage the rules give this customer at `at`; `None` without stages, or when a
    /// rule fails for this customer (their stage stays as it was).
    pub(super) fn stage_for(&self, customer: &Customer, at: DateTime<Utc>) -> Option<&str> {
        let stages = self.plan.stages.as_ref()?;
        stages.stage_of(&self.plan.engine, customer, at).ok()?
    }

    /// At the first pass of each UTC day (of the pass clock), every customer's stage is
    /// recomputed: rules such as "no order in 180 days" change with time alone.
    pub(super) async fn sweep_stages(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        const KEY: &str = "stages_swept_at";
        if self.plan.stages.is_none() {
            return Ok(());
        }
        let today = now.date_naive();
        let known = |e: &Engine| e.swept_on.lock().ok().and_then(|d| *d);
        if known(self) == Some(today) {
            return Ok(());
        }
        // One connection at a time: a scratch store may have only one.
        let mut conn = self.store.connection().await?;
        let last = crate::store::setting(&mut conn, KEY)
            .await?
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis);
        drop(conn);
        if !last.is_some_and(|t| t <= now && t.date_naive() == today) {
            self.restage_pages(now, false).await?;
            let mut conn = self.store.connection().await?;
            let at = now.timestamp_millis().to_string();
            crate::store::put_setting(&mut conn, KEY, &at).await?;
        }
        if let Ok(mut day) = self.swept_on.lock() {
            *day = Some(today);
        }
        Ok(())
    }

    /// Every pass, the customers not in a stage yet (added by an import or the API since
    /// the last pass) are placed: a `stage_entered: prospect` trigger starts for them now,
    /// not at the next day's sweep.
    pub(super) async fn place_unstaged(&self, now: DateTime<Utc>) -> Result<(), EngineError> {
        if self.plan.stages.is_none() {
            return Ok(());
        }
        self.restage_pages(now, true).await
    }

    /// Moves every customer (or only those without a stage) to the stage their rules give
    /// at `now`, a page at a time.
    async fn restage_pages(
        &self,
        now: DateTime<Utc>,
        unplaced_only: bool,
    ) -> Result<(), EngineError> {
        // Most passes find nobody new: one read says so (or none: a scratch store knows),
        // without taking the write lock.
        if unplaced_only && !self.store.anyone_unstaged().await? {
            return Ok(());
        }
        let mut after = String::new();
        loop {
            let mut tx = self.store.write_tx().await?;
            let page = if unplaced_only {
                store_stages::unplaced_page(&mut tx, &after, BATCH).await?
            } else {
                store_stages::page(&mut tx, &after, BATCH).await?
            };
            let Some((last, _)) = page.last() else { break };
            after = last.id.clone();
            let moves: Vec<store_stages::Move> = page
                .iter()
                .filter_map(|(customer, stage)| {
                    let next = self.stage_for(customer, now)?;
                    (stage.as_deref() != Some(next)).then_some(store_stages::Move {
                        id: &customer.id,
                        from: stage.as_deref(),
                        to: next,
                    })
                })
                .collect();
            store_stages::enter_all(&mut tx, &moves, now).await?;
            tx.commit().await?;
            // A page shorter than asked for is the last: no statement to find none after.
            if (page.len() as i64) < BATCH {
                break;
            }
        }
        Ok(())
    }
}
