//! Webhook calls from the outbox: each `webhook` step's row is sent with reqwest, retried
//! with backoff when the receiver is down or busy, and never sent to a loopback, private or
//! link-local address unless `webhooks.allow_hosts` names the host.
//!
//! The address check happens in the DNS resolver the client uses, so the address that was
//! checked is the address that is connected to (a name that resolves to a public address
//! when checked and to 127.0.0.1 when connecting cannot slip through), and redirects are
//! not followed (a redirect to an internal address would bypass it).

use crate::model::payload::Payload;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use thiserror::Error;

use crate::config::{WebhookConfig, expand_env};
use crate::model::states::{Channel, DeliveryState};
use crate::store::deliveries::DeliveryRow;
use crate::store::outbox;
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("cannot start the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A host that resolved only to addresses webhooks may not reach.
#[derive(Debug, Error)]
#[error(
    "`{host}` is a loopback, private or link-local address ({addresses}); webhooks may not reach it unless `webhooks.allow_hosts` in tidings.yaml lists `{host}`"
)]
struct Refused {
    host: String,
    addresses: String,
}

/// What one round of webhook calls did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WebhookReport {
    pub sent: u64,
    /// Calls that will be tried again later.
    pub retrying: u64,
    pub failed: u64,
    /// One line per failed attempt: which call, and why.
    pub problems: Vec<String>,
}

/// How one call ended.
enum Outcome {
    Sent,
    Retry(String),
    Fail(String),
}

/// Sends webhook calls through a client whose resolver enforces the egress rule.
pub struct WebhookSender {
    client: reqwest::Client,
    allow_hosts: Arc<Vec<String>>,
    max_attempts: u32,
}

impl WebhookSender {
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        crate::delivery::tls::install_provider();
        let allow_hosts: Arc<Vec<String>> = Arc::new(
            config
                .allow_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        );
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_hosts: allow_hosts.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect on our behalf, to addresses the
            // resolver's guard never sees: calls always go direct.
            .no_proxy()
            .user_agent(concat!("tidings/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Self {
            client,
            allow_hosts,
            max_attempts: config.max_attempts.max(1),
        })
    }

    /// Sends every webhook call due by `now`; failures are recorded on their rows.
    pub async fn dispatch(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<WebhookReport, WebhookError> {
        let mut report = WebhookReport::default();
        // A call another sender left mid-call past its lease is ours to make again: the
        // email sender's take-over (every second) puts webhook calls back too.
        loop {
            let mut conn = store.connection().await?;
            if !outbox::any_due(&mut conn, Channel::Webhook, now).await? {
                return Ok(report);
            }
            let batch = outbox::due(&mut conn, Channel::Webhook, now, 100).await?;
            drop(conn);
            if batch.is_empty() {
                return Ok(report);
            }
            for d in &batch {
                // Claimed like an email, so that two senders never make the same call and
                // a sender that dies mid-call is recovered like one that died mid-send.
                let mut conn = store.connection().await?;
                let lease = TimeDelta::seconds(CALL_LEASE_S);
                if !outbox::claim(&mut conn, &d.id, Utc::now() + lease).await? {
                    continue;
                }
                drop(conn);
                let outcome = self.call(d).await;
                let what = format!(
                    "webhook of `{}` step `{}` for customer {}",
                    d.workflow, d.step, d.customer_id
                );
                match &outcome {
                    Outcome::Sent => {}
                    Outcome::Retry(e) => report
                        .problems
                        .push(format!("{what} (attempt {}): {e}", d.attempts + 1)),
                    Outcome::Fail(e) => report.problems.push(format!("{what} failed: {e}")),
                }
                let mut conn = store.connection().await?;
                let (state, error, retry_at) = match outcome {
                    Outcome::Sent => {
                        report.sent += 1;
                        (DeliveryState::Sent, None, None)
                    }
                    Outcome::Retry(error) if d.attempts + 1 < i64::from(self.max_attempts) => {
                        report.retrying += 1;
                        let at = now + backoff(&d.id, d.attempts);
                        (DeliveryState::Retrying, Some(error), Some(at))
                    }
                    Outcome::Retry(error) => {
                        report.failed += 1;
                        let tries = super::outcomes::attempts(d.attempts + 1);
                        let error = format!("gave up after {tries}: {error}");
                        (DeliveryState::Failed, Some(error), None)
                    }
                    Outcome::Fail(error) => {
                        report.failed += 1;
                        (DeliveryState::Failed, Some(error), None)
                    }
                };
                outbox::finish(&mut conn, &d.id, state, error.as_deref(), now, retry_at).await?;
            }
        }
    }

    async fn call(&self, d: &DeliveryRow) -> Outcome {
        let call = match &d.payload {
            Some(Payload::Webhook(c)) => c,
            _ => return Outcome::Fail("the stored call is unreadable".into()),
        };
        let env = |name: &str| std::env::var(name).ok();
        let url = match expand_env(&call.url, &env) {
            Ok(u) => u,
            Err(e) => return Outcome::Fail(format!("{e} (the URL of step `{}`)", d.step)),
        };
        let url = match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => {
                return Outcome::Fail(format!(
                    "`{}` is not an http(s) URL (step `{}`)",
                    call.url, d.step
                ));
            }
        };
        // An address written in the URL never reaches the resolver: check it here.
        if let Some(refused) = literal_refusal(&url, &self.allow_hosts) {
            return Outcome::Fail(refused.to_string());
        }
        let method = match reqwest::Method::from_bytes(call.method.to_ascii_uppercase().as_bytes())
        {
            Ok(m) => m,
            Err(_) => return Outcome::Fail(format!("`{}` is not an HTTP method", call.method)),
        };
        let mut request = self
            .client
            .request(method, url)
            .timeout(Duration::from_secs(call.timeout_s.clamp(1, 300) as u64))
            // The receiver can tell a retry from a new call.
            .header("Idempotency-Key", d.id.as_str());
        for (name, value) in &call.headers {
            match expand_env(value, &env) {
                Ok(v) => request = request.header(name.as_str(), v),
                Err(e) => return Outcome::Fail(format!("{e} (header `{name}`)")),
            }
        }
        if let Some(body) = &call.body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        match request.send().await {
            Ok(response) => answer(response).await,
            Err(e) => {
                if let Some(refused) = find_source::<Refused>(&e) {
                    return Outcome::Fail(refused.to_string());
                }
                let what = if e.is_timeout() {
                    format!("no answer within {} s", call.timeout_s)
                } else {
                    crate::source::diagnostic::error_chain(&e)
                };
                Outcome::Retry(what)
            }
        }
    }
}

