//! `cargo bench --bench smtp`: SMTP throughput of the dispatcher's sessions.
//!
//! Sends 100,000 ~5 KB messages through `tidings::delivery::smtp::Session` (our TCP_NODELAY socket,
//! lettre's protocol code) to a minimal SMTP sink in the same process, at concurrency 1
//! (commands one by one, then pipelined), 8 and 32, and prints messages per second. Client and sink share the machine's cores, as
//! they would with Postfix's `smtp-sink` on loopback. Set `TIDINGS_BENCH_MESSAGES` for a
//! shorter run.
//!
//! With `TIDINGS_BENCH_SINK=HOST:PORT` (Postfix's `smtp-sink`, say) it sends to that server
//! instead, at concurrency 8, and also prints the CPU this process spent per message: the
//! "send" share of the per-message budget, with the receiving side's CPU left out.

#![allow(clippy::expect_used)] // a benchmark, like a test, stops at the first surprise

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use lettre::transport::smtp::extension::ClientId;
use tidings::delivery::smtp::{Session, SmtpServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Accepts everything; counts messages. Offers PIPELINING when `pipelining` and then
/// answers a batch of pipelined commands in one write, as Postfix does.
async fn sink(listener: tokio::net::TcpListener, count: Arc<AtomicUsize>, pipelining: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
                return;
            }
            let mut line = Vec::new();
            let mut pending = Vec::new();
            loop {
                line.clear();
                if read.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let reply: &[u8] = match line.get(..4).map(|c| c.to_ascii_uppercase()) {
                    Some(c) if c == b"EHLO" && pipelining => {
                        b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                    }
                    Some(c) if c == b"EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                    Some(c) if c == b"DATA" => {
                        pending.extend_from_slice(b"354 go\r\n");
                        if write
                            .write_all(&std::mem::take(&mut pending))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        loop {
                            line.clear();
                            if read.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == b".\r\n" {
                                break;
                            }
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        b"250 queued\r\n"
                    }
                    Some(c) if c == b"QUIT" => {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    }
                    _ => b"250 OK\r\n",
                };
                pending.extend_from_slice(reply);
                if read.buffer().is_empty()
                    && write
                        .write_all(&std::mem::take(&mut pending))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
    }
}

fn message() -> Vec<u8> {
    let mut m = String::from(
        "From: Acme <hello@acme.example>\r\nTo: someone@example.com\r\nSubject: Your offer\r\nMessage-ID: <bench@acme.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n",
    );
    while m.len() < 5_000 {
        m.push_str("<p>Hello Ada, here is the offer we promised you, with a link.</p>\r\n");
    }
    m.into_bytes()
}

/// The CPU time (user + system) this process has used so far, in seconds: fields 14 and 15
/// of `/proc/self/stat`, in the kernel's fixed user-visible ticks of 1/100 s.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name, in parentheses, may hold spaces: count the fields after it.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a number of ticks");
    (ticks(11) + ticks(12)) / 100.0
}

/// Sends `total` messages through `concurrency` sessions to `server`.
async fn send(server: &SmtpServer, concurrency: usize, total: usize, body: &Arc<Vec<u8>>) {
    let from: lettre::Address = "hello@acme.example".parse().expect("an address");
    let to: lettre::Address = "someone@example.com".parse().expect("an address");
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (server, body, from, to, next) = (
            server.clone(),
            body.clone(),
            from.clone(),
            to.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut session = Session::open(&server, &ClientId::default())
                .await
                .unwrap_or_else(|e| panic!("{}", e.text()));
            while next.fetch_add(1, Ordering::Relaxed) < total {
                if let Err(e) = session.send(&from, &to, &body, server.timeout).await {
                    panic!("{}", e.text());
                }
            }
            session.close().await;
        }));
    }
    for t in tasks {
        t.await.expect("a sender");
    }
}

fn main() {
    let total: usize = std::env::var("TIDINGS_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    if let Ok(sink) = std::env::var("TIDINGS_BENCH_SINK") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let server = SmtpServer::parse(&format!("smtp://{sink}")).expect("HOST:PORT");
        let body = Arc::new(message());
        let (start, cpu) = (Instant::now(), cpu_seconds());
        runtime.block_on(send(&server, 8, total, &body));
        let (seconds, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        println!(
            "{total} messages of {} bytes to {sink}, concurrency 8: {:.0} messages/s, {:.1} µs of client CPU per message",
            body.len(),
            total as f64 / seconds,
            cpu * 1e6 / total as f64
        );
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(sink(listener, count.clone(), true));
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let plain_port = plain.local_addr().expect("an address").port();
        tokio::spawn(sink(plain, count.clone(), false));
        let body = Arc::new(message());
        println!("{total} messages of {} bytes", body.len());
        for (concurrency, port, mode) in [
            (1usize, plain_port, "one by one"),
            (1, port, "pipelined"),
            (8, port, "pipelined"),
            (32, port, "pipelined"),
        ] {
            let server = SmtpServer::parse(&format!("smtp://127.0.0.1:{port}")).expect("a URL");
            let before = count.load(Ordering::Relaxed);
            let start = Instant::now();
            send(&server, concurrency, total, &body).await;
            let seconds = start.elapsed().as_secs_f64();
            let arrived = count.load(Ordering::Relaxed) - before;
            assert_eq!(arrived, total);
            println!(
                "concurrency {concurrency:>2}, {mode:<10}: {:>8.0} messages/s ({seconds:.2} s)",
                total as f64 / seconds
            );
        }
    });
}
