//! What `validate`, `test` and the daemon say about a user's files, in the three shapes
//! its readers want: a person (caret under the offending text), a program (JSON) and
//! GitHub Actions (workflow-command annotations on the pull request).

use std::fmt::Write as _;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

use crate::source::{LineCol, SourceFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A stretch of one line of a source file.
#[derive(Debug, Clone)]
pub struct Span {
    pub file: SourceFile,
    pub start: LineCol,
    /// Length in characters; at least one character is always underlined.
    pub len: usize,
}

impl Span {
    pub fn new(file: &SourceFile, start: LineCol, len: usize) -> Self {
        Self {
            file: file.clone(),
            start,
            len,
        }
    }

    /// The first character of a file: for problems with the file as a whole.
    pub fn file_start(file: &SourceFile) -> Self {
        Self::new(file, LineCol { line: 1, column: 1 }, 0)
    }
}

/// One finding, with where it is and what to do about it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable kebab-case name, for JSON consumers and for tests.
    pub code: &'static str,
    pub message: String,
    pub span: Option<Span>,
    /// A short note printed under the caret.
    pub label: Option<String>,
    /// What the user should do.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: None,
            label: None,
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    pub fn at_opt(mut self, span: Option<Span>) -> Self {
        self.span = span.or(self.span);
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn sort_key(&self) -> (String, LineCol) {
        match &self.span {
            Some(s) => (s.file.name().to_string(), s.start),
            None => (String::new(), LineCol { line: 0, column: 0 }),
        }
    }
}

/// Library messages start with a capital and end with a period; ours read as one clause.
pub fn lowercase_first(s: &str) -> String {
    let s = s.trim().trim_end_matches('.');
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Orders diagnostics by file and position so that output is stable across runs.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(Diagnostic::sort_key);
}

/// The output shapes `--format` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Github,
}

/// Renders one diagnostic the way a compiler would: header, location, line, caret, help.
pub fn render_human(d: &Diagnostic, color: bool) -> String {
    let level = match d.severity {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
    };
    let title = level.primary_title(d.message.as_str()).id(d.code);
    let mut groups: Vec<Group<'_>> = Vec::new();
    let group = match &d.span {
        Some(span) => {
            let line_text = span.file.line(span.start.line);
            let start = byte_in_line(line_text, span.start.column);
            let end = byte_in_line(line_text, span.start.column + span.len.max(1)).max(start);
            let annotation = AnnotationKind::Primary.span(start..end);
            let annotation = match &d.label {
                Some(label) => annotation.label(label.as_str()),
                None => annotation,
            };
            title.element(
                Snippet::source(line_text)
                    .line_start(span.start.line)
                    .path(span.file.name())
                    .annotation(annotation),
            )
        }
        None => Group::with_title(title),
    };
    groups.push(group);
    if let Some(help) = &d.help {
        groups.push(Group::with_title(
            Level::HELP.secondary_title(help.as_str()),
        ));
    }
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    renderer.render(&groups)
}

/// Byte offset of a 1-based character column in a line, or the line's end (plus one for a
/// caret just past the text, where a missing value is reported).
fn byte_in_line(line: &str, column: usize) -> usize {
    line.char_indices()
        .nth(column.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i)
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    code: &'a str,
    message: &'a str,
    file: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    end_column: Option<usize>,
    label: Option<&'a str>,
    help: Option<&'a str>,
}

/// The JSON shape: one object per diagnostic, stable field names.
pub fn to_json_value(d: &Diagnostic) -> serde_json::Value {
    let json = JsonDiagnostic {
        severity: d.severity,
        code: d.code,
        message: &d.message,
        file: d.span.as_ref().map(|s| s.file.name()),
        line: d.span.as_ref().map(|s| s.start.line),
        column: d.span.as_ref().map(|s| s.start.column),
        end_column: d.span.as_ref().map(|s| s.start.column + s.len.max(1)),
        label: d.label.as_deref(),
        help: d.help.as_deref(),
    };
    serde_json::to_value(json).unwrap_or(serde_json::Value::Null)
}

/// A GitHub Actions workflow command, which the runner turns into an annotation on the
/// pull request's diff.
pub fn render_github(d: &Diagnostic) -> String {
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = format!("::{kind} ");
    let mut props = Vec::new();
    if let Some(span) = &d.span {
        props.push(format!("file={}", escape_property(span.file.name())));
        props.push(format!("line={}", span.start.line));
        props.push(format!("col={}", span.start.column));
        props.push(format!("endColumn={}", span.start.column + span.len.max(1)));
    }
    props.push(format!("title={}", escape_property(d.code)));
    out.push_str(&props.join(","));
    out.push_str("::");
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        let _ = write!(message, "\nhelp: {help}");
    }
    out.push_str(&escape_data(&message));
    out
}

/// GitHub workflow-command escaping of a message.
pub(crate) fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub workflow-command escaping of a property (`file=`, `title=`).
pub(crate) fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// An error and its sources as one line (`a: b: c`), skipping a source whose text the line
/// already holds (many errors repeat their cause in their own message).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostic {
        let file = SourceFile::new("wf/a.yaml", "name: a\nsubjet: hi, 100%\n".to_string());
        Diagnostic::error("unknown-key", "unknown key `subjet`")
            .at(Span::new(&file, LineCol { line: 2, column: 1 }, 6))
            .label("not a workflow key")
            .help("did you mean `subject`?")
    }

    #[test]
    fn human_output_points_at_the_text() {
        let out = render_human(&sample(), false);
        assert!(out.contains("wf/a.yaml:2:1"), "{out}");
        assert!(out.contains("^^^^^^ not a workflow key"), "{out}");
        assert!(out.contains("help: did you mean `subject`?"), "{out}");
    }

    #[test]
    fn github_output_escapes_commands() {
        let d = sample();
        let mut d2 = d.clone();
        d2.message = "a: b, 100%\nnext".into();
        assert_eq!(
            render_github(&d2),
            "::error file=wf/a.yaml,line=2,col=1,endColumn=7,title=unknown-key::a: b, 100%25%0Anext%0Ahelp: did you mean `subject`?"
        );
    }

    #[test]
    fn json_output_has_position() {
        let v = to_json_value(&sample());
        assert_eq!(v["line"], 2);
        assert_eq!(v["column"], 1);
        assert_eq!(v["file"], "wf/a.yaml");
        assert_eq!(v["code"], "unknown-key");
    }
}
