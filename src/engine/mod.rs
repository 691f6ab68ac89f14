//! The journey engine: events enroll customers, due enrollments run their steps, and every
//! email or webhook becomes an outbox row written in the same transaction that advances the
//! enrollment — so a crash either does both or neither.
//!
//! Time is passed in, never read: `run --once --now`, `simulate` and the daemon all drive
//! the same code with their own clocks.

pub mod backfill;
mod compose;
pub mod deployed;
mod group;
mod outcomes;
mod stages;
mod steps;
mod triggers;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::config::Config;
use crate::model::customer::{Customer, FieldKind, NewValue, field};
use crate::model::history::EventHistory;
use crate::store::engagement::Past;
use crate::store::{Store, StoreError, enrollments, look};
use crate::time::zones::zone_named;
use crate::unsubscribe::Signer;
use crate::workflow::plan::Plan;
use chrono_tz::Tz;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Config(String),
}

/// An email as composed is the senders' vocabulary too (proofs, `preview`).
pub use crate::model::rendered::Rendered;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub events: u64,
    pub enrolled: u64,
    pub steps: u64,
    pub emails: u64,
    pub webhooks: u64,
    pub completed: u64,
    pub converted: u64,
    pub exited: u64,
    pub failed: u64,
    /// Emails held back by quiet hours or the frequency cap, to run later.
    pub deferred: u64,
    /// Emails skipped by those rules (recorded in the outbox as `skipped`).
    pub skipped: u64,
    /// Schedule fire times that fell due while nothing ran and were not made up: all but
    /// the latest, and the latest too under `catch_up: skip`.
    pub missed_fires: u64,
    /// What the pass's last look at the store found ahead, when its engine was asked to
    /// look ahead ([`Engine::looking_ahead`]).
    pub ahead: Option<crate::store::look::Ahead>,
}

/// Runs workflows against a store.
pub struct Engine {
    plan: Arc<Plan>,
    store: Store,
    config: Config,
    /// The config's durations and times, parsed once.
    settings: crate::config::Settings,
    /// Signs unsubscribe links; set by the first pass (the key may live in the store).
    signer: std::sync::OnceLock<Signer>,
    /// Set once this engine's workflow set is recorded as the store's deployed set.
    recorded: std::sync::OnceLock<()>,
    /// Variants a test pins, by (customer, split): `tidings test` only.
    pins: std::collections::HashMap<(String, String), String>,
    /// What this engine's passes did, for the progress line and `/metrics`.
    meter: Arc<crate::progress::Meter>,
    /// The day (of the pass clock) this engine knows the stages were swept on, so that
    /// later passes that day need not ask the store.
    swept_on: std::sync::Mutex<Option<chrono::NaiveDate>>,
    /// When set, only the first email of each step and template gets a body (the
    /// workflow, step and template of each one rendered so far); see
    /// [`Engine::rendering_first_bodies_only`].
    first_bodies: Option<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Whether a pass's last look also asks what lies ahead ([`Engine::looking_ahead`]).
    looks_ahead: bool,
}

const BATCH: i64 = 500;
impl Engine {
    pub fn new(plan: Arc<Plan>, store: Store, config: Config) -> Self {
        Self {
            plan,
            store,
            settings: crate::config::Settings::of(&config),
            config,
            signer: std::sync::OnceLock::new(),
            recorded: std::sync::OnceLock::new(),
            pins: std::collections::HashMap::new(),
            meter: Arc::default(),
            swept_on: std::sync::Mutex::new(None),
            first_bodies: None,
            looks_ahead: false,
        }
    }

    /// The same engine asking, with the look that ends each pass, what lies ahead (the
    /// email queues due now, the next moment something falls due) and reporting it in
    /// [`PassReport::ahead`]: a rehearsal's sender and clock then need not ask themselves.
    /// Only for a runner whose sender runs after the engine, with nobody else writing.
    pub fn looking_ahead(mut self) -> Self {
        self.looks_ahead = true;
        self
    }

