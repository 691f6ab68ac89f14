//! Proof sends: an email composed as the customer would get it, sent through the configured
//! transport to a reviewer, with `[proof]` before its subject and `X-Tidings-Proof: 1` —
//! and recorded nowhere: no outbox row, no journey, no frequency cap counted, no coupon
//! reserved (its code is the preview's).

use crate::model::states::{Channel, DeliveryMode, DeliveryState, MailClass};
use chrono::Utc;
use lettre::transport::smtp::extension::ClientId;

use super::outcomes::Outcome;
use super::{DeliveryError, DispatchOptions, Transport, prepare, smtp, write_eml};
use crate::model::rendered::Rendered;
use crate::store::deliveries::DeliveryRow;

/// What a proof's subject starts with.
pub const PROOF: &str = "[proof]";

/// Sends one previewed email to `to` as a proof.
pub async fn send_proof(
    transport: &Transport,
    options: &DispatchOptions,
    workflow: &str,
    email: &Rendered,
    to: &str,
) -> Result<(), DeliveryError> {
    let now = Utc::now();
    let key = format!(
        "proof/{workflow}/{}/{}",
        email.step,
        now.timestamp_nanos_opt().unwrap_or(0)
    );
    let row = DeliveryRow {
        id: key.clone(),
        channel: Channel::Email,
        workflow: workflow.to_string(),
        customer_id: String::new(),
        step: email.step.clone(),
        recipient: to.to_string(),
        subject: Some(format!("{PROOF} {}", email.subject)),
        html: Some(email.html.clone()),
        text: email.text.clone(),
        coupon_code: None,
        message_id: crate::model::ids::message_id(&key, &options.from.to_string()),
        state: DeliveryState::Pending,
        due_at: now,
        class: MailClass::Marketing,
        payload: None,
        attempts: 0,
        last_error: None,
        mode: DeliveryMode::AtMostOnce,
        created_at: now,
        accepted_at: None,
        variant: None,
    };
    let refused =
        |e: String| DeliveryError::BadSetting(format!("the proof to {to} was not sent: {e}"));
    let (bytes, envelope, date) = prepare(&row, options, now).map_err(|o| match o {
        Outcome::Failed(e) => refused(e),
        _ => refused("the message could not be built".into()),
    })?;
    // A header line in front: the message, signed or not, is otherwise as a send's.
    let bytes = [b"X-Tidings-Proof: 1\r\n".as_slice(), &bytes].concat();
    match transport {
        Transport::Folder(dir) => write_eml(dir, &row, date, &bytes),
        Transport::Stdout => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&bytes);
            Ok(())
        }
        Transport::Discard => Ok(()),
        Transport::Smtp(server) => {
            let mut session = smtp::Session::open(server, &ClientId::default())
                .await
                .map_err(|e| refused(e.text().to_string()))?;
            let from = options.from.email.clone();
            let sent = session.send(&from, &envelope, &bytes, server.timeout).await;
            session.close().await;
            sent.map_err(|e| refused(e.text().to_string()))
        }
    }
}
