//! Lifecycle stages: `stages.yaml` names stages in order of precedence, each with a Rhai
//! rule; a customer is in the first stage whose rule holds. The engine recomputes a
//! customer's stage when they change and once a day for everyone (rules such as "no order
//! in 180 days" change with time alone), and records `stage_entered` on each move.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::model::customer::Customer;
use crate::source::SourceFile;
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};
use crate::workflow::expr::check::check_expression;
use crate::workflow::expr::{EvalError, EvalInput, Expr, ExprEngine, Vars};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StagesFile {
    stages: Vec<RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    /// `name: lapsed` — lowercase letters, digits and dashes.
    name: String,
    /// `when: days_since(customer.last_order_at) > 180` — a Rhai rule on the customer.
    when: String,
    #[serde(default)]
    #[allow(dead_code)] // for people reading the file
    description: Option<String>,
}

/// The compiled stages, in order of precedence.
#[derive(Debug)]
pub struct Stages {
    pub list: Vec<(String, Expr)>,
    /// Every stage the file names, rules valid or not: what tests may expect. (A file with
    /// errors stops every command that runs anything, so `list` is then never used.)
    declared: Vec<String>,
    pub file: SourceFile,
}

impl Stages {
    /// The first stage whose rule holds for the customer at `now`, if any.
    pub fn stage_of(
        &self,
        engine: &ExprEngine,
        customer: &Customer,
        now: DateTime<Utc>,
    ) -> Result<Option<&str>, (String, EvalError)> {
        let input = EvalInput {
            customer,
            event: None,
            enrollment: None,
            now,
            history: None,
        };
        match engine.first_true(self.list.iter().map(|(_, rule)| rule), &input) {
            Ok(found) => Ok(found.map(|i| self.list[i].0.as_str())),
            Err((i, e)) => Err((self.list[i].0.clone(), e)),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.declared.iter().map(String::as_str)
    }
}

/// Reads and checks `path` when it exists; every problem is a diagnostic at its place.
/// `None` when there is no file or it is not YAML of the right shape.
/// What is wrong with a stage's name, if anything: its spelling, or a second use.
fn name_problem<'a>(
    name: &'a str,
    seen: &mut std::collections::HashSet<&'a str>,
) -> Option<Diagnostic> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Some(
            Diagnostic::error("stage-name", format!("`{name}` is not a stage name"))
                .help("use lowercase letters, digits and dashes, e.g. `first-time`"),
        );
    }
    (!seen.insert(name)).then(|| {
        Diagnostic::error("stage-name", format!("stage `{name}` is listed twice"))
            .help("give each stage one rule; combine conditions with `||`")
    })
}

pub fn load(
    path: &Path,
    engine: &ExprEngine,
    now: DateTime<Utc>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Stages> {
    if !path.exists() {
        return None;
    }
    let file = match SourceFile::read_text(path, "stages-unreadable") {
        Ok(f) => f,
        Err(d) => {
            diagnostics.push(*d);
            return None;
        }
    };
    let raw: StagesFile = match crate::source::yaml::parse_typed(&file) {
        Ok(r) => r,
        Err(d) => {
            diagnostics.push(*d);
            return None;
        }
    };
    let doc = Document::index(&file);
    if raw.stages.is_empty() {
        diagnostics.push(
            Diagnostic::error("stages-empty", "`stages` lists no stage")
                .at(doc.value_span(&Route::root().key("stages")))
                .help("list stages in order of precedence, each with `name:` and `when:`"),
        );
    }
    let mut list = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, stage) in raw.stages.iter().enumerate() {
        let route = Route::root().key("stages").index(i);
        if let Some(problem) = name_problem(&stage.name, &mut seen) {
            diagnostics.push(problem.at(doc.value_span(&route.key("name"))));
        }
        let vars = Vars {
            event: false,
            enrollment: false,
        };
        if let Some(rule) = check_expression(
            engine,
            now,
            &stage.when,
            &doc,
            &route.key("when"),
            vars,
            "when",
            diagnostics,
        ) {
            list.push((stage.name.clone(), rule));
        }
    }
    Some(Stages {
        list,
        declared: raw.stages.into_iter().map(|s| s.name).collect(),
        file,
    })
}
