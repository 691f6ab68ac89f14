//! `tidings schedule`: fire times checked against times computed independently — by plain
//! calendar arithmetic with chrono-tz, and by the `cron` crate where its semantics agree.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

use crate::common::{Tidings, scratch_dir, write};

const HELLO: &str = "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>";

fn project(workflows: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = scratch_dir(&format!("schedule-{}", workflows[0].0));
    write(&dir, "templates/hello.html", HELLO);
    for (name, trigger) in workflows {
        write(
            &dir,
            &format!("workflows/{name}.yaml"),
            &format!(
                "name: {name}\ntrigger:\n{trigger}\nsteps:\n  - email: hello\n    subject: Hi\n"
            ),
        );
    }
    dir
}

fn fire_times(dir: &std::path::Path, args: &[&str]) -> Vec<String> {
    let run = Tidings::new().cwd(dir).args(["schedule"]).args(args).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    run.stdout.lines().map(str::to_string).collect()
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Independent expectation: walk local calendar days, keep those `keep` accepts, at a
/// local time, converted with chrono-tz.
fn daily(
    tz: Tz,
    from: NaiveDate,
    hour: u32,
    minute: u32,
    n: usize,
    keep: impl Fn(NaiveDate) -> bool,
) -> Vec<String> {
    from.iter_days()
        .filter(|d| keep(*d))
        .take(n)
        .map(|d| {
            rfc(tz
                .from_local_datetime(&d.and_hms_opt(hour, minute, 0).unwrap())
                .single()
                .unwrap()
                .with_timezone(&Utc))
        })
        .collect()
}

/// The `cron` crate as an oracle, for lines whose meaning is the same in both dialects.
fn oracle(quartz: &str, tz: Tz, after: &str, n: usize) -> Vec<String> {
    let schedule = cron::Schedule::from_str(quartz).unwrap();
    schedule
        .after(&utc(after).with_timezone(&tz))
        .take(n)
        .map(|t| rfc(t.with_timezone(&Utc)))
        .collect()
}

#[test]
fn every_15_minutes() {
    let dir = project(&[("quarter-hourly", "  schedule: \"*/15 * * * *\"")]);
    let got = fire_times(
        &dir,
        &[
            "quarter-hourly",
            "--count",
            "8",
            "--after",
            "2026-05-31T23:50:00Z",
        ],
    );
    let expected: Vec<String> = (0..8)
        .map(|i| rfc(utc("2026-06-01T00:00:00Z") + TimeDelta::minutes(15 * i)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(
        got,
        oracle("0 */15 * * * *", Tz::UTC, "2026-05-31T23:50:00Z", 8)
    );
}

#[test]
fn weekdays_at_nine_in_berlin_across_the_march_dst_change() {
    let dir = project(&[(
        "weekday-mornings",
        "  schedule: \"0 9 * * 1-5\"\n  timezone: Europe/Berlin",
    )]);
    let got = fire_times(
        &dir,
        &[
            "weekday-mornings",
            "--count",
            "10",
            "--after",
            "2026-03-23T00:00:00Z",
        ],
    );
    let expected = daily(
        Tz::Europe__Berlin,
        NaiveDate::from_ymd_opt(2026, 3, 23).unwrap(),
        9,
        0,
        10,
        |d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun),
    );
    assert_eq!(got, expected);
    // 09:00 is 08:00Z before the change (CET) and 07:00Z after it (CEST).
    assert_eq!(got[4], "2026-03-27T08:00:00Z");
    assert_eq!(got[5], "2026-03-30T07:00:00Z");
    assert_eq!(
        got,
        oracle(
            "0 0 9 * * MON-FRI",
            Tz::Europe__Berlin,
            "2026-03-23T00:00:00Z",
            10
        )
    );
}

#[test]
fn day_of_month_or_day_of_week_as_in_vixie_cron() {
    let dir = project(&[("thirteenth-or-friday", "  schedule: \"0 12 13 * FRI\"")]);
    let got = fire_times(
        &dir,
        &[
            "thirteenth-or-friday",
            "--count",
            "12",
            "--after",
            "2026-01-01T00:00:00Z",
        ],
    );
    let expected = daily(
        Tz::UTC,
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        12,
        0,
        12,
        |d| d.day() == 13 || d.weekday() == Weekday::Fri,
    );
    assert_eq!(got, expected);
    // The cron crate ANDs the two fields: it would fire only on Friday the 13th.
    assert_ne!(
        got,
        oracle("0 0 12 13 * FRI", Tz::UTC, "2026-01-01T00:00:00Z", 12)
    );
}

#[test]
fn month_and_day_names() {
    let dir = project(&[(
        "summer-winter-sundays",
        "  schedule: \"30 6 * JAN,jul Sun\"",
    )]);
    let got = fire_times(
        &dir,
        &[
            "summer-winter-sundays",
            "--count",
            "10",
            "--after",
            "2026-01-01T00:00:00Z",
        ],
    );
    let expected = daily(
        Tz::UTC,
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        6,
        30,
        10,
        |d| matches!(d.month(), 1 | 7) && d.weekday() == Weekday::Sun,
    );
    assert_eq!(got, expected);
    assert_eq!(
        got,
        oracle("0 30 6 * JAN,JUL SUN", Tz::UTC, "2026-01-01T00:00:00Z", 10)
    );
}

#[test]
fn sunday_is_0_and_7() {
    let dir = project(&[
        ("sundays", "  schedule: \"0 8 * * 7\""),
        ("sundays-zero", "  schedule: \"0 8 * * 0\""),
    ]);
    let seven = fire_times(
        &dir,
        &["sundays", "--count", "5", "--after", "2026-06-01T00:00:00Z"],
    );
    let zero = fire_times(
        &dir,
        &[
            "sundays-zero",
            "--count",
            "5",
            "--after",
            "2026-06-01T00:00:00Z",
        ],
    );
    assert_eq!(seven, zero);
    assert_eq!(seven[0], "2026-06-07T08:00:00Z");
}

#[test]
fn agrees_with_the_cron_crate_where_dialects_coincide() {
    // Lines with an unrestricted day of week mean the same in both dialects. (Fifteen fire
    // times each: the crate stops at 2100, where `0 0 29 2 *` goes on to 2104.)
    let lines = [
        ("5 4 * * *", "0 5 4 * * *"),
        ("0 */6 1,15 * *", "0 0 */6 1,15 * *"),
        ("15-45/10 8-17 * * *", "0 15-45/10 8-17 * * *"),
        ("0 0 29 2 *", "0 0 0 29 2 *"),
        ("59 23 31 * *", "0 59 23 31 * *"),
        ("0 12 * JUN-AUG *", "0 0 12 * JUN-AUG *"),
    ];
    for (ours, quartz) in lines {
        let ours_schedule = tidings::time::cron::CronSchedule::parse(ours).unwrap();
        for tz in [Tz::UTC, Tz::Asia__Tokyo, Tz::America__New_York] {
            let got: Vec<String> = ours_schedule
                .upcoming(utc("2026-01-01T00:00:00Z"), tz, 15)
                .into_iter()
                .map(rfc)
                .collect();
            assert_eq!(
                got,
                oracle(quartz, tz, "2026-01-01T00:00:00Z", 15),
                "{ours} in {tz}"
            );
        }
    }
}

#[test]
fn birthdays_on_feb_29_fire_on_feb_28_in_common_years_in_the_customers_zone() {
    let dir = project(&[("birthday", "  date: birthday\n  at: \"09:00\"")]);
    let got = fire_times(
        &dir,
        &[
            "birthday",
            "--count",
            "4",
            "--after",
            "2026-01-01T00:00:00Z",
            "--date",
            "1992-02-29",
            "--timezone",
            "Asia/Tokyo",
        ],
    );
    assert_eq!(
        got,
        [
            "2026-02-28T00:00:00Z",
            "2027-02-28T00:00:00Z",
            "2028-02-29T00:00:00Z",
            "2029-02-28T00:00:00Z"
        ]
    );
    let run = Tidings::new()
        .cwd(&dir)
        .args(["schedule", "birthday"])
        .run();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("pass --date YYYY-MM-DD"),
        "{}",
        run.stderr
    );
}

#[test]
fn unknown_names_and_event_triggers_explain_themselves() {
    let dir = project(&[("welcome", "  event: customer_created")]);
    let run = Tidings::new().cwd(&dir).args(["schedule", "welcom"]).run();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("did you mean `welcome`?"),
        "{}",
        run.stderr
    );
    let run = Tidings::new().cwd(&dir).args(["schedule", "welcome"]).run();
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("triggered by the event `customer_created`"),
        "{}",
        run.stderr
    );
}

