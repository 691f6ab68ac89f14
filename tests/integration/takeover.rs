//! Claims whose lease ran out are taken over by a sender that is alive, without a restart:
//! a replica killed mid-send leaves its emails `sending`, and another finishes them within
//! the lease and a few passes, with the same Message-IDs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, free_port};
use crate::daemon::{Daemon, count};
use crate::store::{backends, with_store};

/// Message-ID → (copies, recipient) of what a server received.
fn copies(server: &SmtpServer) -> BTreeMap<String, (usize, String)> {
    let mut out: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for r in server.received() {
        let m = MessageParser::default().parse(&r.bytes).unwrap();
        let entry = out
            .entry(m.message_id().unwrap().to_string())
            .or_insert((0, r.to.clone()));
        entry.0 += 1;
        assert_eq!(entry.1, r.to, "one Message-ID, one recipient");
    }
    out
}

fn wait_for(what: &str, limit: Duration, done: &dyn Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A daemon that is running (on SQLite, the sole sender) finds emails another sender left
/// `sending` past their lease, and sends them again with their Message-IDs — it does not
/// wait to be restarted.
#[test]
fn a_running_daemon_takes_over_emails_whose_lease_ran_out() {
    for b in backends("takeover-running") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        let addresses: Vec<String> = (0..3).map(|i| format!("t{i}@example.com")).collect();
        crate::smtp::new_customers(&b, server.port, "  lease: 2s\n", &addresses);
        crate::common::write(
            &b.dir,
            "workflows/welcome-series.yaml",
            "name: welcome-series\nclass: transactional\ntrigger:\n  event: customer_created\nsteps:\n  - id: hello\n    email: welcome/hello\n    subject: \"Welcome, {{ customer.first_name }}\"\n",
        );
        let daemon = Daemon::start(&b, free_port(), "1s");
        // Sent, and recorded as sent (the server has them a moment before the store says so).
        wait_for("the first sends", Duration::from_secs(60), &|| {
            server.received().len() >= 3
                && count(&b, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'") == 3
        });
        // As a sender that died mid-send leaves them: claimed, the lease long gone.
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            let past = chrono::Utc::now().timestamp_millis() - 1_000;
            sqlx::query("UPDATE deliveries SET state = 'sending', lease_until = $1")
                .bind(past)
                .execute(&mut *conn)
                .await
                .unwrap();
        });
        wait_for(
            "the daemon to send the abandoned emails",
            Duration::from_secs(30),
            &|| server.received().len() >= 6,
        );
        assert!(daemon.stop().success());
        let copies = copies(&server);
        assert_eq!(copies.len(), 3, "{}: the same three messages", b.label);
        assert!(copies.values().all(|c| c.0 == 2), "{}: {copies:?}", b.label);
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'"),
            3,
            "{}",
            b.label
        );
    }
}

