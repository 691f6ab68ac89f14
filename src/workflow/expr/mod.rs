//! Rhai expressions: audiences, goals (`exit_when`) and `if` conditions.
//!
//! One sandboxed engine is built once and shared. Expressions are compiled once, at load,
//! with strict variables, so a misspelt name fails `validate` instead of a send. Runtime
//! limits (operations, depth, sizes, and a wall-clock budget) stop a hostile or careless
//! expression from hanging the daemon or exhausting memory.

pub mod check;
pub mod pushdown;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rhai::{
    AST, ASTNode, Dynamic, Engine, EvalAltResult, Expr as RExpr, ImmutableString, Position, Scope,
};
use thiserror::Error;

use crate::customer::{
    CUSTOMER_FIELDS, Customer, ENROLLMENT_FIELDS, EVENT_FIELDS, Enrollment, Event,
};

/// Operation budget per evaluation: a 4-condition audience uses well under 100.
pub const MAX_OPERATIONS: u64 = 100_000;
/// Wall-clock budget per evaluation, checked as operations progress.
pub const TIME_BUDGET: Duration = Duration::from_millis(50);

/// Which variables an expression may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vars {
    /// `event`: only in workflows triggered by an event.
    pub event: bool,
    /// `enrollment`: in `exit_when` and `if`, not in the audience (nobody is enrolled yet).
    pub enrollment: bool,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    ast: AST,
    pub source: String,
}

impl Expr {
    /// Whether the expression calls `event_count`, the one function that reads the
    /// customer's past events: only then must the caller load them.
    pub fn reads_history(&self) -> bool {
        self.source.contains("event_count")
    }
}

/// A problem found while compiling, at a character offset in the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprIssue {
    pub code: &'static str,
    pub message: String,
    pub offset: usize,
    pub len: usize,
    pub help: String,
}

/// Why an evaluation failed for one customer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EvalError {
    #[error("the expression must give true or false, but gave {found}")]
    NotABool { found: String },
    #[error("the expression ran for longer than {budget_ms} ms and was stopped")]
    TooSlow { budget_ms: u128 },
    #[error("{0}")]
    Runtime(String),
}

/// A timestamp as expressions see it. Compared with `<`, `>`, `==`; `days_since(t)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

/// A calendar date (a birthday), as expressions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date(pub NaiveDate);

/// A length of time: `days(30)`, `hours(12)`; `now - days(30)` is a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub TimeDelta);

/// What an evaluation can see besides its variables.
pub struct EvalInput<'a> {
    pub customer: &'a Customer,
    pub event: Option<&'a Event>,
    pub enrollment: Option<&'a Enrollment>,
    pub now: DateTime<Utc>,
    /// The customer's past events by name, for `event_count`; loaded by the caller.
    pub history: Option<Arc<EventHistory>>,
}

/// When a customer's events of each name happened, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventHistory(pub BTreeMap<String, Vec<DateTime<Utc>>>);

impl EventHistory {
    pub fn count_since(&self, name: &str, since: DateTime<Utc>) -> i64 {
        self.0.get(name).map_or(0, |times| {
            times.iter().filter(|t| **t >= since).count() as i64
        })
    }
}

struct EvalState {
    now: DateTime<Utc>,
    deadline: Instant,
    history: Option<Arc<EventHistory>>,
}

thread_local! {
    // Helpers such as `days_since` need "now" and the event counter, which differ per
    // evaluation (a simulation runs on a virtual clock) while the engine is shared. Rhai
    // evaluates synchronously on the calling thread, so the evaluator parks them here for
    // the duration of one call.
    static STATE: RefCell<Option<EvalState>> = const { RefCell::new(None) };
}

fn state_now() -> DateTime<Utc> {
    STATE.with(|s| s.borrow().as_ref().map_or_else(Utc::now, |s| s.now))
}

/// The shared, sandboxed engine.
pub struct ExprEngine {
    engine: Engine,
    /// Nanoseconds; set after compiling, from the project's `limits.expression_time`.
    budget: std::sync::atomic::AtomicU64,
}

