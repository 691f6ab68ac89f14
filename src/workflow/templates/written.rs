//! The links the templates themselves write, as literal text: only those become tracked
//! links. A URL that arrives in a customer's value (a `first_name` of
//! `Bob https://evil.example/phish` in a text body) is shown as it is, and never becomes a
//! redirect on the brand's own domain.

/// What ends a literal link in a template's source: the end of an attribute or a word,
/// or the start of a tag or an expression (`{{`, `{%`), whose value the template does not
/// write itself.
const ENDS: &[char] = &['"', '\'', '<', '>', ' ', '\t', '\r', '\n', '{'];

/// The literal start of every `http(s)://` link in `text`, as a rendered link would read
/// it (entities decoded, the punctuation a sentence puts after a link left off). A link
/// whose host is itself an expression (`https://{{ shop }}/`) writes no host of its own
/// and is not one.
pub(super) fn link_prefixes(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = ["http://", "https://"]
        .iter()
        .filter_map(|s| lower[from..].find(s).map(|i| (from + i, s.len())))
        .min()
    {
        let (start, scheme) = found;
        let rest = &text[start..];
        let end = rest.find(ENDS).unwrap_or(rest.len());
        let literal = rest[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']']);
        if literal.len() > scheme {
            out.push(decode_entities(literal));
        }
        from = start + scheme;
    }
    out.sort();
    out.dedup();
    out
}

/// An attribute's value as the reader's client reads it: named entities HTML escaping
/// writes, and numeric ones (`&#9;`, `&#x2F;`), decoded.
pub fn decode_entities(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let entity = tail
            .find(';')
            .filter(|end| *end <= 10)
            .map(|end| &tail[1..end]);
        let decoded = entity.and_then(|e| match e {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lt" => Some('<'),
            "gt" => Some('>'),
            _ => {
                let code = match e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => e.strip_prefix('#').and_then(|d| d.parse().ok()),
                };
                code.and_then(char::from_u32)
            }
        });
        match (decoded, entity) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &tail[e.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_links_and_their_templated_tails() {
        let html = r#"<a href="https://shop.example/sale?a=1&amp;b=2">x</a>
<a href="https://shop.example/p/{{ event.properties.sku }}">p</a>
<a href="https://{{ customer.attributes.site }}/">no host</a>
Visit HTTPS://Help.example/faq. <a href="{{ unsubscribe_url }}">u</a>"#;
        assert_eq!(
            link_prefixes(html),
            [
                "HTTPS://Help.example/faq",
                "https://shop.example/p/",
                "https://shop.example/sale?a=1&b=2",
            ]
        );
        assert!(link_prefixes("Hello {{ customer.first_name }}").is_empty());
    }

    #[test]
    fn entities_decode_as_a_client_reads_them() {
        assert_eq!(
            decode_entities("a&amp;b&#9;c&#x2F;d&#47;&lt;&quot;&#39;&nope; & &#xZZ;"),
            "a&b\tc/d/<\"'&nope; & &#xZZ;"
        );
    }
}
