//! How `tidings test` reports: a line per case and a diff under each failure for people,
//! JSON for programs, annotations for GitHub Actions, JUnit XML for CI dashboards.

use std::fmt::Write as _;

use serde_json::json;

use crate::rehearsal::workflow_tests::runner::{CaseResult, Failure};
use crate::source::diagnostic::{escape_data, escape_property};
use crate::workflow::templates::escape_html;

fn location(f: &Failure) -> String {
    format!(
        "{}:{}:{}",
        f.span.file.name(),
        f.span.start.line,
        f.span.start.column
    )
}

/// The diff of a failure: `-` what was expected, `+` what was sent and not expected yet,
/// and unmarked the sends earlier expectations matched.
pub fn diff(f: &Failure) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(e) = &f.expected {
        lines.push(format!("- {e}"));
    }
    for (matched, s) in &f.sent {
        let mark = if *matched { ' ' } else { '+' };
        let coupon = s.coupon.as_deref().map_or(String::new(), |c| {
            // The code is random; its prefix is what a test can pin.
            let prefix = c.split('-').next().unwrap_or(c);
            format!("  [coupon {prefix}-…]")
        });
        lines.push(format!(
            "{mark} {}  {} to {}  \"{}\"{coupon}",
            s.at.format("%Y-%m-%d %H:%M UTC"),
            s.template,
            s.to,
            s.subject
        ));
    }
    if f.sent.is_empty() && f.expected.is_some() {
        lines.push("  (no email was sent)".into());
    }
    for j in &f.journeys {
        lines.push(format!("  journey {j}"));
    }
    lines
}

pub fn human(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        match &r.failure {
            None => {
                let _ = writeln!(out, "ok    {} › {}", r.workflow, r.name);
            }
            Some(f) => {
                let _ = writeln!(out, "FAIL  {} › {}", r.workflow, r.name);
                let _ = writeln!(out, "      {}: {}", location(f), f.message);
                for line in diff(f) {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let _ = writeln!(out, "{}", summary(results));
    out
}

pub fn summary(results: &[CaseResult]) -> String {
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    format!("{} passed, {failed} failed", results.len() - failed)
}

pub fn json(results: &[CaseResult]) -> String {
    let cases: Vec<_> = results
        .iter()
        .map(|r| {
            let mut case = json!({
                "workflow": r.workflow,
                "name": r.name,
                "file": r.span.file.name(),
                "line": r.span.start.line,
                "passed": r.failure.is_none(),
                "millis": r.elapsed.as_millis() as u64,
            });
            if let Some(f) = &r.failure {
                case["failure"] = json!({
                    "file": f.span.file.name(),
                    "line": f.span.start.line,
                    "column": f.span.start.column,
                    "message": f.message,
                    "diff": diff(f),
                });
            }
            case
        })
        .collect();
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let doc = json!({ "passed": results.len() - failed, "failed": failed, "cases": cases });
    format!("{doc:#}\n")
}

/// `::error` annotations on the failing expectations' lines, then the summary.
pub fn github(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        if let Some(f) = &r.failure {
            let body = std::iter::once(f.message.clone())
                .chain(diff(f))
                .collect::<Vec<_>>()
                .join("\n");
            let _ = writeln!(
                out,
                "::error file={},line={},col={},title={}::{}",
                escape_property(f.span.file.name()),
                f.span.start.line,
                f.span.start.column,
                escape_property(&format!("tidings test: {} › {}", r.workflow, r.name)),
                escape_data(&body)
            );
        }
    }
    let _ = writeln!(out, "{}", summary(results));
    out
}

pub fn junit(results: &[CaseResult]) -> String {
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let seconds: f64 = results.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"tidings test\" tests=\"{}\" failures=\"{failed}\" time=\"{seconds:.3}\">",
        results.len()
    );
    let mut workflows: Vec<&str> = results.iter().map(|r| r.workflow.as_str()).collect();
    workflows.dedup();
    for wf in workflows {
        let mine: Vec<&CaseResult> = results.iter().filter(|r| r.workflow == wf).collect();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\">",
            escape_html(wf),
            mine.len(),
            mine.iter().filter(|r| r.failure.is_some()).count()
        );
        for r in mine {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
                escape_html(wf),
                escape_html(&r.name),
                escape_html(r.span.file.name()),
                r.span.start.line,
                r.elapsed.as_secs_f64()
            );
            match &r.failure {
                None => out.push_str("/>\n"),
                Some(f) => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}: {}\n{}</failure>\n    </testcase>",
                        escape_html(&f.message),
                        escape_html(&location(f)),
                        escape_html(&f.message),
                        escape_html(&diff(f).join("\n"))
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
