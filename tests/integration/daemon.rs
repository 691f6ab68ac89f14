//! `tidings daemon`'s HTTP endpoints, against the real binary on a loopback port: the
//! unsubscribe link of a real email (GET confirms and changes nothing, the one-click POST
//! unsubscribes from every workflow, a forged, tampered or expired link changes nothing),
//! and the bounce and complaint webhook (token, validation, what it stores).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, free_port, write};
use crate::store::{Backend, backends, tidings, with_store};

/// One HTTP/1.1 request on a fresh connection; the status and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    // The server may answer (413) and close before a large body is written.
    let _ = stream.write_all(request.as_bytes());
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The daemon, stopped with SIGTERM when dropped (a failing test leaves no process).
pub struct Daemon {
    child: std::process::Child,
}

impl Daemon {
    pub fn start(b: &Backend, port: u16, every: &str) -> Self {
        Self::start_with(b, port, every, &[], std::process::Stdio::null())
    }

    /// With more arguments, and its log (stderr) going to `log`.
    pub fn start_with(
        b: &Backend,
        port: u16,
        every: &str,
        more: &[&str],
        log: std::process::Stdio,
    ) -> Self {
        Self::launch(b, port, every, more, &[], log)
    }

    /// With more environment variables, and its log going to `log`.
    pub fn start_env(
        b: &Backend,
        port: u16,
        every: &str,
        env: &[(&str, &str)],
        log: std::process::Stdio,
    ) -> Self {
        Self::launch(b, port, every, &[], env, log)
    }

    fn launch(
        b: &Backend,
        port: u16,
        every: &str,
        more: &[&str],
        env: &[(&str, &str)],
        log: std::process::Stdio,
    ) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args([
                "daemon",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--every",
                every,
            ])
            .args(more)
            .current_dir(&b.dir)
            .env("TIDINGS_DB", &b.url)
            .env("TIDINGS_TEST_API_TOKEN", "s3cret-token")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Self { child };
        // Ready once `/healthz` answers 200 (a connection taken before the server serves
        // may be closed unanswered).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exited) = daemon.child.try_wait().unwrap() {
                panic!("the daemon exited before it was ready: {exited}");
            }
            let answer = std::panic::catch_unwind(|| http(port, "GET", "/healthz", &[], b""));
            if matches!(answer, Ok((200, _))) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// SIGKILL: no chance to finish or release anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::mem::forget(self);
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

fn terminate(child: &std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&self.child);
        let _ = self.child.wait();
    }
}

fn unsubscribed(b: &Backend, id: &str) -> bool {
    with_store(b, async |s| {
        s.customer(id)
            .await
            .unwrap()
            .unwrap()
            .unsubscribed_at
            .is_some()
    })
}

pub(crate) fn count(b: &Backend, sql: &'static str) -> i64 {
    with_store(b, async move |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        sqlx::query(sql)
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get::<i64, _>(0)
    })
}

/// The demo shop sending over SMTP, its unsubscribe links at the public address that
/// fronts the daemon (the tests ask the daemon's port for the same path).
fn setup(b: &Backend, smtp: u16) {
    crate::smtp::project(
        b,
        smtp,
        "unsubscribe:\n  base_url: https://mail.acme.example/u\n  valid_for: 36500d\nserver:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
    );
}

