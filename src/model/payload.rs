//! What a delivery carries besides its body, typed from the engine that writes it to the
//! sender that reads it; the store keeps it as one JSON column (`delivery_bodies.payload`),
//! in the shape rows already stored have.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::states::Channel;

/// An email's: the link its `List-Unsubscribe` header carries (none for a transactional
/// email).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailExtras {
    pub unsubscribe_url: Option<String>,
}

/// A webhook step's call as composed: the URL's `${ENV}` is resolved only when it is made,
/// so no secret is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookCall {
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default = "default_timeout")]
    pub timeout_s: i64,
}

fn default_timeout() -> i64 {
    10
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Email(EmailExtras),
    Webhook(WebhookCall),
    /// A stored payload that does not read as its channel's: the sender fails that one
    /// delivery, visibly, and the others go on.
    Unreadable(String),
}

impl Payload {
    /// The column's text.
    pub fn to_json(&self) -> Option<String> {
        match self {
            Payload::Email(e) => serde_json::to_string(e).ok(),
            Payload::Webhook(w) => serde_json::to_string(w).ok(),
            Payload::Unreadable(_) => None,
        }
    }

    /// The column's text read as `channel`'s payload.
    pub fn from_json(channel: Channel, text: &str) -> Self {
        let read = match channel {
            Channel::Email => serde_json::from_str(text).map(Payload::Email),
            Channel::Webhook => serde_json::from_str(text).map(Payload::Webhook),
        };
        read.unwrap_or_else(|e| Payload::Unreadable(e.to_string()))
    }

    /// An email's unsubscribe link, when it has one.
    pub fn unsubscribe_url(&self) -> Option<&str> {
        match self {
            Payload::Email(e) => e.unsubscribe_url.as_deref(),
            _ => None,
        }
    }
}
