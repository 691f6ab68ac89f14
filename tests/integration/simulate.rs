//! `tidings simulate`: the shipped examples rehearsed over 60 days and 10,000 generated
//! customers, checked email by email against expectations this test computes on its own
//! (with chrono-tz, from the rules the workflows state), and the rehearsal's promises:
//! the real store is not changed, and a bad window or workflow name is a clear error.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::common::write;
use crate::store::{backends, import_demo, tidings, with_examples, with_store};

const FROM: &str = "2027-02-01T00:00:00Z";
const TO: &str = "2027-04-02T00:00:00Z";
const CUSTOMERS: usize = 10_000;
/// Customers `0..WELCOME` are new: a `customer_created` event in the window.
const WELCOME: usize = 400;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A small deterministic generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ZONES: [Option<Tz>; 7] = [
    None,
    Some(Tz::America__Los_Angeles),
    Some(Tz::America__New_York),
    Some(Tz::Europe__Berlin),
    Some(Tz::Asia__Kolkata),
    Some(Tz::Asia__Tokyo),
    Some(Tz::Australia__Sydney),
];

struct Person {
    id: String,
    email: String,
    zone: Option<Tz>,
    birthday: Option<NaiveDate>,
    orders: i64,
    last_order: Option<DateTime<Utc>>,
    unsubscribed: Option<DateTime<Utc>>,
}

struct Happening {
    who: usize,
    name: &'static str,
    at: DateTime<Utc>,
    /// Whether it places a first order (sets `orders_count` and `last_order_at`).
    orders: bool,
}

/// One expected email: workflow, step, recipient, send time.
type Mail = (String, String, String, DateTime<Utc>);

fn population() -> (Vec<Person>, Vec<Happening>) {
    let (from, to) = (t(FROM), t(TO));
    let span = (to - from).num_seconds() as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut people = Vec::new();
    let mut events = Vec::new();
    for i in 0..CUSTOMERS {
        let birthday = if i % 500 == 7 {
            NaiveDate::from_ymd_opt([1996, 2000, 2004][i % 3], 2, 29)
        } else if i % 11 == 5 {
            None
        } else {
            NaiveDate::from_ymd_opt(1970 + rng.below(36) as i32, 1, 1)
                .map(|d| d + TimeDelta::days(rng.below(365) as i64))
        };
        let mut p = Person {
            id: format!("c{i:05}"),
            email: format!("user{i}@example.com"),
            zone: ZONES[i % ZONES.len()],
            birthday,
            orders: 0,
            last_order: None,
            unsubscribed: (i % 97 == 0).then(|| t("2026-12-01T12:00:00Z")),
        };
        if i < WELCOME {
            // New customers: created in the window; some order, some unsubscribe.
            let at = from + TimeDelta::seconds(rng.below(span) as i64);
            events.push(Happening {
                who: i,
                name: "customer_created",
                at,
                orders: false,
            });
            if i % 8 == 1 {
                events.push(Happening {
                    who: i,
                    name: "order_placed",
                    at: at + TimeDelta::days(3),
                    orders: true,
                });
            }
            if i % 8 == 2 {
                events.push(Happening {
                    who: i,
                    name: "unsubscribed",
                    at: at + TimeDelta::days(1),
                    orders: false,
                });
                if i % 16 == 2 {
                    // Transactional mail still reaches an unsubscribed customer.
                    events.push(Happening {
                        who: i,
                        name: "order_placed",
                        at: at + TimeDelta::days(4),
                        orders: true,
                    });
                }
            }
        } else if i < WELCOME + 50 {
            // Created, but already a buyer: outside the welcome audience.
            p.orders = 2;
            p.last_order = Some(from - TimeDelta::days(10));
            events.push(Happening {
                who: i,
                name: "customer_created",
                at: from + TimeDelta::seconds(rng.below(span) as i64),
                orders: false,
            });
        } else {
            p.orders = rng.below(5) as i64;
            if p.orders > 0 {
                p.last_order = Some(
                    from - TimeDelta::days(1 + rng.below(200) as i64)
                        - TimeDelta::seconds(rng.below(86_400) as i64),
                );
            }
            if (500..800).contains(&i) {
                let at = from + TimeDelta::seconds(rng.below(span) as i64);
                events.push(Happening {
                    who: i,
                    name: "order_delivered",
                    at,
                    orders: false,
                });
                if i % 3 == 0 {
                    events.push(Happening {
                        who: i,
                        name: "review_submitted",
                        at: at + TimeDelta::days(2),
                        orders: false,
                    });
                }
            }
        }
        people.push(p);
    }
    (people, events)
}

