//! One pass of everything a moment asks for — the engine's step (events, triggers, due
//! steps), then the email outbox and the webhook calls — shared by `run --once` and the
//! daemon's loop so that both behave the same.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::config::Project;
use crate::delivery::{
    DeliveryError, DispatchOptions, DispatchReport, Transport, configured_transport, dispatch,
    recover_interrupted,
};
use crate::engine::{Engine, PassReport};
use crate::plan::Plan;
use crate::store::{Backend, Store};
use crate::webhook::{WebhookReport, WebhookSender};

#[derive(Debug, Error)]
pub enum PassError {
    /// A setting that stops sending altogether; names the setting.
    #[error("{0}")]
    Setting(String),
    #[error("the pass stopped: {0}")]
    Engine(String),
    #[error("delivery stopped: {0}")]
    Delivery(#[from] DeliveryError),
    #[error("webhook calls stopped: {0}")]
    Webhooks(String),
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub engine: PassReport,
    pub emails: DispatchReport,
    pub webhooks: WebhookReport,
}

/// The engine and the senders of one project, ready to run passes.
pub struct Runner {
    pub engine: Engine,
    pub store: Store,
    pub transport: Transport,
    pub options: DispatchOptions,
    webhooks: WebhookSender,
}

impl Runner {
    /// Resolves the transport, the delivery options and the webhook client: a wrong setting
    /// is an error before anything runs.
    pub fn new(project: &Project, store: Store, plan: Arc<Plan>) -> Result<Self, PassError> {
        let setting = |e: &dyn std::fmt::Display| PassError::Setting(e.to_string());
        let transport = configured_transport(project).map_err(|e| setting(&e))?;
        let options = DispatchOptions::from_config(
            &project.config.email,
            &project.root,
            store.backend() == Backend::Sqlite,
        )
        .map_err(|e| setting(&e))?;
        let webhooks = WebhookSender::new(&project.config.webhooks).map_err(|e| setting(&e))?;
        Ok(Self {
            engine: Engine::new(plan, store.clone(), project.config.clone()),
            store,
            transport,
            options,
            webhooks,
        })
    }

    /// Takes back what a stopped sender left mid-send: once, when a sender starts.
    pub async fn recover(&self) -> Result<Option<String>, PassError> {
        Ok(recover_interrupted(&self.store, &self.options).await?)
    }

    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Outcome, PassError> {
        let failed = |e: crate::engine::EngineError| PassError::Engine(e.to_string());
        self.engine.record_deployed(now).await.map_err(failed)?;
        let engine = self.engine.run_once(now).await.map_err(failed)?;
        let emails = dispatch(&self.store, &self.transport, &self.options, now).await?;
        let webhooks = self
            .webhooks
            .dispatch(&self.store, now)
            .await
            .map_err(|e| PassError::Webhooks(e.to_string()))?;
        Ok(Outcome {
            engine,
            emails,
            webhooks,
        })
    }
}
