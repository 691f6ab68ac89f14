//! Delivery over a real SMTP conversation with a server this test starts on loopback:
//! what arrives is parsed with a MIME parser, and scripted faults (4xx, 5xx, a dropped line
//! after the data, a server that is down) show that nothing is lost and nothing is sent
//! twice except where the outcome was unknown — and then with the same Message-ID.

use std::collections::BTreeMap;

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, Stage, free_port, write};

use crate::store::{Backend, backends, outbox, tidings, with_examples, with_store};

/// The demo shop sending over SMTP to `port`; `extra` is appended to `tidings.yaml`
/// (indented: more `email:` keys; not indented: other sections).
/// The demo's events are of June 2026, replayed by daemons running now: the test
/// projects take events of any age (`triggers.max_event_age` guards a real shop against
/// exactly this, and is tested on its own).
const HISTORY: &str = "triggers:\n  max_event_age: 36500d\n";

pub(crate) fn project(b: &Backend, port: u16, extra: &str) {
    with_examples(b);
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  transport: smtp://127.0.0.1:{port}\n  from: \"Acme <hello@acme.example>\"\n{extra}{}{}",
            public_links(extra),
            HISTORY
        ),
    );
    let demo = crate::common::repo_root().join("examples/demo");
    for kind in ["customers", "orders", "events"] {
        let file = demo.join(format!("{kind}.csv"));
        let run = tidings(b)
            .args(["import", kind, file.to_str().unwrap()])
            .run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    }
    past_orders_seen(b);
}

/// The demo's orders before June are the shop's history: a real shop's history is older
/// than `triggers.max_event_age` when it is imported, and a pass marks its events so (they
/// start no journey). These projects lift that age for the demo's June events, so the
/// history's events are marked here as such a pass would.
pub(crate) fn past_orders_seen(b: &Backend) {
    with_store(b, async |s| {
        let mut conn = s.connection().await.unwrap();
        let june = chrono::DateTime::parse_from_rfc3339("2026-05-31T00:00:00Z").unwrap();
        sqlx::query(
            "UPDATE events SET processed_at = at, too_old = 1 WHERE name = 'order_placed' AND at < $1",
        )
        .bind(june.timestamp_millis())
        .execute(&mut *conn)
        .await
        .unwrap();
    });
}

/// Mail over SMTP must carry links a recipient can reach (`run` and the daemon refuse
/// loopback ones): the public address the test projects use, unless `extra` sets its own.
pub(crate) fn public_links(extra: &str) -> &'static str {
    if extra.contains("unsubscribe:") {
        ""
    } else {
        "unsubscribe:\n  base_url: https://mail.acme.example/u\n"
    }
}