fn local(zone: Option<Tz>, date: NaiveDate, hour: u32) -> DateTime<Utc> {
    zone.unwrap_or(Tz::UTC)
        .from_local_datetime(&date.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap()))
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// What the shipped workflows say should happen, computed from their rules directly.
fn expected(people: &[Person], events: &[Happening]) -> BTreeSet<Mail> {
    let (from, to) = (t(FROM), t(TO));
    let in_window = |at: DateTime<Utc>| at >= from && at <= to;
    let mut mails = BTreeSet::new();
    let mut mail = |w: &str, s: &str, p: &Person, at: DateTime<Utc>| {
        mails.insert((w.to_string(), s.to_string(), p.email.clone(), at));
    };
    for (i, p) in people.iter().enumerate() {
        let mine = || events.iter().filter(move |e| e.who == i);
        let unsubscribed = mine()
            .filter(|e| e.name == "unsubscribed")
            .map(|e| e.at)
            .chain(p.unsubscribed)
            .min();
        let consents = |at: DateTime<Utc>| unsubscribed.is_none_or(|u| u > at);
        let first_order = mine().filter(|e| e.orders).map(|e| e.at).min();
        let orders_at =
            |at: DateTime<Utc>| p.orders + i64::from(first_order.is_some_and(|o| o <= at));
        let last_order_at = |at: DateTime<Utc>| match first_order {
            Some(o) if o <= at => Some(o),
            _ => p.last_order,
        };

        // birthday-offer: 09:00 local on the birthday; Feb 29 is Feb 28 in 2027.
        if let Some(b) = p.birthday {
            let day = NaiveDate::from_ymd_opt(2027, b.month(), b.day())
                .unwrap_or_else(|| NaiveDate::from_ymd_opt(2027, 2, 28).unwrap());
            let fire = local(p.zone, day, 9);
            if in_window(fire) && consents(fire) {
                mail("birthday-offer", "gift", p, fire);
            }
        }

        // welcome-series: hello, tips after 2 days, the offer after 7; stops at an order.
        for created in mine().filter(|e| e.name == "customer_created") {
            if orders_at(created.at) != 0 {
                continue;
            }
            for (step, after) in [("hello", 0), ("tips", 2), ("first-order-offer", 7)] {
                let at = created.at + TimeDelta::days(after);
                if !in_window(at) || !consents(at) || orders_at(at) > 0 {
                    break;
                }
                mail("welcome-series", step, p, at);
            }
        }

        // post-purchase-thank-you: transactional, at every order.
        for order in mine().filter(|e| e.name == "order_placed" && in_window(e.at)) {
            mail("post-purchase-thank-you", "thanks", p, order.at);
        }

        // reactivation-deal: Mondays 10:00 Berlin, for buyers 91+ days since the last order.
        let mut monday = NaiveDate::from_ymd_opt(2027, 2, 1).unwrap();
        while monday <= to.date_naive() {
            let fire = local(Some(Tz::Europe__Berlin), monday, 10);
            monday += TimeDelta::days(7);
            let lapsed = last_order_at(fire)
                .is_some_and(|o| (fire - o).num_seconds().div_euclid(86_400) > 90);
            if !in_window(fire) || orders_at(fire) < 1 || !lapsed || !consents(fire) {
                continue;
            }
            // A tenth, by the hash of customer and workflow, is the holdout: entered, no mail.
            if tidings::workflow::plan::held_out(0.10, &p.id, "reactivation-deal") {
                break;
            }
            mail("reactivation-deal", "deal", p, fire);
            let later = fire + TimeDelta::days(7);
            if in_window(later) && consents(later) && orders_at(later) == orders_at(fire) {
                mail("reactivation-deal", "last-chance", p, later);
            }
            break; // re-entry only after 180 days
        }

        // nps-survey: Tuesdays 10:00 in the customer's own zone, for buyers of 3+ orders,
        // the latest within 60 days; once (re-entry after 180 days). Nobody reads a
        // rehearsal's email, so nobody answers, and no promoter email follows.
        let mut tuesday = NaiveDate::from_ymd_opt(2027, 1, 26).unwrap();
        while tuesday <= to.date_naive() + TimeDelta::days(1) {
            let fire = local(p.zone, tuesday, 10);
            tuesday += TimeDelta::days(7);
            let recent = last_order_at(fire)
                .is_some_and(|o| (fire - o).num_seconds().div_euclid(86_400) <= 60);
            if !in_window(fire) || orders_at(fire) < 3 || !recent || !consents(fire) {
                continue;
            }
            mail("nps-survey", "ask", p, fire);
            break;
        }

        // review-request: 7 days after delivery, unless a review came in.
        for delivered in mine().filter(|e| e.name == "order_delivered") {
            let at = delivered.at + TimeDelta::days(7);
            let reviewed = mine().any(|e| e.name == "review_submitted" && e.at <= at);
            if in_window(at) && !reviewed && consents(at) {
                mail("review-request", "ask", p, at);
            }
        }
    }
    mails
}

