//! How sends end, and how their outcomes are recorded: a recorder task commits every
//! outcome waiting in one transaction, and a window of one slot per SMTP session holds
//! the senders back until an email's outcome is committed.

use super::{DeliveryError, DispatchOptions, DispatchReport, MessageDates};
use crate::model::states::DeliveryState;
use crate::store::deliveries::DeliveryRow;
use crate::store::{Store, outbox};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

/// How one email's send ended.
pub(super) enum Outcome {
    Sent,
    Failed(String),
    Suppressed(String),
    /// Retried later (unless it is too old), with the reason.
    Retry(String),
    /// The server may have it: retried (`at_least_once`) or left `unknown` (`at_most_once`).
    Unknown(String),
    /// The address refused the mail for good: failed, and the address suppressed.
    Rejected(String),
}

/// Where senders hand their outcomes: a recorder task commits all that are waiting in one
/// transaction, so that one wait for the disk serves many emails. A window of one slot per
/// SMTP session (`email.concurrency`) holds the senders back until an email's outcome is
/// committed: a sender killed at the worst moment sends at most that many again (with the
/// same Message-ID), as when each outcome had a commit of its own.
#[derive(Clone)]
pub(super) struct Outcomes {
    queue: tokio::sync::mpsc::UnboundedSender<(DeliveryRow, Outcome)>,
    window: Arc<tokio::sync::Semaphore>,
}

pub(super) type RecorderTask = tokio::task::JoinHandle<Result<DispatchReport, DeliveryError>>;

impl Outcomes {
    /// Starts the recorder, with `window` emails let go before their outcomes commit.
    pub(super) fn start(
        store: &Store,
        options: &DispatchOptions,
        now: DateTime<Utc>,
        window: usize,
    ) -> (Self, RecorderTask) {
        let (queue, received) = tokio::sync::mpsc::unbounded_channel();
        let window = Arc::new(tokio::sync::Semaphore::new(window.max(1)));
        let task = tokio::spawn(record_outcomes(
            store.clone(),
            options.clone(),
            now,
            received,
            window.clone(),
        ));
        (Self { queue, window }, task)
    }

