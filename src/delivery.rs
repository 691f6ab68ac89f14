//! The outbox dispatcher: pending email deliveries become MIME messages (lettre) and leave
//! through the configured transport. Only this module talks to the outside.
//!
//! A row is marked sent after the message has left; a crash in between sends it again with
//! the same Message-ID (at-least-once), which receivers and the folder transport (file
//! named after the key) recognise.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::extension::ClientId;
use thiserror::Error;

use crate::pacing::{DomainPacing, Pacer, domain_of};
use crate::smtp::{SendError, Session, SmtpServer};
use crate::store::journeys::DeliveryRow;
use crate::store::outbox;
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error(
        "`{0}` is not an address tidings can send from; write e.g. `Acme <hello@acme.example>`"
    )]
    BadFrom(String),
    #[error("{0}")]
    BadSetting(String),
    #[error(
        "`{0}` is not a transport; use `folder:DIR`, `stdout`, `smtp://HOST:PORT` or `smtps://HOST:PORT`"
    )]
    BadTransport(String),
    #[error("cannot write to `{path}`")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error")]
    Sql(#[from] sqlx::Error),
}

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// One `.eml` file per message (the default: no server needed).
    Folder(PathBuf),
    /// Printed, for debugging.
    Stdout,
    /// Recorded as sent and dropped: a rehearsal that only counts.
    Discard,
    /// An SMTP server.
    Smtp(SmtpServer),
}

impl Transport {
    /// Parses `email.transport`; a relative folder is under the project root.
    pub fn parse(text: &str, root: &Path) -> Result<Self, DeliveryError> {
        if let Some(dir) = text.strip_prefix("folder:") {
            let dir = Path::new(dir);
            return Ok(Transport::Folder(
                if dir.is_absolute() || root == Path::new(".") {
                    dir.to_path_buf()
                } else {
                    root.join(dir)
                },
            ));
        }
        match text {
            "stdout" => Ok(Transport::Stdout),
            t if t.starts_with("smtp://") || t.starts_with("smtps://") => SmtpServer::parse(t)
                .map(Transport::Smtp)
                .map_err(|_| DeliveryError::BadTransport(t.to_string())),
            t => Err(DeliveryError::BadTransport(t.to_string())),
        }
    }
}

/// The configured transport, with SMTP credentials resolved from `${ENV}` (a missing
/// variable is named; its value never appears in a message).
pub fn configured_transport(project: &crate::config::Project) -> Result<Transport, DeliveryError> {
    let email = &project.config.email;
    let mut transport = Transport::parse(&email.transport, &project.root).map_err(|e| {
        DeliveryError::BadSetting(format!("{e} (in `email.transport` of tidings.yaml)"))
    })?;
    if let Transport::Smtp(server) = &mut transport
        && let Some(user) = &email.username
    {
        let env = |name: &str| std::env::var(name).ok();
        let resolve = |key: &str, value: &str| {
            crate::config::expand_env(value, &env).map_err(|e| {
                DeliveryError::BadSetting(format!("{e} (in `email.{key}` of tidings.yaml)"))
            })
        };
        let password = email.password.as_deref().unwrap_or("");
        server.credentials = Some((resolve("username", user)?, resolve("password", password)?));
    }
    Ok(transport)
}

/// What one dispatch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: u64,
    pub failed: u64,
    pub retrying: u64,
    /// Not sent: the address is suppressed or the customer unsubscribed since it was queued.
    pub suppressed: u64,
    /// `at_most_once` emails whose fate the server left unknown.
    pub unknown: u64,
    /// One line per email that did not simply go, for the operator.
    pub problems: Vec<String>,
}

impl DispatchReport {
    fn merge(&mut self, other: DispatchReport) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.retrying += other.retrying;
        self.suppressed += other.suppressed;
        self.unknown += other.unknown;
        self.problems.extend(other.problems);
    }
}

/// Why a single message cannot be built; the delivery fails, the rest go on.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct MessageError(String);

