//! An expression checked where it is written: compiled, then tried once on a sample
//! customer, each problem reported at its place in the file — for audiences, goals,
//! conditions and stage rules alike.

use chrono::{DateTime, Utc};

use super::{EvalError, EvalInput, Expr, ExprEngine, Vars};
use crate::model::customer::{Customer, Enrollment, Event};
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};

/// Compiles a Rhai rule and tries it on a sample customer, reporting each problem at its
/// place in the file: audiences, goals, conditions and stage rules alike.
#[allow(clippy::too_many_arguments)] // each is a different fact about the one rule
pub fn check_expression(
    engine: &ExprEngine,
    now: DateTime<Utc>,
    text: &str,
    doc: &Document,
    route: &Route,
    vars: Vars,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Expr> {
    let expr = match engine.compile(text, vars) {
        Ok(e) => e,
        Err(issues) => {
            for i in issues {
                diags.push(
                    Diagnostic::error(i.code, format!("in `{what}`: {}", i.message))
                        .at(doc.locate(route, i.offset, i.len))
                        .help(i.help),
                );
            }
            return None;
        }
    };
    let customer = Customer::sample(now);
    let event = Event::sample("sample", now);
    let enrollment = Enrollment::sample("sample", &customer, now);
    let input = EvalInput {
        customer: &customer,
        event: vars.event.then_some(&event),
        enrollment: vars.enrollment.then_some(&enrollment),
        now,
        history: None,
    };
    match engine.eval_bool(&expr, &input) {
        Ok(_) => Some(expr),
        Err(e) => {
            let fatal = match &e {
                EvalError::NotABool { .. }
                | EvalError::NotANumber { .. }
                | EvalError::TooSlow { .. } => true,
                EvalError::Runtime(m) => {
                    m.contains("many operations")
                        || m.contains("too large")
                        || m.contains("Too many")
                        || m.contains("too deep")
                        || m.contains("Stack overflow")
                }
            };
            let span = doc.value_span(route);
            if fatal {
                diags.push(
                    Diagnostic::error("rhai-runtime", format!("`{what}` fails for a sample customer: {e}"))
                        .at(span)
                        .help("an expression must be a quick true/false test of the customer; loops and large values are stopped"),
                );
                None
            } else {
                diags.push(
                    Diagnostic::warning("rhai-runtime", format!("`{what}` fails for a sample customer: {e}"))
                        .at(span)
                        .help("customers for whom the expression fails are skipped with the error recorded; guard optional values, e.g. `customer.attributes.tier != () && ...`"),
                );
                Some(expr)
            }
        }
    }
}