    /// The same engine counting into `meter` (the one its sender and progress line share).
    pub fn with_meter(mut self, meter: Arc<crate::progress::Meter>) -> Self {
        self.meter = meter;
        self
    }

    /// The same engine rendering an email's body only for the first email of each step
    /// and template, for a rehearsal that writes no `.eml` files: its subject is rendered
    /// for every email, and the first body shows the step's body renders, but nobody reads
    /// the rest, and rendering, storing and reading them back was most of its work.
    pub fn rendering_first_bodies_only(mut self) -> Self {
        self.first_bodies = Some(std::sync::Mutex::default());
        self
    }

    /// The same engine with customers' variants pinned (customer, split, variant), so a
    /// test can walk each branch of a split on purpose.
    pub fn with_pins(mut self, pins: Vec<(String, String, String)>) -> Self {
        self.pins = pins.into_iter().map(|(c, s, v)| ((c, s), v)).collect();
        self
    }

    /// The variant of a split a customer goes down: pinned by a test, else the stable hash.
    pub(super) fn variant_of(
        &self,
        split: &crate::workflow::plan::SplitStep,
        wf: &crate::workflow::plan::Workflow,
        customer: &crate::model::customer::Customer,
    ) -> usize {
        let pinned = self.pins.get(&(customer.id.clone(), split.name.clone()));
        pinned
            .and_then(|name| split.variants.iter().position(|v| v.name == *name))
            .unwrap_or_else(|| split.assign(&customer.id, &wf.name))
    }

    /// How old a missed fire time may be and still be made up (`limits.catch_up_max_age`,
    /// checked when the config loads).
    fn catch_up_max_age(&self) -> TimeDelta {
        self.settings.catch_up_max_age
    }

    /// How long a claim on due journeys holds (`email.lease`, checked when the config
    /// loads): a replica that stops mid-batch leaves its journeys to the others after this.
    fn lease(&self) -> TimeDelta {
        self.settings.lease
    }

    /// Records this engine's workflows as the store's deployed set (what `plan` compares
    /// with), once: `run` and the daemon do, rehearsals and workflow tests do not.
    pub async fn record_deployed(&self, at: DateTime<Utc>) -> Result<(), EngineError> {
        if self.recorded.get().is_none() {
            crate::engine::deployed::record(&self.store, &self.plan, at).await?;
            let _ = self.recorded.set(());
        }
        Ok(())
    }

    /// The workflows this engine runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The key the links of this engine's emails are sealed with (what `tidings test`
    /// opens them with).
    pub async fn signer(&self) -> Result<Signer, EngineError> {
        self.load_signer().await?;
        self.signer
            .get()
            .cloned()
            .ok_or_else(|| EngineError::Config("no key to seal links with".into()))
    }

    /// The unsubscribe signer: the configured secret, or the store's own key.
    async fn load_signer(&self) -> Result<(), EngineError> {
        if self.signer.get().is_some() {
            return Ok(());
        }
        let signer = project_signer(&self.config.unsubscribe, &self.store).await?;
        let _ = self.signer.set(signer);
        Ok(())
    }

    /// One pass at `now`: every event up to `now`, then every step due by `now`, until
    /// nothing is left to do.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<PassReport, EngineError> {
        self.run_once_signalling(now, &std::sync::atomic::AtomicBool::new(false))
            .await
    }

    /// [`Engine::run_once`], setting `events_applied` once every event recorded before the
    /// pass is applied — an unsubscribe among them included — which is when a sender
    /// working beside the engine may start.
    pub async fn run_once_signalling(
        &self,
        now: DateTime<Utc>,
        events_applied: &std::sync::atomic::AtomicBool,
    ) -> Result<PassReport, EngineError> {
        let mut report = PassReport::default();
        self.load_signer().await?;
        self.sweep_stages(now).await?;
        self.place_unstaged(now).await?;
        self.fire_time_triggers(now, &mut report).await?;
        loop {
            let mut conn = self.store.connection().await?;
            let due =
                look::work_due(&mut conn, now, self.journey_lease(), self.looks_ahead).await?;
            drop(conn);
            let n = match due.events {
                true => self.process_events(now, &mut report).await?,
                false => 0,
            };
            if n < BATCH as usize {
                // A short batch: no event recorded before this moment is left.
                events_applied.store(true, std::sync::atomic::Ordering::Release);
            }
            if !due.events && !due.journeys {
                report.ahead = due.ahead;
                return Ok(report);
            }
            // Journeys the events started are due now: moved in the same round.
            self.run_due(now, &mut report).await?;
        }
    }

    /// A claim on due journeys, from the wall clock: leases are about processes, not a
    /// pass's virtual time.
    fn journey_lease(&self) -> enrollments::Lease {
        let wall = Utc::now();
        enrollments::Lease {
            now: wall,
            until: wall + self.lease(),
            sole: self.store.backend() == crate::store::Backend::Sqlite,
        }
    }
}

