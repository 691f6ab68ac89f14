//! The bounds a YAML file must keep before anything reads it as a document.
//!
//! Every file is read twice (`yaml_serde` for the values, `saphyr-parser` for positions) and
//! then walked again by the checks, so a file shaped to make one of those readers blow up —
//! a chain of aliases that expands to millions of values ("billion laughs"), nesting
//! thousands deep, a file of hundreds of megabytes — would stop `validate` or a daemon's
//! reload. This pass reads the events once, keeps a few counters and stops at the first
//! bound it crosses, with a diagnostic at the line where that happened.

use saphyr_parser::{Event, Parser, Span as YSpan};

use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::{LineCol, SourceFile};

/// The largest file read: the shipped workflows are a few kilobytes.
pub const MAX_BYTES: usize = 1 << 20;

/// The deepest nesting of mappings and lists. A workflow's deepest branch (an `if` inside
/// a `split` inside an `if`) is about a dozen levels.
pub const MAX_DEPTH: usize = 64;

/// How many values a file may hold once every alias is expanded to what it names.
pub const MAX_VALUES: u64 = 200_000;

/// Why a file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    TooLarge { bytes: usize },
    TooDeep,
    TooManyValues,
    SecondDocument,
}

/// Reads `file`'s events and fails at the first bound crossed. Syntax errors are left to
/// the readers that report them in full.
pub fn check(file: &SourceFile) -> Result<(), Box<Diagnostic>> {
    check_text(file)?;
    walk(file.text()).map_err(|(problem, span)| Box::new(diagnostic(file, &problem, Some(span))))
}

/// Where brackets (`[`, `{`) open more than [`MAX_DEPTH`] deep, read from the text itself:
/// the YAML scanners look ahead over a whole flow collection before they report its first
/// event, in time that grows with the square of its depth, so a file of brackets must be
/// stopped before a parser sees it. Quoted text and comments are skipped; a bracket in a
/// plain value counts, which can only make a file with dozens of unmatched ones fail.
fn flow_too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut previous = '\n';
    for (i, c) in text.char_indices() {
        if comment {
            comment = c != '\n';
        } else if let Some(q) = quote {
            match c {
                '\\' if q == '"' && !escaped => {
                    escaped = true;
                    previous = c;
                    continue;
                }
                _ if c == q && !escaped => quote = None,
                _ => {}
            }
        } else {
            match c {
                '"' | '\'' if previous.is_whitespace() || "[{,:".contains(previous) => {
                    quote = Some(c)
                }
                '#' if previous.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some(i);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        escaped = false;
        previous = c;
    }
    None
}

/// What one open mapping or list has counted so far.
struct Open {
    anchor: usize,
    values: u64,
}

fn walk(text: &str) -> Result<(), (Problem, YSpan)> {
    let mut parser = Parser::new_from_str(text);
    let mut bounds = Bounds::default();
    while let Some(Ok((event, span))) = parser.next_event() {
        bounds.see(&event, span)?;
    }
    Ok(())
}

/// The bounds of one walk over a file's events, checked event by event, so that the walk
/// that indexes positions can check them as it goes instead of reading the file again.
#[derive(Default)]
pub(super) struct Bounds {
    open: Vec<Open>,
    /// The expanded size of each anchored value, by anchor id (0 is "no anchor").
    anchored: Vec<u64>,
    total: u64,
    documents: u32,
}

impl Bounds {
    fn record(&mut self, anchor: usize, size: u64) {
        if anchor == 0 {
            return;
        }
        if self.anchored.len() <= anchor {
            self.anchored.resize(anchor + 1, 0);
        }
        self.anchored[anchor] = size;
    }

    /// Counts `event`; the first bound it crosses, with where.
    fn see(&mut self, event: &Event<'_>, span: YSpan) -> Result<(), (Problem, YSpan)> {
        let size = match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err((Problem::SecondDocument, span));
                }
                return Ok(());
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if self.open.len() >= MAX_DEPTH {
                    return Err((Problem::TooDeep, span));
                }
                self.open.push(Open {
                    anchor: *anchor,
                    values: 1,
                });
                self.total = self.total.saturating_add(1);
                return Ok(());
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(done) = self.open.pop() else {
                    return Ok(());
                };
                self.record(done.anchor, done.values);
                done.values
            }
            Event::Scalar(_, _, anchor, _) => {
                self.record(*anchor, 1);
                self.total = self.total.saturating_add(1);
                1
            }
            Event::Alias(anchor) => {
                let size = self.anchored.get(*anchor).copied().unwrap_or(1).max(1);
                self.total = self.total.saturating_add(size);
                size
            }
            _ => return Ok(()),
        };
        if self.total > MAX_VALUES {
            return Err((Problem::TooManyValues, span));
        }
        if let Some(parent) = self.open.last_mut() {
            parent.values = parent.values.saturating_add(size);
        }
        Ok(())
    }

    /// `see`, with the crossed bound as the diagnostic a reader gets.
    pub(super) fn check(
        &mut self,
        file: &SourceFile,
        event: &Event<'_>,
        span: YSpan,
    ) -> Result<(), Box<Diagnostic>> {
        self.see(event, span)
            .map_err(|(problem, span)| Box::new(diagnostic(file, &problem, Some(span))))
    }
}

