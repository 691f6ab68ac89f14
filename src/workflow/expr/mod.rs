//! Rhai expressions: audiences, goals (`exit_when`) and `if` conditions.
//!
//! One sandboxed engine is built once and shared. Expressions are compiled once, at load,
//! with strict variables, so a misspelt name fails `validate` instead of a send. Runtime
//! limits (operations, depth, sizes, and a wall-clock budget) stop a hostile or careless
//! expression from hanging the daemon or exhausting memory.

mod environment;
mod issues;
use crate::workflow::expr::environment::Timestamp;
use environment::register_types;
use issues::{comparison_issues, field_issues, parse_issue, runtime_error};

pub mod check;
pub mod pushdown;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rhai::{AST, Dynamic, Engine, Scope};
use thiserror::Error;

use crate::model::customer::{Customer, Enrollment, Event};
/// What expressions read of a customer's past is the store's vocabulary too.
pub use crate::model::history::{Engaged, Engagement, EventHistory};

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
        ["event_count", "clicked", "opened", "answer", "redeemed"]
            .iter()
            .any(|f| self.source.contains(f))
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
    #[error("the expression must give a number, but gave {found}")]
    NotANumber { found: String },
    #[error("the expression ran for longer than {budget_ms} ms and was stopped")]
    TooSlow { budget_ms: u128 },
    #[error("{0}")]
    Runtime(String),
}

/// What an evaluation can see besides its variables.
pub struct EvalInput<'a> {
    pub customer: &'a Customer,
    pub event: Option<&'a Event>,
    pub enrollment: Option<&'a Enrollment>,
    pub now: DateTime<Utc>,
    /// The customer's past events by name, for `event_count`; loaded by the caller.
    pub history: Option<Arc<EventHistory>>,
}

struct EvalState {
    now: DateTime<Utc>,
    deadline: Instant,
    history: Option<Arc<EventHistory>>,
    /// The enrollment's id and workflow, for `clicked("step")` within it.
    enrollment: Option<(String, String)>,
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
        let mut issues = field_issues(text, &ast, vars);
        issues.extend(comparison_issues(text, &ast));
        if issues.is_empty() {
            Ok(Expr {
                ast,
                source: text.to_string(),
            })
        } else {
            Err(issues)
        }
    }

    /// Evaluates an expression that gives a number (a goal's value) for one customer: an
    /// integer or a float; `()` (a missing value) is 0.
    pub fn eval_number(&self, expr: &Expr, input: &EvalInput<'_>) -> Result<f64, EvalError> {
        let mut scope = Scope::new();
        scope.push_constant("customer", input.customer.clone());
        scope.push_constant("now", Timestamp(input.now));
        if let Some(event) = input.event {
            scope.push_constant("event", event.clone());
        }
        let budget = self.budget();
        STATE.with(|s| {
            *s.borrow_mut() = Some(EvalState {
                now: input.now,
                deadline: Instant::now() + budget,
                history: input.history.clone(),
                enrollment: None,
            });
        });
        let result = self.run(&mut scope, expr, budget);
        STATE.with(|s| *s.borrow_mut() = None);
        let value = result?;
        if value.is_unit() {
            return Ok(0.0);
        }
        if let Ok(i) = value.as_int() {
            return Ok(i as f64);
        }
        // A total imported from CSV is text: `"59.90"` is the number it reads as.
        let text = value
            .clone()
            .into_immutable_string()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok());
        value
            .as_float()
            .ok()
            .or(text)
            .filter(|f| f.is_finite())
            .ok_or_else(|| EvalError::NotANumber {
                found: value.type_name().to_string(),
            })
    }

    /// Runs one expression. A panic inside a helper (a defect of ours that a customer's
    /// value found) ends this evaluation as an error, so it fails the one journey or
    /// customer it was for and never the pass or the daemon.
    fn run(
        &self,
        scope: &mut Scope<'_>,
        expr: &Expr,
        budget: Duration,
    ) -> Result<Dynamic, EvalError> {
        let run = std::panic::AssertUnwindSafe(|| {
            self.engine.eval_ast_with_scope::<Dynamic>(scope, &expr.ast)
        });
        match std::panic::catch_unwind(run) {
            Ok(result) => result.map_err(|e| runtime_error(*e, budget)),
            Err(panic) => Err(EvalError::Runtime(format!(
                "the expression stopped on an internal error ({}); please report it",
                panic_text(&*panic)
            ))),
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
                    enrollment: input.enrollment.map(|e| (e.id.clone(), e.workflow.clone())),
                });
            });
            let holds = match self.run(&mut scope, expr, budget) {
                Ok(v) if v.is_unit() => Ok(false),
                Ok(v) => v.as_bool().map_err(|found| EvalError::NotABool {
                    found: found.to_string(),
                }),
                Err(e) => Err(e),
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

/// What a caught panic said, when it said it as text.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
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