/// Builds the MIME message of a delivery: `multipart/alternative` when there is a text
/// part, the stable Message-ID, the (virtual) send time as `Date`, the workflow and step
/// as `X-Tidings-*`, and RFC 8058 one-click unsubscribe headers on marketing mail.
pub fn build_message(d: &DeliveryRow, from: &Mailbox) -> Result<Message, MessageError> {
    let bad = |e: &dyn std::fmt::Display| MessageError(e.to_string());
    let to: Mailbox = d
        .recipient
        .parse()
        .map_err(|e| bad(&format!("recipient `{}`: {e}", d.recipient)))?;
    let subject = d.subject.clone().unwrap_or_default();
    if subject.contains(['\r', '\n']) {
        return Err(MessageError("the subject contains a line break".into()));
    }
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(d.message_id.clone()))
        .date(SystemTime::from(d.due_at))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Tidings-Workflow"),
            d.workflow.clone(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Tidings-Step"),
            d.step.clone(),
        ));
    let unsubscribe = d
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|v| v["unsubscribe_url"].as_str().map(str::to_string));
    if d.class == "marketing"
        && let Some(url) = unsubscribe
    {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".into(),
            ));
    }
    let html = SinglePart::builder()
        .header(ContentType::TEXT_HTML)
        .body(d.html.clone().unwrap_or_default());
    let message = match &d.text {
        Some(text) => builder.multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text.clone()),
                )
                .singlepart(html),
        ),
        None => builder.singlepart(html),
    };
    message.map_err(|e| bad(&e))
}

/// How the dispatcher behaves, from `email:` in tidings.yaml.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    pub from: Mailbox,
    /// SMTP sessions in parallel.
    pub concurrency: usize,
    /// At most this many messages a second (0: no limit).
    pub rate_per_second: u32,
    /// A message still failing this long after it was queued is given up on.
    pub give_up_after: TimeDelta,
    /// Whether this process is the only sender (SQLite): emails a dead sender left in
    /// `sending` are recovered at once, not when their lease runs out.
    pub sole_sender: bool,
    /// How long a claimed email stays ours before another sender may take it over.
    pub lease: TimeDelta,
    /// At most so many messages a second to one recipient domain (`default`: any other).
    pub rate_per_domain: std::collections::BTreeMap<String, u32>,
    /// Signs every message when `email.dkim` is configured.
    pub dkim: Option<Arc<DkimConfig>>,
}

impl DispatchOptions {
    /// Reads `email:`; `root` is where a relative DKIM key file lives.
    pub fn from_config(
        email: &crate::config::EmailConfig,
        root: &Path,
        sole_sender: bool,
    ) -> Result<Self, DeliveryError> {
        let from: Mailbox = email
            .from
            .parse()
            .map_err(|_| DeliveryError::BadFrom(email.from.clone()))?;
        let give_up_after = crate::duration::parse(&email.give_up_after).map_err(|_| {
            DeliveryError::BadSetting(format!(
                "`email.give_up_after: {}` is not a duration; write e.g. `3d`",
                email.give_up_after
            ))
        })?;
        let lease = crate::duration::parse(&email.lease).map_err(|_| {
            DeliveryError::BadSetting(format!(
                "`email.lease: {}` is not a duration; write e.g. `5m`",
                email.lease
            ))
        })?;
        let dkim = match &email.dkim {
            Some(d) => Some(Arc::new(load_dkim(d, root)?)),
            None => None,
        };
        Ok(Self {
            from,
            dkim,
            lease,
            concurrency: email.concurrency.max(1),
            rate_per_second: email.rate_per_second,
            rate_per_domain: email.rate_per_domain.clone(),
            give_up_after,
            sole_sender,
        })
    }
}

/// The headers a DKIM signature covers: the ones a receiver shows or acts on. Those a
/// message lacks (List-Unsubscribe on transactional mail) are signed as absent, so they
/// cannot be added on the way either. Not Content-Type: lettre writes a MIME body's own
/// headers after the signature and does not see them when it signs.
const DKIM_SIGNED: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Loads the signing key named by `email.dkim`, failing with what to do when the file is
/// missing or holds the wrong kind of key: a send must not go out unsigned by surprise.
fn load_dkim(config: &crate::config::DkimConfig, root: &Path) -> Result<DkimConfig, DeliveryError> {
    use crate::config::DkimAlgorithm;
    let path = crate::config::expand_env(&config.key_file, &|name| std::env::var(name).ok())
        .map_err(|e| {
            DeliveryError::BadSetting(format!("{e} (in `email.dkim.key_file` of tidings.yaml)"))
        })?;
    let path = root.join(path);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        DeliveryError::BadSetting(format!(
            "cannot read the DKIM key `{}` named by `email.dkim.key_file`: {e}",
            path.display()
        ))
    })?;
    let (algorithm, expected) = match config.algorithm {
        DkimAlgorithm::Rsa => (
            DkimSigningAlgorithm::Rsa,
            "an RSA private key in PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`); convert a PKCS#8 key with `openssl rsa -in key.pem -traditional`",
        ),
        DkimAlgorithm::Ed25519 => (
            DkimSigningAlgorithm::Ed25519,
            "the base64 of a 32-byte Ed25519 secret key",
        ),
    };
    let key = DkimSigningKey::new(text.trim(), algorithm).map_err(|_| {
        DeliveryError::BadSetting(format!(
            "the DKIM key `{}` is not {expected}",
            path.display()
        ))
    })?;
    Ok(DkimConfig::new(
        config.selector.clone(),
        config.domain.clone(),
        key,
        DKIM_SIGNED
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect(),
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))
}

