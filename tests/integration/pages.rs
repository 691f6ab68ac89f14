//! The store works in pages: the work of a pass grows with customers, journeys and emails,
//! but the statements it sends to the database grow with pages of them. The store counts
//! its statements (`--progress`'s line, `/metrics`); these tests hold the count on a fixed
//! scenario that walks every per-journey read there is — a history audience, a topic, a
//! coupon shown again by a later email, an `if`, an update, a wait, an event answered —
//! where one statement per journey or per customer would add hundreds.

use crate::common::write;
use crate::store::{backends, tidings};

/// Customers in the scenario: every one enters, so each page and group is full.
const CUSTOMERS: usize = 600;

/// Statements per journey step the scenario may cost. Journeys move on in groups of 50,
/// customers enter in pages of 500 and the sender claims and records emails in pages, so a
/// group costs about fifteen statements (its claim, customers, consent, pasts, events,
/// coupons, outbox, changed customers and journeys written, the commit) for its ~240
/// steps, and each of the rehearsal's ~50 passes a few more whatever it does (see
/// [`IDLE_PASS_STATEMENTS`]): about 0.35 a step in all. One more statement per journey (a journey here runs 4–5 steps a pass)
/// would add over 0.2 a step, and one per customer entering as much again.
const STATEMENTS_PER_STEP: f64 = 0.45;