/// The checks made on the text before any parser reads it: its size, and its brackets' depth
/// (a parser's look-ahead over deep flow collections is what they guard against).
pub(super) fn check_text(file: &SourceFile) -> Result<(), Box<Diagnostic>> {
    if file.text().len() > MAX_BYTES {
        let problem = Problem::TooLarge {
            bytes: file.text().len(),
        };
        return Err(Box::new(diagnostic(file, &problem, None)));
    }
    if let Some(at) = flow_too_deep(file.text()) {
        let start = file.line_col(at);
        let d = diagnostic(file, &Problem::TooDeep, None).at(Span::new(file, start, 1));
        return Err(Box::new(d));
    }
    Ok(())
}

fn diagnostic(file: &SourceFile, problem: &Problem, span: Option<YSpan>) -> Diagnostic {
    let at = span.map_or_else(
        || Span::file_start(file),
        |s| {
            let start = LineCol {
                line: s.start.line().max(1),
                column: s.start.col() + 1,
            };
            Span::new(file, start, 1)
        },
    );
    let (message, help) = match problem {
        Problem::TooLarge { bytes } => (
            format!("the file is {bytes} bytes; a YAML file is read up to {MAX_BYTES} bytes"),
            "split it into smaller files (one workflow per file)",
        ),
        Problem::TooDeep => (
            format!("the YAML nests more than {MAX_DEPTH} levels deep here"),
            "a workflow's steps nest a dozen levels at most: look for a list or mapping opened by mistake",
        ),
        Problem::TooManyValues => (
            format!(
                "with its aliases (`*name`) expanded, the file holds more than {MAX_VALUES} values"
            ),
            "write the repeated part out where it is needed, or repeat it fewer times",
        ),
        Problem::SecondDocument => (
            "a second YAML document (`---`) starts here; a file holds one".to_string(),
            "move the second document into a file of its own",
        ),
    };
    Diagnostic::error("yaml-limits", message).at(at).help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> Option<Problem> {
        walk(text).err().map(|(p, _)| p)
    }

    #[test]
    fn ordinary_files_pass() {
        assert_eq!(problem("a: 1\nb: [1, 2, {c: d}]\n"), None);
        assert_eq!(problem("base: &b {x: 1}\nuse: *b\nagain: *b\n"), None);
        assert_eq!(problem("---\na: 1\n"), None);
    }

    #[test]
    fn nesting_past_the_bound_stops_at_its_line() {
        let deep = format!(
            "{}x{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(problem(&deep), Some(Problem::TooDeep));
        let fits = format!("{}x{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(problem(&fits), None);
        // Block lists too, and the walk stops at the bound, not at the end of 8,000 levels.
        let blocks: String = (0..8_000).map(|_| "- ").collect::<String>() + "x\n";
        assert_eq!(problem(&blocks), Some(Problem::TooDeep));
    }

    #[test]
    fn brackets_are_counted_before_any_parser_reads_them() {
        let deep = format!("a: {}", "[".repeat(100_000));
        assert_eq!(flow_too_deep(&deep), Some(3 + MAX_DEPTH));
        let fits = format!("a: {}x{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(flow_too_deep(&fits), None);
        // Brackets in quotes and comments are text.
        let quoted = format!(
            "a: \"{}\"\nb: '{}' # {}\nc: \"x\\\" {}\"\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100),
            "[".repeat(100)
        );
        assert_eq!(flow_too_deep(&quoted), None, "{quoted}");
        // Many balanced collections, each shallow, are fine.
        assert_eq!(flow_too_deep(&"a: [[1], {b: [2]}]\n".repeat(1000)), None);
    }

    #[test]
    fn an_alias_chain_is_counted_as_expanded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        assert_eq!(problem(&text), Some(Problem::TooManyValues));
        // The same chain three levels deep is a thousand values.
        let short: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(problem(&short), None);
    }

    #[test]
    fn a_second_document_is_named() {
        assert_eq!(problem("a: 1\n---\nb: 2\n"), Some(Problem::SecondDocument));
    }
}