/// The one-click link of a real marketing email: GET shows a page and changes nothing; the
/// POST unsubscribes the customer from every workflow at once (a deal queued in another
/// workflow is not sent), and only once however often it is used; forged, tampered and
/// expired links are refused with 4xx and change nothing.
#[test]
fn the_unsubscribe_link_confirms_on_get_and_unsubscribes_on_post() {
    for b in backends("daemon-unsubscribe") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        let port = free_port();
        setup(&b, server.port);
        let run = tidings(&b)
            .args(["run", "--once", "--now", "2026-06-01T08:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        // wei's reactivation deal carries the link.
        let received = server.received();
        let deal = received
            .iter()
            .map(|r| MessageParser::default().parse(&r.bytes).unwrap())
            .find(|m| {
                m.header_raw("X-Tidings-Workflow").map(str::trim) == Some("reactivation-deal")
                    && m.to().unwrap().first().unwrap().address() == Some("wei@example.cn")
            })
            .expect("wei's deal arrived");
        let url = deal
            .header_raw("List-Unsubscribe")
            .unwrap()
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        let path = url
            .strip_prefix("https://mail.acme.example")
            .expect("the configured base URL")
            .to_string();

        let daemon = Daemon::start(&b, port, "1h");
        let (status, page) = http(port, "GET", &path, &[], b"");
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("<form method=\"post\">") && page.contains("w•••@example.cn"),
            "{page}"
        );
        assert!(
            !unsubscribed(&b, "c4"),
            "{}: a GET must change nothing",
            b.label
        );

        // Every way a link can be wrong, each refused without a change.
        let token = path.trim_start_matches("/u/");
        let mut tampered = token.to_string();
        let first = tampered.remove(0);
        tampered.insert(0, if first == 'A' { 'B' } else { 'A' });
        let secret = with_store(&b, async |s| s.signing_secret().await.unwrap());
        let mint = |key: &[u8], expires: chrono::DateTime<chrono::Utc>| {
            tidings::unsubscribe::Signer::new(key).unwrap().token(
                &tidings::unsubscribe::Unsubscribe {
                    customer_id: "c2".into(),
                    workflow: "reactivation-deal".into(),
                    expires_at: expires,
                    delivery: None,
                    topic: None,
                    proof: false,
                },
            )
        };
        let later = chrono::Utc::now() + chrono::TimeDelta::days(30);
        let earlier = chrono::Utc::now() - chrono::TimeDelta::days(1);
        for (what, bad, expected) in [
            ("tampered", tampered, 400),
            ("forged", mint(b"not the key", later), 400),
            ("expired", mint(secret.as_bytes(), earlier), 410),
            ("malformed", "nonsense".to_string(), 400),
        ] {
            for method in ["GET", "POST"] {
                let (status, page) = http(
                    port,
                    method,
                    &format!("/u/{bad}"),
                    &[],
                    b"List-Unsubscribe=One-Click",
                );
                assert_eq!(status, expected, "{}: {what} {method}: {page}", b.label);
                assert!(page.contains("Nothing was changed"), "{page}");
            }
        }
        assert!(
            !unsubscribed(&b, "c2") && !unsubscribed(&b, "c4"),
            "{}",
            b.label
        );

        // RFC 8058's one-click POST, twice: one unsubscribe, one event.
        for _ in 0..2 {
            let (status, page) = http(
                port,
                "POST",
                &path,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                b"List-Unsubscribe=One-Click",
            );
            assert_eq!(status, 200, "{page}");
            // In c4's language (zh-CN), as every page of the link is.
            assert!(
                page.contains("您已退订") && page.contains("lang=\"zh\""),
                "{page}"
            );
        }
        assert!(unsubscribed(&b, "c4"), "{}", b.label);
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM events WHERE customer_id = 'c4' AND name = 'unsubscribed'"
            ),
            1
        );
        assert!(!unsubscribed(&b, "c2"), "only wei");
        assert_eq!(
            daemon.stop().code(),
            Some(0),
            "{}: SIGTERM exits 0",
            b.label
        );

        // A marketing email from another workflow, queued for wei before the unsubscribe,
        // is not sent; her transactional mail still would be.
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            sqlx::query("UPDATE deliveries SET state = 'pending', due_at = 0 WHERE recipient = 'wei@example.cn' AND workflow = 'reactivation-deal'")
                .execute(&mut *conn)
                .await
                .unwrap();
        });
        let before = server.received().len();
        let run = tidings(&b)
            .args(["run", "--once", "--now", "2026-06-01T08:05:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(
            server.received()[before..]
                .iter()
                .all(|r| r.to != "wei@example.cn"
                    || !String::from_utf8_lossy(&r.bytes).contains("List-Unsubscribe")),
            "{}: marketing mail to an unsubscribed customer left",
            b.label
        );
        // Every such email (the deal, and the last chance if the daemon's own pass queued
        // it) ended suppressed.
        assert!(
            count(
                &b,
                "SELECT COUNT(*) FROM deliveries WHERE recipient = 'wei@example.cn' AND workflow = 'reactivation-deal' AND state = 'suppressed'"
            ) >= 1
        );
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM deliveries WHERE recipient = 'wei@example.cn' AND workflow = 'reactivation-deal' AND state <> 'suppressed'"
            ),
            0,
            "{}",
            b.label
        );
    }
}

