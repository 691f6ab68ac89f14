//! `tidings enroll`: a journey deployed today takes the customers it would have taken had
//! it been running, on both stores. An event-triggered one replays its trigger's events,
//! each customer entering as of their own event (so a "14 days after the order" email
//! goes on each buyer's fourteenth day, and reads the event); `--dry-run` writes nothing;
//! a second run and the live trigger enroll nobody twice; a workflow started by a schedule
//! takes the customers an audience keeps, as of `--as-of`.

use crate::common::write;
use crate::store::{Backend, backends, tidings};

fn project(b: &Backend) {
    write(&b.dir, "tidings.yaml", "database: ${TIDINGS_DB}\n");
    write(
        &b.dir,
        "customers.csv",
        "id,email,orders_count\nada,ada@example.com,1\nbob,bob@example.com,1\ncy,cy@example.com,1\ndee,dee@example.com,0\n",
    );
    let run = tidings(b)
        .args(["import", "customers", "customers.csv"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    for (customer, at, total) in [
        ("cy", "2026-10-01T09:00:00Z", "81"),
        ("ada", "2026-11-20T09:00:00Z", "42"),
        ("bob", "2026-11-27T09:00:00Z", "17"),
    ] {
        let data = format!("{{\"total\": {total}}}");
        let run = tidings(b)
            .args([
                "event",
                "order_placed",
                "--customer",
                customer,
                "--at",
                at,
                "--data",
                &data,
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    // The events are processed by a pass that has no workflow for them yet.
    pass(b, "2026-11-30T12:00:00Z");
    write(
        &b.dir,
        "templates/how-is-it.html",
        "<p>How is your order of {{ event.properties.total }}?</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        &b.dir,
        "workflows/how-is-it.yaml",
        "name: how-is-it\ntrigger:\n  event: order_placed\nreentry: always\nsteps:\n  - wait: 14d\n  - email: how-is-it\n    subject: How is it?\n",
    );
}

fn pass(b: &Backend, at: &str) -> String {
    let run = tidings(b).args(["run", "--once", "--now", at]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    run.stdout
}

fn enroll(b: &Backend, args: &[&str]) -> crate::common::Run {
    let mut all = vec!["enroll"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--now", "2026-11-30T12:00:00Z"]);
    tidings(b).args(all).run()
}

/// The emails written to the default folder transport, as text.
fn mails(b: &Backend) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(b.dir.join("out/mail")) else {
        return Vec::new();
    };
    dir.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

#[test]
fn a_backfill_replays_past_events_each_as_of_its_own_time() {
    for b in backends("backfill-events") {
        project(&b);
        let since = ["how-is-it", "--since", "2026-11-15"];

        // `plan` says who a backfill of the new workflow would take (the last 30 days).
        let run = tidings(&b)
            .args(["plan", "--now", "2026-11-30T12:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(
            run.stdout.contains(
                "- `how-is-it`: 2 customers of the last 30 days' `order_placed` events would enter — `tidings enroll how-is-it --since 2026-10-31 --dry-run` lists them."
            ),
            "{}",
            run.stdout
        );

        // The plan: who would enter, as of their order; nothing written.
        let mut dry = since.to_vec();
        dry.push("--dry-run");
        let run = enroll(&b, &dry);
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(
            run.stdout.starts_with(
                "dry run: 2 of 2 `order_placed` events since 2026-11-15T00:00:00Z would enter `how-is-it`"
            ),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("  ada  as of 2026-11-20T09:00:00Z"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("  bob  as of 2026-11-27T09:00:00Z"));
        assert!(!run.stdout.contains("cy"), "{}", run.stdout);
        let status = tidings(&b).args(["status", "--json"]).run();
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let entered = |s: &serde_json::Value| {
            s["workflows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["workflow"] == "how-is-it")
                .map_or(0, |w| {
                    let journeys = w["journeys"].as_object().unwrap();
                    journeys.values().filter_map(|n| n.as_u64()).sum::<u64>()
                })
        };
        assert_eq!(entered(&status), 0, "a dry run wrote: {status}");

        let run = enroll(&b, &since);
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(
            run.stdout
                .starts_with("enrolled 2 customers into `how-is-it` from 2 `order_placed` events"),
            "{}",
            run.stdout
        );
        // Again: nobody twice, though the journey takes a customer again on a new order:
        // the enrollment is keyed by its event.
        let run = enroll(&b, &since);
        assert!(
            run.stdout.starts_with("enrolled 0 customers")
                && run.stdout.contains("(2 already enrolled by that trigger"),
            "{}",
            run.stdout
        );

        // The next pass moves them on from their entry: each waits until their own
        // fourteenth day, and gets their own event in the email.
        pass(&b, "2026-11-30T12:05:00Z");
        assert!(mails(&b).is_empty(), "{}", b.label);
        pass(&b, "2026-12-04T10:00:00Z");
        let sent = mails(&b);
        assert_eq!(sent.len(), 1, "{}: {sent:?}", b.label);
        assert!(sent[0].contains("To: ada@example.com"), "{}", sent[0]);
        assert!(sent[0].contains("How is your order of 42?"), "{}", sent[0]);
        pass(&b, "2026-12-11T10:00:00Z");
        let sent = mails(&b);
        assert_eq!(sent.len(), 2, "{}", b.label);
        assert!(sent.iter().any(|m| m.contains("How is your order of 17?")));

        // The live trigger meets a backfilled event: nothing twice.
        let status = tidings(&b).args(["status", "--json"]).run();
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(entered(&status), 2, "{status}");
    }
}

#[test]
fn a_backfill_by_audience_and_its_usage_errors() {
    for b in backends("backfill-audience") {
        project(&b);
        write(
            &b.dir,
            "templates/news.html",
            "<p>News</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        );
        write(
            &b.dir,
            "workflows/news.yaml",
            "name: news\ntrigger:\n  schedule: \"0 9 1 * *\"\naudience: customer.orders_count >= 1\nsteps:\n  - email: news\n    subject: News\n",
        );
        let run = enroll(
            &b,
            &[
                "news",
                "--audience",
                "customer.email != \"bob@example.com\"",
                "--as-of",
                "2026-11-30T09:00:00Z",
            ],
        );
        assert_eq!(run.code, 0, "{}", run.transcript());
        // ada and cy: the workflow's own audience leaves dee out (in the query: 3 read),
        // the backfill's bob.
        assert!(
            run.stdout
                .starts_with("enrolled 2 customers into `news` from 3 customers"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("  ada  as of 2026-11-30T09:00:00Z"));
        assert!(run.stdout.contains("  cy  as of 2026-11-30T09:00:00Z"));
        pass(&b, "2026-11-30T12:00:00Z");
        let sent = mails(&b);
        assert_eq!(sent.len(), 2, "{}: {sent:?}", b.label);

        for (args, says) in [
            (vec!["how-is-it"], "give `--since DATE`"),
            (vec!["news"], "choose who enters with `--audience EXPR`"),
            (vec!["news", "--since", "2026-11-01"], "no events to replay"),
            (
                vec!["nope", "--since", "2026-11-01"],
                "no workflow named `nope`",
            ),
            (
                vec!["news", "--audience", "customer.nonsense > 1"],
                "--audience",
            ),
            (
                vec!["how-is-it", "--since", "last week"],
                "--since: `last week` is not a time",
            ),
        ] {
            let run = enroll(&b, &args);
            assert_eq!(run.code, 2, "{args:?}: {}", run.transcript());
            assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        }
    }
}
