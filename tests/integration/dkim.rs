//! A DKIM verifier for the delivery tests, written from RFC 6376 (relaxed/relaxed,
//! rsa-sha256) and independent of the signer in lettre: the public key comes from the
//! DNS record a sender would publish, as a receiver would fetch it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Checks the message's `DKIM-Signature` against the `v=DKIM1; k=rsa; p=...` record;
/// returns the signature's tags when it holds.
pub fn verify(message: &[u8], dns_record: &str) -> Result<Vec<(String, String)>, String> {
    let split = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no blank line after the headers")?;
    let (head, body) = (&message[..split + 2], &message[split + 4..]);
    let head = std::str::from_utf8(head).map_err(|e| e.to_string())?;
    let fields = header_fields(head);
    let signature = fields
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case("DKIM-Signature"))
        .ok_or("no DKIM-Signature header")?;
    let tags = tags(&signature.1);
    let tag = |name: &str| {
        tags.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("the signature has no `{name}=` tag"))
    };
    if tag("v")? != "1" || tag("a")? != "rsa-sha256" || tag("c")? != "relaxed/relaxed" {
        return Err(format!("unexpected signature parameters: {tags:?}"));
    }

    let body_hash = STANDARD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        &relaxed_body(body),
    ));
    if body_hash != tag("bh")?.replace([' ', '\t', '\r', '\n'], "") {
        return Err("the body hash does not match: the body changed".into());
    }

    let mut signed = String::new();
    let mut used = vec![false; fields.len()];
    for name in tag("h")?.split(':').map(str::trim) {
        // The last unused instance of each named field, bottom up (RFC 6376 5.4.2).
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && fields[i].0.eq_ignore_ascii_case(name))
        {
            used[i] = true;
            signed.push_str(&relaxed_header(&fields[i].0, &fields[i].1));
            signed.push_str("\r\n");
        }
    }
    signed.push_str(&relaxed_header(
        &signature.0,
        &without_b_value(&signature.1),
    ));

    let record = tags_of(dns_record);
    let p = record
        .iter()
        .find(|(k, _)| k == "p")
        .map(|(_, v)| v.clone())
        .ok_or("the DNS record has no `p=`")?;
    let spki = STANDARD.decode(p).map_err(|e| e.to_string())?;
    let key = rsa_public_key(&spki).ok_or("the DNS record's key is not an RSA key")?;
    let b = STANDARD
        .decode(tag("b")?.replace([' ', '\t', '\r', '\n'], ""))
        .map_err(|e| e.to_string())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signed.as_bytes(), &b)
        .map_err(|_| "the signature does not verify: a signed header changed".to_string())?;
    Ok(tags)
}

/// The header fields in order, as (name, raw value with its folding).
fn header_fields(head: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_string(), value.to_string()));
        }
    }
    for f in &mut fields {
        if let Some(v) = f.1.strip_suffix("\r\n") {
            f.1 = v.to_string();
        }
    }
    fields
}

/// RFC 6376 3.4.2: lower-case name, unfolded value with whitespace runs as one space and
/// none at either end.
fn relaxed_header(name: &str, value: &str) -> String {
    let unfolded = value.replace("\r\n", "");
    let collapsed = unfolded
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>();
    format!(
        "{}:{}",
        name.trim().to_ascii_lowercase(),
        collapsed.join(" ")
    )
}

/// RFC 6376 3.4.4: whitespace runs as one space, none at line ends, no empty lines at the end.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .map(|l| {
            let mut out = String::new();
            let mut space = false;
            for c in l.chars() {
                if c == ' ' || c == '\t' {
                    space = true;
                } else {
                    if space {
                        out.push(' ');
                    }
                    space = false;
                    out.push(c);
                }
            }
            out
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn tags(value: &str) -> Vec<(String, String)> {
    tags_of(&value.replace("\r\n", ""))
}

fn tags_of(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The signature field with the value of its `b=` tag emptied (RFC 6376 3.7).
fn without_b_value(value: &str) -> String {
    let mut out = Vec::new();
    for part in value.split(';') {
        let key = part.split('=').next().unwrap_or("").replace("\r\n", "");
        if key.trim() == "b"
            && let Some((name, _)) = part.split_once('=')
        {
            out.push(format!("{name}="));
        } else {
            out.push(part.to_string());
        }
    }
    out.join(";")
}

/// The PKCS#1 `RSAPublicKey` inside a SubjectPublicKeyInfo: the bit string after the
/// algorithm identifier.
fn rsa_public_key(spki: &[u8]) -> Option<&[u8]> {
    fn header(der: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *der.first()?;
        let first = *der.get(1)? as usize;
        if first < 0x80 {
            return Some((tag, 2, first));
        }
        let n = first & 0x7f;
        let len = der
            .get(2..2 + n)?
            .iter()
            .fold(0, |a, b| a << 8 | *b as usize);
        Some((tag, 2 + n, len))
    }
    let (tag, skip, _) = header(spki)?;
    let inner = spki.get(skip..)?;
    let (alg_tag, alg_skip, alg_len) = header(inner)?;
    if tag != 0x30 || alg_tag != 0x30 {
        return None;
    }
    let rest = inner.get(alg_skip + alg_len..)?;
    let (bits_tag, bits_skip, bits_len) = header(rest)?;
    if bits_tag != 0x03 || *rest.get(bits_skip)? != 0 {
        return None;
    }
    rest.get(bits_skip + 1..bits_skip + bits_len)
}

#[test]
fn the_verifier_refuses_what_it_should() {
    // A message with no signature, and one whose signature names no key, are both refused:
    // the verifier cannot pass by accident.
    assert!(verify(b"From: a@b\r\n\r\nhi\r\n", "p=").is_err());
    let forged = b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=x; s=y; h=from; bh=AAAA; b=AAAA\r\nFrom: a@b\r\n\r\nhi\r\n";
    assert!(verify(forged, "p=").is_err());
    assert_eq!(relaxed_body(b"a  b \t\r\n\r\n\r\n"), b"a b\r\n");
    assert_eq!(
        relaxed_header("Subject", " Hi\r\n   there  "),
        "subject:Hi there"
    );
}
