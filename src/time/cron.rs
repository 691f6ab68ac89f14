//! Cron lines with the semantics marketers and operators know from Vixie cron.
//!
//! The `cron` crate (0.17) is Quartz-flavoured: it wants a seconds field, numbers Sunday 1,
//! and ANDs day-of-month with day-of-week. Translating around all three while still
//! reporting an error at the right character costs more than reading five small fields
//! ourselves, so this module parses and evaluates the line itself; the crate serves as an
//! independent oracle in the tests, where the two semantics agree.
//!
//! Semantics, as in Vixie cron:
//! - 5 fields `min hour dom month dow`; 6 fields add seconds in front; 7 add a year at the end.
//! - Day of week 0–7 (0 and 7 are Sunday) or `SUN`–`SAT`; months 1–12 or `JAN`–`DEC`.
//! - When both day-of-month and day-of-week are restricted (neither starts with `*`), a day
//!   that matches *either* fires.
//! - Daylight-saving time, in the schedule's zone: a fixed-time job (neither minute nor hour
//!   starts with `*`) whose time falls in a skipped hour runs at the jump, and in a repeated
//!   hour runs once, at the first occurrence. A wildcard job runs on real time: nothing
//!   extra in a gap, and each repeated wall-clock time runs in both passes.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use thiserror::Error;

/// A problem in a cron line: what, where (character offset and length), and what to do.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct CronError {
    pub message: String,
    pub at: usize,
    pub len: usize,
    pub help: String,
}

const FIELD_HELP: &str = "a cron line has 5 fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or JAN-DEC), day of week (0-7 or SUN-SAT, 0 and 7 are Sunday); e.g. `0 9 * * MON-FRI`";

/// A parsed cron line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    years: Option<(i32, i32, u32)>,
    dom_star: bool,
    dow_star: bool,
    /// Neither minute nor hour starts with `*`: DST gaps run at the jump, repeats run once.
    fixed_time: bool,
}

#[derive(Clone, Copy)]
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DOW: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};
const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
};

