//! The outbox dispatcher: pending email deliveries become MIME messages (lettre) and leave
//! through the configured transport. Only this module talks to the outside.
//!
//! A row is marked sent after the message has left; a crash in between sends it again with
//! the same Message-ID (at-least-once), which receivers and the folder transport (file
//! named after the key) recognise.

mod message;
mod outcomes;
pub mod pacing;
mod pool;
pub mod proof;
mod report;
pub mod smtp;
mod takeover;
pub mod tls;
pub mod webhook;

use message::load_dkim;
pub use message::{MessageError, build_message, envelope_address};
use outcomes::{Outcome, Outcomes};
use pool::SmtpPool;
pub use report::DispatchReport;
use takeover::take_over_due;
pub use takeover::{recover_interrupted, take_over_expired};

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::Mailbox;
use lettre::message::dkim::DkimConfig;
use thiserror::Error;

use crate::delivery::smtp::SmtpServer;
use crate::model::states::Channel;
use crate::store::deliveries::DeliveryRow;
use crate::store::outbox;
use crate::store::outbox::DueQueues;
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
    #[error("a sending task stopped: {0}")]
    Task(String),
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
    /// What an email's `Date` says.
    pub dates: MessageDates,
    /// What the sender did, for the progress line and `/metrics` (shared with the engine).
    pub meter: Arc<crate::progress::Meter>,
    /// When a dispatch with these options last took over expired claims: every
    /// [`TAKE_OVER_EVERY`] across dispatches, not at the start of each (a rehearsal or a
    /// busy daemon runs one per pass).
    pub took_over: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Whether each message's bytes are built. A rehearsal that writes nowhere
    /// (`Transport::Discard`) only checks each recipient's address: nobody reads the rest.
    pub build_messages: bool,
}

/// What an email's `Date` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageDates {
    /// The moment it leaves: a step that fell due long ago is sent, and dated, now.
    WhenSent,
    /// The pass's moment: a rehearsal, a workflow test or `run --once --now` runs on a
    /// virtual clock, and its mail is dated by it.
    PassMoment,
}

impl DispatchOptions {
    /// Reads `email:` (its durations as `settings` parsed them); `root` is where a relative
    /// DKIM key file lives.
    pub fn from_config(
        email: &crate::config::EmailConfig,
        settings: &crate::config::Settings,
        root: &Path,
        sole_sender: bool,
    ) -> Result<Self, DeliveryError> {
        let from: Mailbox = email
            .from
            .parse()
            .map_err(|_| DeliveryError::BadFrom(email.from.clone()))?;
        let (give_up_after, lease) = (settings.give_up_after, settings.lease);
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
            dates: MessageDates::WhenSent,
            meter: Arc::default(),
            took_over: Arc::default(),
            build_messages: true,
        })
    }
}

/// A message ready to go.
struct Job {
    row: DeliveryRow,
    bytes: Vec<u8>,
    to: lettre::Address,
    /// The message's `Date`: a written file is named by it.
    date: DateTime<Utc>,
    /// Claimed with its batch (`at_least_once`); else claimed right before it leaves.
    claimed: bool,
}

/// Emails claimed per statement (fewer under a rate limit: see [`claim_size`]).
const CLAIM_BATCH: i64 = 500;

/// Sends every email due by `now` through the transport, recording each outcome. `known`
/// is which queues hold due mail, from a look taken after the last write before this
/// (a rehearsal's engine asks with its own last look): the first claim then needs no
/// statement to ask.
pub async fn dispatch(
    store: &Store,
    transport: &Transport,
    options: &DispatchOptions,
    now: DateTime<Utc>,
    known: Option<DueQueues>,
) -> Result<DispatchReport, DeliveryError> {
    let lookout = Lookout {
        known,
        ..Lookout::default()
    };
    dispatch_while(store, transport, options, now, lookout).await
}

/// What a sender knows of the engine it follows: whether it is done (`None`: no engine
/// runs beside it), and the queues due as the engine last saw them.
#[derive(Default, Clone, Copy)]
struct Lookout<'a> {
    engine_done: Option<&'a AtomicBool>,
    known: Option<DueQueues>,
}

/// How long a sender working beside the engine waits when nothing is due yet.
const IDLE: std::time::Duration = std::time::Duration::from_millis(20);

