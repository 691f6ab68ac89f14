//! Webhook steps against a real HTTP server on loopback: the rendered JSON body, retries
//! with the same idempotency key, permanent failures, giving up, and the egress rule that
//! keeps webhooks off loopback and private addresses unless the config allows the host.

use crate::common::{HttpReceiver, write};
use crate::store::{Backend, backends, outbox, tidings, with_examples};

const CANCELLED: &str = "customer_id,name,at,reason\n\
c1,account_cancelled,2026-05-30T08:00:00Z,too expensive\n\
c2,account_cancelled,2026-05-30T08:00:00Z,\n\
c3,account_cancelled,2026-05-30T08:00:00Z,moving\n\
c4,account_cancelled,2026-05-30T08:00:00Z,moving\n";

/// The webhook step of the shipped cancellation feedback.
const STEP: &str = "notify-crm";

fn project(b: &Backend, config: &str) {
    with_examples(b);
    write(
        &b.dir,
        "tidings.yaml",
        &format!("database: ${{TIDINGS_DB}}\n{config}"),
    );
    write(&b.dir, "events.csv", CANCELLED);
    let demo = crate::common::repo_root().join("examples/demo");
    let (customers, orders) = (demo.join("customers.csv"), demo.join("orders.csv"));
    for (kind, file) in [
        ("customers", customers.to_str().unwrap()),
        ("orders", orders.to_str().unwrap()),
        ("events", "events.csv"),
    ] {
        let run = tidings(b).args(["import", kind, file]).run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    }
}

fn pass(b: &Backend, crm: &str, now: &str) -> crate::common::Run {
    let run = tidings(b)
        .env("CRM_URL", crm)
        .args(["run", "--once", "--now", now])
        .run();
    assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    run
}

fn webhook_states(b: &Backend) -> Vec<(String, String, i64, Option<String>)> {
    outbox(b)
        .0
        .into_iter()
        .filter(|d| d.channel == "webhook")
        .map(|d| (d.customer_id, d.state.to_string(), d.attempts, d.last_error))
        .collect()
}

