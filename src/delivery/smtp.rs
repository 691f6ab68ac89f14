//! SMTP connections for the dispatcher: lettre's `AsyncSmtpConnection` over a socket we open
//! ourselves, so that TCP_NODELAY is set (lettre's own connect and pool leave Nagle on, and
//! the body and the final `.` then wait on the peer's delayed ACK: see BENCHMARKS.md), with
//! STARTTLS when the server offers it (or TLS from the first byte for
//! `smtps://`) and AUTH when credentials are configured.
//!
//! A message is sent command by command rather than with lettre's `send`, because what a
//! failure means depends on where it happened: a 5xx to `RCPT` or to the final `.` is about
//! the recipient (suppress the address), a 5xx to `MAIL` is about us (retry, and tell the
//! operator), and a connection lost after the final `.` leaves the outcome unknown.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Where and how to reach the SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (`smtps://`), rather than STARTTLS when offered.
    pub implicit_tls: bool,
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, Error)]
pub enum SmtpUrlError {
    #[error("`{0}` is not an SMTP URL; write `smtp://HOST:PORT` or `smtps://HOST:PORT`")]
    Malformed(String),
}

impl SmtpServer {
    /// Parses `smtp://host[:port]` (default port 25) or `smtps://host[:port]` (465).
    pub fn parse(url: &str) -> Result<Self, SmtpUrlError> {
        let bad = || SmtpUrlError::Malformed(url.to_string());
        let (implicit_tls, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| bad())?)
            }
            _ => (rest, if implicit_tls { 465 } else { 25 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_string(),
            port,
            implicit_tls,
            credentials: None,
            timeout: Duration::from_secs(30),
        })
    }
}

/// Where in the conversation a send failed, and what the failure means for the message.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made or the greeting/EHLO/TLS/AUTH failed: nothing was sent.
    Connect(String),
    /// A 4xx, or the line dropped before the message was handed over: try again later.
    Transient(String),
    /// A 5xx to `RCPT` or to the end of data: this address does not take our mail.
    Rejected(String),
    /// A 5xx about the sender or the session (`MAIL`, `DATA`): ours to fix, so retried.
    Refused(String),
    /// The line dropped after the final `.`: the server may or may not have the message.
    Unknown(String),
    /// The message needs an extension the server does not offer (SMTPUTF8 for an address
    /// with a non-ASCII local part, 8BITMIME for 8-bit data): it cannot go to this server,
    /// and sending it anyway would garble it. Nothing was sent; the address is not to blame.
    Unsupported(String),
}

impl SendError {
    pub fn text(&self) -> &str {
        match self {
            SendError::Connect(t)
            | SendError::Transient(t)
            | SendError::Rejected(t)
            | SendError::Refused(t)
            | SendError::Unknown(t)
            | SendError::Unsupported(t) => t,
        }
    }
}

/// One open SMTP session.
pub struct Session {
    conn: AsyncSmtpConnection,
    /// The server offered PIPELINING (RFC 2920): MAIL, RCPT and DATA go in one write.
    pipelining: bool,
    /// The server offered SMTPUTF8 (RFC 6531): addresses and headers may be UTF-8.
    smtputf8: bool,
    /// The server offered 8BITMIME (RFC 6152): the data may hold 8-bit bytes.
    eightbit: bool,
    /// A reply did not come in time (a late one could be taken for the answer to the next
    /// command), or the line was lost: the session is not used again.
    out_of_step: bool,
}

/// The reply to one command, or that none came in time.
type Reply = Result<Result<Response, lettre::transport::smtp::Error>, tokio::time::error::Elapsed>;

