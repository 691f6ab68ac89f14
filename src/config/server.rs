//! `server:` — the public listener: where it listens, how patient it is, how many
//! connections it serves, and which peers may say who the client is.

use serde::Deserialize;

use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct ServerConfig {
    /// `listen: 127.0.0.1:8080`
    pub listen: String,
    /// `token: ${TIDINGS_API_TOKEN}` — bearer token for write endpoints.
    pub token: Option<String>,
    /// `public_url: https://mail.acme.example` — where the daemon is reached from the
    /// internet; every link tidings writes (unsubscribe, tracked links) hangs off it.
    pub public_url: Option<String>,
    /// `header_timeout: 10s` — how long a client may take to send a request's head.
    pub header_timeout: String,
    /// `request_timeout: 30s` — how long a request may take, its body included (408).
    pub request_timeout: String,
    /// `max_connections: 256` — connections served at once; more are answered 503.
    pub max_connections: usize,
    /// `max_connections_per_client: 64` — connections one address may hold (trusted
    /// proxies excepted). Past it, a connection of that address that has had no request
    /// for a second is closed for the new one; else the new one is served only if its
    /// whole request head comes at once (503 if not): one client's slow connections cannot
    /// take the listener, and no request is cut.
    pub max_connections_per_client: usize,
    /// `trusted_proxies: [127.0.0.1, 10.0.0.0/8]` — peers whose `X-Forwarded-For` names the
    /// client. From anyone else the header is ignored: a client could write anything.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            token: None,
            public_url: None,
            header_timeout: "10s".into(),
            request_timeout: "30s".into(),
            max_connections: 256,
            max_connections_per_client: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The trusted proxies as networks (a bare address is a network of one).
    pub fn proxies(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| network(p).ok())
            .collect()
    }

    /// The connection limits and proxy list, checked at load with a position.
    pub(super) fn check(&self, doc: &Document) -> Result<(), Box<Diagnostic>> {
        let server = Route::root().key("server");
        for (key, value) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_client",
                self.max_connections_per_client,
            ),
        ] {
            if value == 0 {
                return Err(Box::new(
                    Diagnostic::error(
                        "config-server",
                        format!("`server.{key}` must be at least 1"),
                    )
                    .at(doc.value_span(&server.key(key))),
                ));
            }
        }
        for (i, proxy) in self.trusted_proxies.iter().enumerate() {
            if let Err(e) = network(proxy) {
                return Err(Box::new(
                    Diagnostic::error(
                        "config-server",
                        format!("`{proxy}` is not an address or a network ({e})"),
                    )
                    .at(doc.value_span(&server.key("trusted_proxies").index(i)))
                    .help("write an address such as `10.0.0.7` or a network such as `10.0.0.0/8`"),
                ));
            }
        }
        Ok(())
    }
}

fn network(text: &str) -> Result<ipnet::IpNet, ipnet::AddrParseError> {
    let text = text.trim();
    match text.parse::<std::net::IpAddr>() {
        Ok(addr) => Ok(ipnet::IpNet::from(addr)),
        Err(_) => text.parse(),
    }
}
