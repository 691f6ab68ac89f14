//! The states the store keeps, each an enum with one mapping to and from its column: a
//! journey's state, a delivery's, and what a delivery is (its channel, and its workflow's
//! class and delivery mode). Nothing outside this file spells a state as text.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;

/// A column held text that names no state: the store reports it as corrupt.
#[derive(Debug, Error)]
#[error("`{text}` is not a {kind}")]
pub struct UnknownState {
    pub text: String,
    pub kind: &'static str,
}

/// The text of each variant, and the parse back from the column.
macro_rules! column_text {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every variant, in the order the enum lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;

            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownState {
                        text: other.to_string(),
                        kind: stringify!($name),
                    }),
                }
            }
        }

        /// A state compared with its column's text (as a test reads a row).
        impl PartialEq<&str> for $name {
            fn eq(&self, text: &&str) -> bool {
                self.as_str() == *text
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailClass {
    #[default]
    Marketing,
    Transactional,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    #[default]
    AtLeastOnce,
    AtMostOnce,
}

/// Where a journey (an enrollment) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JourneyState {
    /// Running: due at `due_at` for its next step.
    Active,
    /// It ran out of steps.
    Completed,
    /// `exit_when` was met.
    Converted,
    /// An `exit:` step, a lost consent, a workflow or step that no longer exists.
    Exited,
    /// An expression or a template failed for this customer.
    Failed,
}

column_text!(JourneyState {
    Active => "active",
    Completed => "completed",
    Converted => "converted",
    Exited => "exited",
    Failed => "failed",
});

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryState {
    /// Queued, waiting to go.
    Pending,
    /// Claimed by a sender under a lease.
    Sending,
    Sent,
    /// To be tried again at its `due_at`.
    Retrying,
    Failed,
    /// Not sent: the address is suppressed or the customer unsubscribed since it was queued.
    Suppressed,
    /// `at_most_once` mail whose sender stopped mid-send: it is not sent again.
    Unknown,
    /// Not sent: the frequency cap or quiet hours, and the step said to skip.
    Skipped,
    /// Cancelled by the operator before it left.
    Cancelled,
}

column_text!(DeliveryState {
    Pending => "pending",
    Sending => "sending",
    Sent => "sent",
    Retrying => "retrying",
    Failed => "failed",
    Suppressed => "suppressed",
    Unknown => "unknown",
    Skipped => "skipped",
    Cancelled => "cancelled",
});

impl DeliveryState {
    /// Still to go (or going): a rehearsal that copied it may send it; anything else
    /// already ended.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying | Self::Sending)
    }
}

/// What an outbox row carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email,
    Webhook,
}

column_text!(Channel {
    Email => "email",
    Webhook => "webhook",
});

/// What a customer did with an email (an `engagements` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngagementKind {
    Click,
    Open,
    Answer,
    Unsubscribe,
    Bounce,
    Complaint,
}

column_text!(EngagementKind {
    Click => "click",
    Open => "open",
    Answer => "answer",
    Unsubscribe => "unsubscribe",
    Bounce => "bounce",
    Complaint => "complaint",
});

column_text!(MailClass {
    Marketing => "marketing",
    Transactional => "transactional",
});

column_text!(DeliveryMode {
    AtLeastOnce => "at_least_once",
    AtMostOnce => "at_most_once",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_reads_back_as_written() {
        for s in [
            JourneyState::Active,
            JourneyState::Completed,
            JourneyState::Converted,
            JourneyState::Exited,
            JourneyState::Failed,
        ] {
            assert_eq!(s.as_str().parse::<JourneyState>().unwrap(), s);
        }
        for s in [
            DeliveryState::Pending,
            DeliveryState::Sending,
            DeliveryState::Sent,
            DeliveryState::Retrying,
            DeliveryState::Failed,
            DeliveryState::Suppressed,
            DeliveryState::Unknown,
            DeliveryState::Skipped,
            DeliveryState::Cancelled,
        ] {
            assert_eq!(s.as_str().parse::<DeliveryState>().unwrap(), s);
        }
        assert_eq!("webhook".parse::<Channel>().unwrap(), Channel::Webhook);
        assert_eq!(
            "marketing".parse::<MailClass>().unwrap(),
            MailClass::Marketing
        );
        assert_eq!(DeliveryMode::AtMostOnce.as_str(), "at_most_once");
        assert!("nonsense".parse::<JourneyState>().is_err());
    }
}
