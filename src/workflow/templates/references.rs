//! The names a template's tags use, found by a lexical pass.

/// A dotted name used inside `{{ }}` or `{% %}`, and the byte offset where it starts.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    pub path: Vec<String>,
    pub at: usize,
}

/// Finds dotted names in the tags of a template, skipping string literals and comments.
/// Tera 2 does not expose its syntax tree; this lexical pass only locates names that Tera
/// itself reported (or checks fields of the objects tidings provides).
pub fn references(text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let open = &text[i..];
        let close = if open.starts_with("{{") {
            "}}"
        } else if open.starts_with("{%") {
            "%}"
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        };
        let start = i + 2;
        let end = text[start..].find(close).map_or(text.len(), |e| start + e);
        scan_tag(text, start, end, &mut out);
        i = (end + 2).min(text.len());
    }
    out
}

fn scan_tag(text: &str, start: usize, end: usize, out: &mut Vec<Reference>) {
    let tag = &text[start..end];
    let mut chars = tag.char_indices().peekable();
    let mut prev_dot = false;
    while let Some((i, c)) = chars.next() {
        if c == '"' || c == '\'' || c == '`' {
            for (_, d) in chars.by_ref() {
                if d == c {
                    break;
                }
            }
            prev_dot = false;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut path = vec![String::from(c)];
            while let Some(&(_, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    if let Some(p) = path.last_mut() {
                        p.push(d);
                    }
                    chars.next();
                } else if d == '.' {
                    chars.next();
                    match chars.peek() {
                        Some(&(_, e)) if e.is_alphabetic() || e == '_' => path.push(String::new()),
                        _ => break,
                    }
                } else {
                    break;
                }
            }
            // A name after `|` is a filter, after `.` a method on something else; before
            // `(` a function, before a single `=` a keyword argument.
            let before = tag[..i].trim_end();
            let after = chars.peek().map_or("", |&(j, _)| tag[j..].trim_start());
            let is_call =
                after.starts_with('(') || (after.starts_with('=') && !after.starts_with("=="));
            let is_filter = before.ends_with('|') || is_call;
            let is_keyword = path.len() == 1 && TERA_KEYWORDS.contains(&path[0].as_str());
            if !prev_dot && !is_filter && !is_keyword {
                out.push(Reference {
                    path,
                    at: start + i,
                });
            }
            prev_dot = false;
            continue;
        }
        prev_dot = c == '.';
    }
}

const TERA_KEYWORDS: &[&str] = &[
    "if",
    "elif",
    "else",
    "endif",
    "for",
    "endfor",
    "in",
    "and",
    "or",
    "not",
    "is",
    "true",
    "false",
    "none",
    "set",
    "set_global",
    "include",
    "extends",
    "block",
    "endblock",
    "macro",
    "endmacro",
    "import",
    "as",
    "filter",
    "endfilter",
    "break",
    "continue",
    "raw",
    "endraw",
    "with",
    "endwith",
    "component",
    "endcomponent",
    "loop",
];
