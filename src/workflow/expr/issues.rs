//! Rhai's errors as problems a marketer can act on: the place in the expression, an
//! unknown name or field with the closest match, and what to write instead.

use super::{EvalError, ExprIssue, Vars};
use crate::model::customer::{CUSTOMER_FIELDS, ENROLLMENT_FIELDS, EVENT_FIELDS};
use rhai::{AST, ASTNode, EvalAltResult, Expr as RExpr, ImmutableString, Position};
use std::time::Duration;

pub(super) fn runtime_error(e: EvalAltResult, budget: Duration) -> EvalError {
    match e {
        EvalAltResult::ErrorTerminated(..) => EvalError::TooSlow {
            budget_ms: budget.as_millis(),
        },
        other => {
            let pos = other.position();
            // Rhai appends the call stack, one line per frame, each with its position; the
            // first line says what happened, and the position is given once, below.
            let full = other.to_string();
            let mut msg = full.lines().next().unwrap_or_default().to_string();
            if let Some(i) = msg.find(" (line ") {
                msg.truncate(i);
            }
            if !pos.is_none() {
                msg = format!("{msg} (at column {})", pos.position().unwrap_or(0));
            }
            EvalError::Runtime(msg)
        }
    }
}

pub(super) fn offset_of(text: &str, pos: Position) -> usize {
    let (Some(line), Some(col)) = (pos.line(), pos.position()) else {
        return 0;
    };
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            return offset + col.saturating_sub(1);
        }
        offset += l.chars().count() + 1;
    }
    offset
}

pub(super) fn word_len_at(text: &str, offset: usize) -> usize {
    text.chars()
        .skip(offset)
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .count()
        .max(1)
}

pub(super) fn parse_issue(text: &str, e: &rhai::ParseError, vars: Vars) -> ExprIssue {
    use rhai::ParseErrorType as P;
    let offset = offset_of(text, e.position());
    match e.err_type() {
        P::VariableUndefined(name) => {
            let mut known = vec!["customer", "now"];
            if vars.event {
                known.push("event");
            }
            if vars.enrollment {
                known.push("enrollment");
            }
            let help = match name.as_str() {
                "event" => "`event` exists only in workflows with an `event:` trigger; use `customer` fields here".to_string(),
                "enrollment" => "`enrollment` exists only in `exit_when` and `if`, after the customer has entered".to_string(),
                _ => match crate::source::yaml::closest(name, known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!(
                        "the variables here are {}",
                        known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                },
            };
            ExprIssue {
                code: "rhai-unknown-variable",
                message: format!("unknown variable `{name}`"),
                offset,
                len: name.chars().count(),
                help,
            }
        }
        other => ExprIssue {
            code: "rhai-syntax",
            message: format!("expression syntax error: {}", crate::source::diagnostic::lowercase_first(&other.to_string())),
            offset,
            len: word_len_at(text, offset),
            help: "fix the Rhai expression; it must be one expression such as `customer.orders_count >= 1 && has_tag(customer, \"vip\")`".into(),
        },
    }
}

/// Finds `customer.x`, `event.x` and `enrollment.x` where `x` is not a field.
pub(super) fn field_issues(text: &str, ast: &AST, vars: Vars) -> Vec<ExprIssue> {
    let mut issues = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(RExpr::Dot(binary, _, _))) = path.last() else {
            return true;
        };
        let RExpr::Variable(var, _, _) = &binary.lhs else {
            return true;
        };
        let name = var.1.as_str();
        let fields: &[&str] = match name {
            "customer" => CUSTOMER_FIELDS,
            "event" if vars.event => EVENT_FIELDS,
            "enrollment" if vars.enrollment => ENROLLMENT_FIELDS,
            _ => return true,
        };
        if let Some((prop, pos)) = first_property(&binary.rhs)
            && !fields.contains(&prop.as_str())
        {
            let help = match crate::source::yaml::closest(&prop, fields.iter().copied()) {
                Some(best) => format!("did you mean `{name}.{best}`?"),
                None if name == "customer" => format!(
                    "custom fields live under `customer.attributes`, e.g. `customer.attributes.{prop}`"
                ),
                None if name == "event" => format!(
                    "event data lives under `event.properties`, e.g. `event.properties.{prop}`"
                ),
                None => format!("`{name}` has {}", fields.join(", ")),
            };
            issues.push(ExprIssue {
                code: "rhai-unknown-field",
                message: format!("`{name}` has no field `{prop}`"),
                offset: offset_of(text, pos),
                len: prop.chars().count(),
                help,
            });
        }
        true
    });
    issues
}

pub(super) fn first_property(rhs: &RExpr) -> Option<(ImmutableString, Position)> {
    match rhs {
        RExpr::Property(p, pos) => Some((p.2.clone(), *pos)),
        RExpr::Dot(b, _, _) | RExpr::Index(b, _, _) => first_property(&b.lhs),
        _ => None,
    }
}

/// What a side of a comparison is, when it can be told from the text alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
}

fn kind_of(e: &RExpr) -> Option<Kind> {
    match e {
        RExpr::IntegerConstant(..) | RExpr::FloatConstant(..) => Some(Kind::Number),
        RExpr::StringConstant(..) => Some(Kind::Text),
        RExpr::Dot(binary, _, _) => {
            let RExpr::Variable(var, _, _) = &binary.lhs else {
                return None;
            };
            let RExpr::Property(p, _) = &binary.rhs else {
                return None;
            };
            match (var.1.as_str(), p.2.as_str()) {
                ("customer", "orders_count" | "total_spent") => Some(Kind::Number),
                ("customer", "id" | "email" | "first_name" | "last_name" | "locale")
                | ("customer", "timezone")
                | ("event", "name" | "id") => Some(Kind::Text),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Finds a number compared with text (`customer.total_spent > "100"`): Rhai answers such a
/// comparison `false` without a word, so the audience would silently match nobody.
pub(super) fn comparison_issues(text: &str, ast: &AST) -> Vec<ExprIssue> {
    let mut issues = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let Some(ASTNode::Expr(RExpr::FnCall(call, pos))) = path.last() else {
            return true;
        };
        let op = call.name.as_str();
        if !matches!(op, "<" | ">" | "<=" | ">=" | "==" | "!=") || call.args.len() != 2 {
            return true;
        }
        let (a, b) = (kind_of(&call.args[0]), kind_of(&call.args[1]));
        if let (Some(a), Some(b)) = (a, b)
            && a != b
        {
            issues.push(ExprIssue {
                code: "rhai-type-mismatch",
                message: format!(
                    "`{op}` compares a number with text: it is never true, so this matches nobody"
                ),
                offset: offset_of(text, *pos),
                len: op.chars().count(),
                help: "write numbers without quotes (`customer.total_spent > 100`) and text in quotes (`customer.locale == \"ja\"`)".into(),
            });
        }
        true
    });
    issues
}