impl Default for ExprEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl ExprEngine {
    pub fn new() -> Self {
        let mut engine = Engine::new();
        // No optimizer: it evaluates calls with constant arguments at compile time, outside
        // the operation limit, so a hostile literal would run during `validate`.
        engine.set_optimization_level(rhai::OptimizationLevel::None);
        engine
            .set_strict_variables(true)
            .set_max_operations(MAX_OPERATIONS)
            .set_max_expr_depths(32)
            .set_max_string_size(16 * 1024)
            .set_max_array_size(1_000)
            .set_max_map_size(1_000)
            .on_print(|_| {})
            .on_debug(|_, _, _| {});
        engine.disable_symbol("eval");
        engine.on_progress(|ops| {
            if ops % 256 != 0 {
                return None;
            }
            let late = STATE.with(|s| {
                s.borrow()
                    .as_ref()
                    .is_some_and(|s| Instant::now() > s.deadline)
            });
            late.then(|| Dynamic::from("time budget exceeded"))
        });
        register_types(&mut engine);
        Self {
            engine,
            budget: std::sync::atomic::AtomicU64::new(TIME_BUDGET.as_nanos() as u64),
        }
    }

    /// The same engine with another wall-clock budget per evaluation.
    pub fn with_time_budget(self, budget: Duration) -> Self {
        self.set_time_budget(budget);
        self
    }

