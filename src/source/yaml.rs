//! All YAML reading lives here, so the parser can change without touching the model.
//!
//! `yaml_serde` turns text into typed structs, but it does not tell where a value came from.
//! Diagnostics must point into the file — at a cron field, at a token inside a Rhai
//! expression — so a second pass with `saphyr-parser`, which reports a span for every
//! event, builds an index from each value's route (keys and indices) to its place in the
//! text. The two passes read the same text; the index is only ever used for positions.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
use serde::de::DeserializeOwned;

use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::{LineCol, SourceFile};

/// One step on the way from the document root to a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// The keys and indices that lead to a value, e.g. `steps[2].subject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Route(Vec<Seg>);

impl Route {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        Self(segs)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Where one value sits in the text.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    /// The key that names this value in its mapping, when it has one.
    pub key: Option<YSpan>,
    pub value: YSpan,
    /// For scalars, how the text is quoted; `None` for mappings and sequences.
    pub style: Option<ScalarStyle>,
}

/// A parsed YAML document: its source, and where each value is.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: SourceFile,
    nodes: HashMap<Route, Node>,
}

enum Frame {
    Map {
        route: Route,
        pending_key: Option<(String, YSpan)>,
    },
    Seq {
        route: Route,
        next: usize,
    },
}

impl Document {
    /// Reads the positions of every value. Syntax errors are reported by `parse_typed`,
    /// so this pass keeps what it read up to the first one.
    pub fn index(file: &SourceFile) -> Self {
        let mut nodes = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut open: Vec<Route> = Vec::new();
        let mut parser = Parser::new_from_str(file.text());
        let mut seen_document = false;
        while let Some(Ok((event, span))) = parser.next_event() {
            match event {
                Event::DocumentStart(_) => {
                    if seen_document {
                        break;
                    }
                    seen_document = true;
                }
                Event::Scalar(value, style, _, _) => {
                    if let Some(Frame::Map { pending_key, .. }) = stack.last_mut()
                        && pending_key.is_none()
                    {
                        *pending_key = Some((value.into_owned(), span));
                        continue;
                    }
                    if let Some((route, key)) = next_route(&mut stack) {
                        nodes.insert(
                            route,
                            Node {
                                key,
                                value: span,
                                style: Some(style),
                            },
                        );
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_map = matches!(event, Event::MappingStart(..));
                    let (route, key) = next_route(&mut stack).unwrap_or((Route::root(), None));
                    nodes.insert(
                        route.clone(),
                        Node {
                            key,
                            value: span,
                            style: None,
                        },
                    );
                    open.push(route.clone());
                    stack.push(if is_map {
                        Frame::Map {
                            route,
                            pending_key: None,
                        }
                    } else {
                        Frame::Seq { route, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    if let Some(route) = open.pop()
                        && let Some(node) = nodes.get_mut(&route)
                    {
                        node.value.end = span.end;
                    }
                }
                Event::Alias(_) => {
                    let _ = next_route(&mut stack);
                }
                _ => {}
            }
        }
        Self {
            file: file.clone(),
            nodes,
        }
    }

    pub fn node(&self, route: &Route) -> Option<&Node> {
        self.nodes.get(route)
    }

    /// The span of a value, or of the nearest enclosing value that has one.
    pub fn value_span(&self, route: &Route) -> Span {
        let mut route = route.clone();
        loop {
            if let Some(node) = self.nodes.get(&route) {
                return self.yspan(&node.value);
            }
            if route.0.pop().is_none() {
                return Span::file_start(&self.file);
            }
        }
    }

    /// The span of the key that names a value, falling back to the value itself.
    pub fn key_span(&self, route: &Route) -> Span {
        match self.nodes.get(route).and_then(|n| n.key) {
            Some(key) => self.yspan(&key),
            None => self.value_span(route),
        }
    }

    /// A span underlining a single-line value from its start to its end on that line.
    fn yspan(&self, span: &YSpan) -> Span {
        let start = LineCol {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let len = if span.end.line() == span.start.line() {
            span.end.col().saturating_sub(span.start.col())
        } else {
            self.file
                .line(start.line)
                .chars()
                .count()
                .saturating_sub(span.start.col())
        };
        Span::new(&self.file, start, len.max(1))
    }

    /// Where the character at `offset` (counted in the parsed value) stands in the file.
    ///
    /// The parsed value differs from the text: quotes, escapes, folded line breaks and block
    /// indentation are gone. This walks the text the way the YAML scanner did, so that a
    /// position reported by Rhai, Tera or the cron parser lands on the right character.
    pub fn locate(&self, route: &Route, offset: usize, len: usize) -> Span {
        let Some(node) = self.nodes.get(route) else {
            return self.value_span(route);
        };
        let Some(style) = node.style else {
            return self.yspan(&node.value);
        };
        let text = self.file.text();
        let start_byte = text
            .char_indices()
            .nth(node.value.start.index())
            .map_or(text.len(), |(i, _)| i);
        let mut chars = text[start_byte..].chars().peekable();
        let mut line = node.value.start.line();
        let mut col = node.value.start.col() + 1;
        let mut consumed = 0usize;
        let advance = |c: char, line: &mut usize, col: &mut usize| {
            if c == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
        };
        let block = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded);
        // saphyr starts a block scalar's span at its first content character, already past
        // the indentation, which every later line repeats.
        let indent = if block { node.value.start.col() } else { 0 };
        if matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) {
            chars.next();
            col += 1;
        }
        while consumed < offset {
            let Some(c) = chars.next() else { break };
            advance(c, &mut line, &mut col);
            match (style, c) {
                (_, '\n') if block => {
                    for _ in 0..indent {
                        if chars.peek() == Some(&' ') {
                            chars.next();
                            col += 1;
                        }
                    }
                }
                (_, '\n') => {
                    while let Some(&w) = chars.peek() {
                        if w != ' ' && w != '\t' {
                            break;
                        }
                        chars.next();
                        col += 1;
                    }
                }
                (ScalarStyle::SingleQuoted, '\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    col += 1;
                }
                (ScalarStyle::DoubleQuoted, '\\') => {
                    let extra = match chars.next() {
                        Some('x') => 2,
                        Some('u') => 4,
                        Some('U') => 8,
                        _ => 0,
                    };
                    col += 1;
                    for _ in 0..extra {
                        chars.next();
                        col += 1;
                    }
                }
                _ => {}
            }
            consumed += 1;
        }
        Span::new(&self.file, LineCol { line, column: col }, len.max(1))
    }
}

/// Gives the route of the value that the next event opens, advancing the parent frame.
fn next_route(stack: &mut [Frame]) -> Option<(Route, Option<YSpan>)> {
    match stack.last_mut()? {
        Frame::Map { route, pending_key } => {
            let (key, span) = pending_key.take()?;
            Some((route.key(&key), Some(span)))
        }
        Frame::Seq { route, next } => {
            let r = route.index(*next);
            *next += 1;
            Some((r, None))
        }
    }
}

/// Deserializes a whole document into `T`, turning the first structural error into a
/// diagnostic at its exact position, with a suggestion for misspelled keys.
pub fn parse_typed<T: DeserializeOwned>(file: &SourceFile) -> Result<T, Box<Diagnostic>> {
    yaml_serde::from_str::<T>(file.text()).map_err(|e| {
        Box::new(error_to_diagnostic(
            file,
            &ReadError::of(file, file.text(), &e),
        ))
    })
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
    let mut text = file.text().to_string();
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut blanked: Vec<Route> = Vec::new();
    // Each read blanks one more value, so the text runs out of them; the bound is for the
    // error count a person reads.
    while found.len() < MAX_STRUCTURAL_ERRORS {
        let error = match yaml_serde::from_str::<T>(&text) {
            Ok(value) if found.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => ReadError::of(file, &text, &e),
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
    fn of(file: &SourceFile, text: &str, error: &yaml_serde::Error) -> Self {
        let full = error.to_string();
        let mut location = error.location().map(|loc| file.line_col(loc.index()));
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

    fn doc(text: &str) -> Document {
        Document::index(&SourceFile::new("t.yaml", text.to_string()))
    }

    #[test]
    fn routes_find_nested_values() {
        let d = doc("name: a\nsteps:\n  - email: x\n    subject: \"Hi\"\n  - wait: 7d\n");
        let s = d.value_span(&Route::root().key("steps").index(1).key("wait"));
        assert_eq!((s.start.line, s.start.column, s.len), (5, 11, 2));
        let k = d.key_span(&Route::root().key("steps").index(0).key("subject"));
        assert_eq!((k.start.line, k.start.column), (4, 5));
    }

    #[test]
    fn locate_maps_offsets_through_quotes_and_blocks() {
        let d = doc("a: \"x\\ty z\"\nb: |\n  first\n  second line\nc: 'it''s q'\n");
        let a = d.locate(&Route::root().key("a"), 4, 1);
        assert_eq!((a.start.line, a.start.column), (1, 10));
        let b = d.locate(&Route::root().key("b"), "first\nsec".len(), 1);
        assert_eq!((b.start.line, b.start.column), (4, 6));
        let c = d.locate(&Route::root().key("c"), 5, 1);
        assert_eq!((c.start.line, c.start.column), (5, 11));
    }

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