/// The bounce and complaint webhook: only with the bearer token; bad bodies are refused
/// with a pointer to the field and store nothing; a bounce suppresses the address, a
/// complaint unsubscribes its customer from marketing.
#[test]
fn bounce_and_complaint_reports_suppress_and_unsubscribe() {
    for b in backends("daemon-suppressions") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        let port = free_port();
        setup(&b, server.port);
        let daemon = Daemon::start(&b, port, "1h");
        let auth = ("Authorization", "Bearer s3cret-token");
        let json = ("Content-Type", "application/json");
        let suppressions = || count(&b, "SELECT COUNT(*) FROM suppressions");
        let before = suppressions();
        let body =
            br#"{"email":"ada@example.com","type":"bounce","reason":"550 5.1.1 no such user"}"#;
        for (what, headers, body, status, says) in [
            ("no token", vec![json], &body[..], 401, "Authorization: Bearer"),
            ("wrong token", vec![json, ("Authorization", "Bearer guess")], &body[..], 401, "not the one"),
            ("not JSON", vec![json, auth], &b"{\"email\":"[..], 400, "not JSON"),
            ("bad type", vec![json, auth], &br#"[{"email":"ada@example.com","type":"bounce"},{"email":"ken@example.jp","type":"soft"}]"#[..], 422, "\"pointer\":\"/1/type\""),
            ("no email", vec![json, auth], &br#"{"type":"bounce"}"#[..], 422, "\"pointer\":\"/email\""),
        ] {
            let (got, answer) = http(port, "POST", "/v1/suppressions", &headers, body);
            assert_eq!(got, status, "{}: {what}: {answer}", b.label);
            assert!(answer.contains(says), "{what}: {answer}");
        }
        let oversized = vec![b' '; 2 * 1024 * 1024];
        assert_eq!(
            http(port, "POST", "/v1/suppressions", &[json, auth], &oversized).0,
            413
        );
        assert_eq!(
            suppressions(),
            before,
            "{}: a refused report stored something",
            b.label
        );
        assert!(!unsubscribed(&b, "c2"));

        let (status, answer) = http(
            port,
            "POST",
            "/v1/suppressions",
            &[json, auth],
            br#"[{"email":"Ada@Example.com","type":"bounce","reason":"550 5.1.1 no such user"},{"email":"ken@example.jp","type":"complaint"}]"#,
        );
        assert_eq!(status, 200, "{answer}");
        assert!(
            answer.contains("\"suppressed\":1") && answer.contains("\"unsubscribed\":1"),
            "{answer}"
        );
        let reason: String = with_store(&b, async |s| {
            s.suppression_reason("ada@example.com")
                .await
                .unwrap()
                .unwrap()
        });
        assert_eq!(reason, "bounce: 550 5.1.1 no such user");
        assert!(
            unsubscribed(&b, "c2"),
            "{}: the complaint unsubscribes ken",
            b.label
        );
        assert_eq!(daemon.stop().code(), Some(0));
    }
}

/// The demo shop's daemon, with the API token, a pass a second and mail to a test server.
fn demo_daemon(b: &Backend) -> (SmtpServer, u16, Daemon) {
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let port = free_port();
    crate::smtp::project(
        b,
        server.port,
        "server:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
    );
    let daemon = Daemon::start(b, port, "1s");
    (server, port, daemon)
}

/// The shop's API: customers and events posted over HTTP reach the engine, whose next pass
/// sends the welcome email over SMTP; bad bodies are refused with the right 4xx and a JSON
/// pointer, and store nothing; a retried event is recorded once.
#[test]
fn customers_and_events_posted_over_http_start_a_journey() {
    for b in backends("daemon-api") {
        let (server, port, daemon) = demo_daemon(&b);
        let auth = ("Authorization", "Bearer s3cret-token");
        let json = ("Content-Type", "application/json");
        let customers = || count(&b, "SELECT COUNT(*) FROM customers");
        let events = || {
            count(
                &b,
                "SELECT COUNT(*) FROM events WHERE name = 'customer_created'",
            )
        };
        let (c0, e0) = (customers(), events());
        for (what, path, headers, body, status, says) in [
            ("no token", "/v1/customers", vec![json], &br#"{"id":"n1","email":"nia@example.com"}"#[..], 401, "Bearer"),
            ("not JSON", "/v1/customers", vec![json, auth], &b"[{"[..], 400, "not JSON"),
            (
                "wrong type",
                "/v1/customers",
                vec![json, auth],
                &br#"[{"id":"n1","email":"nia@example.com"},{"id":"n2","email":"nor@example.com","orders_count":"three"}]"#[..],
                422,
                "\"pointer\":\"/1/orders_count\"",
            ),
            ("bad email", "/v1/customers", vec![json, auth], &br#"{"id":"n1","email":"nia"}"#[..], 422, "\"pointer\":\"/email\""),
            ("not an object", "/v1/events", vec![json, auth], &b"[1]"[..], 422, "\"pointer\":\"/0\""),
            (
                "unknown customer",
                "/v1/events",
                vec![json, auth],
                &br#"{"customer_id":"ghost","name":"customer_created"}"#[..],
                422,
                "no customer has the id `ghost`",
            ),
        ] {
            let (got, answer) = http(port, "POST", path, &headers, body);
            assert_eq!(got, status, "{}: {what}: {answer}", b.label);
            assert!(answer.contains(says), "{what}: {answer}");
        }
        assert_eq!(
            (customers(), events()),
            (c0, e0),
            "{}: a refused body stored something",
            b.label
        );

        let (status, answer) = http(
            port,
            "POST",
            "/v1/customers",
            &[json, auth],
            br#"[{"id":"n1","email":"nia@example.com","first_name":"Nia"}]"#,
        );
        assert_eq!(status, 200, "{answer}");
        assert!(answer.contains("\"stored\":1"), "{answer}");
        let event = br#"{"customer_id":"n1","name":"customer_created"}"#;
        for _ in 0..2 {
            let (status, answer) = http(
                port,
                "POST",
                "/v1/events",
                &[json, auth, ("Idempotency-Key", "signup-n1")],
                event,
            );
            assert_eq!(status, 200, "{answer}");
        }
        assert_eq!(
            events(),
            e0 + 1,
            "{}: the retried POST recorded one event",
            b.label
        );

        // The daemon's next pass greets Nia.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.received().iter().any(|r| r.to == "nia@example.com") {
            assert!(
                Instant::now() < deadline,
                "{}: no welcome email arrived",
                b.label
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let welcome = server
            .received()
            .into_iter()
            .filter(|r| r.to == "nia@example.com")
            .collect::<Vec<_>>();
        assert_eq!(welcome.len(), 1, "{}", b.label);
        assert!(String::from_utf8_lossy(&welcome[0].bytes).contains("Welcome to Acme, Nia"));

        // `/metrics` in Prometheus text: what the store holds and what the passes did. The
        // daemon may still be sending, so the store is read until it holds still between
        // the two reads.
        let deadline = Instant::now() + Duration::from_secs(10);
        let metrics = loop {
            let sql = "SELECT COUNT(*) FROM deliveries WHERE workflow = 'welcome-series' AND channel = 'email' AND state = 'sent'";
            let before = count(&b, sql);
            let (status, metrics) = http(port, "GET", "/metrics", &[], b"");
            assert_eq!(status, 200);
            let line =
                format!("tidings_emails{{workflow=\"welcome-series\",state=\"sent\"}} {before}");
            if count(&b, sql) == before {
                assert!(metrics.contains(&line), "{line} in\n{metrics}");
                break metrics;
            }
            assert!(Instant::now() < deadline, "the store never held still");
        };
        for line in [
            "# TYPE tidings_enrollments gauge",
            "tidings_queue_depth ",
            "# TYPE tidings_passes_total counter",
            "tidings_emails_sent_total ",
            "tidings_last_pass_seconds ",
        ] {
            assert!(metrics.contains(line), "{line}: {metrics}");
        }
        let passes: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tidings_passes_total "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(passes >= 1.0, "{metrics}");
        // The statements the daemon's store sent: at least a few per pass (a pass that
        // finds nothing still asks for due journeys, events and emails).
        let statements: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tidings_store_statements_total "))
            .unwrap_or_else(|| panic!("no statement count in {metrics}"))
            .parse()
            .unwrap();
        assert!(statements >= 3.0 * passes, "{metrics}");
        assert_eq!(daemon.stop().code(), Some(0));
    }
}

/// Reload: an invalid workflow file is refused — the error in `/healthz`, the previous set
/// still running — and a valid change is picked up without a restart.
#[test]
fn workflow_changes_are_reloaded_and_invalid_ones_refused() {
    let b = backends("daemon-reload").remove(0);
    let (server, port, daemon) = demo_daemon(&b);
    let auth = ("Authorization", "Bearer s3cret-token");
    let health = || http(port, "GET", "/healthz", &[auth], b"").1;
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}",
                health()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert!(health().contains("\"status\":\"ok\"") && health().contains("welcome-series"));

    crate::common::write(
        &b.dir,
        "workflows/broken.yaml",
        "name: broken\ntrigger:\n  schedule: \"61 * * * *\"\nsteps:\n  - wait: 1d\n",
    );
    wait_for("the refusal", &|| {
        health().contains("\"status\":\"degraded\"")
    });
    let h = health();
    assert!(
        h.contains("workflows/broken.yaml:3") && h.contains("61"),
        "{h}"
    );
    // The previous set still runs: a sign-up is welcomed.
    let post = |path: &str, body: &[u8]| {
        let (status, answer) = http(port, "POST", path, &[auth], body);
        assert_eq!(status, 200, "{answer}");
    };
    post(
        "/v1/customers",
        br#"{"id":"r1","email":"rae@example.com","first_name":"Rae"}"#,
    );
    post(
        "/v1/events",
        br#"{"customer_id":"r1","name":"customer_created","id":"r1-created"}"#,
    );
    wait_for("the welcome email", &|| {
        server.received().iter().any(|r| r.to == "rae@example.com")
    });

    // A valid change: the broken file fixed into a new workflow, picked up without a restart.
    std::fs::remove_file(b.dir.join("workflows/broken.yaml")).unwrap();
    crate::common::write(
        &b.dir,
        "workflows/said-hello.yaml",
        "name: said-hello\nclass: transactional\ntrigger:\n  event: said_hello\nsteps:\n  - id: reply\n    email: thanks/order\n    subject: \"Hello back, {{ customer.first_name }}\"\n",
    );
    wait_for("the reload", &|| {
        health().contains("\"status\":\"ok\"") && health().contains("said-hello")
    });
    post(
        "/v1/events",
        br#"{"customer_id":"r1","name":"said_hello","id":"r1-hello"}"#,
    );
    wait_for("the new workflow's email", &|| {
        server
            .received()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.bytes).contains("Hello back, Rae"))
    });
    assert_eq!(daemon.stop().code(), Some(0));
}

/// SQLite runs one daemon: a second one on the same store is refused with a message that
/// says why, and the first keeps serving.
#[test]
fn a_second_daemon_on_one_sqlite_store_is_refused() {
    let b = backends("daemon-sole").remove(0);
    crate::smtp::project(&b, free_port(), "");
    let port = free_port();
    let first = Daemon::start(&b, port, "1h");
    let second = tidings(&b)
        .args(["daemon", "--listen", &format!("127.0.0.1:{}", free_port())])
        .run();
    assert_eq!(second.code, 1, "{}", second.transcript());
    assert!(
        second
            .stderr
            .contains("another tidings daemon is running on the SQLite store")
            && second.stderr.contains("use PostgreSQL"),
        "{}",
        second.stderr
    );
    assert_eq!(http(port, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(first.stop().code(), Some(0));
    // Once the first is gone, a daemon starts again.
    let again = Daemon::start(&b, port, "1h");
    assert_eq!(again.stop().code(), Some(0));
}

/// The welcome series end to end on one daemon (SQLite): customers and their
/// `customer_created` events posted over HTTP, then all three emails over SMTP, in order,
/// each wait (shortened to seconds) kept, nothing twice.
#[test]
fn one_daemon_walks_the_welcome_series() {
    let b = backends("daemon-series").remove(0);
    walk_the_welcome_series(&b, 1);
}

/// The same with two daemon processes on PostgreSQL sharing the work: every email once.
#[test]
fn two_daemons_on_postgres_send_every_email_once() {
    let Some(b) = crate::store::postgres("daemon-replicas") else {
        return;
    };
    walk_the_welcome_series(&b, 2);
}

fn walk_the_welcome_series(b: &Backend, replicas: usize) {
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    crate::smtp::project(
        b,
        server.port,
        "  concurrency: 4\nserver:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
    );
    // A test configuration of the waits: seconds instead of days.
    crate::common::edit(
        &b.dir,
        "workflows/welcome-series.yaml",
        "  - wait: 2d\n",
        "  - wait: 2s\n",
    );
    crate::common::edit(
        &b.dir,
        "workflows/welcome-series.yaml",
        "  - wait: 5d\n",
        "  - wait: 3s\n",
    );
    let ports: Vec<u16> = (0..replicas).map(|_| free_port()).collect();
    let daemons: Vec<Daemon> = ports.iter().map(|p| Daemon::start(b, *p, "1s")).collect();
    let auth = ("Authorization", "Bearer s3cret-token");
    const N: usize = 60;
    let customers: Vec<String> = (0..N)
        .map(|i| format!(r#"{{"id":"p{i}","email":"p{i}@example.com","first_name":"P{i}"}}"#))
        .collect();
    let (status, answer) = http(
        ports[0],
        "POST",
        "/v1/customers",
        &[auth],
        format!("[{}]", customers.join(",")).as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let mut posted = std::collections::BTreeMap::new();
    for i in 0..N {
        let event =
            format!(r#"{{"customer_id":"p{i}","name":"customer_created","id":"p{i}-created"}}"#);
        posted.insert(format!("p{i}@example.com"), Instant::now());
        let (status, answer) = http(
            ports[i % replicas],
            "POST",
            "/v1/events",
            &[auth],
            event.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
    }
    // p0@example.com … (not the demo's priya@example.in)
    let ours = |to: &str| {
        to.strip_prefix('p')
            .and_then(|rest| rest.strip_suffix("@example.com"))
            .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    let arrived = || server.received().iter().filter(|r| ours(&r.to)).count();
    let deadline = Instant::now() + Duration::from_secs(180);
    while arrived() < 3 * N {
        assert!(
            Instant::now() < deadline,
            "{}: only {} of {} arrived",
            b.label,
            arrived(),
            3 * N
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few more passes of every daemon: nothing is sent again.
    std::thread::sleep(Duration::from_secs(3));
    for d in daemons {
        assert_eq!(d.stop().code(), Some(0));
    }
    let mut per_id = std::collections::BTreeMap::<String, usize>::new();
    let mut series = std::collections::BTreeMap::<String, Vec<(Instant, String)>>::new();
    for r in server.received().iter().filter(|r| ours(&r.to)) {
        let m = MessageParser::default().parse(&r.bytes).unwrap();
        *per_id
            .entry(m.message_id().unwrap().to_string())
            .or_default() += 1;
        series
            .entry(r.to.clone())
            .or_default()
            .push((r.at, m.subject().unwrap_or_default().to_string()));
    }
    assert_eq!(per_id.len(), 3 * N, "{}: three emails each", b.label);
    assert!(
        per_id.values().all(|n| *n == 1),
        "{}: an email arrived twice: {per_id:?}",
        b.label
    );
    for (to, mut emails) in series {
        emails.sort();
        let subjects: Vec<&str> = emails.iter().map(|e| e.1.as_str()).collect();
        assert!(
            subjects[0].starts_with("Welcome to Acme")
                && subjects[1].starts_with("Three ways")
                && subjects[2].starts_with("10% off"),
            "{to}: {subjects:?}"
        );
        // The waits held: the series runs from the event (stamped when the daemon took it,
        // after the test posted it), two seconds to the second email, three more to the
        // third.
        let tips = emails[1].0 - posted[&to];
        let offer = emails[2].0 - posted[&to];
        assert!(tips >= Duration::from_secs(2), "{to}: {tips:?}");
        assert!(offer >= Duration::from_secs(5), "{to}: {offer:?}");
    }
}

/// `--log-format json`: every line the daemon logs is one JSON object with its level and
/// message, and a pass's counts as fields.
#[test]
fn the_daemon_logs_json_lines() {
    let b = backends("daemon-json-logs").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    crate::smtp::project(&b, server.port, "");
    let port = free_port();
    let log = b.dir.join("daemon.log");
    let daemon = Daemon::start_with(
        &b,
        port,
        "1s",
        &["--log-format", "json"],
        std::fs::File::create(&log).unwrap().into(),
    );
    // The demo's events make the first pass send mail.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.received().is_empty() {
        assert!(Instant::now() < deadline, "no pass sent anything");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(daemon.stop().code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["message"].is_string()),
        "{text}"
    );
    // The shipped support hook's `${SUPPORT_URL}` is not set here: said at the start.
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("`${SUPPORT_URL}` is not set"))
            && l["at"]
                .as_str()
                .is_some_and(|a| a.ends_with("nps-survey.yaml:25"))),
        "{text}"
    );
    let pass = lines
        .iter()
        .find(|l| l["message"] == "pass")
        .unwrap_or_else(|| panic!("no pass logged: {text}"));
    assert!(pass["emails_sent"].as_u64().unwrap() >= 1, "{pass}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "tidings daemon stopping"),
        "{text}"
    );
}

/// The OpenAPI document is served as checked in and lists exactly the daemon's routes:
/// each path and method it names is answered (not 404 or 405), and it names each route.
#[test]
fn the_openapi_document_is_served_and_matches_the_routes() {
    let b = backends("daemon-openapi").remove(0);
    let (_server, port, _daemon) = demo_daemon(&b);
    let (status, body) = http(port, "GET", "/openapi.json", &[], b"");
    assert_eq!(status, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let file =
        std::fs::read_to_string(crate::common::repo_root().join("docs/openapi.json")).unwrap();
    let file: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(served, file);
    assert!(file["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut listed = Vec::new();
    for (path, item) in file["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                listed.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    for route in &listed {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{token}", "not-a-token")
            .replace("{file}", "not-a-token.gif")
            .replace("{id}", "nobody");
        let (status, body) = http(port, method, &path, &[], b"{}");
        assert!(status != 404 && status != 405, "{route}: {status} {body}");
    }
    listed.sort();
    let mut routes = vec![
        "GET /a/{token}",
        "POST /a/{token}",
        "GET /c/{token}",
        "GET /o/{file}",
        "DELETE /v1/customers/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /u/{token}",
        "POST /u/{token}",
        "POST /v1/customers",
        "POST /v1/events",
        "POST /v1/orders",
        "POST /v1/segment",
        "POST /v1/suppressions",
    ];
    routes.sort();
    assert_eq!(listed, routes);
    // What is not a route is 404, so the check above can fail.
    assert_eq!(http(port, "GET", "/v1/customers", &[], b"").0, 405);
    assert_eq!(http(port, "GET", "/v2/events", &[], b"").0, 404);
}

/// A runaway audience — cheap for most customers, long for one whose data makes it so —
/// is stopped by the wall-clock budget (`limits.expression_time`): that customer's
/// enrollment fails with the reason, the others enroll, and the daemon keeps answering
/// and taking new work.
#[test]
fn a_runaway_expression_fails_its_enrollment_and_the_daemon_goes_on() {
    let b = backends("daemon-runaway").remove(0);
    let checks = vec!["customer.tags.contains(\"never\")"; 600].join(", ");
    crate::common::write(
        &b.dir,
        "tidings.yaml",
        "database: ${TIDINGS_DB}\nserver:\n  token: ${TIDINGS_TEST_API_TOKEN}\nlimits:\n  expression_time: 2ms\n",
    );
    crate::common::write(
        &b.dir,
        "workflows/tagged.yaml",
        &format!(
            "name: tagged\ntrigger:\n  event: customer_created\naudience: customer.tags.len() < 100 || [{checks}].len() > 0\nsteps:\n  - id: mark\n    update: {{ tags: {{ add: [seen] }} }}\n"
        ),
    );
    let port = free_port();
    let _daemon = Daemon::start(&b, port, "1s");
    let auth = ("Authorization", "Bearer s3cret-token");
    let many: Vec<String> = (0..900).map(|i| format!("t{i}")).collect();
    let customers = serde_json::json!([
        { "id": "a", "email": "a@example.com", "tags": ["x"] },
        { "id": "heavy", "email": "h@example.com", "tags": many },
        { "id": "b", "email": "b@example.com" },
    ]);
    let post = |path: &str, body: &serde_json::Value| {
        let (status, text) = http(port, "POST", path, &[auth], body.to_string().as_bytes());
        assert_eq!(status, 200, "{path}: {text}");
    };
    post("/v1/customers", &customers);
    post(
        "/v1/events",
        &serde_json::json!(
            ["a", "heavy", "b"]
                .iter()
                .map(|c| serde_json::json!({ "customer_id": c, "name": "customer_created" }))
                .collect::<Vec<_>>()
        ),
    );
    let journeys = || {
        crate::store::text_pairs(
            &b,
            "SELECT customer_id, state || ':' || COALESCE(error, '') FROM enrollments ORDER BY customer_id",
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let moving = |j: Vec<(String, String)>| j.iter().any(|(_, s)| s.starts_with("active"));
    while journeys().len() < 3 || moving(journeys()) {
        assert!(Instant::now() < deadline, "{:?}", journeys());
        std::thread::sleep(Duration::from_millis(100));
    }
    let j = journeys();
    assert_eq!(j[0], ("a".into(), "completed:".into()), "{j:?}");
    assert_eq!(j[1], ("b".into(), "completed:".into()), "{j:?}");
    assert_eq!(j[2].0, "heavy");
    assert!(
        j[2].1.starts_with("failed:") && j[2].1.contains("ran for longer than 2 ms"),
        "{j:?}"
    );
    // Still answering, and still working.
    let (status, body) = http(port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    post(
        "/v1/customers",
        &serde_json::json!({ "id": "c", "email": "c@example.com" }),
    );
    post(
        "/v1/events",
        &serde_json::json!({ "customer_id": "c", "name": "customer_created" }),
    );
    // Enrolled, then moved on: a pass may end between the two.
    while journeys().len() < 4 || moving(journeys()) {
        assert!(Instant::now() < deadline, "{:?}", journeys());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(journeys()[2], ("c".into(), "completed:".into()));
}

/// The kill test: the daemon, running a 20,000-email campaign over SMTP, is killed with
/// SIGKILL twice — while it enrolls and steps the journeys, and while it sends — and
/// started again each time. Every email arrives; the only duplicates are the messages the
/// SMTP sessions had in flight at a kill (at most one per session per kill), each with the
/// Message-ID of its first copy.
#[test]
fn a_daemon_killed_during_a_campaign_loses_nothing() {
    const N: usize = 20_000;
    const SESSIONS: usize = 4;
    let b = backends("daemon-kill").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let addresses: Vec<String> = (0..N).map(|i| format!("k{i}@example.com")).collect();
    crate::smtp::new_customers(
        &b,
        server.port,
        &format!("  concurrency: {SESSIONS}\n"),
        &addresses,
    );
    // The campaign: one email to each (the series' later emails, long due by the wall
    // clock the daemon runs on, are not part of it).
    crate::common::write(
        &b.dir,
        "workflows/welcome-series.yaml",
        "name: welcome-series\ntrigger:\n  event: customer_created\nsteps:\n  - id: hello\n    email: welcome/hello\n    subject: \"Welcome, {{ customer.first_name }}\"\n",
    );
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(600);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut kills = 0;
    // Mid-engine: journeys are being enrolled and moved on, nothing sent yet.
    let daemon = Daemon::start(&b, free_port(), "1s");
    wait_for("enrollments", &|| {
        count(&b, "SELECT COUNT(*) FROM enrollments") >= 2_000
    });
    let before_send = server.received().len();
    daemon.kill();
    kills += 1;
    // Mid-send.
    let daemon = Daemon::start(&b, free_port(), "1s");
    wait_for("sending", &|| {
        server.received().len() >= before_send + 4_000
    });
    let sent_at_kill = server.received().len();
    daemon.kill();
    kills += 1;
    assert!(
        sent_at_kill < N,
        "the campaign ended before the second kill"
    );
    // Started again, it finishes the campaign.
    let daemon = Daemon::start(&b, free_port(), "1s");
    wait_for("every email", &|| {
        count(
            &b,
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'email' AND state = 'sent'",
        ) >= N as i64
    });
    assert!(daemon.stop().success());

    assert_eq!(
        count(
            &b,
            "SELECT COUNT(*) FROM deliveries WHERE channel = 'email'"
        ),
        N as i64
    );
    let mut copies: std::collections::BTreeMap<String, (usize, String)> = Default::default();
    for r in server.received() {
        let m = MessageParser::default().parse(&r.bytes).unwrap();
        let entry = copies
            .entry(m.message_id().unwrap().to_string())
            .or_insert((0, r.to.clone()));
        entry.0 += 1;
        assert_eq!(entry.1, r.to, "one Message-ID, one recipient");
    }
    assert_eq!(copies.len(), N, "every email arrived");
    let recipients: std::collections::BTreeSet<&String> = copies.values().map(|c| &c.1).collect();
    assert_eq!(recipients.len(), N, "one welcome each");
    let duplicates: usize = copies.values().map(|c| c.0 - 1).sum();
    assert!(
        duplicates <= kills * SESSIONS,
        "{duplicates} duplicates after {kills} kills"
    );
    eprintln!(
        "{kills} kills (the first before any of {before_send} sends, the second after {sent_at_kill}); {duplicates} duplicates; {N} emails"
    );
}

/// Regression (issue 29, item 11): `daemon --listen 127.0.0.1:PORT` without a public
/// address wrote `http://127.0.0.1:8080/u/...` into emails, a link that pointed nowhere.
/// The links follow `--listen`, and the daemon answers them there.
#[test]
fn without_a_public_address_links_follow_listen() {
    let b = backends("daemon-links-follow-listen").remove(0);
    write(&b.dir, "tidings.yaml", "database: ${TIDINGS_DB}\n");
    write(
        &b.dir,
        "workflows/hello.yaml",
        "name: hello\ntrigger:\n  event: signed_up\nsteps:\n  - email: hello\n    subject: Hello\n",
    );
    write(
        &b.dir,
        "templates/hello.html",
        "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(&b.dir, "customers.csv", "id,email\nada,ada@example.com\n");
    write(&b.dir, "events.csv", "customer_id,name\nada,signed_up\n");
    for kind in ["customers", "events"] {
        let file = format!("{kind}.csv");
        let run = tidings(&b).args(["import", kind, &file]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    let port = free_port();
    let daemon = Daemon::start(&b, port, "1h");
    let mail = b.dir.join("out/mail");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let eml = loop {
        let found = std::fs::read_dir(&mail)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"));
        if let Some(p) = found {
            break std::fs::read_to_string(p).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no email was written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let base = format!("http://127.0.0.1:{port}/u/");
    assert!(eml.contains(&base), "{eml}");
    assert!(!eml.contains("127.0.0.1:8080"), "{eml}");
    let at = eml.find(&base).unwrap();
    let token: String = eml[at + base.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let (status, page) = http(port, "GET", &format!("/u/{token}"), &[], b"");
    assert_eq!(status, 200, "{page}");
    daemon.stop();
}

/// Regression (issue 29, item 17): a customer added over the API had no stage until the
/// next day's sweep, so `stage_entered: prospect` never started for them. The next pass
/// places them.
#[test]
fn a_customer_posted_over_the_api_is_placed_in_a_stage_at_the_next_pass() {
    for b in backends("daemon-api-stage") {
        std::fs::copy(
            crate::common::repo_root().join("stages.yaml"),
            b.dir.join("stages.yaml"),
        )
        .unwrap();
        let (_server, port, daemon) = demo_daemon(&b);
        // The first pass has swept today's stages; what comes now waits for no sweep.
        std::thread::sleep(Duration::from_secs(2));
        let headers = [
            ("Authorization", "Bearer s3cret-token"),
            ("Content-Type", "application/json"),
        ];
        let body = br#"{"id":"new1","email":"new1@example.com"}"#;
        let (status, answer) = http(port, "POST", "/v1/customers", &headers, body);
        assert!(status < 300, "{}: {status} {answer}", b.label);
        let placed = "SELECT COUNT(*) FROM customers WHERE id = 'new1' AND stage = 'prospect'";
        let entered =
            "SELECT COUNT(*) FROM events WHERE customer_id = 'new1' AND name = 'stage_entered'";
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&b, placed) == 0 {
            assert!(
                Instant::now() < deadline,
                "{}: new1 was not placed",
                b.label
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(count(&b, entered), 1, "{}", b.label);
        daemon.stop();
    }
}