impl CronSchedule {
    pub fn parse(line: &str) -> Result<Self, CronError> {
        let fields = split_fields(line);
        if let [(at, word)] = fields.as_slice()
            && let Some(name) = word.strip_prefix('@')
        {
            return Self::macro_line(name, *at, word.chars().count());
        }
        let specs: &[FieldSpec] = match fields.len() {
            5 => &[MINUTE, HOUR, DOM, MONTH, DOW],
            6 => &[SECOND, MINUTE, HOUR, DOM, MONTH, DOW],
            7 => &[SECOND, MINUTE, HOUR, DOM, MONTH, DOW, YEAR],
            n => {
                let len = line.chars().count().max(1);
                return Err(CronError {
                    message: format!("a cron line needs 5 fields, found {n}"),
                    at: 0,
                    len,
                    help: FIELD_HELP.into(),
                });
            }
        };
        let mut masks = Vec::with_capacity(7);
        for ((at, text), spec) in fields.iter().zip(specs) {
            masks.push(parse_field(text, *at, *spec)?);
        }
        let offset = usize::from(fields.len() >= 6);
        let text_of = |i: usize| fields[i + offset].1.as_str();
        let years = if fields.len() == 7 {
            let (at, text) = &fields[6];
            Some(year_range(text, *at)?)
        } else {
            None
        };
        let mut dow = masks[offset + 4];
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & !(1 << 7);
        }
        let is_star = |t: &str| t.starts_with('*') || t == "?";
        Ok(Self {
            seconds: if offset == 1 { masks[0] } else { 1 },
            minutes: masks[offset],
            hours: masks[offset + 1],
            days_of_month: masks[offset + 2],
            months: masks[offset + 3],
            days_of_week: dow,
            years,
            dom_star: is_star(text_of(2)),
            dow_star: is_star(text_of(4)),
            fixed_time: !is_star(text_of(0)) && !is_star(text_of(1)),
        })
    }

    fn macro_line(name: &str, at: usize, len: usize) -> Result<Self, CronError> {
        let line = match name.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            _ => {
                return Err(CronError {
                    message: format!("`@{name}` is not a cron shorthand"),
                    at,
                    len,
                    help: "use one of `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, or 5 cron fields".into(),
                });
            }
        };
        Self::parse(line)
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        if let Some((from, to, step)) = self.years {
            let y = date.year();
            if y < from || y > to || !((y - from) as u32).is_multiple_of(step) {
                return false;
            }
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Local times of day that fire, in order.
    fn times_of_day(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        bits(self.hours).flat_map(move |h| {
            bits(self.minutes).flat_map(move |m| bits(self.seconds).map(move |s| (h, m, s)))
        })
    }

    /// The first fire time strictly after `after`, in the zone `tz`; `None` if the line
    /// never fires again (e.g. `0 0 30 2 *`, or a year field in the past).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let start_local = after.with_timezone(&tz).date_naive();
        // Look one day back: a time in the previous local day can map past `after` across
        // a DST repeat.
        let mut day = start_local.pred_opt()?;
        let last_year = match self.years {
            Some((_, to, _)) => to,
            None => start_local.year() + 9,
        };
        while day.year() <= last_year {
            if self.day_matches(day) {
                let mut best: Option<DateTime<Utc>> = None;
                for (h, m, s) in self.times_of_day() {
                    let Some(naive) = day.and_hms_opt(h, m, s) else {
                        continue;
                    };
                    for instant in self.instants(naive, tz) {
                        if instant > after && best.is_none_or(|b| instant < b) {
                            best = Some(instant);
                        }
                    }
                    // Within one day, naive order is instant order except across a DST
                    // repeat, which is at most a few hours long: stop once safely past.
                    if let Some(b) = best
                        && naive.and_utc() - b.with_timezone(&tz).naive_local().and_utc()
                            > TimeDelta::hours(4)
                    {
                        break;
                    }
                }
                if best.is_some() {
                    return best;
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    /// The instants at which a local time fires, under the DST rules above.
    fn instants(&self, naive: NaiveDateTime, tz: Tz) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(early, late) => {
                if self.fixed_time {
                    vec![early.with_timezone(&Utc)]
                } else {
                    vec![early.with_timezone(&Utc), late.with_timezone(&Utc)]
                }
            }
            LocalResult::None => {
                if self.fixed_time {
                    jump_after_gap(naive, tz).into_iter().collect()
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, tz: Tz, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut cursor = after;
        while out.len() < count {
            match self.next_after(cursor, tz) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }
}

/// The first instant after a local time that a DST gap skipped: the moment of the jump.
pub fn jump_after_gap(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let mut probe = naive;
    for _ in 0..(4 * 60) {
        probe += TimeDelta::minutes(1);
        let probe_floor = probe.date().and_hms_opt(
            chrono::Timelike::hour(&probe),
            chrono::Timelike::minute(&probe),
            0,
        )?;
        if let Some(t) = tz.from_local_datetime(&probe_floor).earliest() {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

fn bits(mask: u64) -> impl Iterator<Item = u32> {
    (0..64u32).filter(move |i| mask & (1u64 << i) != 0)
}

/// Splits on whitespace, keeping each field's character offset.
fn split_fields(line: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, c) in line.chars().enumerate() {
        if c.is_whitespace() {
            if let Some(f) = current.take() {
                out.push(f);
            }
        } else {
            current.get_or_insert_with(|| (i, String::new())).1.push(c);
        }
    }
    out.extend(current);
    out
}

fn parse_field(text: &str, at: usize, spec: FieldSpec) -> Result<u64, CronError> {
    if spec.name == "year" {
        // Years do not fit a 64-bit mask; they are kept as a range by `year_range`.
        year_range(text, at)?;
        return Ok(0);
    }
    let mut mask = 0u64;
    let mut offset = at;
    for part in text.split(',') {
        let len = part.chars().count();
        mask |= parse_part(part, offset, spec)?;
        offset += len + 1;
    }
    Ok(mask)
}

fn parse_part(part: &str, at: usize, spec: FieldSpec) -> Result<u64, CronError> {
    let err = |message: String, help: String| CronError {
        message,
        at,
        len: part.chars().count().max(1),
        help,
    };
    if part.is_empty() {
        return Err(err(
            format!("empty item in the {} field", spec.name),
            "remove the extra comma".into(),
        ));
    }
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                err(
                    format!("`{s}` is not a valid step in the {} field", spec.name),
                    "a step is a whole number above zero, as in `*/15`".into(),
                )
            })?;
            (r, step)
        }
        None => (part, 1),
    };
    let (lo, hi) =
        if range == "*" || (range == "?" && matches!(spec.name, "day of month" | "day of week")) {
            (
                spec.min,
                if spec.name == "day of week" {
                    6
                } else {
                    spec.max
                },
            )
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec, &err)?, value(b, spec, &err)?)
        } else {
            let v = value(range, spec, &err)?;
            (v, if part.contains('/') { spec.max } else { v })
        };
    if lo > hi {
        return Err(err(
            format!(
                "the range `{range}` in the {} field runs backwards",
                spec.name
            ),
            format!("write the smaller value first, e.g. `{hi}-{lo}`"),
        ));
    }
    let mut mask = 0u64;
    let mut v = lo;
    while v <= hi {
        mask |= 1 << v;
        v += step;
    }
    Ok(mask)
}

fn value(
    text: &str,
    spec: FieldSpec,
    err: &dyn Fn(String, String) -> CronError,
) -> Result<u32, CronError> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = spec.names.iter().position(|n| *n == upper) {
        return Ok(i as u32 + u32::from(spec.name == "month"));
    }
    let range_help = || {
        let names = if spec.names.is_empty() {
            String::new()
        } else {
            format!(" or {}-{}", spec.names[0], spec.names[spec.names.len() - 1])
        };
        format!(
            "the {} field takes {}-{}{names}",
            spec.name, spec.min, spec.max
        )
    };
    if upper.chars().any(|c| matches!(c, 'L' | 'W' | '#'))
        && upper.chars().any(|c| c.is_ascii_digit())
    {
        return Err(err(
            format!("`{text}` uses Quartz syntax that standard cron does not have"),
            "list the days instead, e.g. `1,15` or `MON-FRI`".into(),
        ));
    }
    let n: u32 = text.parse().map_err(|_| {
        let what = if spec.names.is_empty() {
            "number".to_string()
        } else {
            format!("{} name or number", spec.name)
        };
        err(format!("`{text}` is not a valid {what}"), range_help())
    })?;
    if n < spec.min || n > spec.max {
        return Err(err(
            format!("{n} is out of range for the {} field", spec.name),
            range_help(),
        ));
    }
    Ok(n)
}

