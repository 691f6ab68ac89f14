//! The campaign benchmark's project (`examples/bench`), small: 2,000 customers through the
//! real pipeline into an SMTP server on loopback — every message arrives once, parses as
//! MIME, and is personalised. (`examples/bench/campaign.sh` runs it at 100,000 into
//! Postfix's smtp-sink for speed; this checks that what it measures is right.)

use std::collections::BTreeSet;

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, repo_root, write};
use crate::store::{backends, copy_dir, outbox, tidings};

/// The distinct Message-IDs of the messages a server received.
fn message_ids(received: &[crate::common::Received]) -> BTreeSet<String> {
    received
        .iter()
        .map(|r| {
            let m = MessageParser::default().parse(&r.bytes).unwrap();
            m.message_id().unwrap().to_string()
        })
        .collect()
}

/// The campaign's project with `n` customers imported, sending to `port`.
fn campaign_project(b: &crate::store::Backend, port: u16, n: usize) {
    let bench = repo_root().join("examples/bench");
    for dir in ["workflows", "templates"] {
        copy_dir(&bench.join(dir), &b.dir.join(dir));
    }
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  from: \"Acme <news@acme.example>\"\n  transport: smtp://127.0.0.1:{}\n  concurrency: 8\nunsubscribe:\n  base_url: https://acme.example/u\n  secret: bench-secret-not-for-production\n",
            port
        ),
    );
    let mut csv = String::from("id,email,first_name,last_name,locale\n");
    for i in 0..n {
        csv.push_str(&format!(
            "c{i:07},customer{i}@bench.example,Name{i},Family{i},en-GB\n"
        ));
    }
    write(&b.dir, "customers.csv", &csv);
    let run = tidings(b)
        .args(["import", "customers", "customers.csv"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
}

#[test]
fn the_benchmark_campaign_delivers_every_message_once() {
    const N: usize = 2_000;
    let b = backends("campaign").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    campaign_project(&b, server.port, N);
    let run = tidings(&b)
        .args(["run", "--once", "--now", "2026-06-01T10:00:00Z"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stdout.contains(&format!("delivered {N} emails")),
        "{}",
        run.stdout
    );

    let received = server.received();
    assert_eq!(received.len(), N, "one message each, none twice");
    let mut ids = BTreeSet::new();
    let mut recipients = BTreeSet::new();
    for r in &received {
        let m = MessageParser::default().parse(&r.bytes).unwrap();
        assert!(ids.insert(m.message_id().unwrap().to_string()));
        assert!(recipients.insert(r.to.clone()));
        let i: usize =
            r.to.strip_prefix("customer")
                .and_then(|s| s.strip_suffix("@bench.example"))
                .unwrap()
                .parse()
                .unwrap();
        assert_eq!(
            m.subject(),
            Some(format!("Name{i}, the autumn collection is here").as_str())
        );
        let html = m.body_html(0).unwrap();
        let text = m.body_text(0).unwrap();
        assert!(html.contains(&format!("Hello Name{i},")), "{html}");
        assert!(html.contains(&format!("Sent to customer{i}@bench.example")));
        assert!(html.contains("https://acme.example/u/"), "{html}");
        assert!(text.contains(&format!("Hello Name{i},")), "{text}");
        assert!(
            (3_300..4_000).contains(&html.len()),
            "a ~3.5 KB email: {}",
            html.len()
        );
    }
    let (deliveries, _) = outbox(&b);
    assert_eq!(deliveries.len(), N);
    assert!(deliveries.iter().all(|d| d.state == "sent"));
}

/// Two passes started at once on one store — a `run --once` beside another, or two
/// replicas — share the campaign's journeys and emails: each journey moves on once (a group
/// that lost a journey to the other is rolled back and claimed again), every message
/// arrives once, and both passes end cleanly.
#[test]
fn two_passes_at_once_send_every_message_once() {
    const N: usize = 1_500;
    for b in backends("campaign-twice") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        campaign_project(&b, server.port, N);
        let args = ["run", "--once", "--now", "2026-06-01T10:00:00Z"];
        let mut one = crate::common::spawn(&b.dir, &b.url, &args);
        let mut two = crate::common::spawn(&b.dir, &b.url, &args);
        assert!(one.wait().unwrap().success(), "{}: the first pass", b.label);
        assert!(
            two.wait().unwrap().success(),
            "{}: the second pass",
            b.label
        );
        let received = server.received();
        let ids = message_ids(&received);
        assert_eq!(ids.len(), N, "{}: every message", b.label);
        assert_eq!(received.len(), N, "{}: none twice", b.label);
        let (deliveries, _) = outbox(&b);
        assert_eq!(deliveries.len(), N, "{}", b.label);
        assert!(deliveries.iter().all(|d| d.state == "sent"), "{}", b.label);
        let states = crate::store::text_pairs(
            &b,
            "SELECT state, CAST(COUNT(*) AS TEXT) FROM enrollments GROUP BY state",
        );
        assert_eq!(
            states,
            vec![("completed".to_string(), N.to_string())],
            "{}",
            b.label
        );
    }
}

/// On SQLite, emails another live sender has in flight (it holds the store's sender lock)
/// are left alone by a `run --once` started beside it — taking them back sent them twice
/// when two passes ran at once — and are taken back at once, with their Message-IDs, by the
/// next run once that sender is gone.
#[test]
fn only_the_sole_sender_takes_back_emails_in_flight() {
    let b = backends("in-flight").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    campaign_project(&b, server.port, 3);
    let args = ["run", "--once", "--now", "2026-06-01T10:00:00Z"];
    let run = tidings(&b).args(args).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(server.received().len(), 3);
    // As if a sender that is still running had claimed them again, with a lease for hours.
    crate::store::with_store(&b, async |s| {
        let mut conn = s.connection().await.unwrap();
        sqlx::query("UPDATE deliveries SET state = 'sending', lease_until = 4102444800000")
            .execute(&mut *conn)
            .await
            .unwrap();
    });
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(b.dir.join("tidings.db.sender.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let run = tidings(&b).args(args).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(server.received().len(), 3, "{}", run.transcript());
    let (deliveries, _) = outbox(&b);
    assert!(deliveries.iter().all(|d| d.state == "sending"));
    drop(lock);
    let run = tidings(&b).args(args).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.transcript()
            .contains("3 emails interrupted by a stopped sender are sent again"),
        "{}",
        run.transcript()
    );
    let received = server.received();
    assert_eq!(received.len(), 6);
    let ids = message_ids(&received);
    assert_eq!(ids.len(), 3, "the same three messages, sent again");
    let (deliveries, _) = outbox(&b);
    assert!(deliveries.iter().all(|d| d.state == "sent"));
}

/// The recorder marks emails sent in one statement that commits itself: through one SMTP
/// session each outcome is a batch of its own (the session waits for it before the next
/// email), so a transaction around the mark would add its BEGIN and COMMIT to every email —
/// three statements an email where one will do.
#[test]
fn an_email_sent_costs_one_statement_to_record() {
    const N: usize = 300;
    let b = backends("campaign-record").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    campaign_project(&b, server.port, N);
    let config = std::fs::read_to_string(b.dir.join("tidings.yaml")).unwrap();
    write(
        &b.dir,
        "tidings.yaml",
        &config.replace("concurrency: 8", "concurrency: 1"),
    );
    let run = tidings(&b)
        .args(["run", "--once", "--now", "2026-06-01T10:00:00Z"])
        .args(["--progress", "always"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(server.received().len(), N);
    let last = run.stderr.lines().last().unwrap_or_default();
    let statements: f64 = last
        .split(" · ")
        .find(|part| part.contains(" statements"))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no statement count in {last}"));
    let per_email = statements / N as f64;
    eprintln!("{statements} statements for {N} emails");
    // The rest of the pass (enrollment pages, groups of 50, claims of 500) costs ~0.2.
    assert!(
        per_email < 2.0,
        "{per_email:.2} statements an email: {last}"
    );
}
