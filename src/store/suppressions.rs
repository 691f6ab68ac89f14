//! The suppression list, read at entry and again at send time.

use super::StoreError;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeSet, HashMap};

pub async fn is_suppressed(conn: &mut AnyConnection, email: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT 1 FROM suppressions WHERE email = $1")
        .bind(email.to_lowercase())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Which of these addresses are on the suppression list (lowercased), each with why.
pub async fn suppressed_among(
    conn: &mut AnyConnection,
    emails: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let lower: BTreeSet<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let sql = "SELECT email, reason FROM suppressions WHERE email IN ({list})";
    super::fetch_in(conn, sql, &[], &lower)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}
