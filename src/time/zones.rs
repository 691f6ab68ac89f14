//! Customers' zones and local times: a stored zone name read (UTC when it names none), and
//! the next moment a local time of day comes round, across daylight-saving changes.

use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The zone a customer's stored `timezone` names: UTC when it names none, or none known.
pub(crate) fn zone_named(name: Option<&str>) -> Tz {
    name.and_then(|z| z.parse().ok()).unwrap_or(Tz::UTC)
}

/// The next time the clock shows `time` in `tz`, strictly after `after`.
pub fn next_local_time(after: DateTime<Utc>, time: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let local = after.with_timezone(&tz).date_naive();
    for day in 0..3 {
        let date = local + TimeDelta::days(day);
        let naive = date.and_time(time);
        let instant = match tz.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                Some(t.with_timezone(&Utc))
            }
            chrono::LocalResult::None => crate::time::cron::jump_after_gap(naive, tz),
        };
        if let Some(t) = instant.filter(|t| *t > after) {
            return t;
        }
    }
    after + TimeDelta::days(1)
}
