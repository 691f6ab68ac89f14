//! Unsubscribe tokens: the link in every marketing email carries the customer, the workflow
//! and an expiry, sealed with an AEAD (ChaCha20-Poly1305) under a key derived from the
//! secret, so the endpoint can act on a one-click POST (RFC 8058) without a lookup table, a
//! forged, altered or expired link changes nothing, and the link reveals neither who it is
//! for nor which workflow sent it (a forwarded email, a link in a log). Links of the earlier
//! form, `<payload>.<HMAC-SHA256>` with the payload readable, keep working until they expire.
//!
//! The key is `unsubscribe.secret` when configured; otherwise a random key kept in the
//! store, so that links keep working across restarts and replicas.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::{aead, hmac};
use thiserror::Error;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub customer_id: String,
    pub workflow: String,
    pub expires_at: DateTime<Utc>,
    /// The email the link was in (its delivery key), so that an unsubscribe is credited to
    /// its step; links made before this was carried have none.
    pub delivery: Option<String>,
    /// The email's topic: its one-click unsubscribe opts out of that topic only. None: of
    /// all marketing mail.
    pub topic: Option<String>,
    /// A link in a preview or a proof: the page says so and changes nothing, so that a
    /// reviewer who tries the link does not unsubscribe the customer the proof was made
    /// for.
    pub proof: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the link expired on {0}")]
    Expired(String),
}

/// Seals and checks tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    /// Checks links of the earlier, readable form.
    legacy: hmac::Key,
    /// Seals and opens tokens.
    seal: std::sync::Arc<aead::LessSafeKey>,
    /// Derives each token's nonce from its content: the same link for the same content
    /// (stable previews), and a nonce used twice only for the same plaintext.
    nonce: hmac::Key,
}

/// Bound to every sealed token: a ciphertext made for anything else does not open.
const CONTEXT: &[u8] = b"tidings unsubscribe token v1";

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)") // never the key
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        let legacy = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |purpose: &[u8]| hmac::sign(&legacy, purpose);
        let key = derive(b"tidings unsubscribe: sealing key");
        let seal = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, key.as_ref())
            .map(aead::LessSafeKey::new);
        let nonce = hmac::Key::new(
            hmac::HMAC_SHA256,
            derive(b"tidings unsubscribe: nonce key").as_ref(),
        );
        // ChaCha20-Poly1305 takes the 32 bytes an HMAC-SHA256 tag has: this does not fail.
        let seal = seal.map_err(|_| KeyError::Seal)?;
        Ok(Self {
            legacy,
            seal: std::sync::Arc::new(seal),
            nonce,
        })
    }

    /// The nonce and the sealed content, base64url: safe in a URL path, and opaque.
    pub fn token(&self, u: &Unsubscribe) -> String {
        self.seal(CONTEXT, payload(u).as_bytes())
    }

    /// Seals `payload` for one purpose (`context`): a token sealed for another purpose
    /// (an unsubscribe link used as a tracked link) does not open.
    pub fn seal(&self, context: &[u8], payload: &[u8]) -> String {
        let mut keyed = context.to_vec();
        keyed.push(0);
        keyed.extend_from_slice(payload);
        let tag = hmac::sign(&self.nonce, &keyed);
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce.copy_from_slice(&tag.as_ref()[..aead::NONCE_LEN]);
        let mut sealed = payload.to_vec();
        let mut token = nonce.to_vec();
        if self
            .seal
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context),
                &mut sealed,
            )
            .is_err()
        {
            // Only a plaintext beyond 256 GiB fails to seal.
            return String::new();
        }
        token.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// What [`Signer::seal`] sealed for `context`, if this secret sealed it.
    pub fn unseal(&self, context: &[u8], token: &str) -> Result<Vec<u8>, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < aead::NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
            return Err(TokenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(aead::NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| TokenError::Malformed)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, aead::Aad::from(context), &mut sealed)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(plain.to_vec())
    }

    /// The token's content, if this secret sealed it (or, for a link of the earlier form,
    /// signed it) and it has not expired by `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Unsubscribe, TokenError> {
        let payload = match token.split_once('.') {
            Some((payload, signature)) => self.legacy_payload(payload, signature)?,
            None => self.open(token)?,
        };
        let text = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.splitn(6, '\n');
        let (Some(customer_id), Some(workflow), Some(expiry), delivery, topic, proof) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
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
            delivery: delivery.filter(|d| !d.is_empty()).map(str::to_string),
            topic: topic.filter(|t| !t.is_empty()).map(str::to_string),
            proof: proof == Some(PROOF),
        })
    }
}