/// A project sending over SMTP (with `email:` settings `extra`) to new customers at these
/// addresses, each created at 07:00 on 1 June: the welcome series greets them at once.
pub(crate) fn new_customers(b: &Backend, port: u16, extra: &str, addresses: &[String]) {
    with_examples(b);
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  transport: smtp://127.0.0.1:{port}\n{}{extra}{}{}",
            if extra.contains("  from:") {
                ""
            } else {
                "  from: \"Acme <hello@acme.example>\"\n"
            },
            public_links(extra),
            HISTORY
        ),
    );
    let mut customers = String::from("id,email,first_name\n");
    let mut events = String::from("customer_id,name,at\n");
    for (i, address) in addresses.iter().enumerate() {
        customers.push_str(&format!("n{i:05},{address},N{i}\n"));
        events.push_str(&format!("n{i:05},customer_created,2026-06-01T07:00:00Z\n"));
    }
    write(&b.dir, "customers.csv", &customers);
    write(&b.dir, "events.csv", &events);
    for (kind, file) in [("customers", "customers.csv"), ("events", "events.csv")] {
        let run = tidings(b).args(["import", kind, file]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
}

fn pass(b: &Backend, now: &str) -> crate::common::Run {
    let run = tidings(b).args(["run", "--once", "--now", now]).run();
    assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    run
}

/// Every email arrives as a standard MIME message: both parts, UTF-8 subjects and names
/// that survive the parser, the stored Message-ID, and one-click unsubscribe headers on
/// marketing mail only.
#[test]
fn emails_arrive_over_smtp_as_standard_mime() {
    for b in backends("smtp-mime") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        let dkim = crate::common::fixtures().join("dkim");
        project(
            &b,
            server.port,
            &format!(
                "  dkim: {{ domain: acme.example, selector: tidings, key_file: {} }}\n",
                dkim.join("rsa.pem").display()
            ),
        );
        let record =
            std::fs::read_to_string(dkim.join("tidings._domainkey.acme.example.txt")).unwrap();
        let first = pass(&b, "2026-06-01T08:00:00Z");
        assert!(
            first.stdout.contains(&format!(
                "delivered 4 emails to 127.0.0.1:{}; 0 failed",
                server.port
            )),
            "{}: {}",
            b.label,
            first.stdout
        );
        pass(&b, "2026-06-03T10:00:00Z");
        let (deliveries, _) = outbox(&b);
        let sent: Vec<_> = deliveries.iter().filter(|d| d.channel == "email").collect();
        assert!(
            sent.iter().all(|d| d.state == "sent"),
            "{}: {sent:?}",
            b.label
        );
        let received = server.received();
        assert_eq!(received.len(), sent.len(), "{}", b.label);
        assert_eq!(server.pipelined(), received.len(), "{}", b.label);
        let secret = with_store(&b, async |s| s.signing_secret().await.unwrap());
        let signer = tidings::unsubscribe::Signer::new(secret.as_bytes()).unwrap();

        let mut subjects = BTreeMap::new();
        for r in &received {
            let message = MessageParser::default().parse(&r.bytes).unwrap();
            // Signed for acme.example over the headers receivers act on, and the signature
            // breaks when a signed header is changed on the way.
            let tags = crate::dkim::verify(&r.bytes, &record).unwrap_or_else(|e| {
                panic!("{}: {e}\n{}", b.label, String::from_utf8_lossy(&r.bytes))
            });
            let tag = |k: &str| tags.iter().find(|(n, _)| n == k).unwrap().1.clone();
            assert_eq!(
                (tag("d"), tag("s")),
                ("acme.example".into(), "tidings".into())
            );
            for h in [
                "from",
                "to",
                "subject",
                "message-id",
                "list-unsubscribe",
                "list-unsubscribe-post",
            ] {
                assert!(
                    tag("h").split(':').any(|x| x == h),
                    "{h} not signed: {}",
                    tag("h")
                );
            }
            let text = String::from_utf8_lossy(&r.bytes);
            let tampered = text.replacen("\r\nSubject: ", "\r\nSubject: FW: ", 1);
            assert_ne!(tampered, text);
            assert!(crate::dkim::verify(tampered.as_bytes(), &record).is_err());
            let id = message.message_id().unwrap().to_string();
            let stored = sent
                .iter()
                .find(|d| d.message_id == format!("<{id}>"))
                .unwrap_or_else(|| panic!("{}: unknown Message-ID {id}", b.label));
            assert_eq!(r.to, stored.recipient);
            assert_eq!(message.subject(), stored.subject.as_deref());
            assert_eq!(
                message.from().unwrap().first().unwrap().address(),
                Some("hello@acme.example")
            );
            let text = message.body_text(0).unwrap();
            let html = message.body_html(0).unwrap();
            assert!(
                !text.trim().is_empty() && html.contains("<"),
                "{}",
                stored.id
            );
            let unsubscribe = message.header_raw("List-Unsubscribe");
            if stored.class == "marketing" {
                assert!(
                    unsubscribe.is_some_and(|u| u.contains("http")),
                    "{}",
                    stored.id
                );
                assert_eq!(
                    message.header_raw("List-Unsubscribe-Post").map(str::trim),
                    Some("List-Unsubscribe=One-Click")
                );
                // The link's token is signed with the store's key and names this
                // customer and workflow; a tampered copy is refused.
                let url = unsubscribe
                    .unwrap()
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>');
                let token = url.rsplit('/').next().unwrap();
                let now = chrono::Utc::now();
                let checked = signer.verify(token, now).unwrap();
                assert_eq!(checked.customer_id, stored.customer_id);
                assert_eq!(checked.workflow, stored.workflow);
                let tampered = format!("{}x", token);
                assert!(signer.verify(&tampered, now).is_err());
            } else {
                assert!(unsubscribe.is_none(), "{}", stored.id);
            }
            subjects.insert(
                (stored.workflow.clone(), r.to.clone()),
                message.subject().unwrap().to_string(),
            );
        }
        // Japanese, Hindi and Chinese subjects and names round-trip through the parser.
        assert_eq!(
            subjects[&("birthday-offer".to_string(), "ken@example.jp".to_string())],
            "山田様、お誕生日おめでとうございます"
        );
        assert_eq!(
            subjects[&("birthday-offer".to_string(), "wei@example.cn".to_string())],
            "伟，生日快乐！送您一份礼物"
        );
        assert_eq!(
            subjects[&(
                "post-purchase-thank-you".to_string(),
                "priya@example.in".to_string()
            )],
            "Thank you for your order, Priya"
        );
        // The order's lines (examples/demo/orders.csv), as the template lists them.
        let thanks = received
            .iter()
            .map(|r| MessageParser::default().parse(&r.bytes).unwrap())
            .find(|m| m.subject() == Some("Thank you for your order, Priya"))
            .unwrap();
        let text = thanks.body_text(0).unwrap();
        assert!(text.contains("- 1 × Darjeeling"), "{}: {text}", b.label);
    }
}