impl Session {
    /// Connects with TCP_NODELAY, upgrades to TLS where it can, and logs in if configured.
    pub async fn open(server: &SmtpServer, hello: &ClientId) -> Result<Self, SendError> {
        let connect = |e: &dyn std::fmt::Display| {
            SendError::Connect(format!(
                "cannot talk to the SMTP server {}:{}: {e}",
                server.host, server.port
            ))
        };
        let tcp = tokio::time::timeout(
            server.timeout,
            TcpStream::connect((server.host.as_str(), server.port)),
        )
        .await
        .map_err(|_| connect(&"no answer within the timeout"))?
        .map_err(|e| connect(&e))?;
        tcp.set_nodelay(true).map_err(|e| connect(&e))?;
        crate::delivery::tls::install_provider();
        let stream: Box<dyn AsyncTokioStream> = if server.implicit_tls {
            Box::new(
                TlsTcp::connect(tcp, &server.host)
                    .await
                    .map_err(|e| connect(&e))?,
            )
        } else {
            Box::new(tcp)
        };
        let mut conn = tokio::time::timeout(
            server.timeout,
            AsyncSmtpConnection::connect_with_transport(stream, hello),
        )
        .await
        .map_err(|_| connect(&"no greeting within the timeout"))?
        .map_err(|e| connect(&e))?;
        if !server.implicit_tls && conn.can_starttls() {
            let params = TlsParameters::new_rustls(server.host.clone()).map_err(|e| connect(&e))?;
            conn.starttls(params, hello)
                .await
                .map_err(|e| connect(&e))?;
        }
        // lettre keeps only the extensions it uses itself, so PIPELINING is read from a
        // second EHLO (allowed at any time; it only resets a transaction, and there is none).
        let ehlo = tokio::time::timeout(server.timeout, conn.command(Ehlo::new(hello.clone())))
            .await
            .map_err(|_| connect(&"no answer to EHLO within the timeout"))?
            .map_err(|e| connect(&e))?;
        let offers = |extension: &str| {
            ehlo.message().any(|line| {
                line.split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case(extension))
            })
        };
        let (pipelining, smtputf8, eightbit) =
            (offers("PIPELINING"), offers("SMTPUTF8"), offers("8BITMIME"));
        if let Some((user, password)) = &server.credentials {
            let mechanisms = [
                lettre::transport::smtp::authentication::Mechanism::Plain,
                lettre::transport::smtp::authentication::Mechanism::Login,
            ];
            conn.auth(
                &mechanisms,
                &Credentials::new(user.clone(), password.clone()),
            )
            .await
            .map_err(|e| connect(&format!("login failed: {e}")))?;
        }
        Ok(Self {
            conn,
            pipelining,
            smtputf8,
            eightbit,
            out_of_step: false,
        })
    }

    /// Whether the session can carry another message.
    pub fn is_usable(&self) -> bool {
        !self.out_of_step && !self.conn.has_broken()
    }

    /// Whether MAIL, RCPT and DATA go to the server in one write.
    pub fn pipelines(&self) -> bool {
        self.pipelining
    }

    /// Sends one message to one recipient, reporting where a failure happened. A
    /// transaction refused before its data leaves the session reset (RSET) for the next.
    /// An address that is not ASCII (after IDNA, its local part) goes with SMTPUTF8, and
    /// 8-bit data with `BODY=8BITMIME`, only where the server offers them: otherwise the
    /// email fails here, before anything is sent, saying which extension was missing.
    pub async fn send(
        &mut self,
        from: &Address,
        to: &Address,
        message: &[u8],
        timeout: Duration,
    ) -> Result<(), SendError> {
        let options = self.mail_parameters(from, to, message)?;
        let mail = Mail::new(Some(from.clone()), options);
        let rcpt = Rcpt::new(to.clone(), vec![]);
        let (mail, rcpt, data) = self.envelope(mail, rcpt, timeout).await;
        let data_ok = matches!(data, Some(Ok(Ok(_))));
        let refused = match self.judge(Some(mail), "MAIL", SendError::Refused) {
            Err(e) => Some(e),
            Ok(()) => self.judge(rcpt, "RCPT", SendError::Rejected).err(),
        };
        if let Some(error) = refused {
            if data_ok {
                // A server that said 354 despite refusing the envelope gets an empty
                // message, which it cannot deliver to anyone.
                let _ = tokio::time::timeout(timeout, self.conn.message(b"")).await;
            }
            self.reset(timeout).await;
            return Err(error);
        }
        if let Err(error) = self.judge(data, "DATA", SendError::Refused) {
            self.reset(timeout).await;
            return Err(error);
        }
        // From here the server may have the message whatever happens to the line.
        let end = tokio::time::timeout(timeout, self.conn.message(message))
            .await
            .map_err(|_| {
                self.out_of_step = true;
                SendError::Unknown("no answer to the end of data within the timeout".into())
            })?;
        match end {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Rejected(format!("end of data: {e}"))),
            Err(e) if e.is_transient() => Err(SendError::Transient(format!("end of data: {e}"))),
            Err(e) => {
                // No reply: the line is gone, and the next email needs a new session.
                self.out_of_step = true;
                Err(SendError::Unknown(format!("end of data: {e}")))
            }
        }
    }

    /// `MAIL FROM`'s parameters: SMTPUTF8 for an address that is not ASCII, `BODY=8BITMIME`
    /// for 8-bit data — each only where the server offers it, else the email cannot go.
    fn mail_parameters(
        &self,
        from: &Address,
        to: &Address,
        message: &[u8],
    ) -> Result<Vec<MailParameter>, SendError> {
        let mut options = Vec::new();
        let ascii = |a: &Address| a.user().is_ascii() && a.domain().is_ascii();
        let utf8 = !ascii(to) || !ascii(from);
        if utf8 && !self.smtputf8 {
            return Err(SendError::Unsupported(format!(
                "`{to}` is not an ASCII address and the SMTP server does not offer SMTPUTF8"
            )));
        }
        if utf8 {
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !self.eightbit && !self.smtputf8 {
                return Err(SendError::Unsupported(
                    "the message holds 8-bit text and the SMTP server offers neither 8BITMIME nor SMTPUTF8".into(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok(options)
    }

    /// `MAIL`, `RCPT` and `DATA`: in one write when the server pipelines (each reply read,
    /// whatever the earlier ones said, to keep the session in step), else one by one, each
    /// only after the one before succeeded.
    async fn envelope(
        &mut self,
        mail: Mail,
        rcpt: Rcpt,
        timeout: Duration,
    ) -> (Reply, Option<Reply>, Option<Reply>) {
        if self.pipelining {
            // One write, then the three replies in order (RFC 2920): each must be read,
            // whatever the earlier ones said, to keep the session in step.
            let mail =
                tokio::time::timeout(timeout, self.conn.command(format!("{mail}{rcpt}{Data}")))
                    .await;
            let rcpt = tokio::time::timeout(timeout, self.conn.read_response()).await;
            let data = tokio::time::timeout(timeout, self.conn.read_response()).await;
            (mail, Some(rcpt), Some(data))
        } else {
            let mail = tokio::time::timeout(timeout, self.conn.command(mail)).await;
            let rcpt = if matches!(mail, Ok(Ok(_))) {
                Some(tokio::time::timeout(timeout, self.conn.command(rcpt)).await)
            } else {
                None
            };
            let data = if matches!(rcpt, Some(Ok(Ok(_)))) {
                Some(tokio::time::timeout(timeout, self.conn.command(Data)).await)
            } else {
                None
            };
            (mail, rcpt, data)
        }
    }

    /// What a reply before the data means: a 4xx or a lost line is transient, a 5xx is
    /// `permanent` (about the recipient at RCPT, about us at MAIL and DATA).
    fn judge(
        &mut self,
        reply: Option<Reply>,
        stage: &str,
        permanent: fn(String) -> SendError,
    ) -> Result<(), SendError> {
        let Some(reply) = reply else {
            return Ok(()); // not sent: an earlier command failed and says why
        };
        match reply {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(permanent(format!("{stage}: {e}"))),
            Ok(Err(e)) => {
                if !e.is_transient() {
                    // Not a 4xx but a lost line or a garbled reply: not used again.
                    self.out_of_step = true;
                }
                Err(SendError::Transient(format!("{stage}: {e}")))
            }
            Err(_) => {
                self.out_of_step = true;
                Err(SendError::Transient(format!(
                    "{stage}: no answer within the timeout"
                )))
            }
        }
    }

    /// Ends a refused transaction so the next MAIL is not "nested"; a session that cannot
    /// is not used again.
    async fn reset(&mut self, timeout: Duration) {
        if !self.is_usable() {
            return;
        }
        if !matches!(
            tokio::time::timeout(timeout, self.conn.command(Rset)).await,
            Ok(Ok(_))
        ) {
            self.out_of_step = true;
        }
    }

    /// Says goodbye; a server that has gone already is no error.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.quit()).await;
    }
}

/// A TLS stream over our own TCP socket, for `smtps://` (lettre's own implicit TLS
/// connects the socket itself, without TCP_NODELAY).
#[derive(Debug)]
struct TlsTcp(tokio_rustls::client::TlsStream<TcpStream>);

impl TlsTcp {
    async fn connect(tcp: TcpStream, host: &str) -> std::io::Result<Self> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        Ok(Self(connector.connect(name, tcp).await?))
    }
}

impl AsyncRead for TlsTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsTcp {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let s = SmtpServer::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.implicit_tls),
            ("127.0.0.1", 2525, false)
        );
        let s = SmtpServer::parse("smtps://mail.acme.example").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.implicit_tls),
            ("mail.acme.example", 465, true)
        );
        let s = SmtpServer::parse("smtp://[::1]:25").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 25));
        assert!(SmtpServer::parse("smtp://host:port").is_err());
        assert!(SmtpServer::parse("http://host").is_err());
    }
}
