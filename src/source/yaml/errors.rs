//! A file read into typed structs, and what went wrong reported where it is: serde's
//! errors taken apart into a route, a position and a message with a suggestion; every
//! structural error of a file found in one read.

use serde::de::DeserializeOwned;

use super::{Document, Node, Route, Seg};
use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::{LineCol, SourceFile};

/// Deserializes a whole document into `T`, turning the first structural error into a
/// diagnostic at its exact position, with a suggestion for misspelled keys.
pub fn parse_typed<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Box<Diagnostic>> {
    super::shape::check(file)?;
    yaml_serde::from_str::<T>(file.text())
        .map_err(|e| Box::new(error_to_diagnostic(file, &ReadError::of(file.text(), &e))))
}

/// How many structural errors of one file are reported before the rest are left for the
/// next run; past this many the file is more likely in the wrong format than mistyped.
const MAX_STRUCTURAL_ERRORS: usize = 20;

/// Deserializes a whole document into `T`, reporting every structural error, not only
/// the first serde meets.
///
/// serde stops at its first error. After each one, the value that caused it is blanked out
/// of the text (spaces, so every later position is unchanged) and the text read again: an
/// unknown key loses only itself; any other error loses the list item (a step) or the
/// top-level entry it sits in, so that one mistake does not cascade into several. An error
/// the blanking itself caused (a key missing where one was blanked, a list now empty) is
/// not reported, and its value is blanked in turn; a syntax error ends the search, as
/// there is nothing to read past it.
pub fn parse_typed_all<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Vec<Diagnostic>> {
    super::shape::check(file).map_err(|d| vec![*d])?;
    parse_typed_all_checked(file)
}

/// [`parse_typed_all`] of a file whose bounds were checked already ([`Document::checked`]).
pub fn parse_typed_all_checked<T: DeserializeOwned>(
    file: &SourceFile,
) -> Result<T, Vec<Diagnostic>> {
    let mut text = file.text().to_string();
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut blanked: Vec<Route> = Vec::new();
    // Each read blanks one more value, so the text runs out of them; the bound is for the
    // error count a person reads.
    while found.len() < MAX_STRUCTURAL_ERRORS {
        let error = match yaml_serde::from_str::<T>(&text) {
            Ok(value) if found.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => ReadError::of(&text, &e),
        };
        if error.syntax {
            // A syntax error in a text blanked here is the blanking's, not the author's.
            if found.is_empty() {
                found.push(error_to_diagnostic(file, &error));
            }
            break;
        }
        if !error.caused_by(&blanked) {
            found.push(error_to_diagnostic(file, &error));
        }
        let doc = Document::index(&SourceFile::new(file.path(), text.clone()));
        let Some((target, node)) = error.blank_target(&doc) else {
            break;
        };
        if blanked.contains(&target) {
            break;
        }
        blank(&mut text, &node);
        blanked.push(target);
    }
    Err(found)
}

/// A serde error taken apart: where (route and position) and what.
struct ReadError {
    route: Option<Route>,
    /// The route as serde printed it, for the message.
    path: Option<String>,
    message: String,
    location: Option<LineCol>,
    /// Whether the text is not YAML at all (as opposed to YAML of the wrong shape).
    syntax: bool,
}

impl ReadError {
    fn of(text: &str, error: &yaml_serde::Error) -> Self {
        let full = error.to_string();
        // libyaml counts the index in characters, not bytes: the line and column (also in
        // characters) are what a `LineCol` holds.
        let mut location = error.location().map(|loc| LineCol {
            line: loc.line().max(1),
            column: loc.column().max(1),
        });
        // Syntax errors read "PROBLEM at line L column C, while CONTEXT at line L2 column
        // C2". Where a quote or a bracket was left open, the context's position (where it
        // opened) is the useful one; in a block, the problem's is (the line indented
        // wrong), not where the block began.
        let message = match full.split_once(", while ") {
            Some((problem, context)) => {
                let (context, at) = split_location(context);
                let (problem, problem_at) = split_location(problem);
                let in_block = context.starts_with("parsing a block");
                if let Some(at) = if in_block { problem_at.or(at) } else { at } {
                    location = Some(at);
                }
                format!("while {context}: {problem}")
            }
            None => split_location(&full).0.to_string(),
        };
        // yaml_serde prefixes "path: "; the route is kept in the message, after it.
        let (path, message) = match message.split_once(": ") {
            Some((p, m)) if !p.contains(' ') && !p.is_empty() => {
                (Some(p.to_string()), m.to_string())
            }
            _ => (None, message),
        };
        let syntax = yaml_serde::from_str::<yaml_serde::Value>(text).is_err();
        let route = match &path {
            _ if syntax => None,
            Some(p) => parse_route(p),
            None => Some(Route::root()),
        };
        Self {
            route,
            path,
            message,
            location,
            syntax,
        }
    }

