//! The SMTP sessions of a dispatch: `email.concurrency` sessions take jobs from one queue,
//! paced overall and per recipient domain, each session reused until its line is lost.

use super::outcomes::{Outcome, Outcomes};
use super::{DeliveryError, DispatchOptions, Job, claim_one};
use crate::delivery::pacing::{DomainPacing, Pacer, domain_of};
use crate::delivery::smtp::{SendError, Session, SmtpServer};
use crate::store::Store;
use lettre::transport::smtp::extension::ClientId;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// SMTP sessions working through a batch together: each worker holds one session and
/// takes the next message when it is done with the last, so a slow message never holds up
/// the others. An address rejected for good is not tried again in the same batch.
pub(super) struct SmtpPool {
    server: SmtpServer,
    from: lettre::Address,
    concurrency: usize,
    /// The overall rate and each recipient domain's, kept across batches.
    pacing: Arc<Mutex<(Pacer, DomainPacing)>>,
    sessions: Vec<Session>,
}

/// What a worker does next.
pub(super) enum Next {
    /// Send this job once the overall rate allows.
    Send(Box<Job>, std::time::Instant),
    /// Every queued job's domain is at its rate: wait until one is free.
    Wait(std::time::Instant),
    Done,
}

impl SmtpPool {
    pub(super) fn start(server: SmtpServer, options: &DispatchOptions) -> Self {
        Self {
            server,
            from: options.from.email.clone(),
            concurrency: options.concurrency,
            pacing: Arc::new(Mutex::new((
                Pacer::new(options.rate_per_second),
                DomainPacing::new(&options.rate_per_domain),
            ))),
            sessions: Vec::new(),
        }
    }

    /// The first queued job whose recipient domain may take a message now, so that a
    /// domain at its rate holds up only its own mail.
    pub(super) fn next(
        queue: &Mutex<VecDeque<Job>>,
        pacing: &Mutex<(Pacer, DomainPacing)>,
    ) -> Next {
        let (Ok(mut queue), Ok(mut pacing)) = (queue.lock(), pacing.lock()) else {
            return Next::Done;
        };
        if queue.is_empty() {
            return Next::Done;
        }
        let now = std::time::Instant::now();
        let (overall, domains) = &mut *pacing;
        let mut earliest: Option<std::time::Instant> = None;
        let picked = if domains.is_unlimited() {
            Some(0)
        } else {
            queue.iter().position(|job| {
                match domains.try_take(&domain_of(&job.row.recipient), now) {
                    Ok(()) => true,
                    Err(at) => {
                        earliest = Some(earliest.map_or(at, |e| e.min(at)));
                        false
                    }
                }
            })
        };
        match picked.and_then(|i| queue.remove(i)) {
            Some(job) => Next::Send(Box::new(job), overall.take(now)),
            None => Next::Wait(earliest.unwrap_or(now)),
        }
    }

    /// Sends the jobs, handing each outcome to the recorder as soon as it is known. Returns
    /// a line for the operator when the server could not be reached.
    pub(super) async fn send_all(
        &mut self,
        jobs: Vec<Job>,
        store: &Store,
        options: &DispatchOptions,
        outcomes: &Outcomes,
    ) -> Result<Option<String>, DeliveryError> {
        let total = jobs.len();
        let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
        let rejected = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
        let workers = self.concurrency.min(total.max(1));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let session = self.sessions.pop();
            let (queue, rejected, pacing) = (queue.clone(), rejected.clone(), self.pacing.clone());
            let (server, from) = (self.server.clone(), self.from.clone());
            let (store, options, outcomes) = (store.clone(), options.clone(), outcomes.clone());
            set.spawn(async move {
                let mut session = session;
                let mut server_down = false;
                loop {
                    let job = match Self::next(&queue, &pacing) {
                        Next::Done => break,
                        Next::Wait(until) => {
                            crate::delivery::pacing::wait_until(until).await;
                            continue;
                        }
                        Next::Send(job, at) => {
                            crate::delivery::pacing::wait_until(at).await;
                            job
                        }
                    };
                    if !job.claimed && !claim_one(&store, &job.row, &options).await? {
                        continue;
                    }
                    if !outcomes.reserve().await {
                        break;
                    }
                    let key = job.row.recipient.to_lowercase();
                    let outcome = if rejected.lock().map(|r| r.contains(&key)).unwrap_or(false) {
                        Outcome::Suppressed("the address rejected an earlier email".into())
                    } else if server_down {
                        Outcome::Retry("the SMTP server could not be reached".into())
                    } else {
                        if session.as_ref().is_none_or(|s| !s.is_usable()) {
                            session = Session::open(&server, &ClientId::default())
                                .await
                                .inspect_err(|_| server_down = true)
                                .ok();
                        }
                        send_one(session.as_mut(), &server, &from, &job, &rejected).await
                    };
                    if !outcomes.hand_over(job.row, outcome) {
                        break;
                    }
                }
                Ok::<_, DeliveryError>((session, server_down))
            });
        }
        let mut down = false;
        while let Some(joined) = set.join_next().await {
            let Ok(result) = joined else { continue };
            let (session, server_down) = result?;
            if let Some(s) = session.filter(Session::is_usable) {
                self.sessions.push(s);
            }
            down |= server_down;
        }
        Ok(down.then(|| {
            format!(
                "cannot reach the SMTP server {}:{}; the queue waits and is retried",
                self.server.host, self.server.port
            )
        }))
    }

    pub(super) async fn close(self) {
        for s in self.sessions {
            s.close().await;
        }
    }
}

/// One email over an open session (none: the server could not be reached); an address that
/// refuses it for good is remembered, so the batch sends it nothing more.
async fn send_one(
    session: Option<&mut Session>,
    server: &SmtpServer,
    from: &lettre::Address,
    job: &Job,
    rejected: &Mutex<std::collections::HashSet<String>>,
) -> Outcome {
    let Some(s) = session else {
        return Outcome::Retry("the SMTP server could not be reached".into());
    };
    match s.send(from, &job.to, &job.bytes, server.timeout).await {
        Ok(()) => Outcome::Sent,
        Err(SendError::Rejected(e)) => {
            if let Ok(mut r) = rejected.lock() {
                r.insert(job.row.recipient.to_lowercase());
            }
            Outcome::Rejected(e)
        }
        Err(SendError::Unknown(e)) => Outcome::Unknown(e),
        Err(SendError::Unsupported(e)) => Outcome::Failed(e),
        Err(e) => Outcome::Retry(e.text().to_string()),
    }
}