/// 451 at RCPT and 421 after the data are retried and delivered once; a line dropped
/// after the data leaves the outcome unknown, so `at_least_once` mail is sent again with
/// the same Message-ID and `at_most_once` mail is not; 550 fails the email, suppresses the
/// address, and nothing else is offered to it.
#[test]
fn smtp_faults_lose_nothing_and_duplicate_only_the_unknown() {
    // Once with a server that offers PIPELINING (MAIL, RCPT and DATA in one write, replies
    // read in order) and once with one that takes commands one at a time.
    for (mode, start) in [
        (
            "pipelined",
            SmtpServer::start as fn(Box<crate::common::Script>) -> SmtpServer,
        ),
        ("one-by-one", SmtpServer::start_without_pipelining),
    ] {
        smtp_faults(mode, start);
    }
}

fn smtp_faults(mode: &str, start: fn(Box<crate::common::Script>) -> SmtpServer) {
    for b in backends(&format!("smtp-faults-{mode}")) {
        let server = start(Box::new(|stage, rcpt, nth| match (rcpt, stage, nth) {
            ("ada@example.com", Stage::Rcpt, 0) => Act::Reply(451, "4.7.1 try again later"),
            ("ken@example.jp", Stage::End, 0) => Act::Drop,
            ("priya@example.in", Stage::Rcpt, _) => Act::Reply(550, "5.1.1 no such user"),
            ("wei@example.cn", Stage::End, 0) => Act::Reply(421, "4.3.2 closing"),
            ("wei@example.cn", Stage::End, 2) => Act::Drop,
            _ => Act::Accept,
        }));
        project(&b, server.port, "");
        let first = pass(&b, "2026-06-01T08:00:00Z");
        for warning in [
            "email `welcome-series` step `hello` to ada@example.com will be retried: RCPT:",
            "email `post-purchase-thank-you` step `thanks` to priya@example.in failed, and the address is suppressed: RCPT:",
            "5.1.1 no such user",
            "email `reactivation-deal` step `deal` to ken@example.jp will be retried",
            "email `reactivation-deal` step `deal` to wei@example.cn will be retried: end of data:",
        ] {
            assert!(
                first.stderr.contains(warning),
                "{}: {warning}\n{}",
                b.label,
                first.stderr
            );
        }
        assert!(
            first.stdout.contains("0 emails") || first.stdout.contains("delivered 0 emails"),
            "{}",
            first.stdout
        );

        // The retries are due a minute or so later.
        let second = pass(&b, "2026-06-01T08:10:00Z");
        assert!(
            second.stdout.contains("delivered 3 emails"),
            "{}: {}",
            b.label,
            second.transcript()
        );
        // A later order for the suppressed address is not offered to the server at all.
        let run = tidings(&b)
            .args([
                "event",
                "order_placed",
                "--customer",
                "c3",
                "--at",
                "2026-06-02T12:00:00Z",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        pass(&b, "2026-06-03T10:00:00Z");

        let (deliveries, _) = outbox(&b);
        let state = |workflow: &str, to: &str| -> Vec<String> {
            deliveries
                .iter()
                .filter(|d| d.workflow == workflow && d.recipient == to)
                .map(|d| d.state.to_string())
                .collect()
        };
        assert_eq!(
            state("welcome-series", "ada@example.com"),
            ["sent", "sent"],
            "{}",
            b.label
        );
        assert_eq!(
            state("reactivation-deal", "ken@example.jp"),
            ["sent"],
            "{}",
            b.label
        );
        assert_eq!(
            state("reactivation-deal", "wei@example.cn"),
            ["sent"],
            "{}",
            b.label
        );
        // The later order does not even enter a journey: the address is suppressed.
        assert_eq!(
            state("post-purchase-thank-you", "priya@example.in"),
            ["failed"],
            "{}",
            b.label
        );
        assert_eq!(
            state("birthday-offer", "wei@example.cn"),
            ["unknown"],
            "{}",
            b.label
        );
        assert_eq!(
            state("birthday-offer", "ken@example.jp"),
            ["sent"],
            "{}",
            b.label
        );

        let offered = server.offered();
        assert_eq!(
            offered.iter().filter(|r| *r == "priya@example.in").count(),
            1,
            "{}",
            b.label
        );
        // Every sent email arrived acknowledged exactly once; the only second copies are
        // of ken's deal, whose first copy's fate was unknown, with the same Message-ID.
        let received = server.received();
        let ids = |to: &str| -> Vec<(String, bool)> {
            received
                .iter()
                .filter(|r| r.to == to)
                .map(|r| {
                    let m = MessageParser::default().parse(&r.bytes).unwrap();
                    (m.message_id().unwrap().to_string(), r.acknowledged)
                })
                .collect()
        };
        let ken = ids("ken@example.jp");
        assert_eq!(
            ken.len(),
            3,
            "{}: deal twice, birthday once: {ken:?}",
            b.label
        );
        assert_eq!(ken[0].0, ken[1].0, "the resend carries the same Message-ID");
        assert_eq!((ken[0].1, ken[1].1), (false, true));
        let wei = ids("wei@example.cn");
        // The deal refused with 421 after its data, the deal again (accepted), and the
        // birthday gift whose line dropped: at_most_once, so never offered again.
        let acknowledged: Vec<bool> = wei.iter().map(|w| w.1).collect();
        assert_eq!(acknowledged, [false, true, false], "{}: {wei:?}", b.label);
        assert_eq!(wei[0].0, wei[1].0);
        for d in deliveries
            .iter()
            .filter(|d| d.state == "sent" && d.channel == "email")
        {
            let copies = received
                .iter()
                .filter(|r| {
                    r.acknowledged
                        && String::from_utf8_lossy(&r.bytes).contains(d.message_id.as_str())
                })
                .count();
            assert_eq!(copies, 1, "{}: {}", b.label, d.id);
        }
        with_store(&b, async |s| {
            let reason: String = s
                .suppression_reason("priya@example.in")
                .await
                .unwrap()
                .unwrap();
            assert!(
                reason.contains("550") && reason.contains("no such user"),
                "{reason}"
            );
        });
        // Every transaction that reached the server was pipelined exactly when offered.
        let transactions = server.offered().len();
        let expected = if mode == "pipelined" { transactions } else { 0 };
        assert_eq!(server.pipelined(), expected, "{}: {mode}", b.label);
    }
}

/// A claim takes emails waiting for a retry first, then new ones, each oldest first, and
/// only `at_least_once` mail that is due: `at_most_once` mail is claimed as it leaves.
#[test]
fn a_claim_takes_retries_then_new_emails_oldest_first() {
    for b in backends("smtp-claim-order") {
        let addresses = [
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
        ];
        // The server is down: the welcome emails wait, to be arranged below.
        new_customers(&b, free_port(), "", &addresses.map(String::from));
        pass(&b, "2026-06-01T07:00:00Z");
        let claimed = with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            for (to, state, due, mode) in [
                ("a@example.com", "pending", 2_000, "at_least_once"),
                ("b@example.com", "pending", 1_000, "at_least_once"),
                ("c@example.com", "retrying", 3_000, "at_least_once"),
                ("d@example.com", "pending", 500, "at_most_once"),
            ] {
                sqlx::query(
                    "UPDATE deliveries SET state = $1, due_at = $2, mode = $3 WHERE recipient = $4",
                )
                .bind(state)
                .bind(due as i64)
                .bind(mode)
                .bind(to)
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            let now = chrono::DateTime::from_timestamp_millis(10_000).unwrap();
            let lease = now + chrono::TimeDelta::minutes(5);
            let mut claims = Vec::new();
            let mut queues = Vec::new();
            for limit in [2, 5, 5] {
                let due = tidings::store::outbox::due_queues(&mut conn, "email", now)
                    .await
                    .unwrap();
                queues.push(due);
                let page = (now, limit);
                let mut rows = tidings::store::outbox::claim_due(
                    &mut conn,
                    s.backend(),
                    "email",
                    page,
                    lease,
                    due,
                )
                .await
                .unwrap();
                // What a claimed email carries is read with its blockers.
                tidings::store::outbox::send_needs(&mut conn, &mut rows)
                    .await
                    .unwrap();
                assert!(rows.iter().all(|r| r.html.is_some()), "{}", b.label);
                claims.push(rows.into_iter().map(|r| r.recipient).collect::<Vec<_>>());
            }
            (claims, queues)
        });
        let (claimed, queues) = claimed;
        let expected: [&[&str]; 3] = [&["b@example.com", "c@example.com"], &["a@example.com"], &[]];
        assert_eq!(claimed, expected, "{}", b.label);
        // Retrying and new `at_least_once` mail, then new mail only, then only the
        // `at_most_once` email nobody claims ahead of its send.
        let least: Vec<[bool; 2]> = queues.iter().map(|q| q.at_least_once).collect();
        assert_eq!(
            least,
            [[true, true], [false, true], [false, false]],
            "{}",
            b.label
        );
        assert!(
            queues.iter().all(|q| q.at_most_once == [false, true]),
            "{}",
            b.label
        );
    }
}

/// A line dropped after a message's final `.` ends that session: the next email goes on a
/// new one, not into the dead connection (where it would fail and wait for a retry).
#[test]
fn the_next_email_after_a_dropped_line_goes_on_a_new_session() {
    let b = backends("smtp-dropped-session").remove(0);
    let ends = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = ends.clone();
    let server = SmtpServer::start(Box::new(move |stage, _, _| {
        let first =
            stage == Stage::End && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        if first { Act::Drop } else { Act::Accept }
    }));
    let addresses = ["a@example.com", "b@example.com", "c@example.com"].map(String::from);
    new_customers(&b, server.port, "  concurrency: 1\n", &addresses);
    let run = pass(&b, "2026-06-01T07:00:00Z");
    // The first email's fate is unknown (retried with its Message-ID); the rest arrived.
    assert!(
        run.stdout.contains("delivered 2 emails"),
        "{}",
        run.transcript()
    );
    assert!(run.stdout.contains("1 to retry"), "{}", run.transcript());
}

#[test]
fn a_server_that_is_down_holds_the_queue_until_it_is_back() {
    let b = backends("smtp-down").remove(0);
    let port = free_port();
    project(&b, port, "");
    let down = pass(&b, "2026-06-01T08:00:00Z");
    assert!(
        down.stderr
            .contains(&format!("cannot reach the SMTP server 127.0.0.1:{port}")),
        "{}",
        down.stderr
    );
    assert!(
        down.stdout.contains("delivered 0 emails"),
        "{}",
        down.stdout
    );
    // The first emails of a cause get a line each, the rest one line together.
    let cause = "will be retried: the SMTP server could not be reached";
    let lines: Vec<&str> = down.stderr.lines().filter(|l| l.contains(cause)).collect();
    assert_eq!(lines.len(), 4, "{}", down.stderr);
    assert!(
        lines[3].contains(&format!("... and 1 more email {cause}")),
        "{}",
        down.stderr
    );
    let (deliveries, _) = outbox(&b);
    assert!(
        deliveries
            .iter()
            .filter(|d| d.channel == "email")
            .all(|d| d.state == "retrying"),
        "{deliveries:?}"
    );

    // While the queue waits, one customer unsubscribes: their queued marketing email is
    // stopped at send time; another's transactional one still goes.
    for customer in ["c2", "c3"] {
        let run = tidings(&b)
            .args([
                "event",
                "unsubscribed",
                "--customer",
                customer,
                "--at",
                "2026-06-01T08:05:00Z",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    // And another's address bounces elsewhere: it is suppressed at send time too.
    with_store(&b, async |s| {
        let mut conn = s.connection().await.unwrap();
        let at = chrono::DateTime::from_timestamp_millis(0).unwrap();
        let bounce = "bounce: mailbox unknown";
        tidings::store::outbox::suppress(&mut conn, "Wei@Example.cn", bounce, at)
            .await
            .unwrap();
    });

    let server = SmtpServer::start_on(port, Box::new(|_, _, _| Act::Accept));
    let up = pass(&b, "2026-06-01T08:30:00Z");
    assert!(
        up.stdout.contains("delivered 2 emails"),
        "{}",
        up.transcript()
    );
    assert!(up.stdout.contains("2 suppressed"), "{}", up.transcript());
    let mut to: Vec<String> = server.received().into_iter().map(|r| r.to).collect();
    to.sort();
    assert_eq!(to, ["ada@example.com", "priya@example.in"]);
    let (deliveries, _) = outbox(&b);
    let wei = deliveries
        .iter()
        .find(|d| d.recipient == "wei@example.cn")
        .unwrap();
    assert_eq!(wei.state, "suppressed");
    assert_eq!(
        wei.last_error.as_deref(),
        Some("the address is suppressed (bounce: mailbox unknown)")
    );
    let ken = deliveries
        .iter()
        .find(|d| d.recipient == "ken@example.jp")
        .unwrap();
    assert_eq!(ken.state, "suppressed");
    assert_eq!(
        ken.last_error.as_deref(),
        Some("the customer has unsubscribed")
    );
}

/// The crash test: a pass sending 10,000 emails over SMTP is killed with SIGKILL three times
/// while it sends, and run again each time. At the end every email arrived, and the only
/// duplicates are the at most one email per kill that was in flight — with the same
/// Message-ID (one SMTP session here, so one in flight).
#[test]
fn a_sender_killed_three_times_loses_nothing_and_repeats_at_most_one_per_kill() {
    use std::time::{Duration, Instant};
    const N: usize = 10_000;
    let b = backends("smtp-crash").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let addresses: Vec<String> = (0..N).map(|i| format!("n{i}@example.com")).collect();
    new_customers(&b, server.port, "  concurrency: 1\n", &addresses);
    let mut kills = 0;
    for at_least in [1_500, 4_000, 7_000] {
        let mut child = crate::common::spawn(
            &b.dir,
            &b.url,
            &["run", "--once", "--now", "2026-06-01T08:00:00Z"],
        );
        let deadline = Instant::now() + Duration::from_secs(300);
        while server.received().len() < at_least && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the sender finished before it could be killed");
    let run = pass(&b, "2026-06-01T08:00:00Z");
    assert!(run.stdout.contains("0 failed"), "{}", run.transcript());

    let (deliveries, _) = outbox(&b);
    let emails: Vec<_> = deliveries.iter().filter(|d| d.channel == "email").collect();
    assert_eq!(emails.len(), N);
    assert!(emails.iter().all(|d| d.state == "sent"), "not all sent");
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for r in server.received() {
        let m = MessageParser::default().parse(&r.bytes).unwrap();
        *copies
            .entry(m.message_id().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(copies.len(), N, "every email arrived");
    let duplicates: usize = copies.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates after {kills} kills"
    );
    eprintln!("{kills} kills, {duplicates} duplicates, {N} emails");
}

/// `email.rate_per_domain`: mail to a domain at its rate is spaced out, while mail to
/// other domains goes at once rather than queueing behind it.
#[test]
fn a_domain_rate_spaces_its_mail_without_holding_up_other_domains() {
    let b = backends("smtp-domain-rate").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let addresses: Vec<String> = (0..12)
        .map(|i| format!("r{i}@{}.example", if i % 2 == 0 { "slow" } else { "fast" }))
        .collect();
    new_customers(
        &b,
        server.port,
        "  concurrency: 2\n  rate_per_domain: { slow.example: 4 }\n",
        &addresses,
    );
    pass(&b, "2026-06-01T08:00:00Z");
    let received = server.received();
    let arrivals = |domain: &str| -> Vec<std::time::Instant> {
        received
            .iter()
            .filter(|r| r.to.ends_with(domain))
            .map(|r| r.at)
            .collect()
    };
    let (slow, fast) = (arrivals("@slow.example"), arrivals("@fast.example"));
    assert_eq!((slow.len(), fast.len()), (6, 6));
    // Four a second: six messages take at least five quarter-seconds from first to last.
    let span = slow[5] - slow[0];
    assert!(span >= std::time::Duration::from_millis(1_150), "{span:?}");
    for pair in slow.windows(2) {
        assert!(
            pair[1] - pair[0] >= std::time::Duration::from_millis(150),
            "{slow:?}"
        );
    }
    // The other domain's mail did not wait its turn behind them.
    assert!(
        fast[5] < slow[3],
        "fast mail was held up: {fast:?} vs {slow:?}"
    );
}

/// `tidings outbox`: an operator lists what failed, queues it again, and cancels what has
/// not left (releasing its coupon code).
#[test]
fn the_operator_lists_retries_and_cancels_emails() {
    for b in backends("outbox-cli") {
        let server = SmtpServer::start(Box::new(|stage, rcpt, nth| match (rcpt, stage, nth) {
            ("ada@example.com", Stage::Rcpt, 0) => Act::Reply(451, "4.7.1 greylisted"),
            ("ken@example.jp", _, _) => Act::Reply(421, "4.3.2 busy"),
            _ => Act::Accept,
        }));
        // Give up at the first failure, so that the 451 leaves a failed email behind.
        project(&b, server.port, "  give_up_after: 0s\n");
        pass(&b, "2026-06-01T08:00:00Z");
        let list = tidings(&b)
            .args(["outbox", "list", "--state", "failed"])
            .run();
        assert_eq!(list.code, 0, "{}", list.transcript());
        assert!(
            list.stdout.contains("failed  welcome-series")
                && list.stdout.contains("ada@example.com  welcome-series/c1/")
                && list
                    .stdout
                    .contains("/hello  (gave up after 1 attempt: RCPT:")
                && list.stdout.ends_with("2 emails\n"),
            "{}: {}",
            b.label,
            list.stdout
        );

        // The columns line up under their header, whatever the names' lengths.
        let lines: Vec<&str> = list.stdout.lines().collect();
        let column = |line: &str, i: usize| {
            let mut at = 0;
            let mut words = 0;
            let chars: Vec<char> = line.chars().collect();
            while words < i && at + 1 < chars.len() {
                if chars[at] == ' ' && chars[at + 1] == ' ' {
                    while at < chars.len() && chars[at] == ' ' {
                        at += 1;
                    }
                    words += 1;
                } else {
                    at += 1;
                }
            }
            at
        };
        assert!(lines[0].starts_with("due (UTC)"), "{}", list.stdout);
        for line in &lines[1..lines.len() - 1] {
            for i in 1..4 {
                assert_eq!(column(line, i), column(lines[0], i), "{}", list.stdout);
            }
        }

        let retry = tidings(&b)
            .args(["outbox", "retry", "--customer", "c1"])
            .run();
        assert_eq!(
            retry.stdout,
            "1 email queued again; it goes on the next pass\n",
            "{}",
            retry.transcript()
        );
        let cancel = tidings(&b)
            .args(["outbox", "cancel", "--customer", "c2"])
            .run();
        // c2's deal failed already (given up): nothing is waiting to cancel.
        assert_eq!(
            cancel.stdout,
            "0 emails cancelled; their coupon codes are released\n"
        );
        pass(&b, "2026-06-01T08:10:00Z");
        let (deliveries, _) = outbox(&b);
        let ada = deliveries
            .iter()
            .find(|d| d.recipient == "ada@example.com")
            .unwrap();
        assert_eq!(ada.state, "sent", "{}", b.label);

        let bad = tidings(&b).args(["outbox", "retry"]).run();
        assert_eq!(bad.code, 2);
        assert!(
            bad.stderr
                .contains("name the emails to act on with --workflow or --customer")
        );
        let bad = tidings(&b)
            .args(["outbox", "list", "--state", "lost"])
            .run();
        assert!(
            bad.stderr.contains("`lost` is not an outbox state"),
            "{}",
            bad.stderr
        );
    }
}

/// Cancelling what waits in the queue: it never leaves, and its coupon code is released.
#[test]
fn a_cancelled_email_never_leaves_and_frees_its_coupon() {
    let b = backends("outbox-cancel").remove(0);
    let port = free_port();
    project(&b, port, "");
    pass(&b, "2026-06-01T08:00:00Z"); // the server is down: everything waits
    let cancel = tidings(&b)
        .args([
            "outbox",
            "cancel",
            "--workflow",
            "reactivation-deal",
            "--customer",
            "c2",
        ])
        .run();
    assert_eq!(
        cancel.stdout,
        "1 email cancelled; its coupon code is released\n",
        "{}",
        cancel.transcript()
    );
    let server = SmtpServer::start_on(port, Box::new(|_, _, _| Act::Accept));
    pass(&b, "2026-06-01T08:30:00Z");
    assert!(!server.offered().iter().any(|r| r == "ken@example.jp"));
    with_store(&b, async |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        let state: String = sqlx::query("SELECT c.state FROM coupons c JOIN deliveries d ON d.id = c.delivery_id WHERE d.recipient = 'ken@example.jp'")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(state, "released");
    });
}

/// Header injection: customer data with a line break that would reach the subject fails
/// that customer's journey with a clear error; nothing is queued or sent for it, and the
/// others go on.
#[test]
fn a_line_break_in_customer_data_never_reaches_a_header() {
    for b in backends("header-injection") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        with_examples(&b);
        write(
            &b.dir,
            "tidings.yaml",
            &format!(
                "database: ${{TIDINGS_DB}}\nemail: {{ transport: \"smtp://127.0.0.1:{}\", from: \"Acme <hello@acme.example>\" }}\nserver: {{ public_url: \"https://mail.acme.example\" }}\n",
                server.port
            ),
        );
        write(
            &b.dir,
            "customers.csv",
            "id,email,first_name\nx1,x1@example.com,\"Ada\r\nBcc: victim@example.com\"\nx2,x2@example.com,Grace\n",
        );
        write(
            &b.dir,
            "events.csv",
            "customer_id,name,at\nx1,customer_created,2026-06-01T07:00:00Z\nx2,customer_created,2026-06-01T07:00:00Z\n",
        );
        for (kind, file) in [("customers", "customers.csv"), ("events", "events.csv")] {
            let run = tidings(&b).args(["import", kind, file]).run();
            assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        }
        let run = pass(&b, "2026-06-01T08:00:00Z");
        assert!(
            run.stdout.contains("1 failed"),
            "{}: {}",
            b.label,
            run.stdout
        );
        let (deliveries, enrollments) = outbox(&b);
        assert_eq!(deliveries.len(), 1, "{}", b.label);
        assert_eq!(deliveries[0].recipient, "x2@example.com");
        let failed = enrollments.iter().find(|e| e.1 == "x1").unwrap();
        assert_eq!(failed.2, "failed");
        assert!(
            failed
                .4
                .as_deref()
                .unwrap()
                .contains("the subject has a line break after rendering"),
            "{failed:?}"
        );
        let received = server.received();
        assert_eq!(received.len(), 1);
        assert!(!String::from_utf8_lossy(&received[0].bytes).contains("victim"));
    }
}
