//! Stable ids derived from keys, and random ones: what the store, the engine and the
//! delivery side all name things with, so that none of them imports another for it.

/// 64-bit FNV-1a: a stable, dependency-free hash for ids derived from keys.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A point in `[0, 1)` from the parts, the same on every machine and every run: what
/// experiments assign variants and holdouts by. SHA-256, so that ids that differ in one
/// character (`c1`, `c2`, …) still land evenly.
pub fn unit_hash(parts: &[&str]) -> f64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let digest = ctx.finish();
    let mut top = [0u8; 8];
    top.copy_from_slice(&digest.as_ref()[..8]);
    // 53 bits: every value is a double, and the result stays below 1.
    (u64::from_be_bytes(top) >> 11) as f64 / (1u64 << 53) as f64
}

/// A stable Message-ID from the delivery key, so a resend is recognisable as the same mail.
pub fn message_id(key: &str, from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>').trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("tidings.localhost");
    format!(
        "<{:016x}.{:016x}@{domain}>",
        fnv(key),
        fnv(&format!("{key}#2"))
    )
}

/// 32 random bytes, hex: a new store's signing key, a new event's id.
pub fn random_secret() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_distinct() {
        let a = message_id("w/c/e/s", "Acme <hello@acme.example>");
        assert_eq!(a, message_id("w/c/e/s", "Acme <hello@acme.example>"));
        assert!(a.ends_with("@acme.example>"), "{a}");
        assert_ne!(a, message_id("w/c/e2/s", "Acme <hello@acme.example>"));
    }

    #[test]
    fn secrets_are_random() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
