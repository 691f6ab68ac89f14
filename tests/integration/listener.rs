//! The public listener under load and what it tells strangers (issue 29, items 9 and 16):
//! one address's slow connections cannot take it, health says no more than "ok" without
//! the token, the client's address is the peer's unless a trusted proxy names another, and
//! every refusal of the API is the JSON shape, with 400 for a body that is not text.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Act, SmtpServer, free_port};
use crate::daemon::{Daemon, http};
use crate::store::{Backend, backends};

/// The demo shop behind a daemon with `server` settings (the SMTP server lives as long as
/// the daemon needs it).
fn shop(name: &str, server: &str, every: &str) -> (Backend, SmtpServer, u16, Daemon) {
    let b = backends(name).remove(0);
    let smtp = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    crate::smtp::project(&b, smtp.port, server);
    let port = free_port();
    let daemon = Daemon::start(&b, port, every);
    (b, smtp, port, daemon)
}

/// The status of a request on a fresh connection from `source` (any address of 127/8 is
/// loopback), or `None` when the connection was refused or reset without an answer.
fn status_from(source: [u8; 4], port: u16, request: &[u8]) -> Option<u16> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .ok()?;
    let connected = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((std::net::Ipv4Addr::from(source), 0).into())?;
        socket.connect(([127, 0, 0, 1], port).into()).await
    });
    let mut stream = connected.ok()?.into_std().ok()?;
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

/// [`status_from`], or `None` for a 503 too (the server was too busy to serve it).
fn answered_from(source: [u8; 4], port: u16, request: &[u8]) -> Option<u16> {
    status_from(source, port, request).filter(|s| *s != 503)
}

fn answered(port: u16, request: &[u8]) -> Option<u16> {
    answered_from([127, 0, 0, 1], port, request)
}

/// As many slow-header connections as the whole listener takes, all from one address and
/// re-opened the moment they are cut: health and one-click POSTs are still answered at
/// least 99 times in 100, from another address (a monitor, the readers of an email) and
/// from the flood's own (past its share, a connection whose whole request head is there is
/// served; one still dribbling is told 503).
#[test]
fn one_clients_slow_connections_do_not_take_the_listener() {
    let (_b, _smtp, port, daemon) = shop(
        "listener-flood",
        "server:\n  max_connections: 64\n  max_connections_per_client: 8\n  header_timeout: 10s\n",
        "1h",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..64)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut opened = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    opened += 1;
                    let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    // Held open until the server cuts it (or answers 503), then opened again.
                    let mut buf = [0u8; 256];
                    while !stop.load(Ordering::Relaxed) {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(_) => break,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
                opened
            })
        })
        .collect();
    // Long enough for the flood's first connections to be cut and re-opened.
    std::thread::sleep(Duration::from_millis(1500));
    let health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let one_click = b"POST /u/bm90LWEtdG9rZW4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nList-Unsubscribe=One-Click";
    // Asked from another address, as a monitor and the readers of an email are, and from
    // the flood's own address.
    let mut tally = Vec::new();
    for source in [[127, 0, 0, 3], [127, 0, 0, 1]] {
        let (mut asked, mut served) = (0, 0);
        let started = Instant::now();
        while asked < 300 && started.elapsed() < Duration::from_secs(60) {
            let (request, expected) = match asked % 2 {
                0 => (&health[..], 200),
                // Not a token of ours: the page says so (400), which is an answer.
                _ => (&one_click[..], 400),
            };
            asked += 1;
            std::thread::sleep(Duration::from_millis(5));
            if let Some(status) = answered_from(source, port, request) {
                assert_eq!(status, expected);
                served += 1;
            }
        }
        tally.push((source, served, asked, started.elapsed()));
    }
    stop.store(true, Ordering::Relaxed);
    let opened: u32 = flood.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("answered under the flood ({opened} connections opened): {tally:?}");
    for (source, served, asked, _) in &tally {
        assert!(
            served * 100 >= asked * 99,
            "{served} of {asked} answered from {source:?} while one address held its connections ({opened} opened)"
        );
    }
    assert!(
        opened > 64,
        "the flood never re-opened a connection: {opened}"
    );
    assert!(daemon.stop().success());
}

/// Many people behind one address (an office, a carrier's NAT) asking at once, more than
/// the address may hold: each request is answered — served, or 503 to retry — and none is
/// cut off without an answer.
#[test]
fn a_burst_from_one_address_is_answered_never_cut() {
    let (_b, _smtp, port, daemon) = shop(
        "listener-burst",
        "server:\n  max_connections_per_client: 4\n",
        "1h",
    );
    let answers: Vec<Option<u16>> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let health = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
                status_from([127, 0, 0, 1], port, health)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(
        answers.iter().all(|a| matches!(a, Some(200 | 503))),
        "{answers:?}"
    );
    assert!(answers.contains(&Some(200)), "{answers:?}");
    assert!(daemon.stop().success());
}

