//! Signed unsubscribe tokens: the link in every marketing email names the customer and
//! the workflow and an expiry, signed with HMAC-SHA256, so the endpoint can act on a
//! one-click POST (RFC 8058) without a lookup table and a forged, altered or expired link
//! changes nothing.
//!
//! The key is `unsubscribe.secret` when configured; otherwise a random key kept in the
//! store, so that links keep working across restarts and replicas.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::hmac;
use thiserror::Error;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub customer_id: String,
    pub workflow: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the unsubscribe link is malformed")]
    Malformed,
    #[error("the unsubscribe link's signature does not match")]
    BadSignature,
    #[error("the unsubscribe link expired on {0}")]
    Expired(String),
}

/// Signs and checks tokens with one key.
#[derive(Clone)]
pub struct Signer(hmac::Key);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)") // never the key
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// `<payload>.<signature>`, both base64url: safe in a URL path.
    pub fn token(&self, u: &Unsubscribe) -> String {
        let payload = format!(
            "{}\n{}\n{}",
            u.customer_id,
            u.workflow,
            u.expires_at.timestamp()
        );
        let signature = hmac::sign(&self.0, payload.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }

    /// The token's content, if it was signed with this key and has not expired by `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Unsubscribe, TokenError> {
        let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.0, &payload, &signature).map_err(|_| TokenError::BadSignature)?;
        let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.splitn(3, '\n');
        let (Some(customer_id), Some(workflow), Some(expiry)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expires_at = expiry
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(TokenError::Malformed)?;
        if expires_at < now {
            return Err(TokenError::Expired(
                expires_at.format("%Y-%m-%d").to_string(),
            ));
        }
        Ok(Unsubscribe {
            customer_id: customer_id.to_string(),
            workflow: workflow.to_string(),
            expires_at,
        })
    }
}

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{0} (in `unsubscribe.secret` of tidings.yaml)")]
    Env(crate::config::EnvError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The project's signer: `unsubscribe.secret` when configured, else the store's own key —
/// the same for the engine that writes links and the endpoint that checks them.
pub async fn project_signer(
    config: &crate::config::UnsubscribeConfig,
    store: &crate::store::Store,
) -> Result<Signer, KeyError> {
    let secret = match &config.secret {
        Some(s) => {
            crate::config::expand_env(s, &|n| std::env::var(n).ok()).map_err(KeyError::Env)?
        }
        None => store.signing_secret().await?,
    };
    Ok(Signer::new(secret.as_bytes()))
}

/// 32 random bytes, hex: a new store's signing key.
pub fn random_secret() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sample() -> Unsubscribe {
        Unsubscribe {
            customer_id: "c-山田".into(),
            workflow: "birthday-offer".into(),
            expires_at: t("2027-06-01T00:00:00Z"),
        }
    }

    #[test]
    fn a_token_verifies_with_its_key_until_it_expires() {
        let signer = Signer::new(b"k1");
        let token = signer.token(&sample());
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        assert_eq!(
            signer.verify(&token, t("2026-06-01T00:00:00Z")),
            Ok(sample())
        );
        assert_eq!(
            signer.verify(&token, t("2027-06-02T00:00:00Z")),
            Err(TokenError::Expired("2027-06-01".into()))
        );
    }

    #[test]
    fn forged_and_tampered_tokens_are_rejected() {
        let signer = Signer::new(b"k1");
        let now = t("2026-06-01T00:00:00Z");
        let forged = Signer::new(b"another key").token(&sample());
        assert_eq!(signer.verify(&forged, now), Err(TokenError::BadSignature));
        let token = signer.token(&sample());
        let (_, signature) = token.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode("c2\nbirthday-offer\n1811808000");
        assert_eq!(
            signer.verify(&format!("{other}.{signature}"), now),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer.verify("nonsense", now), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.b!", now), Err(TokenError::Malformed));
    }

    #[test]
    fn secrets_are_random() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
