//! Composition's last touch: the `http(s)` links of a marketing email become tracked links,
//! `answer_url(...)` placeholders become signed answer links, and the open pixel goes in.
//! Never rewritten: the unsubscribe link, tidings' own links, `mailto:`, `tel:` and
//! anything else that is not `http(s)`.

use super::{Answer, Click, Open, Token};
use crate::unsubscribe::Signer;
use crate::workflow::templates::{ANSWER_PREFIX, decode_entities};

/// The URL with the configured UTM parameters added (those it already has are kept as
/// they are), before any fragment.
pub fn utm_url(url: &str, utm: &[(String, String)]) -> String {
    if utm.is_empty() {
        return url.to_string();
    }
    let (base, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let query = base.split_once('?').map_or("", |(_, q)| q);
    let has = |key: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    };
    let mut out = base.to_string();
    let mut separator = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (key, value) in utm.iter().filter(|(k, _)| !has(k)) {
        let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        out.push_str(separator);
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
        separator = "&";
    }
    out.push_str(fragment);
    out
}

/// Rewrites one email's bodies.
pub struct Rewriter<'a> {
    pub signer: &'a Signer,
    /// `server.public_url` without a trailing `/`.
    pub public: &'a str,
    /// The email's delivery key.
    pub delivery: &'a str,
    pub clicks: bool,
    pub opens: bool,
    /// UTM parameters, resolved for this email.
    pub utm: &'a [(String, String)],
    /// The email's unsubscribe link, never tracked.
    pub unsubscribe: &'a str,
    /// A preview's or a proof's links: they work, and record nothing.
    pub proof: bool,
    /// Whether the templates write a link (those that arrived in a value are left as
    /// they are: tidings never redirects to a URL a customer typed).
    pub written: &'a dyn Fn(&str) -> bool,
}

