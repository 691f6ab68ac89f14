//! Taking over what a stopped sender left `sending`: at a sender's start, and every
//! [`TAKE_OVER_EVERY`] while it sends, so that a live replica finishes a dead one's claims.

use chrono::{DateTime, Utc};

use super::{DeliveryError, DispatchOptions};
use crate::store::{Store, outbox};

/// Takes back the emails a stopped sender left `sending` when a sender starts: all of them
/// when this process is the only sender, else those whose lease ran out (as every dispatch
/// does, see [`take_over_expired`]). Returns a line for the operator when there were any.
pub async fn recover_interrupted(
    store: &Store,
    options: &DispatchOptions,
) -> Result<Option<String>, DeliveryError> {
    let expired = (!options.sole_sender).then_some(Utc::now());
    recover(store, expired).await
}

/// Takes over what any sender — another replica, or a process killed long ago — left
/// `sending` past its lease: emails and webhook calls alike. Every dispatch does this, not
/// only a sender that starts, so a live replica finishes a dead one's claims once their
/// lease runs out, with the same Message-ID.
pub async fn take_over_expired(store: &Store) -> Result<Option<String>, DeliveryError> {
    recover(store, Some(Utc::now())).await
}

async fn recover(
    store: &Store,
    expired_before: Option<DateTime<Utc>>,
) -> Result<Option<String>, DeliveryError> {
    let mut conn = store.connection().await?;
    let (requeued, unknown) = outbox::recover_interrupted(&mut conn, expired_before).await?;
    Ok((requeued + unknown > 0).then(|| {
        format!(
            "{requeued} emails interrupted by a stopped sender are sent again; {unknown} (at_most_once) are left `unknown`"
        )
    }))
}

/// How often a long dispatch looks for claims whose lease ran out.
pub(super) const TAKE_OVER_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether it is time to look for expired claims again; if so, the look is noted as done.
pub(super) fn take_over_due(took_over: &std::sync::Mutex<Option<std::time::Instant>>) -> bool {
    let Ok(mut last) = took_over.lock() else {
        return true;
    };
    if last.is_some_and(|t| t.elapsed() < TAKE_OVER_EVERY) {
        return false;
    }
    *last = Some(std::time::Instant::now());
    true
}
