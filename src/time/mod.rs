//! Time: durations as workflows write them (`7d`), cron schedules read as Vixie cron
//! reads them, and the zones and local times customers live in.

pub mod clock;
pub mod cron;
pub mod duration;
pub mod zones;

use chrono::{DateTime, Utc};

/// RFC 3339, e.g. `2026-05-01T10:00:00Z`.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is not a time; write RFC 3339, e.g. `2026-05-01T10:00:00Z`"))
}