/// Applies `set` values: fixed fields by name (as [`FIELDS`] describes them), everything
/// else to `attributes`. A value of the wrong shape leaves a number or the tags as they were
/// and empties the others.
fn apply_set(c: &mut Customer, set: &Map<String, Value>) {
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .or_else(|| (!v.is_null()).then(|| v.to_string()))
    };
    for (k, v) in set {
        let Some(f) = field(k) else {
            c.attributes.insert(k.clone(), v.clone());
            continue;
        };
        if !f.set_by_events {
            continue;
        }
        let value = match f.kind {
            FieldKind::Id | FieldKind::Email | FieldKind::Attributes => continue,
            FieldKind::Text | FieldKind::Locale | FieldKind::Zone => NewValue::Text(text(v)),
            FieldKind::Date => NewValue::Date(
                v.as_str()
                    .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()),
            ),
            FieldKind::Time => {
                NewValue::Time(v.as_str().and_then(|s| crate::time::parse_time(s).ok()))
            }
            FieldKind::Count => match v.as_i64() {
                Some(n) => NewValue::Count(n),
                None => continue,
            },
            FieldKind::Amount => match v.as_f64() {
                Some(n) => NewValue::Amount(n),
                None => continue,
            },
            FieldKind::Tags => match v.as_array() {
                Some(a) => NewValue::Tags(
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect(),
                ),
                None => continue,
            },
        };
        (f.set)(c, value);
    }
}

/// A fire time this old when its pass runs was missed (nothing ran when it fell due) and
/// fires only under `catch_up: run_once`; a younger one is on time.
const CATCH_UP_GRACE: TimeDelta = TimeDelta::minutes(5);

/// The pasts of a page of customers, read at once and only when an expression of the work
/// will use them; each journey then sees its customer's past up to its own moment.
pub(super) struct Pasts(Option<HashMap<String, Past>>);

impl Pasts {
    /// Reads the pasts of `ids` up to `until`, the latest moment any of them is read at.
    pub(super) async fn load(
        conn: &mut sqlx::AnyConnection,
        needed: bool,
        ids: &[&str],
        until: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        if !needed {
            return Ok(Self(None));
        }
        Ok(Self(Some(
            crate::store::engagement::pasts(conn, ids, until).await?,
        )))
    }