/// How one email's send ended.
enum Outcome {
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

/// A message ready to go.
struct Job {
    row: DeliveryRow,
    bytes: Vec<u8>,
    to: lettre::Address,
}

/// Takes back the emails a stopped sender left `sending` (at once when this process is the
/// only sender, else once their lease ran out): once when a sender starts, not on every
/// dispatch. Returns a line for the operator when there were any.
pub async fn recover_interrupted(
    store: &Store,
    options: &DispatchOptions,
) -> Result<Option<String>, DeliveryError> {
    let mut conn = store.connection().await?;
    let expired = (!options.sole_sender).then_some(Utc::now());
    let (requeued, unknown) = outbox::recover_interrupted(&mut conn, expired).await?;
    Ok((requeued + unknown > 0).then(|| {
        format!(
            "{requeued} emails interrupted by a stopped sender are sent again; {unknown} (at_most_once) are left `unknown`"
        )
    }))
}

/// Sends every email due by `now` through the transport, recording each outcome.
pub async fn dispatch(
    store: &Store,
    transport: &Transport,
    options: &DispatchOptions,
    now: DateTime<Utc>,
) -> Result<DispatchReport, DeliveryError> {
    let mut report = DispatchReport::default();
    if let Transport::Folder(dir) = transport {
        std::fs::create_dir_all(dir).map_err(|source| DeliveryError::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let mut smtp = match transport {
        Transport::Smtp(server) => Some(SmtpPool::start(server.clone(), options)),
        _ => None,
    };
    let mut server_down = false;
    while !server_down {
        let mut conn = store.connection().await?;
        let batch = outbox::due(&mut conn, "email", now, 500).await?;
        if batch.is_empty() {
            break;
        }
        let mut jobs = Vec::new();
        for d in batch {
            // Claimed (`sending`) only right before it leaves: `sending` means "may be in
            // flight", which is what a crash recovery must not lose or repeat blindly.
            let outcome = match outbox::send_blocker(&mut conn, &d).await? {
                Some(reason) => Some(Outcome::Suppressed(reason)),
                None => match build_message(&d, &options.from) {
                    Err(e) => Some(Outcome::Failed(e.0)),
                    Ok(mut message) => match d.recipient.parse::<lettre::Address>() {
                        Err(e) => {
                            Some(Outcome::Failed(format!("recipient `{}`: {e}", d.recipient)))
                        }
                        Ok(to) => {
                            if let Some(dkim) = &options.dkim {
                                message.sign(dkim);
                            }
                            jobs.push(Job {
                                bytes: message.formatted(),
                                row: d.clone(),
                                to,
                            });
                            None
                        }
                    },
                },
            };
            if let Some(outcome) = outcome
                && outbox::claim(&mut conn, &d.id, Utc::now() + options.lease).await?
            {
                record(&mut conn, &d, outcome, now, options, &mut report).await?;
            }
        }
        drop(conn);
        match (&mut smtp, transport) {
            (Some(pool), _) => {
                server_down = pool
                    .send_all(jobs, store, options, now, &mut report)
                    .await?;
            }
            (None, transport) => {
                let mut conn = store.connection().await?;
                for job in jobs {
                    if !outbox::claim(&mut conn, &job.row.id, Utc::now() + options.lease).await? {
                        continue;
                    }
                    match transport {
                        Transport::Folder(dir) => write_eml(dir, &job.row, &job.bytes)?,
                        Transport::Stdout => {
                            use std::io::Write;
                            let mut stdout = std::io::stdout().lock();
                            let _ = stdout.write_all(&job.bytes);
                            let _ = stdout.write_all(b"\n");
                        }
                        _ => {}
                    }
                    record(
                        &mut conn,
                        &job.row,
                        Outcome::Sent,
                        now,
                        options,
                        &mut report,
                    )
                    .await?;
                }
            }
        }
    }
    if let Some(pool) = smtp {
        pool.close().await;
    }
    Ok(report)
}

async fn record(
    conn: &mut sqlx::AnyConnection,
    d: &DeliveryRow,
    outcome: Outcome,
    now: DateTime<Utc>,
    options: &DispatchOptions,
    report: &mut DispatchReport,
) -> Result<(), DeliveryError> {
    let what = format!(
        "email `{}` step `{}` to {}",
        d.workflow, d.step, d.recipient
    );
    let retry = |error: String, report: &mut DispatchReport| {
        if now - d.created_at >= options.give_up_after {
            report.failed += 1;
            crate::progress::count(&crate::progress::METER.failed);
            let e = format!("gave up after {} attempts: {error}", d.attempts + 1);
            report.problems.push(format!("{what} failed: {e}"));
            ("failed", Some(e), None)
        } else {
            report.retrying += 1;
            crate::progress::count(&crate::progress::METER.retrying);
            report
                .problems
                .push(format!("{what} will be retried: {error}"));
            (
                "retrying",
                Some(error),
                Some(now + backoff(&d.id, d.attempts, TimeDelta::minutes(1))),
            )
        }
    };
    let (state, error, retry_at) = match outcome {
        Outcome::Sent => {
            report.sent += 1;
            crate::progress::count(&crate::progress::METER.sent);
            ("sent", None, None)
        }
        Outcome::Failed(e) => {
            report.failed += 1;
            crate::progress::count(&crate::progress::METER.failed);
            report.problems.push(format!("{what} failed: {e}"));
            ("failed", Some(e), None)
        }
        Outcome::Suppressed(e) => {
            report.suppressed += 1;
            ("suppressed", Some(e), None)
        }
        Outcome::Rejected(e) => {
            report.failed += 1;
            crate::progress::count(&crate::progress::METER.failed);
            report
                .problems
                .push(format!("{what} failed, and the address is suppressed: {e}"));
            outbox::suppress(conn, &d.recipient, &format!("smtp: {e}"), now).await?;
            ("failed", Some(e), None)
        }
        Outcome::Unknown(e) if d.mode == "at_most_once" => {
            report.unknown += 1;
            report.problems.push(format!(
                "{what} may or may not have arrived (at_most_once: not sent again): {e}"
            ));
            ("unknown", Some(e), None)
        }
        Outcome::Unknown(e) | Outcome::Retry(e) => retry(e, report),
    };
    outbox::finish(conn, &d.id, state, error.as_deref(), now, retry_at).await?;
    Ok(())
}

/// The wait before another try: `first`, doubling with each attempt to at most an hour,
/// plus up to a fifth of jitter derived from the key (so that messages failing together
/// do not all come back together). Emails and webhook calls both use it.
pub(crate) fn backoff(key: &str, attempts: i64, first: TimeDelta) -> TimeDelta {
    let base = (first.num_seconds() << attempts.clamp(0, 7)).min(3_600);
    let jitter = crate::engine::fnv(&format!("{key}#{attempts}")) % (base as u64 / 5 + 1);
    TimeDelta::seconds(base + jitter as i64)
}

/// SMTP sessions working through a batch together: each worker holds one session and
/// takes the next message when it is done with the last, so a slow message never holds up
/// the others. An address rejected for good is not tried again in the same batch.
struct SmtpPool {
    server: SmtpServer,
    from: lettre::Address,
    concurrency: usize,
    /// The overall rate and each recipient domain's, kept across batches.
    pacing: Arc<Mutex<(Pacer, DomainPacing)>>,
    sessions: Vec<Session>,
}

/// What a worker does next.
enum Next {
    /// Send this job once the overall rate allows.
    Send(Box<Job>, tokio::time::Instant),
    /// Every queued job's domain is at its rate: wait until one is free.
    Wait(std::time::Instant),
    Done,
}

impl SmtpPool {
    fn start(server: SmtpServer, options: &DispatchOptions) -> Self {
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
    fn next(queue: &Mutex<VecDeque<Job>>, pacing: &Mutex<(Pacer, DomainPacing)>) -> Next {
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
            Some(job) => Next::Send(Box::new(job), overall.take(now).into()),
            None => Next::Wait(earliest.unwrap_or(now)),
        }
    }

    /// Sends the jobs and records each outcome as soon as it is known, so that a sender
    /// killed mid-batch resends at most the message each session had in flight. Returns
    /// whether the server could not be reached.
    async fn send_all(
        &mut self,
        jobs: Vec<Job>,
        store: &Store,
        options: &DispatchOptions,
        now: DateTime<Utc>,
        report: &mut DispatchReport,
    ) -> Result<bool, DeliveryError> {
        let total = jobs.len();
        let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<_>>()));
        let rejected = Arc::new(Mutex::new(std::collections::HashSet::<String>::new()));
        let workers = self.concurrency.min(total.max(1));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let session = self.sessions.pop();
            let (queue, rejected, pacing) = (queue.clone(), rejected.clone(), self.pacing.clone());
            let (server, from) = (self.server.clone(), self.from.clone());
            let (store, options) = (store.clone(), options.clone());
            set.spawn(async move {
                let mut session = session;
                let mut report = DispatchReport::default();
                let mut server_down = false;
                loop {
                    let job = match Self::next(&queue, &pacing) {
                        Next::Done => break,
                        Next::Wait(until) => {
                            tokio::time::sleep_until(until.into()).await;
                            continue;
                        }
                        Next::Send(job, at) => {
                            tokio::time::sleep_until(at).await;
                            job
                        }
                    };
                    let mut conn = store.connection().await?;
                    if !outbox::claim(&mut conn, &job.row.id, Utc::now() + options.lease).await? {
                        continue;
                    }
                    drop(conn);
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
                        match session.as_mut() {
                            None => Outcome::Retry("the SMTP server could not be reached".into()),
                            Some(s) => {
                                match s.send(&from, &job.to, &job.bytes, server.timeout).await {
                                    Ok(()) => Outcome::Sent,
                                    Err(SendError::Rejected(e)) => {
                                        if let Ok(mut r) = rejected.lock() {
                                            r.insert(key);
                                        }
                                        Outcome::Rejected(e)
                                    }
                                    Err(SendError::Unknown(e)) => Outcome::Unknown(e),
                                    Err(e) => Outcome::Retry(e.text().to_string()),
                                }
                            }
                        }
                    };
                    let mut conn = store.connection().await?;
                    record(&mut conn, &job.row, outcome, now, &options, &mut report).await?;
                }
                Ok::<_, DeliveryError>((session, report, server_down))
            });
        }
        let mut down = false;
        while let Some(joined) = set.join_next().await {
            let Ok(result) = joined else { continue };
            let (session, part, server_down) = result?;
            if let Some(s) = session.filter(Session::is_usable) {
                self.sessions.push(s);
            }
            report.merge(part);
            down |= server_down;
        }
        if down {
            report.problems.push(format!(
                "cannot reach the SMTP server {}:{}; the queue waits and is retried",
                self.server.host, self.server.port
            ));
        }
        Ok(down)
    }

    async fn close(self) {
        for s in self.sessions {
            s.close().await;
        }
    }
}