impl Signer {
    fn open(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        self.unseal(CONTEXT, token)
    }

    fn legacy_payload(&self, payload: &str, signature: &str) -> Result<Vec<u8>, TokenError> {
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.legacy, &payload, &signature).map_err(|_| TokenError::BadSignature)?;
        Ok(payload)
    }
}

/// What a token carries, before it is sealed.
fn payload(u: &Unsubscribe) -> String {
    let mut text = format!(
        "{}\n{}\n{}",
        u.customer_id,
        u.workflow,
        u.expires_at.timestamp()
    );
    if u.delivery.is_some() || u.topic.is_some() || u.proof {
        text.push('\n');
        text.push_str(u.delivery.as_deref().unwrap_or(""));
    }
    if u.topic.is_some() || u.proof {
        text.push('\n');
        text.push_str(u.topic.as_deref().unwrap_or(""));
    }
    if u.proof {
        text.push('\n');
        text.push_str(PROOF);
    }
    text
}

/// The last line of a proof's token.
const PROOF: &str = "proof";

#[derive(Debug, Error)]
pub enum KeyError {
    #[error("{0} (in `unsubscribe.secret` of tidings.yaml)")]
    Env(crate::config::EnvError),
    #[error("cannot make the key that seals unsubscribe links")]
    Seal,
}

/// `unsubscribe.secret` of tidings.yaml, its `${ENV}` resolved; `None` when the store's own
/// key seals the links (the caller reads it: this module stays below the store).
pub fn configured_secret(
    config: &crate::config::UnsubscribeConfig,
) -> Result<Option<String>, KeyError> {
    config
        .secret
        .as_ref()
        .map(|s| crate::config::expand_env(s, &|n| std::env::var(n).ok()).map_err(KeyError::Env))
        .transpose()
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
            delivery: None,
            topic: None,
            proof: false,
        }
    }

    #[test]
    fn a_proof_token_says_so_and_only_a_proof_token_does() {
        let signer = Signer::new(b"k1").unwrap();
        let now = t("2026-06-01T00:00:00Z");
        for (delivery, topic) in [(None, None), (Some("preview/w/c/s"), Some("offers"))] {
            let proof = Unsubscribe {
                delivery: delivery.map(str::to_string),
                topic: topic.map(str::to_string),
                proof: true,
                ..sample()
            };
            let opened = signer.verify(&signer.token(&proof), now).unwrap();
            assert_eq!(opened, proof);
            let real = Unsubscribe {
                proof: false,
                ..proof
            };
            assert!(!signer.verify(&signer.token(&real), now).unwrap().proof);
        }
    }

    #[test]
    fn a_token_verifies_with_its_key_until_it_expires() {
        let signer = Signer::new(b"k1").unwrap();
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
        let signer = Signer::new(b"k1").unwrap();
        let now = t("2026-06-01T00:00:00Z");
        let forged = Signer::new(b"another key").unwrap().token(&sample());
        assert_eq!(signer.verify(&forged, now), Err(TokenError::BadSignature));
        let token = signer.token(&sample());
        // Every bit flipped, one at a time, is refused.
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() * 8 {
            let mut altered = bytes.clone();
            altered[i / 8] ^= 1 << (i % 8);
            let altered = URL_SAFE_NO_PAD.encode(altered);
            assert_eq!(
                signer.verify(&altered, now),
                Err(TokenError::BadSignature),
                "bit {i}"
            );
        }
        assert_eq!(signer.verify("nonsense", now), Err(TokenError::Malformed));
        assert_eq!(signer.verify("a.b!", now), Err(TokenError::Malformed));
        // A link of the earlier, signed form: still honoured, and still checked.
        let payload = payload(&sample());
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"k1"),
            payload.as_bytes(),
        );
        let legacy = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        );
        assert_eq!(signer.verify(&legacy, now), Ok(sample()));
        let other = URL_SAFE_NO_PAD.encode("c2\nbirthday-offer\n1811808000");
        let (_, signature) = legacy.split_once('.').unwrap();
        assert_eq!(
            signer.verify(&format!("{other}.{signature}"), now),
            Err(TokenError::BadSignature)
        );
    }

    /// The link names neither the customer nor the workflow, in any decoding.
    #[test]
    fn a_token_is_opaque() {
        let signer = Signer::new(b"k1").unwrap();
        let token = signer.token(&sample());
        assert_eq!(
            token,
            signer.token(&sample()),
            "the same content, the same link"
        );
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for needle in ["c-山田", "birthday-offer", "1811808000"] {
            assert!(!token.contains(needle), "{needle} in {token}");
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} in the decoded token"
            );
        }
    }
}