fn customers_csv(people: &[Person]) -> String {
    let names = ["Ada", "健", "Priya", "伟", "Zoë"];
    let mut s = String::from(
        "id,email,first_name,locale,timezone,birthday,orders_count,last_order_at,unsubscribed_at\n",
    );
    for (i, p) in people.iter().enumerate() {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{}",
            p.id,
            p.email,
            names[i % names.len()],
            ["en", "ja-JP", "hi-IN", "zh-CN"][i % 4],
            p.zone.map(|z| z.name()).unwrap_or(""),
            p.birthday.map(|b| b.to_string()).unwrap_or_default(),
            p.orders,
            p.last_order.map(|o| o.to_rfc3339()).unwrap_or_default(),
            p.unsubscribed.map(|u| u.to_rfc3339()).unwrap_or_default(),
        );
    }
    s
}

fn events_jsonl(people: &[Person], events: &[Happening]) -> String {
    let mut s = String::new();
    for e in events {
        let mut line = serde_json::json!({
            "customer_id": people[e.who].id,
            "name": e.name,
            "at": e.at.to_rfc3339(),
        });
        if e.orders {
            line["set"] = serde_json::json!({
                "orders_count": people[e.who].orders + 1,
                "last_order_at": e.at.to_rfc3339(),
            });
        }
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s
}

/// The (workflow, step, recipient, Date) of each `.eml` file in a folder.
fn written(dir: &std::path::Path) -> BTreeSet<Mail> {
    let mut mails = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("{} has no {name}", path.display()))
                .to_string()
        };
        // Every written email has its own body, rendered for its customer (a rehearsal
        // that writes nowhere renders only the first of each step).
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        assert!(
            body.contains("text/html") && body.len() > 200,
            "{} has no body",
            path.display()
        );
        let date = DateTime::parse_from_rfc2822(&header("Date"))
            .unwrap()
            .with_timezone(&Utc);
        let inserted = mails.insert((
            header("X-Tidings-Workflow"),
            header("X-Tidings-Step"),
            header("To"),
            date,
        ));
        assert!(inserted, "{} duplicates another email", path.display());
    }
    mails
}

fn describe(mails: &[&Mail]) -> String {
    mails
        .iter()
        .take(10)
        .map(|(w, s, to, at)| format!("  {w}/{s} to {to} at {}\n", at.to_rfc3339()))
        .collect()
}

