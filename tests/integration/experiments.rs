//! Experiments on both stores: a 50/50 split over 2,000 customers (each side within 45–55%,
//! and a rehearsal, a second pass in another process and a re-entry all assign every
//! customer the same variant), a holdout that enters and gets nothing, goals credited by
//! last touch, and `tidings results` whose counts, revenue and intervals are checked
//! against numbers computed here.

use std::collections::BTreeMap;

use crate::common::write;
use crate::store::{Backend, backends, tidings, with_store};

const T0: &str = "2026-06-01T08:00:00Z";

fn run_once(b: &Backend, now: &str) {
    let run = tidings(b).args(["run", "--once", "--now", now]).run();
    assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
}

fn import(b: &Backend, kind: &str, file: &str, text: &str) {
    write(&b.dir, file, text);
    let run = tidings(b).args(["import", kind, file]).run();
    assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
}

fn enrollment_variants(b: &Backend, after: &str) -> BTreeMap<String, String> {
    let at = chrono::DateTime::parse_from_rfc3339(after)
        .unwrap()
        .timestamp_millis();
    with_store(b, async move |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        sqlx::query("SELECT customer_id, variant FROM enrollments WHERE entered_at >= $1")
            .bind(at)
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get::<Option<String>, _>(1).unwrap_or_default()))
            .collect()
    })
}

/// Each `.eml` file's recipient and `X-Tidings-Variant`.
fn written_variants(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let m = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let to = m
            .to()
            .unwrap()
            .first()
            .unwrap()
            .address()
            .unwrap()
            .to_string();
        let id = to.trim_end_matches("@example.com").to_string();
        let variant = m
            .header_raw("X-Tidings-Variant")
            .unwrap()
            .trim()
            .to_string();
        out.insert(id, variant);
    }
    out
}

const SPLIT: &str = "name: split-test
trigger:
  event: signed_up
reentry: always
steps:
  - split:
      name: subject-test
      variants:
        - { name: a, weight: 50, steps: [ { id: hello-a, email: hello, subject: Hello } ] }
        - { name: b, weight: 50, steps: [ { id: hello-b, email: hello, subject: Hi there } ] }
";

