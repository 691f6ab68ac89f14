//! `retention:` — how long the store keeps what it no longer needs to send. The outbox is
//! a queue, not an archive: a sent email's body is kept for `bodies` (default 7 days, for
//! `outbox show` and a complaint's questions), then dropped; its row — who, when, which
//! step, the subject, the outcome — stays for the statistics.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct RetentionConfig {
    /// `bodies: 7d` — the bodies of emails sent (and of webhook calls made, and of mail
    /// suppressed, cancelled or skipped) this long ago are dropped. Failed and `unknown`
    /// mail keeps its body: `outbox retry` may send it again.
    pub bodies: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            bodies: "7d".into(),
        }
    }
}
