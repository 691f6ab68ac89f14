//! Durations as marketers write them (`30m`, `12h`, `7d`, `2w`, `1d12h`, `-3d`) and times of
//! day (`09:00`).

use chrono::{NaiveTime, TimeDelta};
use thiserror::Error;

/// Why a duration did not parse; `at` is the character offset of the problem.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("a duration cannot be empty")]
    Empty,
    #[error("expected a number before `{found}`")]
    MissingNumber { found: char, at: usize },
    #[error("`{unit}` is not a duration unit")]
    UnknownUnit { unit: String, at: usize },
    #[error("`{number}` needs a unit")]
    MissingUnit { number: String, at: usize },
    #[error("a duration is at most 36500d (a hundred years)")]
    TooLong { at: usize },
}

impl DurationError {
    /// Character offset of the offending text within the input.
    pub fn offset(&self) -> usize {
        match self {
            DurationError::Empty => 0,
            DurationError::MissingNumber { at, .. }
            | DurationError::UnknownUnit { at, .. }
            | DurationError::MissingUnit { at, .. }
            | DurationError::TooLong { at } => *at,
        }
    }
}

pub const DURATION_HELP: &str = "write a number and a unit: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks (e.g. `30m`, `7d`, `1d12h`)";

/// The longest duration a file may write. Every duration is added to a moment somewhere
/// (a wait's due time, a goal's window, a test's clock), and a moment past the calendar's
/// end is an overflow; a hundred years is longer than any journey and keeps every such sum
/// far inside chrono's range.
pub const MAX: TimeDelta = TimeDelta::days(36_500);

/// Parses `7d`, `1d12h`, `-3d`. Months and years are not units: their length varies, and a
/// marketer who means "a month" should say `30d` and see it.
pub fn parse(input: &str) -> Result<TimeDelta, DurationError> {
    let trimmed = input.trim();
    let lead = input.len() - input.trim_start().len();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let (negative, body, mut at) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest, lead + 1),
        None => (false, trimmed, lead),
    };
    let mut total = TimeDelta::zero();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let number_at = at;
        let mut number = String::new();
        while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
            number.push(c);
            chars.next();
            at += 1;
        }
        let unit_at = at;
        let mut unit = String::new();
        while let Some(c) = chars.peek().copied().filter(|c| !c.is_ascii_digit()) {
            unit.push(c);
            chars.next();
            at += 1;
        }
        if number.is_empty() {
            let found = unit.chars().next().unwrap_or(' ');
            return Err(DurationError::MissingNumber {
                found,
                at: number_at,
            });
        }
        let n: i64 = number
            .parse()
            .map_err(|_| DurationError::TooLong { at: number_at })?;
        let part = match unit.trim() {
            "ms" => TimeDelta::try_milliseconds(n),
            "s" => TimeDelta::try_seconds(n),
            "m" => TimeDelta::try_minutes(n),
            "h" => TimeDelta::try_hours(n),
            "d" => TimeDelta::try_days(n),
            "w" => TimeDelta::try_weeks(n),
            "" => {
                return Err(DurationError::MissingUnit {
                    number,
                    at: number_at,
                });
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_string(),
                    at: unit_at,
                });
            }
        };
        total = part
            .and_then(|p| total.checked_add(&p))
            .filter(|t| *t <= MAX)
            .ok_or(DurationError::TooLong { at: number_at })?;
    }
    Ok(if negative { -total } else { total })
}

/// Shows a duration the way it would be written (`7d`, `1d12h`, `90m`).
pub fn format(d: TimeDelta) -> String {
    let mut secs = d.num_seconds();
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
        secs = -secs;
    }
    if secs == 0 {
        return "0s".into();
    }
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= size && !(unit == "w" && secs % size != 0) {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// `09:00` or `9:30` — a local time of day, to the minute.
pub fn parse_time_of_day(input: &str) -> Option<NaiveTime> {
    let (h, m) = input.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("30m"), Ok(TimeDelta::minutes(30)));
        assert_eq!(parse("2w"), Ok(TimeDelta::days(14)));
        assert_eq!(parse("1d12h"), Ok(TimeDelta::hours(36)));
        assert_eq!(parse("-3d"), Ok(TimeDelta::days(-3)));
        assert_eq!(parse("36500d"), Ok(MAX));
        assert_eq!(parse("36500d1s"), Err(DurationError::TooLong { at: 6 }));
        assert_eq!(parse("-100000000d"), Err(DurationError::TooLong { at: 1 }));
        assert_eq!(parse(" 7d "), Ok(TimeDelta::days(7)));
    }

    #[test]
    fn reports_where_it_went_wrong() {
        assert_eq!(
            parse("7days"),
            Err(DurationError::UnknownUnit {
                unit: "days".into(),
                at: 1
            })
        );
        assert_eq!(
            parse("7"),
            Err(DurationError::MissingUnit {
                number: "7".into(),
                at: 0
            })
        );
        assert_eq!(
            parse("d"),
            Err(DurationError::MissingNumber { found: 'd', at: 0 })
        );
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(
            parse("99999999999999999999d"),
            Err(DurationError::TooLong { .. })
        ));
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(TimeDelta::days(14)), "2w");
        assert_eq!(format(TimeDelta::hours(36)), "1d12h");
        assert_eq!(format(TimeDelta::days(-3)), "-3d");
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("09:00"), NaiveTime::from_hms_opt(9, 0, 0));
        assert_eq!(parse_time_of_day("9:30"), NaiveTime::from_hms_opt(9, 30, 0));
        assert_eq!(parse_time_of_day("25:00"), None);
        assert_eq!(parse_time_of_day("0900"), None);
    }
}