/// What a receiver's answer means: 2xx sent; 5xx, 408 and 429 retried; anything else
/// (a redirect too) failed — with the first few KB of the answer for the operator, a
/// receiver that answers with gigabytes not read to the end.
async fn answer(mut response: reqwest::Response) -> Outcome {
    let status = response.status();
    if status.is_success() {
        return Outcome::Sent;
    }
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_BYTES);
    let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    let error = format!("the receiver answered {status}: {}", text.trim());
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Outcome::Retry(error)
    } else if status.is_redirection() {
        Outcome::Fail(format!(
            "{error}; webhooks do not follow redirects, use the final URL"
        ))
    } else {
        Outcome::Fail(error)
    }
}

/// How much of a failed call's answer is read.
const ERROR_BODY_BYTES: usize = 4096;

/// How long a claimed call stays ours: longer than the longest call timeout (300 s).
const CALL_LEASE_S: i64 = 360;

/// Webhook retries start sooner than email's: a receiver is usually back in seconds.
fn backoff(key: &str, attempts: i64) -> TimeDelta {
    super::outcomes::backoff(key, attempts, TimeDelta::seconds(30))
}

fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// A URL whose host is an address webhooks may not reach. The URL parser has already
/// turned numeric tricks (`127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`) into the
/// dotted address they mean, so they are caught like the plain form.
fn literal_refusal(url: &reqwest::Url, allow_hosts: &[String]) -> Option<Refused> {
    let host = url.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = bare.parse::<IpAddr>().ok()?;
    (!is_public(ip) && !allow_hosts.iter().any(|h| h == bare)).then(|| Refused {
        host: bare.to_string(),
        addresses: ip.to_string(),
    })
}

/// Resolves names with the system resolver and drops the addresses webhooks may not
/// reach, unless the host is allowed.
struct GuardedResolver {
    allow_hosts: Arc<Vec<String>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let allowed = self.allow_hosts.contains(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed || is_public(a.ip()))
                .collect();
            if usable.is_empty() && !found.is_empty() {
                let addresses = found
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(Refused { host, addresses }) as _);
            }
            Ok(Box::new(usable.into_iter()) as Addrs)
        })
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast or reserved, in IPv4 or IPv6 (including IPv4
/// written as IPv6).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let first = s[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // `::a.b.c.d`, the deprecated IPv4-compatible form (`[::127.0.0.1]`).
                || s[..6].iter().all(|x| *x == 0)
                // NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48): a gateway
                // reaches whatever IPv4 address is inside, private ones too.
                || (first == 0x64 && s[1] == 0xff9b)
                // 6to4 (2002::/16) likewise carries an IPv4 address.
                || first == 0x2002
                // Documentation (2001:db8::/32) and discard (100::/64).
                || (first == 0x2001 && s[1] == 0x0db8)
                || (first == 0x0100 && s[1..4].iter().all(|x| *x == 0))
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // Site-local (fec0::/10), deprecated but still routed inside some sites.
                || (first & 0xffc0) == 0xfec0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "fec0::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn addresses_in_urls_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://127.1/hook",
            "http://2130706433/hook",
            "http://0x7f000001/hook",
            "http://0x7f.0.0.1/hook",
            "http://0177.0.0.1/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://192.168.0.10/",
            "http://100.64.1.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[2002:7f00:1::]/",
            "http://[fec0::1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(literal_refusal(&parsed, &[]).is_some(), "{url} → {parsed}");
        }
        let allowed = reqwest::Url::parse("http://10.0.0.1/").unwrap();
        assert!(literal_refusal(&allowed, &["10.0.0.1".to_string()]).is_none());
        for url in ["https://crm.example/hook", "http://93.184.216.34/"] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert!(literal_refusal(&parsed, &[]).is_none(), "{url}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff("k", 0);
        assert!(first >= TimeDelta::seconds(30) && first <= TimeDelta::seconds(36));
        let third = backoff("k", 2);
        assert!(third >= TimeDelta::seconds(120) && third <= TimeDelta::seconds(144));
        assert!(backoff("k", 40) <= TimeDelta::seconds(3_600 + 720));
        let spread: std::collections::BTreeSet<TimeDelta> =
            (0..10).map(|i| backoff(&format!("k{i}"), 3)).collect();
        assert!(spread.len() > 5, "jitter separates calls: {spread:?}");
    }
}