#[test]
fn webhooks_are_called_retried_and_given_up_on() {
    for b in backends("webhooks") {
        // c1's receiver is down once; c3's call is refused; c4's receiver stays down.
        let receiver = HttpReceiver::start(Box::new(|r, before| {
            match (
                r.body.contains("\"c1\""),
                r.body.contains("\"c3\""),
                r.body.contains("\"c4\""),
            ) {
                (true, _, _) if before == 0 => 503,
                (_, true, _) => 400,
                (_, _, true) => 503,
                _ => 200,
            }
        }));
        project(
            &b,
            "webhooks: { allow_hosts: [127.0.0.1], max_attempts: 3 }\n",
        );
        let crm = format!("http://127.0.0.1:{}", receiver.port);
        pass(&b, &crm, "2026-05-30T08:00:00Z");
        assert!(
            receiver.requests().is_empty(),
            "the call waits for an answer, three days at most"
        );

        let first = pass(&b, &crm, "2026-06-02T08:00:00Z");
        assert!(
            first
                .stdout
                .contains("called 1 webhook; 2 will be retried, 1 failed"),
            "{}: {}",
            b.label,
            first.transcript()
        );
        assert!(
            first.stderr.contains(
                "warning: webhook of `cancellation-feedback` step `notify-crm` for customer c1 (attempt 1): the receiver answered 503 Service Unavailable"
            ),
            "{}: {}",
            b.label,
            first.stderr
        );
        assert!(
            first
                .stderr
                .contains("customer c3 failed: the receiver answered 400 Bad Request"),
            "{}",
            first.stderr
        );

        pass(&b, &crm, "2026-06-02T09:00:00Z");
        pass(&b, &crm, "2026-06-02T10:00:00Z");
        let mut states = webhook_states(&b);
        states.sort();
        let summary: Vec<(&str, &str, i64)> = states
            .iter()
            .map(|(c, s, a, _)| (c.as_str(), s.as_str(), *a))
            .collect();
        assert_eq!(
            summary,
            [
                ("c1", "sent", 2),
                ("c2", "sent", 1),
                ("c3", "failed", 1),
                ("c4", "failed", 3)
            ],
            "{}",
            b.label
        );
        assert!(
            states[3]
                .3
                .as_deref()
                .unwrap()
                .starts_with("gave up after 3 attempts: the receiver answered 503"),
            "{states:?}"
        );
        // The journeys went on; the failures are counted where an operator looks.
        let status = tidings(&b).args(["status"]).run();
        assert!(
            status.stdout.contains("webhook calls that failed")
                && status
                    .stdout
                    .contains(&format!("cancellation-feedback/{STEP}: 2")),
            "{}: {}",
            b.label,
            status.stdout
        );
        let json = tidings(&b).args(["status", "--json"]).run();
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        let wf = doc["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workflow"] == "cancellation-feedback")
            .unwrap();
        assert_eq!(wf["webhooks_failed"][STEP], 2, "{}: {wf}", b.label);
        let report = tidings(&b).args(["report", "--out", "report.html"]).run();
        assert_eq!(report.code, 0, "{}", report.transcript());
        let page = std::fs::read_to_string(b.dir.join("report.html")).unwrap();
        assert!(
            page.contains("id=\"failed-webhooks\"")
                && page.contains(&format!("cancellation-feedback/{STEP}</td><td>2<")),
            "{}",
            b.label
        );
        let port = crate::common::free_port();
        let daemon = crate::daemon::Daemon::start(&b, port, "1h");
        let (_, metrics) = crate::daemon::http(port, "GET", "/metrics", &[], b"");
        assert!(daemon.stop().success());
        let line = format!(
            "tidings_webhooks_failed{{workflow=\"cancellation-feedback\",step=\"{STEP}\"}} 2"
        );
        assert!(metrics.contains(&line), "{}: {metrics}", b.label);

        let requests = receiver.requests();
        assert_eq!(requests.len(), 2 + 1 + 1 + 3, "{}", b.label);
        let c1: Vec<_> = requests
            .iter()
            .filter(|r| r.body.contains("\"c1\""))
            .collect();
        assert_eq!(c1.len(), 2);
        assert_eq!(
            c1[0].header("idempotency-key"),
            c1[1].header("idempotency-key")
        );
        assert_eq!(c1[0].method, "POST");
        assert_eq!(c1[0].path, "/hooks/cancelled");
        assert_eq!(c1[0].header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&c1[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({ "customer_id": "c1", "reason": "too expensive" })
        );
        let c2 = requests.iter().find(|r| r.body.contains("\"c2\"")).unwrap();
        assert!(c2.body.contains("\"reason\":\"unknown\""), "{}", c2.body);
    }
}