fn year_range(text: &str, at: usize) -> Result<(i32, i32, u32), CronError> {
    let err = |message: String| CronError {
        message,
        at,
        len: text.chars().count().max(1),
        help: "the year field takes `*`, a year, or a range such as `2026-2030`".into(),
    };
    let (range, step) = match text.split_once('/') {
        Some((r, s)) => (
            r,
            s.parse::<u32>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| err(format!("`{s}` is not a valid step in the year field")))?,
        ),
        None => (text, 1),
    };
    let parse = |s: &str| -> Result<i32, CronError> {
        s.parse::<i32>()
            .ok()
            .filter(|y| (1970..=2199).contains(y))
            .ok_or_else(|| err(format!("`{s}` is not a year between 1970 and 2199")))
    };
    match range {
        "*" | "?" => Ok((1970, 2199, step)),
        r => match r.split_once('-') {
            Some((a, b)) => Ok((parse(a)?, parse(b)?, step)),
            None if text.contains(',') => Err(err("lists of years are not supported".into())),
            None => {
                let y = parse(r)?;
                Ok((y, if text.contains('/') { 2199 } else { y }, step))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(line: &str, after: &str, tz: Tz, n: usize) -> Vec<String> {
        CronSchedule::parse(line)
            .unwrap()
            .upcoming(utc(after), tz, n)
            .iter()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect()
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // 2026-06-01 is a Monday; the 15th is a Monday too.
        let got = next("0 9 1,15 * FRI", "2026-06-01T00:00:00Z", Tz::UTC, 4);
        assert_eq!(
            got,
            [
                "2026-06-01T09:00:00Z",
                "2026-06-05T09:00:00Z",
                "2026-06-12T09:00:00Z",
                "2026-06-15T09:00:00Z"
            ]
        );
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        assert_eq!(
            CronSchedule::parse("0 0 * * 0").unwrap(),
            CronSchedule::parse("0 0 * * 7").unwrap()
        );
        assert_eq!(
            CronSchedule::parse("0 0 * * 5-7").unwrap().days_of_week,
            0b110_0001
        );
    }

    #[test]
    fn a_skipped_fixed_time_runs_at_the_jump() {
        // Berlin springs forward at 02:00 local (01:00 UTC) on 2026-03-29.
        let got = next("30 2 * * *", "2026-03-28T12:00:00Z", Tz::Europe__Berlin, 3);
        assert_eq!(
            got,
            [
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
    }

    #[test]
    fn a_repeated_fixed_time_runs_once_and_wildcards_run_in_both_passes() {
        // Berlin falls back at 03:00 CEST (01:00 UTC) on 2026-10-25.
        let fixed = next("30 2 * * *", "2026-10-24T12:00:00Z", Tz::Europe__Berlin, 2);
        assert_eq!(fixed, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
        let wild = next("30 * * * *", "2026-10-24T23:45:00Z", Tz::Europe__Berlin, 3);
        assert_eq!(
            wild,
            [
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:30:00Z"
            ]
        );
    }

    #[test]
    fn errors_point_at_the_field() {
        let e = CronSchedule::parse("0 9 * * MOM").unwrap_err();
        assert_eq!((e.at, e.len), (8, 3));
        assert_eq!(e.message, "`MOM` is not a valid day of week name or number");
        let e = CronSchedule::parse("0 25 * * *").unwrap_err();
        assert_eq!(
            (e.at, e.message.as_str()),
            (2, "25 is out of range for the hour field")
        );
        let e = CronSchedule::parse("0 9 * *").unwrap_err();
        assert_eq!(e.message, "a cron line needs 5 fields, found 4");
        assert!(CronSchedule::parse("@reboot").is_err());
        assert!(CronSchedule::parse("0 0 L * *").is_err());
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = CronSchedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.next_after(utc("2026-01-01T00:00:00Z"), Tz::UTC), None);
    }

    #[test]
    fn six_and_seven_fields() {
        assert_eq!(
            next("30 0 9 * * *", "2026-06-01T00:00:00Z", Tz::UTC, 1),
            ["2026-06-01T09:00:30Z"]
        );
        assert_eq!(
            next("0 0 9 1 1 * 2028", "2026-06-01T00:00:00Z", Tz::UTC, 2),
            ["2028-01-01T09:00:00Z"]
        );
    }
}
