//! One module per command; each returns the exit status it wants.

use std::io::IsTerminal;

use thiserror::Error;

use crate::diagnostic::{Diagnostic, render_human};

pub mod schedule;
pub mod validate;

/// Failures that are not findings in the user's files.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output")]
    Io(#[from] std::io::Error),
}

/// Whether to colour diagnostics on stderr.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Prints diagnostics for a person, on stderr.
pub fn eprint_diagnostics(diagnostics: &[Diagnostic]) {
    let color = color_stderr();
    for d in diagnostics {
        eprintln!("{}\n", render_human(d, color));
    }
}