/// The acceptance rehearsal: 10,000 customers in seven zones (one of them no zone at
/// all), 60 days that include Feb 28 in a common year and two DST changes, new customers
/// who order or unsubscribe in the middle of the welcome series, reviews that cancel the
/// review request, and buyers lapsing into the reactivation deal week by week.
#[test]
fn sixty_days_of_the_shipped_examples_match_the_rules() {
    let b = backends("rehearsal").remove(0); // SQLite; the copy from PostgreSQL is tested below
    with_examples(&b);
    let (people, events) = population();
    write(&b.dir, "customers.csv", &customers_csv(&people));
    write(&b.dir, "events.jsonl", &events_jsonl(&people, &events));
    for (kind, file) in [("customers", "customers.csv"), ("events", "events.jsonl")] {
        let run = tidings(&b).args(["import", kind, file]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    let run = tidings(&b)
        .args(["simulate", "--from", FROM, "--to", TO, "--out", "rehearsal"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());

    let want = expected(&people, &events);
    let got = written(&b.dir.join("rehearsal"));
    let missing: Vec<&Mail> = want.difference(&got).collect();
    let extra: Vec<&Mail> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected emails missing, e.g.\n{}{} unexpected, e.g.\n{}",
        missing.len(),
        describe(&missing),
        extra.len(),
        describe(&extra)
    );
    // The scenario must exercise what it claims to, or the comparison proves little.
    let count = |w: &str, s: &str| want.iter().filter(|m| m.0 == w && m.1 == s).count();
    for (w, s, at_least) in [
        ("birthday-offer", "gift", 1_000),
        ("welcome-series", "hello", 350),
        ("welcome-series", "first-order-offer", 100),
        ("reactivation-deal", "deal", 1_000),
        ("reactivation-deal", "last-chance", 500),
        ("review-request", "ask", 100),
        ("post-purchase-thank-you", "thanks", 50),
        ("nps-survey", "ask", 500),
    ] {
        assert!(count(w, s) >= at_least, "{w}/{s}: only {}", count(w, s));
    }
    let feb29: Vec<&Mail> = want
        .iter()
        .filter(|m| m.0 == "birthday-offer" && m.3.month() == 2 && m.3.day() >= 27)
        .collect();
    assert!(!feb29.is_empty());
    let summary = std::fs::read_to_string(b.dir.join("rehearsal/summary.csv")).unwrap();
    assert!(summary.starts_with("day,workflow,emails,skipped,failed,webhooks\n"));
    let total: u64 = summary
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total as usize, want.len(), "summary.csv: {summary}");
    // Without `--out`, bodies are rendered for the first email of each step only and no
    // message is built: what the rehearsal finds is the same.
    let quiet = tidings(&b)
        .args(["simulate", "--from", FROM, "--to", TO])
        .run();
    assert_eq!(quiet.code, 0, "{}", quiet.transcript());
    let findings = |out: &str| {
        out.split("\n\n")
            .filter(|p| !p.contains(" written to "))
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    assert_eq!(
        findings(&quiet.stdout).trim_end(),
        findings(&run.stdout).trim_end()
    );
    assert!(
        run.stdout.contains(&format!(
            "over a copy of {CUSTOMERS} customers and {} events",
            events.len()
        )),
        "{}",
        run.stdout
    );

    // The real store was not touched: no journeys, every event still waiting.
    with_store(&b, async |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        for (sql, want) in [
            ("SELECT COUNT(*) FROM enrollments", 0),
            ("SELECT COUNT(*) FROM deliveries", 0),
            (
                "SELECT COUNT(*) FROM events WHERE processed_at IS NULL",
                events.len() as i64,
            ),
        ] {
            let n: i64 = sqlx::query(sql).fetch_one(&mut *conn).await.unwrap().get(0);
            assert_eq!(n, want, "{sql}");
        }
    });
}

/// The rehearsal copies the real store, whichever it is, and leaves it as it was; the
/// summary tells the story per day and per workflow; a workflow can be singled out.
#[test]
fn simulate_copies_either_store_and_leaves_it_alone() {
    for b in backends("simulate-demo") {
        with_examples(&b);
        import_demo(&b, "customers");
        import_demo(&b, "events");
        // A pass in the real store first: the rehearsal continues its journeys.
        crate::store::pass(&b, "2026-06-01T08:00:00Z");
        let before = crate::store::outbox(&b);
        let run = tidings(&b)
            .args([
                "simulate",
                "--from",
                "2026-06-01T08:00:00Z",
                "--to",
                "2026-06-10",
            ])
            .run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        assert_eq!(crate::store::outbox(&b), before, "{}", b.label);
        // c1's welcome series continues in the rehearsal: tips on Jun 3, the offer on Jun 8.
        let table = run.stdout.split("emails per day (UTC)").nth(1).unwrap();
        for day in ["2026-06-03", "2026-06-08"] {
            let row = table.lines().find(|l| l.starts_with(day)).unwrap();
            assert!(row.split_whitespace().count() > 2, "{}: {row}", b.label);
        }
        assert!(run.stdout.contains("journeys"), "{}", run.stdout);

        let run = tidings(&b)
            .args([
                "simulate",
                "--from",
                "2026-06-01",
                "--to",
                "2026-06-03",
                "--workflow",
                "birthday-offer",
                "--out",
                "only-birthdays",
            ])
            .run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        let files = written(&b.dir.join("only-birthdays"));
        assert!(!files.is_empty());
        assert!(files.iter().all(|m| m.0 == "birthday-offer"), "{files:?}");
    }
}

#[test]
fn an_unknown_workflow_or_a_backwards_window_is_a_clear_error() {
    let b = backends("simulate-errors").remove(0);
    with_examples(&b);
    let run = tidings(&b)
        .args([
            "simulate",
            "--to",
            "2030-01-01",
            "--workflow",
            "welcome-serie",
        ])
        .run();
    assert_eq!(run.code, 2, "a usage error");
    assert_eq!(
        run.stderr.trim(),
        "error: no workflow named `welcome-serie`; did you mean `welcome-series`?"
    );
    let run = tidings(&b)
        .args(["simulate", "--from", "2026-03-01", "--to", "2026-02-01"])
        .run();
    assert_eq!(run.code, 2, "a usage error");
    assert!(
        run.stderr
            .contains("--to (2026-02-01) is before --from (2026-03-01)"),
        "{}",
        run.stderr
    );
    let run = tidings(&b).args(["simulate", "--to", "next tuesday"]).run();
    assert_eq!(run.code, 2, "a usage error");
    assert!(
        run.stderr
            .contains("`next tuesday` is not a date or a time"),
        "{}",
        run.stderr
    );
}

/// The rehearsal's copy names every column of every table it copies: a migration that adds
/// a column without teaching the copy about it fails here, not in a marketer's rehearsal.
#[test]
fn the_copy_knows_every_column() {
    for b in backends("copy-columns") {
        with_store(&b, async |s| {
            for (table, columns) in tidings::store::copy::copied_columns() {
                let actual = tidings::store::copy::table_columns(s, table).await.unwrap();
                assert_eq!(actual, columns, "{}: {table}", b.label);
            }
        });
    }
}

/// After the quickstart's passes, a rehearsal of a window the store already ran counts
/// only what the rehearsal does: what the store sent there is shown apart, `--workflow`
/// holds in every table, and the files it says it wrote are the files in the folder.
#[test]
fn a_window_the_store_already_ran_is_not_counted_as_rehearsed() {
    let b = backends("simulate-ran").remove(0);
    with_examples(&b);
    import_demo(&b, "customers");
    import_demo(&b, "events");
    for now in [
        "2026-06-01T08:00:00Z",
        "2026-06-03T10:00:00Z",
        "2026-06-09T10:00:00Z",
    ] {
        crate::store::pass(&b, now);
    }
    let sent_welcomes = crate::store::outbox(&b)
        .0
        .iter()
        .filter(|d| d.workflow == "welcome-series" && d.state == "sent")
        .count();
    assert!(sent_welcomes > 0);
    let out = b.dir.join("rehearsal");
    let run = tidings(&b)
        .args([
            "simulate",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-10",
            "--workflow",
            "welcome-series",
            "--out",
            out.to_str().unwrap(),
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    for other in [
        "birthday-offer",
        "reactivation-deal",
        "review-request",
        "post-purchase-thank-you",
    ] {
        assert!(!run.stdout.contains(other), "{other} in {}", run.stdout);
    }
    assert!(
        run.stdout.contains(&format!(
            "already sent by the store in this window, not rehearsed: {sent_welcomes} email{} (welcome-series {sent_welcomes})",
            if sent_welcomes == 1 { "" } else { "s" }
        )),
        "{}",
        run.stdout
    );
    let files = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    let said = run
        .stdout
        .lines()
        .find_map(|l| {
            l.split_once(" email")
                .filter(|(_, rest)| rest.contains("written to"))
        })
        .map(|(n, _)| n.trim().parse::<usize>().unwrap())
        .unwrap_or_else(|| panic!("no count of written files in {}", run.stdout));
    assert_eq!(said, files, "{}", run.stdout);
}

/// The rehearsal's clock stops at every UTC midnight when there are stages: a daemon sweeps
/// them just after midnight, so a customer who lapses with time alone is mailed by a
/// `stage_entered` workflow at 00:00, not at whatever moment the next pass would come.
#[test]
fn a_customer_who_lapses_with_time_alone_is_mailed_at_midnight() {
    let b = backends("simulate-midnight").remove(0);
    with_examples(&b);
    std::fs::copy(
        crate::common::repo_root().join("stages.yaml"),
        b.dir.join("stages.yaml"),
    )
    .unwrap();
    write(
        &b.dir,
        "workflows/lapsed-winback.yaml",
        "name: lapsed-winback\ntrigger:\n  stage_entered: lapsed\nsteps:\n\
         \x20 - id: offer\n    email: reactivation/deal\n    subject: We miss you\n\
         \x20   coupon: { prefix: MISSYOU, valid_for: 14d }\n",
    );
    // 180 days after the last order end on Jun 30 at 12:00; `days_since` counts whole
    // days, so the rule holds from Jul 2 00:00.
    write(
        &b.dir,
        "c.csv",
        "id,email,first_name,timezone,orders_count,last_order_at\n\
         ada,ada@example.com,Ada,Asia/Tokyo,2,2026-01-01T12:00:00Z\n",
    );
    let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let run = tidings(&b)
        .args([
            "simulate",
            "--from",
            "2026-06-28T12:00:00Z",
            "--to",
            "2026-07-05",
        ])
        .args(["--workflow", "lapsed-winback", "--out", "mail"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let names: Vec<String> = std::fs::read_dir(b.dir.join("mail"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}\n{}", run.stdout);
    assert!(
        names[0].starts_with("20260702T000000-lapsed-winback-"),
        "{names:?}"
    );
}
