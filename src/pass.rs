//! One pass of everything a moment asks for — the engine's step (events, triggers, due
//! steps), then the email outbox and the webhook calls — shared by `run --once`, the
//! daemon's loop, `simulate` and `tidings test`, so that all of them behave the same. A
//! rehearsal's runner differs only in what it was made with: its scratch store, its
//! transport (a folder or nowhere), no webhook client (a rehearsal calls none), and its
//! sender running after the engine rather than beside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, TimeDelta, Utc};
use thiserror::Error;

use crate::config::Project;
use crate::delivery::webhook::{WebhookReport, WebhookSender};
use crate::delivery::{
    DeliveryError, DispatchOptions, DispatchReport, EngineProgress, Transport,
    configured_transport, dispatch, dispatch_alongside, recover_interrupted,
};
use crate::engine::{Engine, PassReport};
use crate::store::{Backend, Store, StoreError, retention};
use crate::workflow::plan::Plan;

#[derive(Debug, Error)]
pub enum PassError {
    /// A setting that stops sending altogether (the transport, `email:`); names the setting.
    #[error(transparent)]
    Setting(DeliveryError),
    /// The webhook client could not be made.
    #[error(transparent)]
    Client(crate::delivery::webhook::WebhookError),
    #[error("the pass stopped: {0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("delivery stopped: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("webhook calls stopped: {0}")]
    Webhooks(#[source] crate::delivery::webhook::WebhookError),
    #[error("dropping old bodies stopped: {0}")]
    Retention(#[from] StoreError),
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub engine: PassReport,
    pub emails: DispatchReport,
    pub webhooks: WebhookReport,
    /// Bodies dropped after `retention.bodies`.
    pub bodies_dropped: u64,
}

/// The engine and the senders of one project, ready to run passes.
pub struct Runner {
    pub engine: Engine,
    pub store: Store,
    pub transport: Transport,
    pub options: DispatchOptions,
    /// The webhook client; `None` for a rehearsal, which calls no webhook.
    webhooks: Option<WebhookSender>,
    /// Whether the sender runs beside the engine (a live pass: the first emails leave
    /// while the last journeys move on) or after it (a rehearsal, on one connection).
    alongside: bool,
    /// `FILE.sender.lock` of a SQLite store, held while this runner lives (see
    /// [`sole_sender`]).
    _sender_lock: Option<std::fs::File>,
    /// `retention.bodies`, and when bodies were last dropped; `None` for a rehearsal,
    /// whose scratch store is thrown away.
    retention: Option<(TimeDelta, std::sync::Mutex<Option<DateTime<Utc>>>)>,
}

impl Runner {
    /// Resolves the transport, the delivery options and the webhook client: a wrong setting
    /// is an error before anything runs.
    pub fn new(project: &Project, store: Store, plan: Arc<Plan>) -> Result<Self, PassError> {
        let transport = configured_transport(project).map_err(PassError::Setting)?;
        let (sole, sender_lock) = sole_sender(project, store.backend());
        let settings = crate::config::Settings::of(&project.config);
        let options =
            DispatchOptions::from_config(&project.config.email, &settings, &project.root, sole)
                .map_err(PassError::Setting)?;
        let webhooks = WebhookSender::new(&project.config.webhooks).map_err(PassError::Client)?;
        Ok(Self {
            engine: Engine::new(plan, store.clone(), project.config.clone())
                .with_meter(options.meter.clone()),
            store,
            transport,
            options,
            webhooks: Some(webhooks),
            alongside: true,
            _sender_lock: sender_lock,
            retention: Some((settings.keep_bodies, Default::default())),
        })
    }

    /// A rehearsal's runner (`simulate`, `tidings test`): `engine` over a scratch store,
    /// its mail through `transport` and dated by the pass's moment, no webhook called.
    pub fn rehearsal(
        engine: Engine,
        store: Store,
        transport: Transport,
        mut options: DispatchOptions,
    ) -> Self {
        options.dates = crate::delivery::MessageDates::PassMoment;
        Self {
            engine: engine.with_meter(options.meter.clone()).looking_ahead(),
            store,
            transport,
            options,
            webhooks: None,
            alongside: false,
            _sender_lock: None,
            retention: None,
        }
    }

    /// What this runner's engine and sender count.
    pub fn meter(&self) -> &Arc<crate::progress::Meter> {
        &self.options.meter
    }

    /// Takes back what a stopped sender left mid-send: once, when a sender starts.
    pub async fn recover(&self) -> Result<Option<String>, PassError> {
        Ok(recover_interrupted(&self.store, &self.options).await?)
    }

    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Outcome, PassError> {
        self.engine.record_deployed(now).await?;
        let (engine, emails) = match self.alongside {
            true => self.engine_and_sender(now).await?,
            false => {
                let engine = self.engine.run_once(now).await?;
                let (store, transport, options) = (&self.store, &self.transport, &self.options);
                let known = engine.ahead.map(|ahead| ahead.emails);
                let sent = dispatch(store, transport, options, now, known).await?;
                (engine, sent)
            }
        };
        let webhooks = match &self.webhooks {
            Some(sender) => sender
                .dispatch(&self.store, now)
                .await
                .map_err(PassError::Webhooks)?,
            None => WebhookReport::default(),
        };
        let bodies_dropped = self.drop_old_bodies(now).await?;
        Ok(Outcome {
            engine,
            emails,
            webhooks,
            bodies_dropped,
        })
    }

    /// Drops the bodies of mail done longer ago than `retention.bodies`, a page a
    /// statement, at the first pass and then once a day of passes.
    async fn drop_old_bodies(&self, now: DateTime<Utc>) -> Result<u64, PassError> {
        let Some((keep, last)) = &self.retention else {
            return Ok(0);
        };
        if let Ok(mut last) = last.lock() {
            if last.is_some_and(|t| now >= t && now - t < TimeDelta::days(1)) {
                return Ok(0);
            }
            *last = Some(now);
        }
        let mut dropped = 0;
        loop {
            let mut conn = self.store.connection().await?;
            let n = retention::drop_bodies(&mut conn, now - *keep).await?;
            dropped += n;
            if n < retention::BODIES_PAGE as u64 {
                break;
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "bodies of mail done before retention.bodies dropped"
            );
        }
        Ok(dropped)
    }

    /// The engine's pass with the sender beside it, sending what it queues as it goes, from
    /// the moment the events recorded before the pass (unsubscribes among them) are applied.
    async fn engine_and_sender(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(PassReport, DispatchReport), PassError> {
        let progress = Arc::new(EngineProgress::default());
        let sender = tokio::spawn(dispatch_alongside(
            self.store.clone(),
            self.transport.clone(),
            self.options.clone(),
            now,
            progress.clone(),
        ));
        let engine = self
            .engine
            .run_once_signalling(now, &progress.events_applied)
            .await;
        progress.done.store(true, Ordering::Release);
        let emails = sender
            .await
            .map_err(|e| DeliveryError::Task(e.to_string()))?;
        Ok((engine?, emails?))
    }
}

/// Whether this process is the only sender on its store, so that emails a stopped sender
/// left `sending` may be sent again at once rather than when their lease runs out. On
/// SQLite that is whoever holds `FILE.sender.lock` (the OS releases it when the process ends,
/// however it ends): a `run --once` started beside another, or beside the daemon, does not
/// get it and leaves the other's emails in flight alone — taking them back sent them twice.
/// PostgreSQL runs several senders and always waits for the lease.
fn sole_sender(project: &Project, backend: Backend) -> (bool, Option<std::fs::File>) {
    if backend != Backend::Sqlite {
        return (false, None);
    }
    let url = project.database_url().unwrap_or_default();
    let Some(path) =
        crate::store::sqlite_file(&url).filter(|p| !p.is_empty() && !p.starts_with(":memory:"))
    else {
        // A memory database has no other process.
        return (true, None);
    };
    match crate::store::try_lock_file(&format!("{path}.sender.lock")) {
        Ok(Some(file)) => (true, Some(file)),
        // Held elsewhere, or not to be had: another sender may be alive.
        _ => (false, None),
    }
}