    /// Sets the wall-clock budget per evaluation (the plan shares its engine, so this
    /// takes `&self`).
    pub fn set_time_budget(&self, budget: Duration) {
        let nanos = u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX);
        self.budget
            .store(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn budget(&self) -> Duration {
        Duration::from_nanos(self.budget.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Compiles an expression, checking every variable and every `customer.`, `event.` and
    /// `enrollment.` field it names.
    pub fn compile(&self, text: &str, vars: Vars) -> Result<Expr, Vec<ExprIssue>> {
        // Plain variables, not constants: Rhai's optimizer folds constants from the compile
        // scope into the AST, which would bake these placeholder values into the expression.
        let mut scope = Scope::new();
        scope.push("customer", Customer::new("", ""));
        scope.push("now", Timestamp(Utc::now()));
        if vars.event {
            scope.push("event", Event::sample("", Utc::now()));
        }
        if vars.enrollment {
            scope.push(
                "enrollment",
                Enrollment::sample("", &Customer::new("", ""), Utc::now()),
            );
        }
        let ast = self
            .engine
            .compile_expression_with_scope(&scope, text)
            .map_err(|e| vec![parse_issue(text, &e, vars)])?;
        let issues = field_issues(text, &ast, vars);
        if issues.is_empty() {
            Ok(Expr {
                ast,
                source: text.to_string(),
            })
        } else {
            Err(issues)
        }
    }

    /// Evaluates a condition for one customer. `()` (a missing value) counts as false.
    pub fn eval_bool(&self, expr: &Expr, input: &EvalInput<'_>) -> Result<bool, EvalError> {
        match self.first_true([expr], input) {
            Ok(found) => Ok(found.is_some()),
            Err((_, e)) => Err(e),
        }
    }

    /// The position of the first of `exprs` that holds for one customer, as
    /// [`ExprEngine::eval_bool`] would find it, or where the first failure is. The scope
    /// (a copy of the customer) is built once for them all: a lifecycle's stage rules are
    /// read for every customer every day, and the copy cost more than most rules.
    pub fn first_true<'e>(
        &self,
        exprs: impl IntoIterator<Item = &'e Expr>,
        input: &EvalInput<'_>,
    ) -> Result<Option<usize>, (usize, EvalError)> {
        let mut scope = Scope::new();
        scope.push_constant("customer", input.customer.clone());
        scope.push_constant("now", Timestamp(input.now));
        if let Some(event) = input.event {
            scope.push_constant("event", event.clone());
        }
        if let Some(enrollment) = input.enrollment {
            scope.push_constant("enrollment", enrollment.clone());
        }
        let budget = self.budget();
        let mut found = Ok(None);
        for (i, expr) in exprs.into_iter().enumerate() {
            STATE.with(|s| {
                *s.borrow_mut() = Some(EvalState {
                    now: input.now,
                    deadline: Instant::now() + budget,
                    history: input.history.clone(),
                });
            });
            let result = self
                .engine
                .eval_ast_with_scope::<Dynamic>(&mut scope, &expr.ast);
            let holds = match result {
                Ok(v) if v.is_unit() => Ok(false),
                Ok(v) => v.as_bool().map_err(|found| EvalError::NotABool {
                    found: found.to_string(),
                }),
                Err(e) => Err(runtime_error(*e, budget)),
            };
            match holds {
                Ok(false) => continue,
                Ok(true) => found = Ok(Some(i)),
                Err(e) => found = Err((i, e)),
            }
            break;
        }
        STATE.with(|s| *s.borrow_mut() = None);
        found
    }
}

fn runtime_error(e: EvalAltResult, budget: Duration) -> EvalError {
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

fn offset_of(text: &str, pos: Position) -> usize {
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

fn word_len_at(text: &str, offset: usize) -> usize {
    text.chars()
        .skip(offset)
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .count()
        .max(1)
}

fn parse_issue(text: &str, e: &rhai::ParseError, vars: Vars) -> ExprIssue {
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
fn field_issues(text: &str, ast: &AST, vars: Vars) -> Vec<ExprIssue> {
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

fn first_property(rhs: &RExpr) -> Option<(ImmutableString, Position)> {
    match rhs {
        RExpr::Property(p, pos) => Some((p.2.clone(), *pos)),
        RExpr::Dot(b, _, _) | RExpr::Index(b, _, _) => first_property(&b.lhs),
        _ => None,
    }
}

fn json_to_dynamic(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(0.0).into(),
        },
        serde_json::Value::String(s) => s.clone().into(),
        serde_json::Value::Array(a) => a.iter().map(json_to_dynamic).collect::<Vec<_>>().into(),
        serde_json::Value::Object(o) => map_to_dynamic(o),
    }
}

fn map_to_dynamic(o: &serde_json::Map<String, serde_json::Value>) -> Dynamic {
    let map: rhai::Map = o
        .iter()
        .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
        .collect();
    map.into()
}

fn opt<T: Clone + Send + Sync + 'static>(v: Option<T>) -> Dynamic {
    v.map_or(Dynamic::UNIT, Dynamic::from)
}

fn opt_str(v: &Option<String>) -> Dynamic {
    v.clone().map_or(Dynamic::UNIT, Dynamic::from)
}

fn whole_days(d: TimeDelta) -> i64 {
    d.num_seconds().div_euclid(86_400)
}

fn date_start(d: Date) -> DateTime<Utc> {
    d.0.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn register_types(engine: &mut Engine) {
    engine
        .register_type_with_name::<Customer>("Customer")
        .register_get("id", |c: &mut Customer| c.id.clone())
        .register_get("email", |c: &mut Customer| c.email.clone())
        .register_get("first_name", |c: &mut Customer| opt_str(&c.first_name))
        .register_get("last_name", |c: &mut Customer| opt_str(&c.last_name))
        .register_get("locale", |c: &mut Customer| opt_str(&c.locale))
        .register_get("timezone", |c: &mut Customer| opt_str(&c.timezone))
        .register_get("birthday", |c: &mut Customer| opt(c.birthday.map(Date)))
        .register_get("created_at", |c: &mut Customer| {
            opt(c.created_at.map(Timestamp))
        })
        .register_get("last_order_at", |c: &mut Customer| {
            opt(c.last_order_at.map(Timestamp))
        })
        .register_get("orders_count", |c: &mut Customer| c.orders_count)
        .register_get("total_spent", |c: &mut Customer| c.total_spent)
        .register_get("tags", |c: &mut Customer| {
            c.tags
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_get("unsubscribed_at", |c: &mut Customer| {
            opt(c.unsubscribed_at.map(Timestamp))
        })
        .register_get("attributes", |c: &mut Customer| {
            map_to_dynamic(&c.attributes)
        })
        .register_fn("has_tag", |c: &mut Customer, tag: &str| c.has_tag(tag));

    engine
        .register_type_with_name::<Event>("Event")
        .register_get("id", |e: &mut Event| e.id.clone())
        .register_get("name", |e: &mut Event| e.name.clone())
        .register_get("at", |e: &mut Event| Timestamp(e.at))
        .register_get("properties", |e: &mut Event| map_to_dynamic(&e.properties));

    engine
        .register_type_with_name::<Enrollment>("Enrollment")
        .register_get("id", |e: &mut Enrollment| e.id.clone())
        .register_get("workflow", |e: &mut Enrollment| e.workflow.clone())
        .register_get("entered_at", |e: &mut Enrollment| Timestamp(e.entered_at))
        .register_get("step", |e: &mut Enrollment| opt_str(&e.step))
        .register_get("orders_count_at_entry", |e: &mut Enrollment| {
            e.orders_count_at_entry
        })
        .register_get("total_spent_at_entry", |e: &mut Enrollment| {
            e.total_spent_at_entry
        });

    engine
        .register_type_with_name::<Timestamp>("Timestamp")
        .register_type_with_name::<Date>("Date")
        .register_type_with_name::<Span>("Duration")
        .register_fn("to_string", |t: &mut Timestamp| t.0.to_rfc3339())
        .register_fn("to_string", |d: &mut Date| d.0.to_string())
        .register_fn("days", |n: i64| {
            Span(TimeDelta::try_days(n).unwrap_or(TimeDelta::MAX))
        })
        .register_fn("hours", |n: i64| {
            Span(TimeDelta::try_hours(n).unwrap_or(TimeDelta::MAX))
        })
        .register_fn("-", |t: Timestamp, d: Span| {
            Timestamp(t.0.checked_sub_signed(d.0).unwrap_or(t.0))
        })
        .register_fn("+", |t: Timestamp, d: Span| {
            Timestamp(t.0.checked_add_signed(d.0).unwrap_or(t.0))
        })
        .register_fn("days_since", |t: Timestamp| whole_days(state_now() - t.0))
        .register_fn("days_since", |d: Date| {
            whole_days(state_now() - date_start(d))
        })
        .register_fn("days_since", |_: ()| ())
        .register_fn("days_until", |t: Timestamp| whole_days(t.0 - state_now()))
        .register_fn("days_until", |d: Date| {
            whole_days(date_start(d) - state_now())
        })
        .register_fn("days_until", |_: ()| ())
        .register_fn("event_count", |name: &str, days: i64| {
            event_count(
                name,
                state_now() - TimeDelta::try_days(days).unwrap_or(TimeDelta::MAX),
            )
        })
        .register_fn("event_count", |name: &str, since: Timestamp| {
            event_count(name, since.0)
        });

    macro_rules! compare {
        ($t:ty) => {
            engine
                .register_fn("<", |a: $t, b: $t| a < b)
                .register_fn(">", |a: $t, b: $t| a > b)
                .register_fn("<=", |a: $t, b: $t| a <= b)
                .register_fn(">=", |a: $t, b: $t| a >= b)
                .register_fn("==", |a: $t, b: $t| a == b)
                .register_fn("!=", |a: $t, b: $t| a != b);
        };
    }
    compare!(Timestamp);
    compare!(Date);
    compare!(Span);
}

fn event_count(name: &str, since: DateTime<Utc>) -> i64 {
    STATE.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|s| s.history.as_ref().map(|h| h.count_since(name, since)))
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            event: false,
            enrollment: false,
        }
    }

    fn eval(text: &str, customer: &Customer) -> Result<bool, EvalError> {
        let engine = ExprEngine::new();
        let expr = engine.compile(text, vars()).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        engine.eval_bool(
            &expr,
            &EvalInput {
                customer,
                event: None,
                enrollment: None,
                now,
                history: None,
            },
        )
    }

    #[test]
    fn unknown_variables_and_fields_fail_to_compile() {
        let engine = ExprEngine::new();
        let e = engine
            .compile("custmer.orders_count > 1", vars())
            .unwrap_err();
        assert_eq!(e[0].code, "rhai-unknown-variable");
        assert_eq!(e[0].help, "did you mean `customer`?");
        let e = engine
            .compile("customer.order_count > 1", vars())
            .unwrap_err();
        assert_eq!(e[0].message, "`customer` has no field `order_count`");
        assert_eq!((e[0].offset, e[0].len), (9, 11));
        let e = engine.compile("event.name == \"x\"", vars()).unwrap_err();
        assert!(
            e[0].help
                .contains("only in workflows with an `event:` trigger")
        );
    }

    /// Stage rules share one scope: the first rule that holds wins, later ones are not
    /// run (a failing one included), and a failure says which rule failed.
    #[test]
    fn the_first_rule_that_holds_is_found_in_one_scope() {
        let engine = ExprEngine::new();
        let rules: Vec<Expr> = [
            "customer.total_spent > 100.0",
            "customer.first_name.len() > 0",
            "customer.orders_count >= 2",
            "true",
        ]
        .iter()
        .map(|t| engine.compile(t, vars()).unwrap())
        .collect();
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let first = |c: &Customer, from: usize| {
            let input = EvalInput {
                customer: c,
                event: None,
                enrollment: None,
                now,
                history: None,
            };
            engine.first_true(&rules[from..], &input)
        };
        let mut c = Customer::new("1", "a@example.com");
        c.total_spent = 150.0;
        // The second rule would fail (no first name); it is not reached.
        assert_eq!(first(&c, 0), Ok(Some(0)));
        c.total_spent = 5.0;
        let (at, error) = first(&c, 0).unwrap_err();
        assert_eq!(at, 1);
        assert!(matches!(error, EvalError::Runtime(_)), "{error:?}");
        c.first_name = Some("Ada".into());
        assert_eq!(first(&c, 0), Ok(Some(1)));
        c.orders_count = 2;
        assert_eq!(first(&c, 2), Ok(Some(0)));
        c.orders_count = 0;
        assert_eq!(first(&c, 2), Ok(Some(1)));
        assert_eq!(first(&c, 4), Ok(None));
    }

    #[test]
    fn missing_dates_compare_false() {
        let c = Customer::new("1", "a@example.com");
        assert_eq!(
            eval("days_since(customer.last_order_at) > 90", &c),
            Ok(false)
        );
        assert_eq!(
            eval("days_since(customer.last_order_at) <= 90", &c),
            Ok(false)
        );
        let mut c = c;
        c.last_order_at = Some(
            DateTime::parse_from_rfc3339("2026-03-01T13:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        // 91 days and 23 hours: whole days round down.
        assert_eq!(
            eval("days_since(customer.last_order_at) == 91", &c),
            Ok(true)
        );
    }

    #[test]
    fn hostile_expressions_are_stopped() {
        let c = Customer::new("1", "a@example.com");
        // Closures are not part of the language: Rhai runs closures called from native
        // array functions without counting their operations, so they could loop unbounded.
        let e = ExprEngine::new()
            .compile("[1, 2].map(|x| x + 1).len() > 0", vars())
            .unwrap_err();
        assert_eq!(e[0].code, "rhai-syntax");
        let r = eval("\"x\".pad(100000000, \"y\").len() > 0", &c);
        assert!(
            matches!(r, Err(EvalError::Runtime(ref m)) if m.contains("too large")),
            "{r:?}"
        );
        let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
        let e = ExprEngine::new().compile(&deep, vars()).unwrap_err();
        assert!(e[0].message.contains("complex"), "{e:?}");
        // The wall-clock budget: a long array literal takes hundreds of operations, which
        // a zero budget does not allow.
        let long = format!(
            "[{}].len() > 0",
            vec!["customer.orders_count"; 600].join(", ")
        );
        let engine = ExprEngine::new().with_time_budget(Duration::ZERO);
        let expr = engine.compile(&long, vars()).unwrap();
        let now = Utc::now();
        let r = engine.eval_bool(
            &expr,
            &EvalInput {
                customer: &c,
                event: None,
                enrollment: None,
                now,
                history: None,
            },
        );
        assert_eq!(r, Err(EvalError::TooSlow { budget_ms: 0 }));
    }

    #[test]
    fn tags_and_attributes() {
        let mut c = Customer::new("1", "a@example.com");
        c.tags = vec!["vip".into()];
        c.attributes.insert("tier".into(), "gold".into());
        assert_eq!(
            eval(
                "has_tag(customer, \"vip\") && customer.attributes.tier == \"gold\"",
                &c
            ),
            Ok(true)
        );
        assert_eq!(eval("customer.has_tag(\"nope\")", &c), Ok(false));
        assert_eq!(eval("customer.attributes.missing == 1", &c), Ok(false));
    }

    #[test]
    fn non_boolean_results_are_errors() {
        let c = Customer::new("1", "a@example.com");
        assert!(matches!(
            eval("customer.orders_count", &c),
            Err(EvalError::NotABool { .. })
        ));
    }
}