    /// The key an `unknown field` or `missing field` message names.
    fn field(&self, kind: &str) -> Option<&str> {
        let rest = self.message.strip_prefix(kind)?.strip_prefix(" `")?;
        Some(rest.split_once('`')?.0)
    }

    /// Whether blanking an earlier mistake caused this error rather than the author: a key
    /// is missing from a mapping that lost a key (a misspelling of it, most likely), or a
    /// list or mapping that lost its items is now empty.
    fn caused_by(&self, blanked: &[Route]) -> bool {
        let Some(route) = &self.route else {
            return false;
        };
        if self.field("missing field").is_some() {
            return blanked
                .iter()
                .any(|b| b.0.len() == route.0.len() + 1 && b.0.starts_with(&route.0));
        }
        self.field("unknown field").is_none()
            && blanked
                .iter()
                .any(|b| b.0.len() > route.0.len() && b.0.starts_with(&route.0))
    }

    /// What to blank so that reading again goes past this error: an unknown key alone;
    /// otherwise the list item (a step) or the top-level entry the error sits in.
    fn blank_target(&self, doc: &Document) -> Option<(Route, Node)> {
        let route = self.route.as_ref()?;
        if let Some(field) = self.field("unknown field") {
            let entry = route.key(field);
            if let Some(node) = doc.node(&entry) {
                return Some((entry, *node));
            }
        }
        let target = match route.0.iter().rposition(|s| matches!(s, Seg::Index(_))) {
            Some(i) => Route(route.0[..=i].to_vec()),
            None if route.0.is_empty() => return None,
            None => Route(route.0[..1].to_vec()),
        };
        doc.node(&target).map(|node| (target, *node))
    }
}

/// `steps[2].subject` as a route.
fn parse_route(path: &str) -> Option<Route> {
    let mut route = Route::root();
    for part in path.split('.') {
        let (key, mut indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            route = route.key(key);
        }
        while let Some(rest) = indices.strip_prefix('[') {
            let (n, after) = rest.split_once(']')?;
            route = route.index(n.parse().ok()?);
            indices = after;
        }
    }
    Some(route)
}

/// Replaces a value (with its key, or the `-` that opens its list item) by spaces, keeping
/// line breaks, so that the text reads as if it were never there and every other value
/// stays where it was.
fn blank(text: &mut String, node: &Node) {
    let start = node
        .key
        .map_or(node.value.start.index(), |k| k.start.index());
    let end = node.value.end.index().max(start + 1);
    let mut chars: Vec<char> = text.chars().collect();
    let mut end = end.min(chars.len());
    if let Some(key) = node.key {
        // An empty value stands where its key's colon is: take the colon too.
        let mut colon = key.end.index().max(end);
        while colon < chars.len() && chars[colon] == ' ' {
            colon += 1;
        }
        if chars.get(colon) == Some(&':') {
            end = end.max(colon + 1);
        }
    }
    let mut from = start.min(end);
    if node.key.is_none() {
        // A list item: its dash stands before it, past any spaces.
        let mut i = from;
        while i > 0 && chars[i - 1] == ' ' {
            i -= 1;
        }
        if i > 0 && chars[i - 1] == '-' {
            from = i - 1;
        }
    }
    for c in &mut chars[from..end] {
        if *c != '\n' {
            *c = ' ';
        }
    }
    *text = chars.into_iter().collect();
}

fn error_to_diagnostic(file: &SourceFile, error: &ReadError) -> Diagnostic {
    let span = error.location.map(|start| {
        let len = scalar_len_at(file, start)
            .unwrap_or_else(|| token_len(file.line(start.line), start.column));
        Span::new(file, start, len)
    });
    let is_syntax = error.syntax;
    let code = if is_syntax {
        "yaml-syntax"
    } else {
        "yaml-shape"
    };
    let message = &error.message;
    let where_ = error
        .path
        .as_ref()
        .map(|p| format!(" in `{p}`"))
        .unwrap_or_default();
    let mut d = Diagnostic::error(code, format!("{message}{where_}")).at_opt(span);
    if let Some(help) = suggest(message) {
        d = d.help(help);
    } else if is_syntax {
        d = d.help("fix the YAML syntax: check indentation, colons after keys, and quotes around values that contain `: ` or start with `{`, `[`, `*` or `&`");
    }
    d
}

