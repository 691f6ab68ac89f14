//! The suppression list, read at entry and again at send time.
//!
//! It keeps a hash of each address, not the address: a bounce or a complaint must still
//! be honoured after the customer is forgotten (`DELETE /v1/customers/{id}`), and a list
//! of hashes honours it without keeping who they were. Addresses are compared without
//! case, so the hash is of the lowercased, trimmed address.

use super::StoreError;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};

/// What the list keeps for an address: `sha256:` and the hex digest of it, lowercased.
pub fn address_key(email: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        email.trim().to_lowercase().as_bytes(),
    );
    // Read for every customer of every page that may enter a workflow: one allocation,
    // not one per byte.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(KEY_PREFIX.len() + 64);
    key.push_str(KEY_PREFIX);
    for b in digest.as_ref() {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    key
}

const KEY_PREFIX: &str = "sha256:";

pub async fn is_suppressed(conn: &mut AnyConnection, email: &str) -> Result<bool, StoreError> {
    Ok(reason(conn, email).await?.is_some())
}

/// Why an address is on the list, if it is.
pub async fn reason(conn: &mut AnyConnection, email: &str) -> Result<Option<String>, StoreError> {
    let row = super::sql::query("SELECT reason FROM suppressions WHERE email = $1")
        .bind(address_key(email))
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Which of these addresses are on the suppression list (lowercased), each with why.
pub async fn suppressed_among(
    conn: &mut AnyConnection,
    emails: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let by_key: BTreeMap<String, String> = emails
        .iter()
        .map(|e| (address_key(e), e.trim().to_lowercase()))
        .collect();
    let keys: Vec<&str> = by_key.keys().map(String::as_str).collect();
    let sql = "SELECT email, reason FROM suppressions WHERE email IN ({list})";
    let mut out = HashMap::new();
    for row in super::fetch_in(conn, sql, &[], &keys).await? {
        let key: String = row.try_get(0)?;
        if let Some(address) = by_key.get(&key) {
            out.insert(address.clone(), row.try_get(1)?);
        }
    }
    Ok(out)
}

/// Adds an address to the suppression list (a hard bounce, a complaint, a 5xx); returns
/// whether it was not there yet.
pub async fn suppress(
    conn: &mut AnyConnection,
    email: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let added = super::sql::query("INSERT INTO suppressions (email, reason, created_at) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
        .bind(address_key(email))
        .bind(reason)
        .bind(at.timestamp_millis())
        .execute(conn)
        .await?
        .rows_affected();
    Ok(added > 0)
}

/// Replaces the addresses a store kept in clear (before migration 16) with their keys.
pub(super) async fn hash_stored_addresses(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let rows = super::sql::query(
        "SELECT email, reason, created_at FROM suppressions WHERE email NOT LIKE 'sha256:%'",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let (email, reason, at): (String, String, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        super::sql::query("INSERT INTO suppressions (email, reason, created_at) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
            .bind(address_key(&email))
            .bind(reason)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        super::sql::query("DELETE FROM suppressions WHERE email = $1")
            .bind(&email)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_hides_the_address_and_ignores_case() {
        let key = address_key(" Ada@Example.com ");
        assert_eq!(key, address_key("ada@example.com"));
        assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
        assert!(!key.contains("ada") && !key.contains("example"));
        assert_ne!(key, address_key("bob@example.com"));
        // The digest as any other tool computes it (`sha256sum`, Python's hashlib), so
        // keys stored by earlier versions still match.
        assert_eq!(
            key,
            "sha256:b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"
        );
    }
}
