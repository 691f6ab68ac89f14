//! An event-triggered email leaves at once: a daemon whose timer is an hour away runs a
//! pass as soon as an event arrives — POSTed to it, or recorded beside it by `tidings event`
//! (on SQLite through the store's wake file, on PostgreSQL through NOTIFY).

use std::time::{Duration, Instant};

use crate::common::{Act, SmtpServer, free_port};
use crate::daemon::{Daemon, http};
use crate::store::{backends, tidings};

#[test]
fn an_event_is_mailed_within_seconds_not_at_the_next_timer() {
    for b in backends("realtime") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        crate::smtp::project(
            &b,
            server.port,
            "server:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
        );
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let auth = ("Authorization", "Bearer s3cret-token");
        let arrived = |to: &str| server.received().iter().any(|r| r.to == to);
        let within = |to: &str, from: Instant| -> Duration {
            while !arrived(to) {
                assert!(
                    from.elapsed() < Duration::from_secs(10),
                    "{}: no email to {to} within 10 s",
                    b.label
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            from.elapsed()
        };
        for id in ["rt1", "rt2"] {
            let customer =
                format!(r#"{{"id":"{id}","email":"{id}@example.com","first_name":"R"}}"#);
            let (status, answer) =
                http(port, "POST", "/v1/customers", &[auth], customer.as_bytes());
            assert_eq!(status, 200, "{answer}");
        }
        // POSTed to the daemon.
        let posted = Instant::now();
        let event = br#"{"customer_id":"rt1","name":"customer_created"}"#;
        let (status, answer) = http(port, "POST", "/v1/events", &[auth], event);
        assert_eq!(status, 200, "{answer}");
        let took = within("rt1@example.com", posted);
        assert!(took < Duration::from_secs(2), "{}: {took:?}", b.label);
        // Recorded beside it by another process.
        let recorded = Instant::now();
        let run = tidings(&b)
            .args(["event", "customer_created", "--customer", "rt2"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let took = within("rt2@example.com", recorded);
        assert!(took < Duration::from_secs(2), "{}: {took:?}", b.label);
        // `/metrics` measured both, from the event accepted to the SMTP server's reply.
        let deadline = Instant::now() + Duration::from_secs(5);
        let metrics = loop {
            let (_, metrics) = http(port, "GET", "/metrics", &[], b"");
            let count = metrics
                .lines()
                .find_map(|l| l.strip_prefix("tidings_event_to_handoff_seconds_count "))
                .and_then(|n| n.trim().parse::<u64>().ok());
            if count.is_some_and(|n| n >= 2) || Instant::now() > deadline {
                break metrics;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            metrics.contains("# TYPE tidings_event_to_handoff_seconds histogram"),
            "{metrics}"
        );
        let within_two: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tidings_event_to_handoff_seconds_bucket{le=\"2\"} "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(within_two >= 2, "{}: {metrics}", b.label);
        assert!(daemon.stop().success());
    }
}