/// How far the engine's pass has come, for a sender working beside it.
#[derive(Debug, Default)]
pub struct EngineProgress {
    /// Every event recorded before the pass is applied: an unsubscribe among them must
    /// stop mail before any leaves.
    pub events_applied: AtomicBool,
    /// The pass has queued all it will.
    pub done: AtomicBool,
}

/// Sends emails as the engine queues them — from when it has applied the events recorded
/// before the pass until it is done and everything due by `now` has gone: the two share
/// the machine's cores, and the first emails leave while the last journeys are still
/// being moved on.
pub async fn dispatch_alongside(
    store: Store,
    transport: Transport,
    options: DispatchOptions,
    now: DateTime<Utc>,
    engine: Arc<EngineProgress>,
) -> Result<DispatchReport, DeliveryError> {
    while !engine.events_applied.load(Ordering::Acquire) && !engine.done.load(Ordering::Acquire) {
        tokio::time::sleep(IDLE).await;
    }
    let lookout = Lookout {
        engine_done: Some(&engine.done),
        known: None,
    };
    dispatch_while(&store, &transport, &options, now, lookout).await
}

async fn dispatch_while(
    store: &Store,
    transport: &Transport,
    options: &DispatchOptions,
    now: DateTime<Utc>,
    lookout: Lookout<'_>,
) -> Result<DispatchReport, DeliveryError> {
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
    // A slot per SMTP session bounds what a killed sender sends again. Mail that goes
    // nowhere (a rehearsal's) cannot be sent twice: its outcomes are recorded a batch at a
    // time, not an email at a time.
    let window = match transport {
        Transport::Discard => CLAIM_BATCH as usize,
        _ => options.concurrency,
    };
    let (outcomes, recorder) = Outcomes::start(store, options, now, window);
    let sent = send_due(
        store, transport, options, now, &outcomes, &mut smtp, lookout,
    )
    .await;
    drop(outcomes);
    if let Some(pool) = smtp {
        pool.close().await;
    }
    // The recorder's error first: when it stopped, sending stopped because of it.
    let mut report = match recorder.await {
        Ok(recorded) => recorded?,
        Err(e) => {
            return Err(DeliveryError::Task(e.to_string()));
        }
    };
    if let Some(problem) = sent? {
        report.problems.push(problem);
    }
    Ok(report)
}

/// How many emails one claim takes: all of them must leave within the lease, or another
/// sender would take them over and send them too, so a rate limit makes the claim smaller.
fn claim_size(options: &DispatchOptions) -> i64 {
    let slowest = options
        .rate_per_domain
        .values()
        .copied()
        .chain((options.rate_per_second > 0).then_some(options.rate_per_second))
        .filter(|r| *r > 0)
        .min();
    match slowest {
        None => CLAIM_BATCH,
        Some(rate) => (i64::from(rate) * options.lease.num_seconds() / 2).clamp(1, CLAIM_BATCH),
    }
}

