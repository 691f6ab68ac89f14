//! Settings the store keeps for itself, such as the key that seals unsubscribe links.

use super::{Store, StoreError};
use sqlx::Row;

impl Store {
    /// The store's own unsubscribe-signing key, made on first use; replicas starting
    /// together agree on one (the first insert wins).
    pub async fn signing_secret(&self) -> Result<String, StoreError> {
        const KEY: &str = "unsubscribe_secret";
        let mut conn = self.pool.acquire().await?;
        if let Some(secret) = setting(&mut conn, KEY).await? {
            return Ok(secret);
        }
        let fresh = crate::model::ids::random_secret()
            .map_err(|_| StoreError::Corrupt("no random source for a signing key".into()))?;
        super::sql::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(KEY)
        .bind(fresh)
        .execute(&mut *conn)
        .await?;
        setting(&mut conn, KEY)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the signing key vanished".into()))
    }
}

/// A value the store keeps for itself (`settings`).
pub(crate) async fn setting(
    conn: &mut sqlx::AnyConnection,
    key: &str,
) -> Result<Option<String>, StoreError> {
    Ok(
        super::sql::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(conn)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?,
    )
}

/// Sets a value the store keeps for itself.
pub(crate) async fn put_setting(
    conn: &mut sqlx::AnyConnection,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    super::sql::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}
