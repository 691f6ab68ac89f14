//! The outbox dispatcher: pending email deliveries become MIME messages (lettre) and leave
//! through the configured transport. Only this module talks to the outside.
//!
//! A row is marked sent after the message has left; a crash in between sends it again with
//! the same Message-ID (at-least-once), which receivers and the folder transport (file
//! named after the key) recognise.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use thiserror::Error;

use crate::store::journeys::{self, DeliveryRow};
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error(
        "`{0}` is not an address tidings can send from; write e.g. `Acme <hello@acme.example>`"
    )]
    BadFrom(String),
    #[error("`{transport}` is not supported yet; use `folder:DIR` or `stdout`")]
    Unsupported { transport: String },
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
            t if t.starts_with("smtp://") || t.starts_with("smtps://") => {
                Err(DeliveryError::Unsupported {
                    transport: t.to_string(),
                })
            }
            t => Err(DeliveryError::BadTransport(t.to_string())),
        }
    }
}

/// What one dispatch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: u64,
    pub failed: u64,
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

/// Sends every pending email due by `now`.
pub async fn dispatch(
    store: &Store,
    transport: &Transport,
    from: &str,
    now: DateTime<Utc>,
) -> Result<DispatchReport, DeliveryError> {
    let from: Mailbox = from
        .parse()
        .map_err(|_| DeliveryError::BadFrom(from.to_string()))?;
    let mut report = DispatchReport::default();
    if let Transport::Folder(dir) = transport {
        std::fs::create_dir_all(dir).map_err(|source| DeliveryError::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    loop {
        let mut conn = store.connection().await?;
        let batch = journeys::pending_emails(&mut conn, now, 500).await?;
        if batch.is_empty() {
            return Ok(report);
        }
        for d in &batch {
            let message = match build_message(d, &from) {
                Ok(m) => m,
                Err(e) => {
                    journeys::mark_failed(&mut conn, &d.id, &e.0).await?;
                    report.failed += 1;
                    continue;
                }
            };
            let bytes = message.formatted();
            match transport {
                Transport::Folder(dir) => write_eml(dir, d, &bytes)?,
                Transport::Stdout => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes);
                    let _ = out.write_all(b"\n");
                }
                Transport::Discard => {}
            }
            journeys::mark_sent(&mut conn, &d.id, now).await?;
            report.sent += 1;
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
