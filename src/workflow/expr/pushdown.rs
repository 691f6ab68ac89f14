//! The part of an audience the database can decide: the leading conditions of the form
//! `customer.FIELD OP literal` joined by `&&`, turned into a `WHERE` clause with bound
//! values. Only customers it keeps are read and handed to Rhai, which still evaluates the
//! whole audience on each, so the clause only has to keep every customer the audience
//! could accept.
//!
//! Only a leading run of such conditions is pushed: Rhai's `&&` stops at the first false
//! condition, so a customer one of them rejects never reaches a later condition (which
//! could fail with an error the operator must see) in Rhai either. An audience with `||`
//! or any other operator that binds more loosely than `&&` pushes nothing.

use crate::model::filter::{ColumnFilter, Comparison, Condition, FilterValue as SqlValue};

/// What a stored customer column is to Rhai.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Float,
    Text { nullable: bool },
}

/// The customer fields stored as columns of their own that SQL and Rhai compare alike.
fn column(name: &str) -> Option<(&'static str, Kind)> {
    use crate::model::customer::FieldKind;
    let f = crate::model::customer::field(name)?;
    let kind = match f.kind {
        FieldKind::Id | FieldKind::Email => Kind::Text { nullable: false },
        FieldKind::Text | FieldKind::Locale | FieldKind::Zone => Kind::Text { nullable: true },
        FieldKind::Count => Kind::Int,
        FieldKind::Amount => Kind::Float,
        FieldKind::Date | FieldKind::Time | FieldKind::Tags | FieldKind::Attributes => {
            return None;
        }
    };
    Some((f.name, kind))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// An operator or punctuation the pushdown knows.
    Op(&'static str),
    /// Anything else: makes its condition (or, at the top level, the audience) unpushable.
    Other,
}

const OPS: [&str; 18] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", "{", "}", ".", ",", "-",
];

/// Splits an expression into tokens; `None` when it holds a token this module cannot read
/// safely (a string with escapes, a character literal), which pushes nothing.
fn tokens(text: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let mut float = false;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                float = true;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            out.push(match float {
                true => text.parse().map_or(Token::Other, Token::Float),
                // `0x1F`, `1e3` and the like: read by Rhai, not here.
                false => text.parse().map_or(Token::Other, Token::Int),
            });
        } else if c == '"' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    return None;
                }
                i += 1;
            }
            if i >= chars.len() {
                return None;
            }
            out.push(Token::Str(chars[start..i].iter().collect()));
            i += 1;
        } else if c == '\'' || c == '`' {
            return None;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            match OPS.iter().find(|op| rest.starts_with(**op)) {
                Some(op) => {
                    out.push(Token::Op(op));
                    i += op.len();
                }
                None => {
                    out.push(Token::Other);
                    i += 1;
                }
            }
        }
    }
    Some(out)
}

/// Operators that may stand between conditions at the top level without binding more
/// loosely than `&&`.
fn tight(token: &Token) -> bool {
    match token {
        Token::Op(op) => !matches!(*op, "||" | "{" | "}"),
        // `if`, `switch` and friends build expressions around `&&`.
        Token::Ident(word) => !matches!(
            word.as_str(),
            "if" | "else"
                | "switch"
                | "while"
                | "loop"
                | "for"
                | "do"
                | "let"
                | "const"
                | "fn"
                | "return"
                | "throw"
                | "try"
                | "catch"
                | "import"
                | "export"
        ),
        Token::Int(_) | Token::Float(_) | Token::Str(_) => true,
        Token::Other => false,
    }
}

/// A literal as Rhai would read it: a number (maybe negative) or a string.
fn literal(tokens: &[Token]) -> Option<SqlValue> {
    match tokens {
        [Token::Int(n)] => Some(SqlValue::Int(*n)),
        [Token::Float(f)] => Some(SqlValue::Float(*f)),
        [Token::Op("-"), Token::Int(n)] => Some(SqlValue::Int(n.checked_neg()?)),
        [Token::Op("-"), Token::Float(f)] => Some(SqlValue::Float(-f)),
        [Token::Str(s)] => Some(SqlValue::Text(s.clone())),
        _ => None,
    }
}

/// `customer.FIELD OP literal` or `literal OP customer.FIELD`, when Rhai and SQL agree on
/// it for every stored value: numbers with any comparison, text with `==` and `!=` only
/// (orderings depend on the database's collation).
fn condition(tokens: &[Token]) -> Option<Condition> {
    const COMPARISONS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];
    let field_at = |t: &[Token]| match t {
        [Token::Ident(c), Token::Op("."), Token::Ident(f)] if c == "customer" => column(f),
        _ => None,
    };
    let op_at = tokens
        .iter()
        .position(|t| matches!(t, Token::Op(op) if COMPARISONS.contains(op)))?;
    let (left, op, right) = (&tokens[..op_at], &tokens[op_at], &tokens[op_at + 1..]);
    let Token::Op(op) = op else { return None };
    let (field, op, value) = match (field_at(left), field_at(right)) {
        (Some(f), None) => (f, *op, literal(right)?),
        (None, Some(f)) => (
            f,
            match *op {
                "<" => ">",
                "<=" => ">=",
                ">" => "<",
                ">=" => "<=",
                same => same,
            },
            literal(left)?,
        ),
        _ => return None,
    };
    let ((name, kind), op) = (
        field,
        match op {
            "==" => Comparison::Eq,
            "!=" => Comparison::Ne,
            "<" => Comparison::Lt,
            "<=" => Comparison::Le,
            ">" => Comparison::Gt,
            _ => Comparison::Ge,
        },
    );
    let (value, nullable) = match (kind, value) {
        (Kind::Int, v @ (SqlValue::Int(_) | SqlValue::Float(_))) => (v, false),
        (Kind::Float, SqlValue::Int(n)) => (SqlValue::Float(n as f64), false),
        (Kind::Float, v @ SqlValue::Float(_)) => (v, false),
        (Kind::Text { nullable }, v @ SqlValue::Text(_))
            if matches!(op, Comparison::Eq | Comparison::Ne) =>
        {
            (v, nullable)
        }
        _ => return None,
    };
    Some(Condition {
        column: name,
        op,
        value,
        nullable,
    })
}

/// The leading run of pushable conditions of an audience (see the module's comment).
pub fn pushed(audience: &str) -> ColumnFilter {
    let Some(tokens) = tokens(audience) else {
        return ColumnFilter::default();
    };
    let mut depth = 0i32;
    let mut parts: Vec<&[Token]> = Vec::new();
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Op("(" | "[" | "{") => depth += 1,
            Token::Op(")" | "]" | "}") => depth -= 1,
            Token::Op("&&") if depth == 0 => {
                parts.push(&tokens[start..i]);
                start = i + 1;
                continue;
            }
            _ => {}
        }
        if depth == 0 && !tight(t) {
            return ColumnFilter::default();
        }
    }
    parts.push(&tokens[start..]);
    let conditions = parts.into_iter().map_while(condition).collect();
    ColumnFilter { conditions }
}
