//! The values every part of a workflow is written with — zones, durations, Rhai
//! expressions (and the email steps `clicked` and `opened` name) — each checked where it is
//! written.

use super::Compiler;
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};
use crate::time::duration;
use crate::workflow::expr::{Expr, Vars};
use chrono::TimeDelta;
use chrono_tz::Tz;
use std::str::FromStr;

impl Compiler {
    pub(super) fn zone(&mut self, name: &str, doc: &Document, route: &Route) -> Option<Tz> {
        match Tz::from_str(name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
                let help = match crate::source::yaml::closest(name, names) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "use an IANA time zone name such as `Europe/Berlin` or `America/New_York`, or `customer` for each customer's own zone".into(),
                };
                self.error(
                    "bad-timezone",
                    format!("`{name}` is not a time zone"),
                    doc.value_span(route),
                    help,
                );
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
    ) -> Option<TimeDelta> {
        match duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                let len = match &e {
                    duration::DurationError::UnknownUnit { unit, .. } => unit.chars().count(),
                    _ => text.chars().count(),
                };
                self.diags.push(
                    Diagnostic::error("bad-duration", format!("invalid duration `{text}`: {e}"))
                        .at(doc.locate(route, e.offset(), len))
                        .help(duration::DURATION_HELP),
                );
                None
            }
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
        what: &str,
    ) -> Option<TimeDelta> {
        let d = self.duration(text, doc, route)?;
        if d <= TimeDelta::zero() {
            self.error(
                "non-positive-duration",
                format!("{what} must be longer than zero, got `{text}`"),
                doc.value_span(route),
                "use a positive duration such as `1d`; to skip the step, remove it",
            );
            return None;
        }
        Some(d)
    }

    /// Compiles an expression and runs it once on a sample customer, so that a runtime
    /// failure shows up in `validate` rather than during a send.
    pub(super) fn expression(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
        vars: Vars,
        what: &str,
    ) -> Option<Expr> {
        let expr = crate::workflow::expr::check::check_expression(
            &self.engine,
            self.now,
            text,
            doc,
            route,
            vars,
            what,
            &mut self.diags,
        )?;
        self.engagement_steps(text, doc, route, vars, what);
        Some(expr)
    }

    /// `clicked("step")` and `opened("step")` name an email step: of this workflow (within
    /// the enrollment, so not in an audience), or `workflow/step` of any, checked when all
    /// workflows are read.
    fn engagement_steps(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
        vars: Vars,
        what: &str,
    ) {
        for (function, name, offset) in engagement_calls(text) {
            let span = doc.locate(route, offset, name.chars().count() + 2);
            if let Some((workflow, step)) = name.split_once('/') {
                self.engagement_refs
                    .push((workflow.to_string(), step.to_string(), span));
                continue;
            }
            if !vars.enrollment {
                self.error(
                    "engagement-in-audience",
                    format!("in `{what}`: `{function}(\"{name}\")` needs an enrollment, and an audience has none"),
                    span,
                    format!("name the workflow too: `{function}(\"WORKFLOW/{name}\")` is true when the customer ever did it"),
                );
            } else if !self.email_steps.contains(&name) {
                let mut known: Vec<&str> = self.email_steps.iter().map(String::as_str).collect();
                known.sort_unstable();
                let help = match crate::source::yaml::closest(&name, known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None if known.is_empty() => "this workflow sends no email".to_string(),
                    None => format!("its email steps are: {}", known.join(", ")),
                };
                self.error(
                    "unknown-step",
                    format!("in `{what}`: this workflow has no email step `{name}`"),
                    span,
                    help,
                );
            }
        }
    }
}

/// Every `clicked("…")` and `opened("…")` of an expression: the function, the name, and
/// the character offset of its string literal.
pub(super) fn engagement_calls(text: &str) -> Vec<(&'static str, String, usize)> {
    let mut out = Vec::new();
    for function in ["clicked", "opened", "redeemed"] {
        let mut from = 0;
        while let Some(rel) = text[from..].find(function) {
            let at = from + rel;
            from = at + function.len();
            let word_before = text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
            let rest = text[from..].trim_start();
            let Some(rest) = rest.strip_prefix('(') else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(literal) = rest.strip_prefix('"') else {
                continue;
            };
            let Some(end) = literal.find('"') else {
                continue;
            };
            if word_before {
                continue;
            }
            let quote = text.len() - rest.len();
            let offset = text[..quote].chars().count();
            out.push((function, literal[..end].to_string(), offset));
        }
    }
    out
}