/// Catch-up: when nothing ran while a schedule fell due, its latest missed fire time runs
/// once (`run_once`, the default; each customer enrolled once, keyed by that time), or not
/// at all (`skip`), and never when older than `limits.catch_up_max_age`. A fire on time
/// runs under either policy.
#[test]
fn missed_fire_times_run_once_or_are_skipped() {
    use crate::store::{backends, text_pairs, tidings};
    for (policy, max_age, expect_late) in [
        ("run_once", "7d", true),
        ("skip", "7d", false),
        ("run_once", "1h", false),
    ] {
        let b = backends(&format!("catch-up-{policy}-{max_age}")).remove(0);
        write(&b.dir, "templates/hello.html", HELLO);
        write(
            &b.dir,
            "workflows/daily.yaml",
            &format!(
                "name: daily\ntrigger:\n  schedule: \"0 10 * * *\"\ncatch_up: {policy}\nreentry: always\nsteps:\n  - email: hello\n    subject: Hi\n"
            ),
        );
        write(
            &b.dir,
            "tidings.yaml",
            &format!("database: ${{TIDINGS_DB}}\nlimits:\n  catch_up_max_age: {max_age}\n"),
        );
        write(
            &b.dir,
            "customers.csv",
            "id,email\na,a@example.com\nb,b@example.com\n",
        );
        let run = tidings(&b)
            .args(["import", "customers", "customers.csv"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let pass = |now: &str| {
            let run = tidings(&b).args(["run", "--once", "--now", now]).run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        };
        let fires = || {
            text_pairs(
                &b,
                "SELECT trigger_key, CAST(COUNT(*) AS TEXT) FROM enrollments GROUP BY trigger_key ORDER BY trigger_key",
            )
        };
        let key = |t: &str| utc(t).timestamp_millis().to_string();
        pass("2026-06-01T09:00:00Z");
        // Down for three days: 10:00 on the 1st, 2nd, 3rd and 4th all fell due.
        pass("2026-06-04T12:00:00Z");
        let expected = if expect_late {
            vec![(key("2026-06-04T10:00:00Z"), "2".to_string())]
        } else {
            Vec::new()
        };
        assert_eq!(fires(), expected, "{policy} {max_age}");
        // Running again changes nothing; a fire on time runs under every policy.
        pass("2026-06-04T12:00:00Z");
        pass("2026-06-05T10:00:30Z");
        let mut expected = expected;
        expected.push((key("2026-06-05T10:00:00Z"), "2".to_string()));
        assert_eq!(fires(), expected, "{policy} {max_age}");
    }
}
