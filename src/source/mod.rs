//! A file's text kept beside its path, so that every later stage can point into it.
//!
//! Positions inside tidings are character offsets (what a marketer counts when reading a
//! column number); byte offsets appear only where a library asks for them.

pub mod diagnostic;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One loaded file: its display path and its full text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    inner: Arc<SourceInner>,
}

#[derive(Debug)]
struct SourceInner {
    path: PathBuf,
    display: String,
    text: String,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
}

/// A 1-based line and 1-based character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let path = path.into();
        let display = path.display().to_string();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            inner: Arc::new(SourceInner {
                path,
                display,
                text,
                line_starts,
            }),
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        Ok(Self::new(path, text))
    }

    /// Reads a text file; one that is not UTF-8 comes back as a diagnostic at its first
    /// bad byte (the file shown with that byte replaced), so an annotation lands on it.
    pub fn read_text(path: &Path, code: &'static str) -> Result<Self, Box<diagnostic::Diagnostic>> {
        use diagnostic::{Diagnostic, Span};
        let bytes = std::fs::read(path).map_err(|e| {
            Box::new(
                Diagnostic::error(code, format!("cannot read `{}`: {e}", path.display()))
                    .help("check that the path exists and that it can be read"),
            )
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self::new(path, text)),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                // Up to the bad byte the replaced text is the file's own, byte for byte.
                let lossy = Self::new(path, String::from_utf8_lossy(e.as_bytes()).into_owned());
                let at = lossy.line_col(valid);
                Err(Box::new(
                    Diagnostic::error(
                        code,
                        format!(
                            "`{}` is not UTF-8 text: byte {valid} is not valid UTF-8",
                            path.display()
                        ),
                    )
                    .at(Span::new(&lossy, at, 1))
                    .help("save the file as UTF-8 (Latin-1 and Windows-1252 text is not read)"),
                ))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The path as the user gave it, for messages.
    pub fn name(&self) -> &str {
        &self.inner.display
    }

    pub fn text(&self) -> &str {
        &self.inner.text
    }

    pub fn line_count(&self) -> usize {
        self.inner.line_starts.len()
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, line: usize) -> &str {
        let Some(&start) = self.inner.line_starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = self
            .inner
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.inner.text.len());
        self.inner.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// Byte offset of a 1-based line and 1-based character column, clamped to the line.
    pub fn byte_offset(&self, at: LineCol) -> usize {
        let line_idx = at.line.clamp(1, self.line_count()) - 1;
        let start = self.inner.line_starts[line_idx];
        let line = self.line(line_idx + 1);
        let within = line
            .char_indices()
            .nth(at.column.saturating_sub(1))
            .map_or(line.len(), |(i, _)| i);
        start + within
    }

    /// The line and column of a byte offset.
    pub fn line_col(&self, byte: usize) -> LineCol {
        let mut byte = byte.min(self.inner.text.len());
        while !self.inner.text.is_char_boundary(byte) {
            byte -= 1;
        }
        let idx = match self.inner.line_starts.binary_search(&byte) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.inner.line_starts[idx];
        let column = self.inner.text[start..byte].chars().count() + 1;
        LineCol {
            line: idx + 1,
            column,
        }
    }
}

/// Every file below `dir`, in its subfolders too (none when it cannot be read): what the
/// template loader reads and what the daemon watches for changes.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let file = SourceFile::new("x.yaml", "a: 1\nname: 山田 x\n".to_string());
        let at = file.line_col(file.text().find('x').unwrap());
        assert_eq!(
            at,
            LineCol {
                line: 2,
                column: 10
            }
        );
        assert_eq!(file.byte_offset(at), file.text().find('x').unwrap());
        assert_eq!(file.line(2), "name: 山田 x");
        assert_eq!(file.line(9), "");
    }
}