    /// Waits for a slot before an email leaves; `false` when the recorder has stopped (its
    /// error is the dispatch's).
    pub(super) async fn reserve(&self) -> bool {
        match self.window.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Hands over the outcome of an email that holds a slot.
    pub(super) fn hand_over(&self, row: DeliveryRow, outcome: Outcome) -> bool {
        self.queue.send((row, outcome)).is_ok()
    }

    /// Takes a slot and hands over an outcome decided without sending.
    pub(super) async fn put(&self, row: DeliveryRow, outcome: Outcome) -> bool {
        self.reserve().await && self.hand_over(row, outcome)
    }
}

/// Commits outcomes as they arrive, all that are waiting in one transaction (or, when all
/// were sent, in the statements that mark them), and frees their slots once committed. On
/// an error it closes the window, which stops the senders.
pub(super) async fn record_outcomes(
    store: Store,
    options: DispatchOptions,
    now: DateTime<Utc>,
    mut received: tokio::sync::mpsc::UnboundedReceiver<(DeliveryRow, Outcome)>,
    window: Arc<tokio::sync::Semaphore>,
) -> Result<DispatchReport, DeliveryError> {
    let mut report = DispatchReport::default();
    let mut batch = Vec::new();
    let result = async {
        while received.recv_many(&mut batch, 1_000).await > 0 {
            let n = batch.len();
            let mut sent = Vec::new();
            let mut others = Vec::new();
            for (row, outcome) in batch.drain(..) {
                let write = tally(&row, outcome, now, &options, &mut report);
                match write.state {
                    DeliveryState::Sent => sent.push(row.id),
                    _ => others.push((row, write)),
                }
            }
            if others.is_empty() {
                // Nearly every batch: emails sent, marked so by statements that each commit
                // on their own, without a transaction's BEGIN and COMMIT around them. An
                // email whose mark did not commit is sent again, as if the process had
                // stopped before the batch.
                outbox::finish_sent(&mut *store.connection().await?, &sent, now).await?;
                window.add_permits(n);
                continue;
            }
            let mut tx = store.write_tx().await?;
            for (row, write) in &others {
                if let Some(reason) = &write.suppress {
                    outbox::suppress(&mut tx, &row.recipient, reason, now).await?;
                }
                let error = write.error.as_deref();
                outbox::finish(&mut tx, &row.id, write.state, error, now, write.retry_at).await?;
            }
            outbox::finish_sent(&mut tx, &sent, now).await?;
            tx.commit().await?;
            window.add_permits(n);
        }
        Ok::<_, DeliveryError>(())
    }
    .await;
    if result.is_err() {
        window.close();
    }
    report.count_the_rest();
    result.map(|()| report)
}

/// What to write for one outcome.
pub(super) struct Write {
    state: DeliveryState,
    error: Option<String>,
    retry_at: Option<DateTime<Utc>>,
    /// The address goes on the suppression list, for this reason.
    suppress: Option<String>,
}

/// Decides what an outcome writes, and counts it in the report and the progress line.
pub(super) fn tally(
    d: &DeliveryRow,
    outcome: Outcome,
    now: DateTime<Utc>,
    options: &DispatchOptions,
    report: &mut DispatchReport,
) -> Write {
    use crate::progress::count;
    let meter = &options.meter;
    let what = format!(
        "email `{}` step `{}` to {}",
        d.workflow, d.step, d.recipient
    );
    let write = |state, error: Option<String>| Write {
        state,
        error,
        retry_at: None,
        suppress: None,
    };
    let retry = |error: String, report: &mut DispatchReport| {
        if now - d.created_at >= options.give_up_after {
            report.failed += 1;
            count(&meter.failed);
            let e = format!("gave up after {}: {error}", attempts(d.attempts + 1));
            report.problems.push(format!("{what} failed: {e}"));
            write(DeliveryState::Failed, Some(e))
        } else {
            report.retrying += 1;
            count(&meter.retrying);
            report.retry(&what, &error);
            Write {
                retry_at: Some(now + backoff(&d.id, d.attempts, TimeDelta::minutes(1))),
                ..write(DeliveryState::Retrying, Some(error))
            }
        }
    };
    match outcome {
        Outcome::Sent => {
            report.sent += 1;
            count(&meter.sent);
            // On the wall clock only: a rehearsal's virtual sends measure nothing.
            if let (Some(accepted), MessageDates::WhenSent) = (d.accepted_at, options.dates) {
                let took = Utc::now() - accepted;
                meter
                    .handoff
                    .observe(took.num_microseconds().unwrap_or(0) as f64 / 1e6);
            }
            write(DeliveryState::Sent, None)
        }
        Outcome::Failed(e) => {
            report.failed += 1;
            count(&meter.failed);
            report.problems.push(format!("{what} failed: {e}"));
            write(DeliveryState::Failed, Some(e))
        }
        Outcome::Suppressed(e) => {
            report.suppressed += 1;
            write(DeliveryState::Suppressed, Some(e))
        }
        Outcome::Rejected(e) => {
            report.failed += 1;
            count(&meter.failed);
            report
                .problems
                .push(format!("{what} failed, and the address is suppressed: {e}"));
            Write {
                suppress: Some(format!("smtp: {e}")),
                ..write(DeliveryState::Failed, Some(e))
            }
        }
        Outcome::Unknown(e) if d.mode == crate::workflow::raw::DeliveryMode::AtMostOnce => {
            report.unknown += 1;
            report.problems.push(format!(
                "{what} may or may not have arrived (at_most_once: not sent again): {e}"
            ));
            write(DeliveryState::Unknown, Some(e))
        }
        Outcome::Unknown(e) | Outcome::Retry(e) => retry(e, report),
    }
}

/// `1 attempt`, `3 attempts`.
pub(super) fn attempts(n: i64) -> String {
    match n {
        1 => "1 attempt".into(),
        n => format!("{n} attempts"),
    }
}

/// The wait before another try: `first`, doubling with each attempt to at most an hour,
/// plus up to a fifth of jitter derived from the key (so that messages failing together
/// do not all come back together). Emails and webhook calls both use it.
pub(crate) fn backoff(key: &str, attempts: i64, first: TimeDelta) -> TimeDelta {
    let base = (first.num_seconds() << attempts.clamp(0, 7)).min(3_600);
    let jitter = crate::model::ids::fnv(&format!("{key}#{attempts}")) % (base as u64 / 5 + 1);
    TimeDelta::seconds(base + jitter as i64)
}
