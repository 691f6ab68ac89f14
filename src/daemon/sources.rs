//! The daemon's syncs: each source of tidings.yaml read every `every`, beside the passes.
//! A source that fails (its database down, a query broken, a row refused) is logged and
//! tried again at its next interval; the daemon and the other sources go on.

use std::sync::Arc;

use crate::config::{Project, SourceConfig, expand_env};
use crate::store::Store;
use crate::sync::SyncReport;

/// Refused rows logged per run and feed before the rest are counted.
const LOGGED: usize = 20;

/// Starts one task per source; each stops when `stopped` turns true.
pub fn start(
    project: &Project,
    store: &Store,
    wake: Arc<tokio::sync::Notify>,
    stopped: &tokio::sync::watch::Receiver<bool>,
) {
    for (name, source) in &project.config.sources {
        let url = match expand_env(&source.database, &|v| std::env::var(v).ok()) {
            Ok(url) => url,
            Err(e) => {
                tracing::error!(source = %name, "source {name} is not synced: {e} (in `sources.{name}.database`)");
                continue;
            }
        };
        let (store, wake, stopped) = (store.clone(), wake.clone(), stopped.clone());
        let (name, source) = (name.clone(), source.clone());
        tokio::spawn(async move { every(store, name, source, url, wake, stopped).await });
    }
}

async fn every(
    store: Store,
    name: String,
    source: SourceConfig,
    url: String,
    wake: Arc<tokio::sync::Notify>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let interval = source
        .interval()
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(300));
    loop {
        match crate::sync::sync_source(&store, &name, &source, &url, false).await {
            Ok(report) => {
                if log(&report) {
                    wake.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(source = %name, error = %e, "source {name}: the store could not take the rows; trying again at the next interval")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
}

/// Logs a run; `true` when it recorded events (a pass should run now).
fn log(report: &SyncReport) -> bool {
    let name = &report.source;
    if let Some(e) = &report.error {
        tracing::error!(source = %name, "{e}; trying again at the next interval");
    }
    let mut events = 0;
    for f in &report.feeds {
        events += f.orders.events;
        if f.read > 0 {
            tracing::info!(source = %name, feed = f.feed, rows = f.read, customers = f.customers, new_orders = f.orders.new, changed_orders = f.orders.changed, events = f.orders.events, "source {name}, {}: {} rows read", f.feed, f.read);
        }
        for line in f.refused.iter().take(LOGGED) {
            tracing::warn!(source = %name, feed = f.feed, "{line}");
        }
        if f.refused.len() > LOGGED {
            tracing::warn!(source = %name, feed = f.feed, "... and {} more refused rows", f.refused.len() - LOGGED);
        }
        if let Some(e) = &f.error {
            tracing::error!(source = %name, feed = f.feed, "{e}; trying again at the next interval");
        }
    }
    events > 0
}