/// Splits "TEXT at line L column C" into the text and a 1-based position.
fn split_location(s: &str) -> (&str, Option<LineCol>) {
    let Some(i) = s.rfind(" at line ") else {
        return (s, None);
    };
    let mut words = s[i + 9..].split(' ');
    let line = words.next().and_then(|l| l.parse().ok());
    let column = match (words.next(), words.next()) {
        (Some("column"), Some(c)) => c.trim_end_matches(',').parse().ok(),
        _ => None,
    };
    match (line, column) {
        (Some(line), Some(column)) => (&s[..i], Some(LineCol { line, column })),
        _ => (&s[..i], None),
    }
}

/// The length of a scalar value that starts at a position, from the span index.
fn scalar_len_at(file: &SourceFile, at: LineCol) -> Option<usize> {
    let doc = Document::index(file);
    doc.nodes
        .values()
        .find(|n| {
            n.style.is_some()
                && n.value.start.line() == at.line
                && n.value.start.col() + 1 == at.column
        })
        .map(|n| doc.yspan(&n.value).len)
}

/// The length of the word that starts at a column, so the caret covers a whole key.
fn token_len(line: &str, column: usize) -> usize {
    line.chars()
        .skip(column.saturating_sub(1))
        .take_while(|c| !c.is_whitespace() && *c != ':' && *c != ',')
        .count()
        .max(1)
}

/// For `unknown field `x`, expected one of `a`, `b``: the closest expected name.
fn suggest(message: &str) -> Option<String> {
    let (unknown, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
        rest.split_once('`')?
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        rest.split_once('`')?
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let (field, _) = rest.split_once('`')?;
        return Some(format!("add a `{field}:` key to this mapping"));
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (_, expected) = rest.split_once(", expected ")?;
        let what = match expected {
            "a sequence" => "a list, one `- ` item per line",
            "a boolean" => "`true` or `false`",
            "a string" => "text; put quotes around it",
            e if e.starts_with("struct") || e.starts_with("a map") => {
                "keys and values, one `key: value` per line"
            }
            e => e,
        };
        return Some(format!("this value must be {what}"));
    } else {
        return None;
    };
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match closest(unknown, expected.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if !expected.is_empty() => Some(format!(
            "expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

/// The candidate nearest to a misspelling, if any is near enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        name: String,
        #[serde(default)]
        enabled: bool,
        when: When,
        steps: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct When {
        event: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        email: Option<String>,
        wait: Option<u32>,
    }

    fn all_errors(text: &str) -> Vec<String> {
        let file = SourceFile::new("t.yaml", text.to_string());
        match parse_typed_all::<Shape>(&file) {
            Ok(_) => Vec::new(),
            Err(found) => found
                .iter()
                .map(|d| {
                    let at = d.span.as_ref().map(|s| (s.start.line, s.start.column));
                    format!("{at:?} {}", d.message)
                })
                .collect(),
        }
    }

    #[test]
    fn every_structural_error_of_a_file_in_one_read() {
        let found = all_errors(
            "name: a\nenabled: maybe\nwhen:\n  evnt: x\nsteps:\n  - email: a\n    subject: b\n  - wait: soon\n  - email: c\n",
        );
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(
            found[0].starts_with("Some((2, 10)) invalid type"),
            "{found:#?}"
        );
        assert!(
            found[1].starts_with("Some((4, 3)) unknown field `evnt`"),
            "{found:#?}"
        );
        assert!(
            found[2].starts_with("Some((7, 5)) unknown field `subject`"),
            "{found:#?}"
        );
        assert!(
            found[3].starts_with("Some((8, 11)) invalid type"),
            "{found:#?}"
        );
    }

    #[test]
    fn a_blanked_mistake_does_not_report_twice() {
        // A required key of the wrong type: not "missing" as well.
        let found = all_errors("name: a\nwhen: 5\nsteps:\n  - email: a\n    mail: b\n");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("invalid type"), "{found:#?}");
        assert!(found[1].contains("unknown field `mail`"), "{found:#?}");
        // The only item of a list, blanked: not "the list is empty" too.
        let found = all_errors("name: a\nwhen:\n  event: x\nsteps:\n  - wait: soon\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        // A syntax error is the only one: nothing can be read past it.
        let found = all_errors("name: a\nwhen:\n  event: \"x\nsteps: []\n");
        assert_eq!(found.len(), 1, "{found:#?}");
        // A valid file reads as before.
        assert!(all_errors("name: a\nwhen:\n  event: x\nsteps: []\n").is_empty());
    }

    #[test]
    fn suggestions_for_misspelled_keys() {
        assert_eq!(
            suggest("unknown field `subjet`, expected one of `id`, `email`, `subject`"),
            Some("did you mean `subject`?".to_string())
        );
        assert_eq!(
            suggest("missing field `steps`"),
            Some("add a `steps:` key to this mapping".to_string())
        );
    }
}