    /// One customer's past up to `at`, read on its own; `None` when it is not needed.
    pub(super) async fn of_one(
        conn: &mut sqlx::AnyConnection,
        needed: bool,
        customer_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Arc<EventHistory>>, StoreError> {
        let pasts = Self::load(conn, needed, &[customer_id], at).await?;
        Ok(pasts.at(customer_id, at))
    }

    /// A customer's past up to `at`; `None` when it was not needed.
    pub(super) fn at(&self, customer_id: &str, at: DateTime<Utc>) -> Option<Arc<EventHistory>> {
        let pasts = self.0.as_ref()?;
        let past = pasts.get(customer_id).map(|p| p.until(at));
        Some(Arc::new(past.unwrap_or_default()))
    }
}

/// The zone a customer's local times are read in (UTC when they have none).
fn customer_zone(c: &Customer) -> Tz {
    zone_named(c.timezone.as_deref())
}

/// The project's signer: `unsubscribe.secret` when configured, else the store's own key —
/// the same for the engine that writes links and the endpoint that checks them.
pub async fn project_signer(
    config: &crate::config::UnsubscribeConfig,
    store: &Store,
) -> Result<Signer, EngineError> {
    let config_error = |e: crate::unsubscribe::KeyError| EngineError::Config(e.to_string());
    let secret = match crate::unsubscribe::configured_secret(config).map_err(config_error)? {
        Some(secret) => secret,
        None => store.signing_secret().await?,
    };
    Signer::new(secret.as_bytes()).map_err(config_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::customer_rows::CustomerFilter;
    use crate::time::zones::next_local_time;
    use chrono::NaiveTime;
    use chrono_tz::Tz;
    use compose::{coupon_code, subject_for};
    use triggers::{birthdays_between, birthdays_firing};

    #[test]
    fn coupons_are_stable_and_distinct() {
        let c = coupon_code("BDAY", "k1");
        assert_eq!(c.len(), "BDAY-XXXX-XXXX".len());
        assert_ne!(c, coupon_code("BDAY", "k2"));
    }

    #[test]
    fn subjects_fall_back_by_locale() {
        let s = std::collections::BTreeMap::from([
            (String::new(), "d".to_string()),
            ("ja".to_string(), "j".to_string()),
        ]);
        assert_eq!(subject_for(&s, Some("ja-JP")), "j");
        assert_eq!(subject_for(&s, Some("fr")), "d");
        assert_eq!(subject_for(&s, None), "d");
    }

    #[test]
    fn birthday_windows_cover_every_zone_and_feb_29() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let days = birthdays_between(t("2027-02-28T08:00:00Z"), t("2027-02-28T09:00:00Z"));
        let days = days.expect("a one-hour window is filtered");
        assert_eq!(days, ["02-26", "02-27", "02-28", "02-29", "03-01", "03-02"]);
        let days = birthdays_between(t("2026-12-31T23:00:00Z"), t("2027-01-01T01:00:00Z"));
        let days = days.expect("a year's turn is filtered");
        assert_eq!(days, ["01-01", "01-02", "01-03", "12-29", "12-30", "12-31"]);
        assert_eq!(
            birthdays_between(t("2025-01-01T00:00:00Z"), t("2026-06-01T00:00:00Z")),
            None
        );
    }

    /// Per zone, only the days whose 09:00 local falls in the hour: Tokyo's June 6 at
    /// 00:00Z; not New York's (13:00Z) nor UTC's (09:00Z), which read nothing. Feb 29
    /// birthdays fire on Feb 28 in a common year.
    #[test]
    fn an_hourly_pass_reads_only_the_birthdays_firing_in_each_zone() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let zones = [
            Some("Asia/Tokyo".to_string()),
            Some("America/New_York".to_string()),
            None,
        ];
        let window = (t("2026-06-05T23:30:00Z"), t("2026-06-06T00:30:00Z"));
        assert_eq!(
            birthdays_firing(&zones, nine, TimeDelta::zero(), window.0, window.1),
            CustomerFilter::BirthdayOn(vec![(zones[0].clone(), vec!["06-06".to_string()])])
        );
        let utc = (t("2027-02-28T08:30:00Z"), t("2027-02-28T09:30:00Z"));
        assert_eq!(
            birthdays_firing(&zones, nine, TimeDelta::zero(), utc.0, utc.1),
            CustomerFilter::BirthdayOn(vec![(None, vec!["02-28".into(), "02-29".into()])])
        );
        // A week before: the offset moves the window, not the zones.
        assert_eq!(
            birthdays_firing(&zones, nine, TimeDelta::days(-7), utc.0, utc.1),
            CustomerFilter::BirthdayOn(vec![(None, vec!["03-07".to_string()])])
        );
    }

    #[test]
    fn waits_until_a_local_time() {
        let after = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = next_local_time(
            after,
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            Tz::Asia__Tokyo,
        );
        // 10:00Z is 19:00 in Tokyo: the next 09:00 is tomorrow, 00:00Z.
        assert_eq!(t.to_rfc3339(), "2026-06-02T00:00:00+00:00");
    }
}