#[test]
fn a_split_assigns_each_customer_one_variant_everywhere() {
    for b in backends("experiments-split") {
        write(&b.dir, "workflows/split-test.yaml", SPLIT);
        write(
            &b.dir,
            "templates/hello.html",
            "<p>Hello</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        );
        let ids: Vec<String> = (1..=2000).map(|i| format!("c{i}")).collect();
        let customers: String = std::iter::once("id,email\n".to_string())
            .chain(ids.iter().map(|id| format!("{id},{id}@example.com\n")))
            .collect();
        import(&b, "customers", "customers.csv", &customers);
        let events = |at: &str| -> String {
            std::iter::once("customer_id,name,at\n".to_string())
                .chain(ids.iter().map(|id| format!("{id},signed_up,{at}\n")))
                .collect()
        };
        import(&b, "events", "first.csv", &events(T0));

        // `plan` says how soon the split has its sample, at the week's pace: 2,000 entries
        // in the week, about 1,000 an arm, so a day to 100 each.
        let run = tidings(&b)
            .args(["plan", "--now", T0, "--format", "json"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let experiment = &plan["workflows"][0]["experiment"];
        let a = experiment["arms_7d"]["subject-test/a"].as_u64().unwrap();
        let b_arm = experiment["arms_7d"]["subject-test/b"].as_u64().unwrap();
        assert_eq!(a + b_arm, 2000, "{}: {plan:#}", b.label);
        assert_eq!(experiment["days_to_minimum"], 1, "{plan:#}");

        // The rehearsal: it assigns without writing to the store.
        let run = tidings(&b)
            .args([
                "simulate",
                "--from",
                T0,
                "--to",
                "2026-06-01T09:00:00Z",
                "--out",
                "rehearsal",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(
            run.stdout.contains("split-test/subject-test"),
            "{}",
            run.stdout
        );
        // The rehearsal counts what it can, emails per step, and says what it cannot.
        assert!(
            run.stdout
                .contains("emails per step (clicks, opens and answers come only from real sends")
                && run.stdout.contains("split-test/hello-a"),
            "{}",
            run.stdout
        );
        let rehearsed = written_variants(&b.dir.join("rehearsal"));
        assert_eq!(rehearsed.len(), 2000, "{}", b.label);

        run_once(&b, "2026-06-01T08:30:00Z");
        let first = enrollment_variants(&b, T0);
        assert_eq!(first.len(), 2000);
        let a = first.values().filter(|v| *v == "subject-test/a").count();
        let b_count = first.values().filter(|v| *v == "subject-test/b").count();
        assert_eq!(a + b_count, 2000);
        assert!(
            (900..=1100).contains(&a),
            "{}: {a} of 2,000 in `a`",
            b.label
        );
        assert_eq!(rehearsed, first, "{}: the rehearsal agrees", b.label);
        let sent = written_variants(&b.dir.join("out/mail"));
        assert_eq!(sent, first, "{}: every email says its variant", b.label);

        // Everyone enters again, taken by another process (on PostgreSQL, as a replica
        // would): the same variant each.
        import(&b, "events", "again.csv", &events("2026-06-02T08:00:00Z"));
        run_once(&b, "2026-06-02T08:30:00Z");
        let again = enrollment_variants(&b, "2026-06-02T00:00:00Z");
        assert_eq!(again, first, "{}: a re-entry agrees", b.label);
    }
}

const DEAL: &str = "name: deal
trigger:
  event: lapsed
holdout: 10%
goal: { event: order_placed, within: 7d, value: event.properties.total }
steps:
  - id: offer
    email: hello
    subject: Come back
    coupon: { prefix: BACK, valid_for: 30d }
  - wait: 10d
  - if: redeemed(\"offer\")
    then:
      - exit: redeemed
  - id: reminder
    email: hello
    subject: Your code is waiting
";

const OTHER: &str = "name: other
trigger:
  event: asked
goal: { event: order_placed, within: 7d, value: event.properties.total }
steps:
  - id: note
    email: hello
    subject: A note
";

/// Independent of the product: the Wilson score interval at 95%.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z: f64 = 1.959_963_984_540_054;
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (centre - half, centre + half)
}

#[test]
fn holdouts_goals_and_results_add_up() {
    for b in backends("experiments-results") {
        write(&b.dir, "workflows/deal.yaml", DEAL);
        write(&b.dir, "workflows/other.yaml", OTHER);
        write(
            &b.dir,
            "templates/hello.html",
            "<p>Hello</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        );
        let ids: Vec<String> = (1..=400).map(|i| format!("c{i}")).collect();
        let customers: String = std::iter::once("id,email\n".to_string())
            .chain(ids.iter().map(|id| format!("{id},{id}@example.com\n")))
            .collect();
        import(&b, "customers", "customers.csv", &customers);
        let lapsed: String = std::iter::once("customer_id,name,at\n".to_string())
            .chain(ids.iter().map(|id| format!("{id},lapsed,{T0}\n")))
            .collect();
        import(&b, "events", "lapsed.csv", &lapsed);
        run_once(&b, T0);

        let held: Vec<&String> = ids
            .iter()
            .filter(|id| tidings::workflow::plan::held_out(0.10, id, "deal"))
            .collect();
        assert!((20..=60).contains(&held.len()), "{} held out", held.len());
        let emailed = crate::daemon::count(
            &b,
            "SELECT COUNT(*) FROM deliveries WHERE workflow = 'deal' AND state = 'sent'",
        );
        assert_eq!(
            emailed as usize,
            400 - held.len(),
            "{}: the holdout gets nothing",
            b.label
        );
        let treated: Vec<&String> = ids.iter().filter(|id| !held.contains(id)).collect();

        // Orders: 2 days after the email (credited), 8 days after (not: the goal is 7d),
        // a holdout's within a week of entry (credited to the holdout), and one after
        // another workflow's later email (credited to that one only).
        let (t2, t3, t4, t8) = (
            "2026-06-03T08:00:00Z",
            "2026-06-04T08:00:00Z",
            "2026-06-05T08:00:00Z",
            "2026-06-09T09:00:00Z",
        );
        import(
            &b,
            "events",
            "asked.csv",
            &format!("customer_id,name,at\n{},asked,{t3}\n", treated[3]),
        );
        run_once(&b, t3);
        let code: String = with_store(&b, async |s| {
            use sqlx::Row;
            let mut conn = s.connection().await.unwrap();
            sqlx::query(
                "SELECT coupon_code FROM deliveries WHERE customer_id = $1 AND workflow = 'deal'",
            )
            .bind(treated[0].as_str())
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0)
        });
        let orders = [
            (treated[0], t2, 40.0),
            (treated[1], t2, 25.5),
            (treated[2], t8, 99.0),
            (held[0], t2, 10.0),
            (treated[3], t4, 70.0),
        ];
        let mut jsonl = String::new();
        for (id, at, total) in orders {
            // The first order uses its deal's coupon; the others none.
            let coupon = if id == treated[0] { code.as_str() } else { "" };
            jsonl.push_str(&format!(
                "{{\"customer_id\": \"{id}\", \"name\": \"order_placed\", \"at\": \"{at}\", \"total\": {total}, \"coupon\": \"{coupon}\"}}\n"
            ));
        }
        import(&b, "events", "orders.jsonl", &jsonl);
        run_once(&b, "2026-06-10T08:00:00Z");

        let run = tidings(&b).args(["results", "--format", "json"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let workflow = |name: &str| {
            doc["workflows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["workflow"] == name)
                .unwrap_or_else(|| panic!("{name} in {doc:#}"))
                .clone()
        };
        let deal = workflow("deal");
        let arm = |variant: serde_json::Value| {
            deal["variants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["variant"] == variant)
                .unwrap()
                .clone()
        };
        let treated_arm = arm(serde_json::Value::Null);
        let control = arm("holdout".into());
        let n = treated.len() as f64;
        assert_eq!(treated_arm["entered"], treated.len(), "{}", b.label);
        assert_eq!(treated_arm["emailed"], treated.len());
        assert_eq!(treated_arm["converted"], 2, "{}: {deal:#}", b.label);
        assert_eq!(treated_arm["revenue"], 65.5);
        assert_eq!(treated_arm["redeemed"], 1, "{}: {deal:#}", b.label);
        assert_eq!(control["entered"], held.len());
        assert_eq!(control["emailed"], 0);
        assert_eq!(
            (control["converted"].clone(), control["revenue"].clone()),
            (1.into(), 10.0.into())
        );
        let (low, high) = wilson(2.0, n);
        let four = |v: &serde_json::Value| (v.as_f64().unwrap() * 1e4).round() / 1e4;
        assert_eq!(four(&treated_arm["ci_low"]), (low * 1e4).round() / 1e4);
        assert_eq!(four(&treated_arm["ci_high"]), (high * 1e4).round() / 1e4);
        assert_eq!(four(&treated_arm["rate"]), (2.0 / n * 1e4).round() / 1e4);
        let per = treated_arm["revenue_per_entered"].as_f64().unwrap();
        assert!((per - 65.5 / n).abs() < 1e-9);
        assert!(treated_arm["lift"]["difference"].is_number());
        // Tiny samples: no winner.
        assert!(
            deal["verdict"]
                .as_str()
                .unwrap()
                .starts_with("too early to call"),
            "{deal:#}"
        );
        // The later touch wins: the order after `other`'s note is `other`'s alone.
        let other = workflow("other");
        assert_eq!(
            other["variants"][0]["converted"], 1,
            "{}: {other:#}",
            b.label
        );
        assert_eq!(other["variants"][0]["revenue"], 70.0);
        assert_eq!(
            crate::daemon::count(&b, "SELECT COUNT(*) FROM conversions"),
            4
        );

        for format in ["table", "markdown"] {
            let run = tidings(&b)
                .args(["results", "deal", "--format", format])
                .run();
            assert_eq!(run.code, 0, "{}", run.transcript());
            assert!(
                run.stdout.contains("holdout") && run.stdout.contains("too early to call"),
                "{}",
                run.stdout
            );
        }
        // The same counts in `status --json`, the report (with interval whiskers) and
        // `/metrics`.
        let status = tidings(&b).args(["status", "--json"]).run();
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let deal_status = status["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workflow"] == "deal")
            .unwrap();
        let held_status = deal_status["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == "holdout")
            .unwrap();
        assert_eq!(held_status["entered"], held.len(), "{status:#}");
        assert_eq!(held_status["converted"], 1);
        let out = b.dir.join("report.html");
        let run = tidings(&b)
            .args([
                "report",
                "--out",
                out.to_str().unwrap(),
                "--now",
                "2026-06-10T08:00:00Z",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let page = std::fs::read_to_string(&out).unwrap();
        let at = page
            .find("data-chart=\"experiment-deal\"")
            .expect("the deal's chart");
        assert!(page[at..].contains("<svg") && page[at..].contains("holdout"));
        if b.label == "sqlite" {
            crate::report::passes_in_a_browser(&out, &["experiment-deal".to_string()]);
        }
        let port = crate::common::free_port();
        let daemon = crate::daemon::Daemon::start(&b, port, "1h");
        let (_, metrics) = crate::daemon::http(port, "GET", "/metrics", &[], b"");
        let line = format!(
            "tidings_experiment_journeys{{workflow=\"deal\",variant=\"holdout\"}} {}",
            held.len()
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
        assert!(
            metrics.contains("tidings_experiment_revenue{workflow=\"deal\",variant=\"none\"} 65.5"),
            "{metrics}"
        );
        daemon.stop();

        // Journeys that entered since a later day: none.
        let run = tidings(&b)
            .args(["results", "--since", "2026-06-02", "--format", "json"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let later: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            later["workflows"].as_array().map(Vec::len),
            Some(1),
            "{later:#}"
        );
        assert_eq!(later["workflows"][0]["workflow"], "other");

        // Ten days on, `redeemed("offer")` ends the journey of the customer who used the
        // code; the others get the reminder.
        run_once(&b, "2026-06-12T08:00:00Z");
        let reminded = |id: &str| {
            let id = id.to_string();
            with_store(&b, async move |s| {
                use sqlx::Row;
                let mut conn = s.connection().await.unwrap();
                sqlx::query(
                    "SELECT COUNT(*) FROM deliveries WHERE customer_id = $1 AND step = 'reminder'",
                )
                .bind(id)
                .fetch_one(&mut *conn)
                .await
                .unwrap()
                .get::<i64, _>(0)
            })
        };
        assert_eq!(
            (reminded(treated[0]), reminded(treated[1])),
            (0, 1),
            "{}",
            b.label
        );

        let run = tidings(&b).args(["results", "nonsense"]).run();
        assert_eq!(run.code, 2, "{}", run.transcript());
        assert!(
            run.stderr.contains("no journeys of workflow `nonsense`"),
            "{}",
            run.stderr
        );
    }
}

/// `validate` checks a split's names and weights and that its variants differ, a holdout's
/// share and a goal's parts — all in one run, each at its place.
#[test]
fn validate_checks_splits_holdouts_and_goals() {
    let dir = crate::common::scratch_dir("experiments-validate");
    write(
        &dir,
        "templates/hello.html",
        "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        &dir,
        "workflows/bad.yaml",
        "name: bad
trigger:
  event: signed_up
holdout: 120%
goal: { event: Order-Placed, within: 0d, value: event.properties.total + \"x\" }
steps:
  - split:
      name: holdout
      variants:
        - { name: a, weight: 0, steps: [ { email: hello, subject: Hi } ] }
        - { name: a, weight: 50, steps: [ { email: hello, subject: Hi } ] }
",
    );
    let run = crate::common::Tidings::new()
        .cwd(&dir)
        .args(["validate"])
        .run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "error[bad-holdout]: `120%` is not a holdout share",
        "bad.yaml:4:10",
        "error[bad-event-name]: `Order-Placed` is not an event name",
        "`goal.value` fails for a sample order",
        "error[bad-split]: `holdout` cannot name a split",
        "error[bad-weight]: a weight must be above zero, not 0",
        "error[bad-variant]: variant `a` is named twice",
        "error[same-variants]: variants `a` and `a` do the same thing",
    ] {
        assert!(out.contains(expected), "{expected} in\n{out}");
    }
}

const NUDGE: &str = "name: nudge
trigger:
  event: order_placed
holdout: 10%
goal: { event: order_placed, within: 7d, value: event.properties.total }
steps:
  - wait: 14d
  - id: again
    email: hello
    subject: Time for another?
";

/// Regression (issue 29, item 1): the order that enrolls a customer in an order-triggered
/// workflow converted every holdout journey (100%), and a holdout's window opened at entry
/// while an arm's opened at its email two weeks later. Now the trigger converts nothing and
/// both are measured over the same days: the week after the (would-be) email.
#[test]
fn a_holdout_is_not_converted_by_its_own_trigger() {
    for b in backends("experiments-trigger-goal") {
        write(&b.dir, "workflows/nudge.yaml", NUDGE);
        write(
            &b.dir,
            "templates/hello.html",
            "<p>Hello</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        );
        let ids: Vec<String> = (1..=300).map(|i| format!("c{i}")).collect();
        let customers: String = std::iter::once("id,email\n".to_string())
            .chain(ids.iter().map(|id| format!("{id},{id}@example.com\n")))
            .collect();
        import(&b, "customers", "customers.csv", &customers);
        let (held, treated): (Vec<&String>, Vec<&String>) = ids
            .iter()
            .partition(|id| tidings::workflow::plan::held_out(0.10, id, "nudge"));
        assert!(held.len() >= 3, "{} held out", held.len());
        let order = |id: &str, at: &str, total: f64| {
            format!(
                "{{\"customer_id\": \"{id}\", \"name\": \"order_placed\", \"at\": \"{at}\", \"total\": {total}}}\n"
            )
        };
        let first: String = ids.iter().map(|id| order(id, T0, 20.0)).collect();
        import(&b, "events", "first.jsonl", &first);
        run_once(&b, T0);
        assert_eq!(
            crate::daemon::count(&b, "SELECT COUNT(*) FROM conversions"),
            0,
            "{}: the orders that enrolled them convert nobody",
            b.label
        );

        // Day 3: an order inside the holdout's old entry window but before the arms' email:
        // it counts for no one (the second order enrolls nobody: no re-entry).
        let day3 = "2026-06-04T08:00:00Z";
        let early = [order(held[0], day3, 30.0), order(treated[0], day3, 30.0)].concat();
        import(&b, "events", "early.jsonl", &early);
        run_once(&b, day3);
        // Day 14: the arms' email; day 16: orders from a holdout and an arm both convert.
        run_once(&b, "2026-06-15T08:00:00Z");
        let day16 = "2026-06-17T08:00:00Z";
        let late = [order(held[1], day16, 50.0), order(treated[1], day16, 45.0)].concat();
        import(&b, "events", "late.jsonl", &late);
        run_once(&b, day16);

        let converted: Vec<(String, String)> = with_store(&b, async |s| {
            use sqlx::Row;
            let mut conn = s.connection().await.unwrap();
            sqlx::query(
                "SELECT customer_id, COALESCE(variant, '') FROM conversions ORDER BY customer_id",
            )
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        });
        let mut expected = vec![
            (held[1].to_string(), "holdout".to_string()),
            (treated[1].to_string(), String::new()),
        ];
        expected.sort();
        assert_eq!(converted, expected, "{}", b.label);

        let run = tidings(&b)
            .args(["results", "nudge", "--format", "json"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let variants = doc["workflows"][0]["variants"].as_array().unwrap().clone();
        let control = variants.iter().find(|v| v["variant"] == "holdout").unwrap();
        assert_eq!(control["entered"], held.len(), "{}", b.label);
        assert_eq!(control["converted"], 1, "{}: {control:#}", b.label);
        assert_eq!(control["revenue"], 50.0);
    }
}

/// The same with the email at entry: the holdout's window opens at entry, so only leaving
/// the trigger event out keeps it from converting every holdout journey (and every arm,
/// whose email goes out at the order's own moment).
#[test]
fn the_trigger_converts_nobody_when_the_email_goes_at_entry() {
    for b in backends("experiments-trigger-goal-now") {
        write(
            &b.dir,
            "workflows/thanks.yaml",
            &NUDGE
                .replace("name: nudge", "name: thanks")
                .replace("  - wait: 14d\n", ""),
        );
        write(
            &b.dir,
            "templates/hello.html",
            "<p>Hello</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        );
        let ids: Vec<String> = (1..=200).map(|i| format!("c{i}")).collect();
        let customers: String = std::iter::once("id,email\n".to_string())
            .chain(ids.iter().map(|id| format!("{id},{id}@example.com\n")))
            .collect();
        import(&b, "customers", "customers.csv", &customers);
        let orders: String = std::iter::once("customer_id,name,at,total\n".to_string())
            .chain(ids.iter().map(|id| format!("{id},order_placed,{T0},20\n")))
            .collect();
        import(&b, "events", "orders.csv", &orders);
        run_once(&b, T0);
        run_once(&b, "2026-06-01T09:00:00Z");
        assert!(
            crate::daemon::count(
                &b,
                "SELECT COUNT(*) FROM enrollments WHERE variant = 'holdout'"
            ) > 0,
            "{}",
            b.label
        );
        assert_eq!(
            crate::daemon::count(&b, "SELECT COUNT(*) FROM conversions"),
            0,
            "{}: the orders that enrolled them convert nobody",
            b.label
        );
    }
}