fn project(dir: &std::path::Path) {
    write(
        dir,
        "tidings.yaml",
        "database: ${TIDINGS_DB}\ntopics:\n  offers: { en: \"Deals and coupons\" }\n",
    );
    write(
        dir,
        "workflows/pages.yaml",
        "name: pages\ntopic: offers\ntrigger:\n  schedule: \"0 9 * * *\"\n  timezone: UTC\n\
         reentry: always\naudience: event_count(\"page_viewed\", customer.created_at) >= 1\n\
         exit_when: event_count(\"order_placed\", customer.created_at) > 0\n\
         steps:\n\
         \x20 - id: first\n    email: first\n    subject: Hello\n    coupon: { prefix: HI, valid_for: 14d }\n\
         \x20 - if: customer.orders_count >= 1\n    then:\n      - id: tag\n        update: { tags: { add: [seen] } }\n\
         \x20 - id: second\n    email: second\n    subject: \"Your code {{ coupons.first.code }}\"\n\
         \x20 - wait: { for: order_placed, at_most: 1d }\n\
         \x20 - id: third\n    email: second\n    subject: \"Still yours: {{ coupons.first.code }}\"\n",
    );
    for (name, body) in [
        (
            "first",
            "<p>Hi {{ customer.first_name }}: {{ coupon.code }}</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        ),
        (
            "second",
            "<p>{{ coupons.first.code }}</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        ),
    ] {
        write(dir, &format!("templates/{name}.html"), body);
    }
    let mut customers = String::from("id,email,first_name,timezone,orders_count,created_at\n");
    let mut events = String::from("customer_id,name,at\n");
    for i in 0..CUSTOMERS {
        let zone = ["Europe/Berlin", "Asia/Tokyo", "America/New_York"][i % 3];
        let orders = i % 2;
        customers.push_str(&format!(
            "c{i:04},c{i}@example.com,C{i},{zone},{orders},2026-01-01T00:00:00Z\n"
        ));
        events.push_str(&format!(
            "c{i:04},page_viewed,2026-05-{:02}T10:00:00Z\n",
            1 + i % 28
        ));
        if i % 10 == 0 {
            // Answers the wait of one journey in ten, which goes on before its day is up.
            events.push_str(&format!("c{i:04},order_placed,2026-06-01T15:00:00Z\n"));
        }
    }
    write(dir, "customers.csv", &customers);
    write(dir, "events.csv", &events);
}

/// `(steps, statements)` from the last progress line of a run.
fn counts(stderr: &str) -> (u64, u64) {
    let last = stderr.lines().last().unwrap_or_default();
    let number_before = |word: &str| -> u64 {
        let at = last
            .find(word)
            .unwrap_or_else(|| panic!("no `{word}` in {last}"));
        last[..at]
            .trim_end()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before `{word}` in {last}"))
    };
    (number_before(" steps"), number_before(" statements"))
}

/// A rehearsal of two days and a pass of the daemon's own, on each store: statements per
/// journey step stay under the bound, with every customer's journey walked.
#[test]
fn journeys_move_on_in_pages_of_statements() {
    for b in backends("pages") {
        project(&b.dir);
        crate::store::import_both(&b);
        let run = tidings(&b).args(["validate"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b)
            .args(["simulate", "--from", "2026-06-01T08:30:00Z", "--to"])
            .args(["2026-06-03T12:00:00Z", "--progress", "always"])
            .run();
        // Every customer enters three times (09:00 on the 1st, 2nd and 3rd) and walks 4–5
        // steps each time.
        within_bound(b.label, "the rehearsal", &run, 12);
        // The daemon's pass on the store itself (PostgreSQL too): the first day's entry.
        let run = tidings(&b)
            .args(["run", "--once", "--now", "2026-06-01T09:00:00Z"])
            .args(["--progress", "always"])
            .run();
        within_bound(b.label, "the pass", &run, 3);
    }
}

/// A run that walked at least `steps_each` steps per customer, within the bound of
/// statements per step.
fn within_bound(label: &str, what: &str, run: &crate::common::Run, steps_each: u64) {
    assert_eq!(run.code, 0, "{}", run.transcript());
    let (steps, statements) = counts(&run.stderr);
    assert!(
        steps >= steps_each * CUSTOMERS as u64,
        "{steps} steps: {}",
        run.stderr
    );
    let per_step = statements as f64 / steps as f64;
    eprintln!("{label}: {what}, {statements} statements for {steps} steps");
    assert!(
        per_step <= STATEMENTS_PER_STEP,
        "{label}: {what} sent {statements} statements for {steps} steps ({per_step:.3} a step)"
    );
}

/// Statements an idle pass may send, on a shared store. A pass that finds nothing asks
/// once whether anyone is without a stage, which zones customers are in, when the time
/// triggers last fired, whether events or journeys are due, and whether emails are — five
/// statements, plus a share of the `/metrics` reads around the window. Looking for each
/// kind of work by trying to do it (a read of events, a claim of journeys in its own
/// transaction, four claims of emails) and marking every schedule key every pass cost
/// about fourteen.
const IDLE_PASS_STATEMENTS: f64 = 7.0;

/// The daemon on the demo store, once its first passes have sent what the demo starts:
/// statements per pass, from `/metrics`, over passes that find nothing to do.
#[test]
fn an_idle_pass_asks_in_a_few_statements() {
    use crate::common::{Act, SmtpServer, free_port};
    use crate::daemon::{Daemon, http};
    for b in backends("idle-pass") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        crate::smtp::project(&b, server.port, "");
        let port = free_port();
        let daemon = Daemon::start(&b, port, "50ms");
        // (statements, passes) from one `/metrics` answer: polling it inside the window
        // would count its own statements.
        let read = || -> (f64, f64) {
            let (status, metrics) = http(port, "GET", "/metrics", &[], b"");
            assert_eq!(status, 200, "{metrics}");
            let value = |name: &str| -> f64 {
                let prefix = format!("{name} ");
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(prefix.as_str()))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            };
            (
                value("tidings_store_statements_total"),
                value("tidings_passes_total"),
            )
        };
        // The demo's first emails leave in the first passes; its journeys then wait days.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while read().1 < 10.0 {
            assert!(std::time::Instant::now() < deadline, "{}: passes", b.label);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let (statements, passes) = read();
        std::thread::sleep(std::time::Duration::from_secs(4));
        let (more, after) = read();
        assert!(
            after - passes >= 20.0,
            "{}: {} passes",
            b.label,
            after - passes
        );
        let per_pass = (more - statements) / (after - passes);
        eprintln!("{}: {per_pass:.2} statements an idle pass", b.label);
        assert!(
            per_pass <= IDLE_PASS_STATEMENTS,
            "{}: {per_pass:.2} statements an idle pass ({} over {} passes)",
            b.label,
            more - statements,
            after - passes
        );
        assert!(per_pass >= 1.0, "{}: {per_pass:.2}", b.label);
        drop(server);
        drop(daemon);
    }
}

/// A rehearsal's store remembers which zones customers are in rather than asking every
/// pass; a customer who moves zone mid-rehearsal (an event's `set`) is then greeted at 09:00
/// in the new zone, which a remembered answer that did not go stale with the write would
/// never fire in.
#[test]
fn a_customer_who_moves_zone_mid_rehearsal_is_greeted_in_the_new_one() {
    let b = backends("moved-zone").remove(0);
    write(&b.dir, "tidings.yaml", "database: ${TIDINGS_DB}\n");
    write(
        &b.dir,
        "workflows/morning.yaml",
        "name: morning\ntrigger:\n  schedule: \"0 9 * * *\"\n  timezone: customer\nreentry: always\n\
         steps:\n  - id: hello\n    email: hello\n    subject: Good morning\n",
    );
    write(
        &b.dir,
        "templates/hello.html",
        "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        &b.dir,
        "customers.csv",
        "id,email,timezone\nc1,c1@example.com,Europe/London\n",
    );
    write(
        &b.dir,
        "events.csv",
        "customer_id,name,at,set\nc1,moved,2026-06-01T12:00:00Z,\"{\"\"timezone\"\":\"\"Asia/Tokyo\"\"}\"\n",
    );
    crate::store::import_both(&b);
    let out = b.dir.join("mail");
    let run = tidings(&b)
        .args(["simulate", "--from", "2026-06-01T00:00:00Z"])
        .args([
            "--to",
            "2026-06-02T12:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    // 09:00 in London on the 1st (08:00 UTC), then 09:00 in Tokyo on the 2nd (00:00 UTC).
    let mut dates: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Date: ").map(str::to_string))
        })
        .collect();
    dates.sort();
    assert_eq!(
        dates,
        [
            "Mon, 01 Jun 2026 08:00:00 +0000",
            "Tue, 02 Jun 2026 00:00:00 +0000"
        ],
        "{}",
        run.transcript()
    );
}