/// Two daemons share a PostgreSQL queue; one is killed mid-send and never restarted. The
/// other finishes the queue within the lease and a few passes: every email arrives, and the
/// only repeats are what the killed one's SMTP sessions had in flight, with their own
/// Message-IDs.
#[test]
fn a_live_replica_finishes_what_a_killed_one_was_sending() {
    const N: usize = 3_000;
    const SESSIONS: usize = 4;
    let Some(b) = crate::store::postgres("takeover-replicas") else {
        return;
    };
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let addresses: Vec<String> = (0..N).map(|i| format!("r{i}@example.com")).collect();
    crate::smtp::new_customers(
        &b,
        server.port,
        &format!("  concurrency: {SESSIONS}\n  lease: 5s\n"),
        &addresses,
    );
    crate::common::write(
        &b.dir,
        "workflows/welcome-series.yaml",
        "name: welcome-series\nclass: transactional\ntrigger:\n  event: customer_created\nsteps:\n  - id: hello\n    email: welcome/hello\n    subject: \"Welcome, {{ customer.first_name }}\"\n",
    );
    let doomed = Daemon::start(&b, free_port(), "1s");
    let survivor = Daemon::start(&b, free_port(), "1s");
    wait_for("sending to begin", Duration::from_secs(300), &|| {
        server.received().len() >= N / 3
    });
    doomed.kill();
    let killed_at = Instant::now();
    let sent = || {
        count(
            &b,
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'email' AND state = 'sent'",
        )
    };
    // The lease (5 s), a few passes of 1 s, and the sending itself.
    wait_for("the survivor to finish", Duration::from_secs(60), &|| {
        sent() >= N as i64
    });
    let took = killed_at.elapsed();
    // The lease (5 s), then a few passes of 1 s and the sending: not a restart.
    assert!(
        took < std::time::Duration::from_secs(20),
        "the survivor took {took:?}"
    );
    assert!(survivor.stop().success());
    assert_eq!(
        count(&b, "SELECT COUNT(*) FROM deliveries WHERE state <> 'sent'"),
        0
    );
    let copies = copies(&server);
    assert_eq!(copies.len(), N, "every email arrived");
    let duplicates: usize = copies.values().map(|c| c.0 - 1).sum();
    assert!(
        duplicates <= SESSIONS,
        "{duplicates} duplicates after one kill"
    );
    eprintln!("the survivor finished {took:?} after the kill; {duplicates} duplicates");
}

/// A webhook call another sender left mid-call past its lease is made again by a daemon that
/// is running, with the same idempotency key, so the receiver can tell it is a repeat.
#[test]
fn a_running_daemon_takes_over_webhook_calls_whose_lease_ran_out() {
    for b in backends("takeover-webhook") {
        let smtp = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        let receiver = crate::common::HttpReceiver::start(Box::new(|_, _| 200));
        let addresses: Vec<String> = (0..2).map(|i| format!("w{i}@example.com")).collect();
        crate::smtp::new_customers(
            &b,
            smtp.port,
            "webhooks: { allow_hosts: [127.0.0.1] }\n",
            &addresses,
        );
        std::fs::remove_dir_all(b.dir.join("workflows")).unwrap();
        crate::common::write(
            &b.dir,
            "workflows/tell-crm.yaml",
            &format!(
                "name: tell-crm\nclass: transactional\ntrigger:\n  event: customer_created\nsteps:\n  - webhook: {{ url: \"http://127.0.0.1:{}/hooks/new\", method: POST, json: {{ id: \"{{{{ customer.id }}}}\" }} }}\n",
                receiver.port
            ),
        );
        let daemon = Daemon::start(&b, free_port(), "1s");
        let calls = || receiver.requests().len();
        wait_for("the first calls", Duration::from_secs(60), &|| {
            calls() >= 2
                && count(
                    &b,
                    "SELECT COUNT(*) FROM deliveries WHERE channel = 'webhook' AND state = 'sent'",
                ) == 2
        });
        // As a sender that died mid-call leaves them: claimed, the lease long gone.
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            let past = chrono::Utc::now().timestamp_millis() - 1_000;
            sqlx::query(
                "UPDATE deliveries SET state = 'sending', lease_until = $1 WHERE channel = 'webhook'",
            )
            .bind(past)
            .execute(&mut *conn)
            .await
            .unwrap();
        });
        wait_for(
            "the daemon to make the abandoned calls again",
            Duration::from_secs(30),
            &|| calls() >= 4,
        );
        assert!(daemon.stop().success());
        let requests = receiver.requests();
        let mut keys: BTreeMap<String, usize> = BTreeMap::new();
        for r in &requests {
            let key = r.header("idempotency-key").unwrap().to_string();
            *keys.entry(key).or_default() += 1;
        }
        assert_eq!(keys.len(), 2, "{}: two calls, each made twice", b.label);
        assert!(keys.values().all(|n| *n == 2), "{}: {keys:?}", b.label);
        assert_eq!(
            smtp.received().len(),
            0,
            "{}: no email in this project",
            b.label
        );
    }
}