impl Rewriter<'_> {
    pub fn html(&self, html: &str) -> String {
        let html = self.answers(html);
        let mut html = if self.clicks {
            self.html_links(&html)
        } else {
            html
        };
        if self.opens {
            let token = Open {
                delivery: self.delivery.to_string(),
                proof: self.proof,
            }
            .seal(self.signer);
            let pixel = format!(
                "<img src=\"{}/o/{token}.gif\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">",
                self.public
            );
            match html.to_ascii_lowercase().rfind("</body>") {
                Some(i) => html.insert_str(i, &pixel),
                None => html.push_str(&pixel),
            }
        }
        html
    }

    pub fn text(&self, text: &str) -> String {
        let text = self.answers(text);
        if !self.clicks {
            return text;
        }
        let mut out = String::with_capacity(text.len() + 256);
        let mut rest = text.as_str();
        while let Some(start) = find_url(rest) {
            out.push_str(&rest[..start]);
            let tail = &rest[start..];
            let mut end = tail
                .find(|c: char| c.is_whitespace() || "<>\"'".contains(c))
                .unwrap_or(tail.len());
            while end > 0 && ".,;:!?)]".contains(&tail[..end][end - 1..]) {
                end -= 1;
            }
            out.push_str(&self.tracked(&tail[..end]));
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    /// `answer_url` placeholders as signed answer links.
    fn answers(&self, body: &str) -> String {
        let mut out = String::with_capacity(body.len());
        let mut rest = body;
        while let Some(start) = rest.find(ANSWER_PREFIX) {
            out.push_str(&rest[..start]);
            let tail = &rest[start + ANSWER_PREFIX.len()..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "*-._+%/".contains(c)))
                .unwrap_or(tail.len());
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            let parsed = tail[..end].split_once('/').and_then(|(q, v)| {
                let value = serde_json::from_str(&decode(v)?).ok()?;
                Some((decode(q)?, value))
            });
            match parsed {
                Some((question, value)) => {
                    let token = Answer {
                        delivery: self.delivery.to_string(),
                        question,
                        value,
                        proof: self.proof,
                    }
                    .seal(self.signer);
                    out.push_str(&format!("{}/a/{token}", self.public));
                }
                None => out.push_str(&rest[start..start + ANSWER_PREFIX.len() + end]),
            }
            rest = &tail[end..];
        }
        out.push_str(rest);
        out
    }

    /// The `href` of every `<a>` and `<area>` tag.
    fn html_links(&self, html: &str) -> String {
        let lower = html.to_ascii_lowercase();
        let mut out = String::with_capacity(html.len() + 1024);
        let mut i = 0;
        while let Some(rel) = lower[i..].find('<') {
            let start = i + rel;
            let name_end = lower[start + 1..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map_or(lower.len(), |e| start + 1 + e);
            let name = &lower[start + 1..name_end];
            let Some(end) = lower[start..].find('>').map(|e| start + e) else {
                break;
            };
            out.push_str(&html[i..start]);
            if name == "a" || name == "area" {
                out.push_str(&self.tag(&html[start..end], &lower[start..end]));
            } else {
                out.push_str(&html[start..end]);
            }
            i = end;
        }
        out.push_str(&html[i..]);
        out
    }

    /// One tag with its `href` tracked.
    fn tag(&self, tag: &str, lower: &str) -> String {
        let mut from = 0;
        while let Some(rel) = lower[from..].find("href") {
            let at = from + rel;
            from = at + 4;
            let before = lower[..at].chars().next_back();
            if !before.is_some_and(|c| c.is_ascii_whitespace()) {
                continue;
            }
            let after = lower[from..].trim_start();
            let Some(after) = after.strip_prefix('=') else {
                continue;
            };
            let value_start = lower.len() - after.trim_start().len();
            let (quote, open) = match tag[value_start..].chars().next() {
                Some(q @ ('"' | '\'')) => (Some(q), value_start + 1),
                _ => (None, value_start),
            };
            let close = match quote {
                Some(q) => tag[open..].find(q).map(|e| open + e),
                None => tag[open..]
                    .find(|c: char| c.is_ascii_whitespace())
                    .map(|e| open + e),
            }
            .unwrap_or(tag.len());
            let url = decode_entities(&tag[open..close]);
            let tracked = self.tracked(&url);
            if tracked == url {
                return tag.to_string();
            }
            return format!("{}{tracked}{}", &tag[..open], &tag[close..]);
        }
        tag.to_string()
    }

    /// A tracked link for `url`, or `url` itself when it is not to be tracked.
    fn tracked(&self, url: &str) -> String {
        let lower = url.to_ascii_lowercase();
        let web = lower.starts_with("http://") || lower.starts_with("https://");
        let ours = url.starts_with(&format!("{}/", self.public)) || url == self.unsubscribe;
        if !web || ours || lower.starts_with(ANSWER_PREFIX) || !(self.written)(url) {
            return url.to_string();
        }
        let token = Click {
            delivery: self.delivery.to_string(),
            url: utm_url(url, self.utm),
            proof: self.proof,
        }
        .seal(self.signer);
        format!("{}/c/{token}", self.public)
    }
}

/// Where the next `http://` or `https://` starts.
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    match (lower.find("http://"), lower.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::templates::answer_placeholder;

    fn rewriter(signer: &Signer) -> Rewriter<'_> {
        Rewriter {
            signer,
            public: "https://mail.example",
            delivery: "w/c1/e1/s1",
            clicks: true,
            opens: true,
            utm: &[],
            unsubscribe: "https://mail.example/u/TOKEN",
            proof: false,
            written: &|url: &str| !url.contains("evil.example"),
        }
    }

    #[test]
    fn a_link_the_templates_do_not_write_is_left_as_it_is() {
        let signer = Signer::new(b"k").unwrap();
        let r = rewriter(&signer);
        let text = r.text("Hi Bob https://evil.example/phish, see https://shop.example/x");
        assert!(text.contains("Bob https://evil.example/phish,"), "{text}");
        assert!(!text.contains("shop.example/x"), "{text}");
        let html = r.html(r#"<a href="https://evil.example/a">a</a>"#);
        assert!(html.contains("https://evil.example/a"), "{html}");
    }

    #[test]
    fn web_links_are_tracked_and_nothing_else_is() {
        let signer = Signer::new(b"k").unwrap();
        let r = rewriter(&signer);
        let html = r#"<html><head><link href="https://cdn.example/a.css"></head><body>
<a class="x" href="https://shop.example/sale?a=1&amp;b=2">Sale</a>
<a href="mailto:help@shop.example">Mail</a> <a href='tel:+4912345'>Call</a>
<a href="https://mail.example/u/TOKEN">Unsubscribe</a> <A HREF=http://shop.example/x>x</A>
</body></html>"#;
        let out = r.html(html);
        assert!(
            out.contains(r#"<link href="https://cdn.example/a.css">"#),
            "{out}"
        );
        assert!(out.contains("mailto:help@shop.example") && out.contains("tel:+4912345"));
        assert!(out.contains(r#"href="https://mail.example/u/TOKEN""#));
        assert!(!out.contains("shop.example/sale") && !out.contains("shop.example/x"));
        let tokens: Vec<&str> = out
            .split("https://mail.example/c/")
            .skip(1)
            .map(|t| t.split(['"', '>']).next().unwrap())
            .collect();
        assert_eq!(tokens.len(), 2, "{out}");
        let urls: Vec<String> = tokens
            .iter()
            .map(|t| Click::open(&signer, t).unwrap().url)
            .collect();
        assert_eq!(
            urls,
            ["https://shop.example/sale?a=1&b=2", "http://shop.example/x"]
        );
        assert!(out.contains("/o/") && out.find("/o/") < out.find("</body>"));
    }

    #[test]
    fn text_links_answers_and_utm() {
        let signer = Signer::new(b"k").unwrap();
        let utm = [
            ("utm_source".to_string(), "tidings".to_string()),
            ("utm_campaign".to_string(), "win back".to_string()),
        ];
        let mut r = rewriter(&signer);
        r.utm = &utm;
        let answer = answer_placeholder("nps", &serde_json::json!(9));
        let text = format!(
            "See https://shop.example/new?utm_source=mine#top. Rate us: {answer}\nStop: https://mail.example/u/TOKEN"
        );
        let out = r.text(&text);
        assert!(out.ends_with("Stop: https://mail.example/u/TOKEN"), "{out}");
        let click = out.split("/c/").nth(1).unwrap().split('.').next().unwrap();
        assert_eq!(
            Click::open(&signer, click).unwrap().url,
            "https://shop.example/new?utm_source=mine&utm_campaign=win+back#top"
        );
        let a = out.split("/a/").nth(1).unwrap().split('\n').next().unwrap();
        let a = Answer::open(&signer, a).unwrap();
        assert_eq!(
            (a.question.as_str(), a.value),
            ("nps", serde_json::json!(9))
        );
        assert_eq!(
            utm_url("https://a.example", &utm[..1]),
            "https://a.example?utm_source=tidings"
        );
    }
}