/// Writes `<due time>-<key hash>.eml` through a temporary file, so a reader never sees half a
/// message and a resend after a crash replaces the same file.
fn write_eml(dir: &Path, d: &DeliveryRow, bytes: &[u8]) -> Result<(), DeliveryError> {
    let id: String = d
        .message_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    let name = format!(
        "{}-{}-{id}.eml",
        d.due_at.format("%Y%m%dT%H%M%S"),
        d.workflow
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |source| DeliveryError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DkimAlgorithm, DkimConfig as DkimSettings};

    fn settings(key_file: &str, algorithm: DkimAlgorithm) -> DkimSettings {
        DkimSettings {
            selector: "s1".into(),
            domain: "acme.example".into(),
            key_file: key_file.into(),
            algorithm,
        }
    }

    /// A DKIM key tidings cannot use stops the sender before anything leaves unsigned,
    /// naming the file and what to do.
    #[test]
    fn an_unusable_dkim_key_is_refused_with_what_to_do() {
        let dir = std::env::temp_dir().join(format!("tidings-dkim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = load_dkim(&settings("nope.pem", DkimAlgorithm::Rsa), &dir).unwrap_err();
        assert!(
            missing.to_string().contains("cannot read the DKIM key")
                && missing.to_string().contains("nope.pem"),
            "{missing}"
        );
        std::fs::write(
            dir.join("pkcs8.pem"),
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let wrong = load_dkim(&settings("pkcs8.pem", DkimAlgorithm::Rsa), &dir).unwrap_err();
        assert!(wrong.to_string().contains("-traditional"), "{wrong}");
        let unset = load_dkim(
            &settings("${TIDINGS_TEST_UNSET_DKIM_KEY}", DkimAlgorithm::Ed25519),
            &dir,
        )
        .unwrap_err();
        assert!(
            unset.to_string().contains("TIDINGS_TEST_UNSET_DKIM_KEY"),
            "{unset}"
        );
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dkim");
        assert!(load_dkim(&settings("rsa.pem", DkimAlgorithm::Rsa), &shipped).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
