//! The daemon's accept loop. Its endpoints face the internet (the unsubscribe link of every
//! marketing email), so a client that sends its headers a line at a time, or never
//! finishes its body, must not hold a socket for long, and a flood of such clients must not
//! take every file descriptor: headers are read under a timeout, each request under
//! another, and connections beyond a limit are answered at once with 503 and closed, so
//! `/healthz` and the unsubscribe page stay answerable once the slow ones are cut off.
//! One address may hold only so many connections ([`super::clients`]), so one client's
//! slow connections never take the listener from everyone else.
//! `axum::serve` sets none of these, so the loop is hyper's own, with axum's router inside;
//! each request carries its peer's address ([`Peer`]).

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

use super::clients::{Busy, Clients, Refusal, Shares};

/// How patient the server is with a client, from `server:` in tidings.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// From the first byte of a request's head to its last (and, on a kept-alive
    /// connection, the wait for the next request).
    pub header_read: Duration,
    /// From a request's head to the end of its answer, body read included: 408 past it.
    pub request: Duration,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Connections one address may hold.
    pub per_client: usize,
    /// Addresses held to no per-address limit: the proxies in front, which carry everyone.
    pub proxies: Vec<ipnet::IpNet>,
}

/// The address of the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// How long a connection past its address's share has to show a whole request head.
const HEAD_PROOF: Duration = Duration::from_millis(200);

/// Whether the bytes waiting on a connection hold a whole request head (they are only
/// looked at: hyper reads them when it serves the connection).
async fn complete_head(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") => return true,
            Ok(n) if n == buf.len() => return false,
            // Part of a head: look again shortly (a peek does not wait for more).
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// What serving one connection needs.
#[derive(Clone)]
struct Serving {
    app: Router,
    http: hyper::server::conn::http1::Builder,
    clients: Arc<Clients>,
}

impl Serving {
    /// Serves an admitted connection until it ends or is cut for a newer one; each request
    /// carries its peer and counts as the connection's work while it runs.
    fn start(
        &self,
        stream: TcpStream,
        peer: IpAddr,
        (id, activity, cut): super::clients::Admitted,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _ = stream.set_nodelay(true);
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            let busy = Busy::enter(&activity);
            let answer = app.clone().oneshot(request);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        let connection = watcher.watch(connection);
        let clients = self.clients.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = cut.notified() => {}
            }
            clients.leave(peer, id);
        });
    }
}

/// Tells a connection it cannot be served, and closes it.
fn turn_away(stream: TcpStream) {
    tokio::spawn(async move {
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
    });
}

/// What a connection past the limit is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\ntoo many connections; retry\r\n";

/// How long connections in progress may finish after a shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in
/// progress finish (for up to [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request,
    ));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let serving = Serving {
        app,
        http,
        clients: Arc::new(Clients::new(Shares {
            most: limits.max_connections,
            per_address: limits.per_client,
            proxies: limits.proxies.clone(),
        })),
    };
    let proving = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok((stream, address)) => (stream, address.ip()),
            Err(e) => {
                // Out of file descriptors, most likely: the connections being served will
                // free some; do not spin meanwhile.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match serving.clients.admit(peer, false) {
            Ok(admitted) => {
                serving.start(stream, peer, admitted, graceful.watcher());
                continue;
            }
            Err(Refusal::Full) => {
                turn_away(stream);
                continue;
            }
            Err(Refusal::Share) => {}
        }
        // Past its address's share: a connection whose whole request head is already
        // there is a request, not a slow client, and is served beyond the share (within
        // the listener's limit); one still dribbling is told 503. Proving is bounded too.
        if proving.load(Ordering::Acquire) >= limits.max_connections.max(1) {
            turn_away(stream);
            continue;
        }
        proving.fetch_add(1, Ordering::AcqRel);
        let (serving, proving, watcher) = (serving.clone(), proving.clone(), graceful.watcher());
        tokio::spawn(async move {
            let whole = tokio::time::timeout(HEAD_PROOF, complete_head(&stream)).await;
            proving.fetch_sub(1, Ordering::AcqRel);
            match whole {
                Ok(true) => match serving.clients.admit(peer, true) {
                    Ok(admitted) => serving.start(stream, peer, admitted, watcher),
                    Err(_) => turn_away(stream),
                },
                _ => turn_away(stream),
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}