/// Without the token `/healthz` says only whether all is well: no workflow names, no paths
/// or audience lines of a refused reload. With it, everything.
#[test]
fn health_tells_details_only_to_the_token() {
    let (b, _smtp, port, daemon) = shop(
        "listener-health",
        "server:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
        "1s",
    );
    let stranger = || {
        let (status, body) = http(port, "GET", "/healthz", &[], b"");
        assert_eq!(status, 200);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(stranger(), serde_json::json!({"status": "ok"}));
    let auth = ("Authorization", "Bearer s3cret-token");
    let told = || {
        serde_json::from_str::<serde_json::Value>(&http(port, "GET", "/healthz", &[auth], b"").1)
            .unwrap()
    };
    assert!(
        told()["workflows"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{}",
        told()
    );
    crate::common::write(
        &b.dir,
        "workflows/broken.yaml",
        "name: broken\ntrigger:\n  schedule: \"61 * * * *\"\nsteps:\n  - wait: 1d\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while told()["status"] != "degraded" {
        assert!(
            Instant::now() < deadline,
            "the reload was not refused: {}",
            told()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        told()["reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("broken.yaml"))
    );
    assert_eq!(stranger(), serde_json::json!({"status": "degraded"}));
    assert!(daemon.stop().success());
}

/// The refusals of the API share one shape: a body over 1 MB is a 413 in JSON, and a body
/// that is not UTF-8 is a 400 like malformed JSON (a 422 is for a field to change). A
/// tracked link or an answer link that does not open speaks of what did not happen to it,
/// not of unsubscribing.
#[test]
fn refusals_have_one_shape_and_say_what_they_refuse() {
    let (_b, _smtp, port, daemon) = shop(
        "listener-refusals",
        "server:\n  token: ${TIDINGS_TEST_API_TOKEN}\n",
        "1h",
    );
    let auth = ("Authorization", "Bearer s3cret-token");
    let json = ("Content-Type", "application/json");
    let big = format!("[{}]", vec!["{\"id\":\"x\"}"; 120_000].join(","));
    let (status, body) = http(port, "POST", "/v1/customers", &[auth, json], big.as_bytes());
    assert_eq!(status, 413, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("413 is JSON");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("1 MB")),
        "{body}"
    );
    let latin1 = b"{\"id\":\"c9\",\"email\":\"c9@example.com\",\"first_name\":\"Jos\xe9\"}";
    let (status, body) = http(port, "POST", "/v1/customers", &[auth, json], latin1);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not UTF-8"), "{body}");
    // A chunk announcing 2^64 - 1 bytes, then nothing: refused at once (411), not held.
    let asked = Instant::now();
    let chunked = b"POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{";
    assert_eq!(answered(port, chunked), Some(411));
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    for path in ["/c/bm90LWEtdG9rZW4", "/a/bm90LWEtdG9rZW4"] {
        let (status, page) = http(port, "GET", path, &[], b"");
        assert_eq!(status, 400, "{path}");
        assert!(
            !page.contains("unsubscribe") && !page.contains("removed"),
            "{path}: {page}"
        );
    }
    assert!(page_of_unsubscribe_mentions_removal(port));
    assert!(daemon.stop().success());
}

fn page_of_unsubscribe_mentions_removal(port: u16) -> bool {
    let (status, page) = http(port, "GET", "/u/bm90LWEtdG9rZW4", &[], b"");
    status == 400 && page.contains("removed")
}

/// The client kept with a click (`tracking.store_client`) is the peer's address: an
/// `X-Forwarded-For` from anyone else is what the client claims, and ignored. From a peer
/// in `server.trusted_proxies`, the nearest address the proxies did not add is the client.
#[test]
fn a_forwarded_address_is_believed_only_from_a_trusted_proxy() {
    let b = backends("listener-forwarded").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    crate::engagement::project(&b, server.port);
    let config = std::fs::read_to_string(b.dir.join("tidings.yaml")).unwrap();
    let config = format!("{config}  store_client: true\n");
    crate::common::write(&b.dir, "tidings.yaml", &config);
    let run = crate::store::tidings(&b).args(["run", "--once"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let message = mail_parser::MessageParser::default()
        .parse(&server.received()[0].bytes)
        .unwrap()
        .body_html(0)
        .unwrap()
        .into_owned();
    let click = crate::engagement::links(&message, "c").remove(0);
    // Past the machine window, so the click is a person's.
    std::thread::sleep(Duration::from_secs(2));
    let clicked_from = |forwarded: &str| {
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let request = format!(
            "GET {click} HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 Firefox/128.0\r\nX-Forwarded-For: {forwarded}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(answered(port, request.as_bytes()), Some(302));
        assert!(daemon.stop().success());
        let kept = crate::store::text_pairs(
            &b,
            "SELECT kind, client FROM engagements WHERE kind = 'click'",
        );
        kept[0].1.split('\t').next().unwrap().to_string()
    };
    assert_eq!(clicked_from("6.6.6.6"), "127.0.0.1");
    // A person's second click of a link is not recorded again: start from none.
    crate::store::with_store(&b, async |s| {
        let mut conn = s.connection().await.unwrap();
        sqlx::query("DELETE FROM engagements")
            .execute(&mut *conn)
            .await
            .unwrap();
    });
    let trusted = config.replace(
        "server:\n",
        "server:\n  trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n",
    );
    crate::common::write(&b.dir, "tidings.yaml", &trusted);
    assert_eq!(clicked_from("9.9.9.9, 6.6.6.6, 10.1.2.3"), "6.6.6.6");
}
