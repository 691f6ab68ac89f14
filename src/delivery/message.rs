//! The message an email becomes: MIME (text and HTML), headers (a Message-ID from its key,
//! `Date` when it leaves, one-click unsubscribe on marketing mail), addresses in the form
//! SMTP carries them, and the DKIM signature.

use super::DeliveryError;
use crate::store::deliveries::DeliveryRow;
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use std::path::Path;
use std::time::SystemTime;
use thiserror::Error;

/// Why a single message cannot be built; the delivery fails, the rest go on.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct MessageError(pub(crate) String);

/// Builds the MIME message of a delivery: `multipart/alternative` when there is a text
/// part, the stable Message-ID, `date` (when it leaves, or the virtual moment) as `Date`,
/// the workflow and step as `X-Tidings-*`, and RFC 8058 one-click unsubscribe headers on
/// marketing mail.
pub fn build_message(
    d: &DeliveryRow,
    from: &Mailbox,
    date: DateTime<Utc>,
) -> Result<Message, MessageError> {
    let bad = |e: &dyn std::fmt::Display| MessageError(e.to_string());
    let to: Mailbox = Mailbox::new(None, envelope_address(&d.recipient).map_err(MessageError)?);
    let subject = d.subject.clone().unwrap_or_default();
    if subject.contains(['\r', '\n']) {
        return Err(MessageError("the subject contains a line break".into()));
    }
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .raw_header(subject_header(subject))
        .message_id(Some(d.message_id.clone()))
        .date(SystemTime::from(date))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Tidings-Workflow"),
            d.workflow.clone(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Tidings-Step"),
            d.step.clone(),
        ));
    if let Some(variant) = &d.variant {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Tidings-Variant"),
            variant.clone(),
        ));
    }
    let unsubscribe = d.payload.as_ref().and_then(|p| p.unsubscribe_url());
    if d.class == crate::workflow::raw::MailClass::Marketing
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

/// The address as SMTP carries it: the domain in ASCII (IDNA, so `ana@bücher.example`
/// needs no extension), the local part as written (a non-ASCII one needs SMTPUTF8, which
/// the session asks for or refuses).
pub fn envelope_address(recipient: &str) -> Result<lettre::Address, String> {
    let bad = |why: &dyn std::fmt::Display| format!("recipient `{recipient}`: {why}");
    let (local, domain) = recipient.rsplit_once('@').ok_or_else(|| bad(&"no `@`"))?;
    let domain = idna::domain_to_ascii(domain)
        .map_err(|_| bad(&"the domain is not a valid international domain name"))?;
    lettre::Address::new(local, domain).map_err(|e| bad(&e))
}

/// The Subject header. Text that only looks like an RFC 2047 encoded word (a customer's
/// name `=?utf-8?q?Spoof?=`) is data: the whole subject is then encoded, so that the
/// reader's client shows those characters and decodes nothing the sender did not encode.
pub(super) fn subject_header(subject: String) -> HeaderValue {
    let name = HeaderName::new_from_ascii_str("Subject");
    if !subject.contains("=?") {
        return HeaderValue::new(name, subject);
    }
    let mut encoded = String::new();
    let written = {
        let mut writer = email_encoding::headers::writer::EmailWriter::new(
            &mut encoded,
            "Subject: ".len(),
            0,
            false,
        );
        email_encoding::headers::rfc2047::encode(&subject, &mut writer)
    };
    if written.is_err() {
        return HeaderValue::new(name, subject);
    }
    HeaderValue::dangerous_new_pre_encoded(name, subject, encoded)
}

/// The headers a DKIM signature covers: the ones a receiver shows or acts on. Those a
/// message lacks (List-Unsubscribe on transactional mail) are signed as absent, so they
/// cannot be added on the way either. Not Content-Type: lettre writes a MIME body's own
/// headers after the signature and does not see them when it signs.
pub(super) const DKIM_SIGNED: [&str; 8] = [
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
pub(super) fn load_dkim(
    config: &crate::config::DkimConfig,
    root: &Path,
) -> Result<DkimConfig, DeliveryError> {
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
