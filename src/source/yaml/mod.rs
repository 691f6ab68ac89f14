//! All YAML reading lives here, so the parser can change without touching the model.
//!
//! `yaml_serde` turns text into typed structs, but it does not tell where a value came from.
//! Diagnostics must point into the file — at a cron field, at a token inside a Rhai
//! expression — so a second pass with `saphyr-parser`, which reports a span for every
//! event, builds an index from each value's route (keys and indices) to its place in the
//! text. The two passes read the same text; the index is only ever used for positions.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};

mod errors;
pub mod shape;
pub use errors::{closest, parse_typed, parse_typed_all, parse_typed_all_checked};

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

    /// The index this route ends with, if it ends with one (`steps[2]`: 2).
    pub fn last_index(&self) -> Option<usize> {
        match self.0.last() {
            Some(Seg::Index(i)) => Some(*i),
            _ => None,
        }
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
        match Self::walk(file, None) {
            Ok(doc) => doc,
            // Without bounds to check, the walk has nothing to refuse.
            Err(_) => Self {
                file: file.clone(),
                nodes: HashMap::new(),
            },
        }
    }

    /// [`Document::index`] and the checks of [`shape::check`] in one read of the file: what
    /// a caller about to hand the file to serde needs, without reading it twice.
    pub fn checked(file: &SourceFile) -> Result<Self, Box<Diagnostic>> {
        shape::check_text(file)?;
        Self::walk(file, Some(&mut shape::Bounds::default()))
    }

    fn walk(
        file: &SourceFile,
        mut bounds: Option<&mut shape::Bounds>,
    ) -> Result<Self, Box<Diagnostic>> {
        let mut nodes = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut open: Vec<Route> = Vec::new();
        let mut parser = Parser::new_from_str(file.text());
        let mut seen_document = false;
        while let Some(Ok((event, span))) = parser.next_event() {
            if let Some(bounds) = bounds.as_deref_mut() {
                bounds.check(file, &event, span)?;
            }
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
        Ok(Self {
            file: file.clone(),
            nodes,
        })
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
}
