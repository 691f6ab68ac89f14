//! TLS for the outside world (webhooks over HTTPS, SMTP with STARTTLS or TLS): rustls with
//! the `ring` provider, installed once for the process so that every client agrees.

/// Installs the process-wide crypto provider; later calls (or one that lost a race) are
/// no-ops.
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