/// Claims and sends due emails batch by batch, handing every outcome to the recorder, until
/// nothing is due (and, beside the engine, the engine is done). Returns a line for the
/// operator when the SMTP server could not be reached.
async fn send_due(
    store: &Store,
    transport: &Transport,
    options: &DispatchOptions,
    now: DateTime<Utc>,
    outcomes: &Outcomes,
    smtp: &mut Option<SmtpPool>,
    lookout: Lookout<'_>,
) -> Result<Option<String>, DeliveryError> {
    let size = claim_size(options);
    let mut unreachable = None;
    let (engine_done, mut known) = (lookout.engine_done, lookout.known);
    loop {
        if take_over_due(&options.took_over)
            && let Some(line) = take_over_expired(store).await?
        {
            tracing::warn!("{line}");
            // Mail taken over is due again: what the engine saw is out of date.
            known = None;
        }
        // Read before the claim: once the engine is done, a claim that finds nothing means
        // nothing more will come in this pass.
        let finished = engine_done.is_none_or(|d| d.load(Ordering::Acquire));
        let known = known.take();
        if finished && known.is_some_and(|due| !due.any()) {
            // Nothing due, as the engine saw it: not even a connection to take (sqlx pings
            // one as it goes back to the pool).
            return Ok(unreachable);
        }
        let mut conn = store.connection().await?;
        let (mut batch, claimed) =
            claim_batch(&mut conn, store, options, (now, size), known).await?;
        if batch.is_empty() {
            if finished {
                return Ok(unreachable);
            }
            drop(conn);
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let blocked = outbox::send_needs(&mut conn, &mut batch).await?;
        drop(conn);
        let Some(jobs) = jobs_of(batch, claimed, blocked, store, options, outcomes, now).await?
        else {
            return Ok(unreachable);
        };
        match (smtp.as_mut(), transport) {
            (Some(pool), _) => {
                if let Some(problem) = pool.send_all(jobs, store, options, outcomes).await? {
                    if finished {
                        return Ok(Some(problem));
                    }
                    unreachable = Some(problem);
                    // Beside the engine: what it still queues waits for a retry like the
                    // rest, so try once more when it is done rather than at every batch.
                    while engine_done.is_some_and(|d| !d.load(Ordering::Acquire)) {
                        tokio::time::sleep(IDLE).await;
                    }
                }
            }
            (None, transport) => {
                if !write_local(jobs, transport, store, options, outcomes).await? {
                    return Ok(unreachable);
                }
            }
        }
    }
}

/// Claims a page of due `at_least_once` mail and reads the due `at_most_once` mail (claimed
/// one by one as it leaves); returns them, and how many of the first were claimed. Most
/// passes have nothing due: one statement says so (none when `known` says it), where
/// claiming found nothing in several.
async fn claim_batch(
    conn: &mut sqlx::AnyConnection,
    store: &Store,
    options: &DispatchOptions,
    page: (DateTime<Utc>, i64),
    known: Option<DueQueues>,
) -> Result<(Vec<DeliveryRow>, usize), DeliveryError> {
    let due = match known {
        Some(due) => due,
        None => outbox::due_queues(&mut *conn, Channel::Email, page.0).await?,
    };
    if !due.any() {
        return Ok((Vec::new(), 0));
    }
    let lease_until = Utc::now() + options.lease;
    let channel = Channel::Email;
    let mut batch =
        outbox::claim_due(&mut *conn, store.backend(), channel, page, lease_until, due).await?;
    let claimed = batch.len();
    batch.extend(outbox::due_at_most_once(&mut *conn, channel, page, due).await?);
    Ok((batch, claimed))
}

/// A claimed batch made ready: each email built into its message, or — suppressed since
/// it was queued, or impossible to build — its outcome handed over at once (`at_most_once`
/// mail claimed first). `None` when the recorder has stopped.
async fn jobs_of(
    batch: Vec<DeliveryRow>,
    claimed: usize,
    mut blocked: std::collections::HashMap<String, String>,
    store: &Store,
    options: &DispatchOptions,
    outcomes: &Outcomes,
    now: DateTime<Utc>,
) -> Result<Option<Vec<Job>>, DeliveryError> {
    let mut jobs = Vec::new();
    for (i, row) in batch.into_iter().enumerate() {
        let claimed = i < claimed;
        let prepared = match blocked.remove(&row.id) {
            Some(reason) => Err(Outcome::Suppressed(reason)),
            None => prepare(&row, options, now),
        };
        match prepared {
            Ok((bytes, to, date)) => jobs.push(Job {
                row,
                bytes,
                to,
                date,
                claimed,
            }),
            Err(outcome) => {
                if !claimed && !claim_one(store, &row, options).await? {
                    continue;
                }
                if !outcomes.put(row, outcome).await {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(jobs))
}

/// Writes jobs to a folder of `.eml` files or to stdout; `false` when the recorder stopped.
async fn write_local(
    jobs: Vec<Job>,
    transport: &Transport,
    store: &Store,
    options: &DispatchOptions,
    outcomes: &Outcomes,
) -> Result<bool, DeliveryError> {
    // Mail that goes nowhere claims its `at_most_once` emails together, not one by one
    // right before each leaves: none leaves.
    let discarded = match transport {
        Transport::Discard => {
            let ids: Vec<&str> = (jobs.iter().filter(|j| !j.claimed))
                .map(|j| j.row.id.as_str())
                .collect();
            let mut conn = store.connection().await?;
            Some(outbox::claim_all(&mut conn, &ids, Utc::now() + options.lease).await?)
        }
        _ => None,
    };
    for job in jobs {
        let ours = match (&discarded, job.claimed) {
            (_, true) => true,
            (Some(claimed), false) => claimed.contains(&job.row.id),
            (None, false) => claim_one(store, &job.row, options).await?,
        };
        if !ours {
            continue;
        }
        if !outcomes.reserve().await {
            return Ok(false);
        }
        match transport {
            Transport::Folder(dir) => write_eml(dir, &job.row, job.date, &job.bytes)?,
            Transport::Stdout => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&job.bytes);
                let _ = stdout.write_all(b"\n");
            }
            _ => {}
        }
        if !outcomes.hand_over(job.row, Outcome::Sent) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The wire bytes of a delivery's message (dated `Date`) and its envelope recipient, or the
/// outcome that ends the delivery here.
fn prepare(
    row: &DeliveryRow,
    options: &DispatchOptions,
    now: DateTime<Utc>,
) -> Result<(Vec<u8>, lettre::Address, DateTime<Utc>), Outcome> {
    let date = match options.dates {
        MessageDates::WhenSent => Utc::now(),
        MessageDates::PassMoment => now,
    };
    if !options.build_messages {
        let to = envelope_address(&row.recipient).map_err(Outcome::Failed)?;
        return Ok((Vec::new(), to, date));
    }
    let mut message = build_message(row, &options.from, date).map_err(|e| Outcome::Failed(e.0))?;
    let to = envelope_address(&row.recipient).map_err(Outcome::Failed)?;
    if let Some(dkim) = &options.dkim {
        message.sign(dkim);
    }
    Ok((message.formatted(), to, date))
}

/// Claims an `at_most_once` email right before it leaves; `false` when another sender has it.
async fn claim_one(
    store: &Store,
    row: &DeliveryRow,
    options: &DispatchOptions,
) -> Result<bool, DeliveryError> {
    let mut conn = store.connection().await?;
    Ok(outbox::claim(&mut conn, &row.id, Utc::now() + options.lease).await?)
}

/// Writes `<Date>-<workflow>-<message id>.eml` through a temporary file, so a reader never
/// sees half a message. Named by the time in its `Date` header (when it left), so that a
/// listing sorts as the mail was sent and the name agrees with what the file says.
fn write_eml(
    dir: &Path,
    d: &DeliveryRow,
    date: DateTime<Utc>,
    bytes: &[u8],
) -> Result<(), DeliveryError> {
    let id: String = d
        .message_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect();
    let name = format!("{}-{}-{id}.eml", date.format("%Y%m%dT%H%M%S"), d.workflow);
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
    use lettre::message::header::Headers;
    use message::subject_header;

    fn settings(key_file: &str, algorithm: DkimAlgorithm) -> DkimSettings {
        DkimSettings {
            selector: "s1".into(),
            domain: "acme.example".into(),
            key_file: key_file.into(),
            algorithm,
        }
    }

    /// A claim takes no more emails than the slowest configured rate sends in half a lease,
    /// so that none of them is still waiting when another sender may take it over.
    #[test]
    fn a_subject_shaped_like_an_encoded_word_is_encoded() {
        let built = |subject: &str| {
            let mut header = Headers::new();
            header.insert_raw(subject_header(subject.to_string()));
            header.to_string()
        };
        let spoof = built("=?utf-8?q?Spoof?= \"Quote\" <x@y>, your order");
        assert!(!spoof.contains("=?utf-8?q?Spoof?="), "{spoof}");
        assert!(spoof.starts_with("Subject: =?utf-8?b?"), "{spoof}");
        let decoded = mail_parser::MessageParser::default()
            .parse(format!("{spoof}\r\nbody").as_bytes())
            .and_then(|m| m.subject().map(str::to_string));
        assert_eq!(
            decoded.as_deref(),
            Some("=?utf-8?q?Spoof?= \"Quote\" <x@y>, your order")
        );
        assert_eq!(built("Welcome, Ada"), "Subject: Welcome, Ada\r\n");
    }

    #[test]
    fn a_rate_limit_makes_the_claim_smaller() {
        let mut options = DispatchOptions::from_config(
            &crate::config::EmailConfig::default(),
            &crate::config::Settings::of(&crate::config::Config::default()),
            Path::new("."),
            true,
        )
        .unwrap();
        options.lease = TimeDelta::minutes(5);
        assert_eq!(claim_size(&options), CLAIM_BATCH);
        options.rate_per_second = 1;
        assert_eq!(claim_size(&options), 150);
        options.rate_per_domain.insert("slow.example".into(), 0);
        assert_eq!(claim_size(&options), 150, "0 is no limit");
        options.rate_per_second = 0;
        options.rate_per_domain.insert("default".into(), 1_000);
        assert_eq!(claim_size(&options), CLAIM_BATCH);
        options.lease = TimeDelta::seconds(1);
        options.rate_per_domain.insert("default".into(), 1);
        assert_eq!(claim_size(&options), 1);
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