#[test]
fn webhooks_never_reach_loopback_unless_allowed() {
    let b = backends("webhook-egress").remove(0);
    let receiver = HttpReceiver::start(Box::new(|_, _| 200));
    project(&b, "");
    pass(&b, "http://127.0.0.1:9", "2026-05-30T08:00:00Z");
    // An address in the URL, and a name that resolves to loopback, are both refused.
    let literal = pass(
        &b,
        &format!("http://127.0.0.1:{}", receiver.port),
        "2026-06-02T08:00:00Z",
    );
    assert!(
        literal.stderr.contains(
            "customer c1 failed: `127.0.0.1` is a loopback, private or link-local address (127.0.0.1); webhooks may not reach it unless `webhooks.allow_hosts` in tidings.yaml lists `127.0.0.1`"
        ),
        "{}",
        literal.stderr
    );
    let run = tidings(&b)
        .args([
            "event",
            "account_cancelled",
            "--customer",
            "c5",
            "--at",
            "2026-06-02T08:00:00Z",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    // c5's event is seen when it happens: its journey is on time.
    let localhost = format!("http://localhost:{}", receiver.port);
    pass(&b, &localhost, "2026-06-02T08:00:00Z");
    let named = pass(&b, &localhost, "2026-06-05T08:00:00Z");
    assert!(
        named.stderr.contains(
            "customer c5 failed: `localhost` is a loopback, private or link-local address ("
        ) && named
            .stderr
            .contains("unless `webhooks.allow_hosts` in tidings.yaml lists `localhost`"),
        "{}",
        named.stderr
    );
    assert!(
        receiver.requests().is_empty(),
        "no request reached the server"
    );
    assert!(webhook_states(&b).iter().all(|(_, s, _, _)| s == "failed"));
}

/// A receiver slower than the step's `timeout` is given up on for this attempt (retried
/// later) without holding up the rest of the pass: the same pass still sends its emails.
#[test]
fn a_slow_webhook_times_out_and_the_pass_goes_on() {
    let b = backends("webhook-slow").remove(0);
    let receiver = HttpReceiver::start(Box::new(|_, _| {
        std::thread::sleep(std::time::Duration::from_secs(4));
        200
    }));
    project(&b, "webhooks: { allow_hosts: [127.0.0.1] }\n");
    let file = b.dir.join("workflows/cancellation-feedback.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("      method: POST\n"));
    std::fs::write(
        &file,
        text.replace(
            "      method: POST\n",
            "      method: POST\n      timeout: 1s\n",
        ),
    )
    .unwrap();
    let crm = format!("http://127.0.0.1:{}", receiver.port);
    pass(&b, &crm, "2026-05-30T08:00:00Z");
    let started = std::time::Instant::now();
    let run = pass(&b, &crm, "2026-06-02T08:00:00Z");
    // The day's other emails went out in the same pass as the slow calls.
    assert!(
        run.stdout.contains("delivered ") && !run.stdout.contains("delivered 0 emails"),
        "{}",
        run.transcript()
    );
    let states = webhook_states(&b);
    assert_eq!(states.len(), 4, "{states:?}");
    assert!(
        states.iter().all(|(_, state, _, error)| state == "retrying"
            && error
                .as_deref()
                .is_some_and(|e| e.contains("no answer within 1 s"))),
        "{states:?}"
    );
    // Four calls of one second each, not four of the receiver's four seconds.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(14),
        "{:?}",
        started.elapsed()
    );
}

/// A receiver that answers 500 with a body that never ends: each call is recorded as a
/// retry with the start of the answer, read no further than a few KB — the answer, not
/// the call's timeout, ends it.
#[test]
fn an_endless_answer_is_read_only_a_few_kilobytes() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let b = backends("webhook-endless").remove(0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let calls = std::sync::Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    b"HTTP/1.1 500 Busy\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = format!(
                    "{:x}\r\n{}\r\n",
                    65_536,
                    &"overloaded ".repeat(6_000)[..65_536]
                );
                // Until the caller hangs up.
                while stream.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    project(&b, "webhooks: { allow_hosts: [127.0.0.1] }\n");
    let file = b.dir.join("workflows/cancellation-feedback.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "      method: POST\n",
            "      method: POST\n      timeout: 60s\n",
        ),
    )
    .unwrap();
    let crm = format!("http://127.0.0.1:{port}");
    pass(&b, &crm, "2026-05-30T08:00:00Z");
    pass(&b, &crm, "2026-06-02T08:00:00Z");
    let states = webhook_states(&b);
    assert_eq!(states.len(), 4, "{states:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    for (_, state, attempts, error) in &states {
        let error = error.as_deref().unwrap_or_default();
        assert_eq!(state, "retrying", "{states:?}");
        assert_eq!(*attempts, 1);
        assert!(
            error.starts_with(
                "the receiver answered 500 Internal Server Error: overloaded overloaded"
            ),
            "{error}"
        );
        assert!(error.len() < 300, "{} bytes kept", error.len());
    }
}

/// With a proxy in the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`), a webhook
/// to a name resolving to loopback is still refused: the call goes direct, checked on the
/// address connected to, and the proxy hears nothing (it would have been asked to connect
/// to `localhost` on our behalf, past the guard).
#[test]
fn a_proxy_in_the_environment_does_not_bypass_the_guard() {
    let b = backends("webhook-proxy").remove(0);
    let receiver = HttpReceiver::start(Box::new(|_, _| 200));
    let proxy = HttpReceiver::start(Box::new(|_, _| 200));
    project(&b, "");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    // The cancellation's webhook falls due a day after the event.
    pass(&b, "http://127.0.0.1:9", "2026-05-30T08:00:00Z");
    let mut run = tidings(&b).env("CRM_URL", &format!("http://localhost:{}", receiver.port));
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        run = run.env(var, &proxy_url);
    }
    let run = run
        .env("NO_PROXY", "")
        .args(["run", "--once", "--now", "2026-06-02T08:00:00Z"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("`localhost` is a loopback, private or link-local address"),
        "{}",
        run.stderr
    );
    assert!(
        proxy.requests().is_empty(),
        "the proxy was asked: {:?}",
        proxy.requests().len()
    );
    assert!(receiver.requests().is_empty());
    assert!(webhook_states(&b).iter().all(|(_, s, _, _)| s == "failed"));
}
