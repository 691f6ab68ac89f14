//! Turns workflow files into a `Plan`, collecting every problem in one pass.
//!
//! Each check reports at the exact place of the offending value — inside a cron line, a Rhai
//! expression, a subject or a template file — and says what to do. A file that does not
//! deserialize at all reports its first structural error; every other file and every other
//! check still runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use tera::{Context, Tera};

use crate::config::Project;
use crate::customer::{Customer, DATE_FIELDS, Event};
use crate::source::SourceFile;
use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::yaml::{Document, Route};
use crate::time::cron::CronSchedule;
use crate::time::duration;
use crate::workflow::expr::{Expr, ExprEngine, Vars};
use crate::workflow::plan::{self, Plan, Reentry, StepKind, Trigger, Wait, Workflow, Zone};
use crate::workflow::raw::{self as raw, Deferral, MailClass, Subject};
use crate::workflow::templates::{self, TemplateScope, Templates};

/// The result of compiling: the valid workflows, and everything wrong with the others.
pub struct Compiled {
    pub plan: Plan,
    pub diagnostics: Vec<Diagnostic>,
    /// Files that were read, valid or not.
    pub files: Vec<PathBuf>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles the project's workflows, or only those under `paths` when given.
pub fn compile_project(project: &Project, paths: &[PathBuf]) -> Compiled {
    let mut diagnostics = Vec::new();
    let templates = Templates::load(&project.templates_dir(), &mut diagnostics);
    let files = if paths.is_empty() {
        workflow_files(&project.workflows_dir())
    } else {
        paths
            .iter()
            .flat_map(|p| {
                if p.is_dir() {
                    workflow_files(p)
                } else {
                    vec![p.clone()]
                }
            })
            .collect()
    };
    let mut sources = Vec::new();
    for path in &files {
        match SourceFile::read(path) {
            Ok(f) => sources.push(f),
            Err(e) => diagnostics.push(
                Diagnostic::error(
                    "workflow-unreadable",
                    format!("cannot read `{}`: {e}", path.display()),
                )
                .help("check that the path exists and is a UTF-8 text file"),
            ),
        }
    }
    let mut compiled = compile_sources(&sources, templates, Utc::now());
    // (Checked when the config loaded.)
    if let Some(budget) = crate::time::duration::parse(&project.config.limits.expression_time)
        .ok()
        .and_then(|d| d.to_std().ok())
    {
        compiled.plan.engine.set_time_budget(budget);
    }
    diagnostics.append(&mut compiled.diagnostics);
    compiled.plan.stages = crate::workflow::stages::load(
        &project.path(&project.config.stages),
        &compiled.plan.engine,
        Utc::now(),
        &mut diagnostics,
    )
    .map(Arc::new);
    check_stage_triggers(
        &compiled.plan,
        &project.config.stages.display().to_string(),
        &mut diagnostics,
    );
    if paths.is_empty() {
        // A whole-project check also reports broken templates that no workflow uses yet
        // (partials, drafts): they would break the day someone does.
        let used: HashSet<String> = compiled
            .plan
            .workflows
            .iter()
            .flat_map(|w| w.template_files())
            .collect();
        let reported: HashSet<String> = diagnostics
            .iter()
            .filter_map(|d| d.span.as_ref().map(|s| s.file.name().to_string()))
            .collect();
        for (name, problem) in compiled.plan.templates.problems() {
            let shown = problem
                .span
                .as_ref()
                .is_some_and(|s| reported.contains(s.file.name()));
            if !used.contains(name) && !shown {
                diagnostics.push(problem.clone());
            }
        }
    }
    crate::source::diagnostic::sort(&mut diagnostics);
    Compiled {
        plan: compiled.plan,
        diagnostics,
        files,
    }
}

/// `stage_entered: NAME` triggers must name a stage of `stages.yaml`.
fn check_stage_triggers(plan: &Plan, stages_file: &str, diagnostics: &mut Vec<Diagnostic>) {
    for wf in &plan.workflows {
        let Trigger::Event {
            to_stage: Some(stage),
            ..
        } = &wf.trigger
        else {
            continue;
        };
        let problem = match &plan.stages {
            None => Some((
                format!("there is no `{stages_file}`, so no stage `{}`", stage.name),
                format!(
                    "name the stages in `{stages_file}` beside tidings.yaml, or trigger on an event"
                ),
            )),
            Some(stages) if !stages.names().any(|n| n == stage.name) => Some((
                format!("there is no stage `{}`", stage.name),
                match crate::source::yaml::closest(&stage.name, stages.names()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!(
                        "the stages are: {}",
                        stages.names().collect::<Vec<_>>().join(", ")
                    ),
                },
            )),
            Some(_) => None,
        };
        if let Some((message, help)) = problem {
            diagnostics.push(
                Diagnostic::error("unknown-stage", message)
                    .at(stage.span.clone())
                    .help(help),
            );
        }
    }
}

/// `*.yaml` and `*.yml` files in a folder (not recursive), except `*.test.yaml`.
pub fn workflow_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !name.ends_with(".test.yaml")
                && !name.ends_with(".test.yml")
        })
        .collect();
    files.sort();
    files
}

/// Compiles already-loaded workflow sources against a template set.
pub fn compile_sources(
    sources: &[SourceFile],
    templates: Templates,
    now: DateTime<Utc>,
) -> Compiled {
    let mut c = Compiler {
        engine: Arc::new(ExprEngine::new()),
        templates,
        diags: Vec::new(),
        now,
        checked_templates: HashSet::new(),
        subjects: Vec::new(),
    };
    let mut workflows: Vec<Workflow> = Vec::new();
    let mut names: HashMap<String, (SourceFile, Span)> = HashMap::new();
    for file in sources {
        let Some((wf, name_span)) = c.compile_file(file) else {
            continue;
        };
        if let Some((first, _)) = names.get(&wf.name) {
            c.diags.push(
                Diagnostic::error(
                    "duplicate-workflow",
                    format!(
                        "workflow name `{}` is already used by `{}`",
                        wf.name,
                        first.name()
                    ),
                )
                .at(name_span)
                .help("give each workflow a unique `name:` (and file name)"),
            );
            continue;
        }
        names.insert(wf.name.clone(), (file.clone(), name_span));
        workflows.push(wf);
    }
    let subjects = std::mem::take(&mut c.subjects);
    if let Err(e) = c.templates.add_inline(subjects) {
        c.diags.push(Diagnostic::error(
            "template-link",
            format!("subjects could not be loaded: {e}"),
        ));
    }
    crate::source::diagnostic::sort(&mut c.diags);
    Compiled {
        plan: Plan {
            workflows: workflows.into_iter().map(Arc::new).collect(),
            templates: Arc::new(c.templates),
            engine: c.engine,
            stages: None,
        },
        diagnostics: c.diags,
        files: sources.iter().map(|s| s.path().to_path_buf()).collect(),
    }
}

struct Compiler {
    engine: Arc<ExprEngine>,
    templates: Templates,
    diags: Vec<Diagnostic>,
    now: DateTime<Utc>,
    /// (template, event in scope, coupon in scope) already checked.
    checked_templates: HashSet<(String, bool, bool)>,
    /// Inline subject templates to register: (name, source).
    subjects: Vec<(String, String)>,
}

/// What one file's checks need to know as they walk its steps.
struct FileCtx<'a> {
    doc: &'a Document,
    workflow: &'a str,
    class: MailClass,
    has_event: bool,
    ids: HashMap<String, Span>,
    errors_before: usize,
}

impl Compiler {
    fn error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        help: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(code, message).at(span).help(help));
    }

    fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }

    fn compile_file(&mut self, file: &SourceFile) -> Option<(Workflow, Span)> {
        let errors_before = self.error_count();
        if file.text().trim().is_empty() {
            self.error(
                "empty-workflow",
                "workflow file is empty",
                Span::file_start(file),
                "start with `name:`, `trigger:` and `steps:`; see README.md",
            );
            return None;
        }
        let wf: raw::WorkflowFile = match crate::source::yaml::parse_typed(file) {
            Ok(wf) => wf,
            Err(d) => {
                self.diags.push(*d);
                return None;
            }
        };
        let doc = Document::index(file);
        let root = Route::root();
        let name_span = doc.value_span(&root.key("name"));
        self.check_name(&wf.name, file, name_span.clone());

        let trigger = self.trigger(&wf.trigger, &doc);
        let has_event = matches!(trigger, Some(Trigger::Event { .. }));
        let audience = wf.audience.as_deref().and_then(|text| {
            self.expression(
                text,
                &doc,
                &root.key("audience"),
                Vars {
                    event: has_event,
                    enrollment: false,
                },
                "audience",
            )
        });
        let exit_when = wf.exit_when.as_deref().and_then(|text| {
            self.expression(
                text,
                &doc,
                &root.key("exit_when"),
                Vars {
                    event: has_event,
                    enrollment: true,
                },
                "exit_when",
            )
        });
        let reentry = match &wf.reentry {
            raw::Reentry::Never => Reentry::Never,
            raw::Reentry::Always => Reentry::Always,
            raw::Reentry::After(text) => {
                let route = root.key("reentry").key("after");
                match self.positive_duration(text, &doc, &route, "re-entry delay") {
                    Some(d) => Reentry::After(d),
                    None => Reentry::Never,
                }
            }
        };
        let mut ctx = FileCtx {
            doc: &doc,
            workflow: &wf.name,
            class: wf.class,
            has_event,
            ids: HashMap::new(),
            errors_before,
        };
        if wf.steps.is_empty() {
            self.error(
                "no-steps",
                "workflow has no steps",
                doc.key_span(&root.key("steps")),
                "add at least one step, e.g. `- email: welcome/hello`",
            );
        }
        let steps = self.steps(&wf.steps, &root.key("steps"), "", &mut ctx);
        if self.error_count() > ctx.errors_before {
            return None;
        }
        Some((
            Workflow {
                name: wf.name.clone(),
                description: wf.description.clone(),
                enabled: wf.enabled,
                class: wf.class,
                trigger: trigger?,
                audience,
                reentry,
                exit_when,
                delivery: wf.delivery,
                catch_up: wf.catch_up,
                steps,
                file: file.clone(),
            },
            name_span,
        ))
    }

    fn check_name(&mut self, name: &str, file: &SourceFile, span: Span) {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            let suggestion: String = name
                .to_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            self.error(
                "bad-name",
                format!("workflow name `{name}` may only use lowercase letters, digits and `-`"),
                span,
                format!("try `{}`", suggestion.trim_matches('-')),
            );
            return;
        }
        let stem = file
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.trim_end_matches(".yaml").trim_end_matches(".yml"))
            .unwrap_or("");
        if stem != name {
            self.error(
                "name-mismatch",
                format!("workflow name `{name}` does not match its file name `{stem}`"),
                span,
                format!("rename the file to `{name}.yaml` or set `name: {stem}`"),
            );
        }
    }

    fn trigger(&mut self, t: &raw::Trigger, doc: &Document) -> Option<Trigger> {
        let route = Route::root().key("trigger");
        let kinds = [
            t.schedule.is_some(),
            t.event.is_some(),
            t.date.is_some(),
            t.stage_entered.is_some(),
        ];
        let count = kinds.iter().filter(|k| **k).count();
        if count != 1 {
            let msg = if count == 0 {
                "trigger needs one of `schedule`, `event`, `date` or `stage_entered`"
            } else {
                "trigger has more than one of `schedule`, `event`, `date` and `stage_entered`"
            };
            self.error(
                "bad-trigger",
                msg,
                doc.key_span(&route),
                "a workflow has exactly one trigger, e.g. `trigger: { event: customer_created }`",
            );
            return None;
        }
        if t.schedule.is_none() && t.timezone.is_some() {
            self.error("bad-trigger", "`timezone` goes with a `schedule` trigger", doc.key_span(&route.key("timezone")), "event triggers run when the event arrives and date triggers at the customer's local time; remove `timezone`");
        }
        if t.date.is_none() {
            for key in ["at", "offset"] {
                if doc.node(&route.key(key)).is_some() {
                    self.error(
                        "bad-trigger",
                        format!("`{key}` goes with a `date` trigger"),
                        doc.key_span(&route.key(key)),
                        format!("remove `{key}`, or use `date: birthday` with it"),
                    );
                }
            }
        }
        if let Some(line) = &t.schedule {
            let sroute = route.key("schedule");
            let cron = match CronSchedule::parse(line) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.diags.push(
                        Diagnostic::error("bad-cron", format!("invalid cron line: {}", e.message))
                            .at(doc.locate(&sroute, e.at, e.len))
                            .help(e.help),
                    );
                    None
                }
            };
            let zone = match t.timezone.as_deref() {
                None => Some(Zone::Fixed(Tz::UTC)),
                Some("customer") => Some(Zone::Customer),
                Some(name) => self
                    .zone(name, doc, &route.key("timezone"))
                    .map(Zone::Fixed),
            };
            let (cron, zone) = (cron?, zone?);
            let probe_tz = match zone {
                Zone::Fixed(tz) => tz,
                Zone::Customer => Tz::UTC,
            };
            if cron.next_after(self.now, probe_tz).is_none() {
                self.error(
                    "cron-never-fires",
                    format!("schedule `{line}` never fires"),
                    doc.value_span(&sroute),
                    "check the day and month fields: e.g. February has no 30th",
                );
                return None;
            }
            return Some(Trigger::Schedule {
                cron,
                line: line.clone(),
                zone,
            });
        }
        if let Some(name) = &t.event {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
            if !ok {
                self.error(
                    "bad-event-name",
                    format!("`{name}` is not an event name"),
                    doc.value_span(&route.key("event")),
                    "event names use letters, digits and `_`, e.g. `order_delivered`",
                );
                return None;
            }
            return Some(Trigger::Event {
                name: name.clone(),
                to_stage: None,
            });
        }
        if let Some(stage) = &t.stage_entered {
            // Whether the stage exists is checked once `stages.yaml` is read.
            return Some(Trigger::Event {
                name: crate::customer::STAGE_ENTERED.to_string(),
                to_stage: Some(crate::workflow::plan::StageRef {
                    name: stage.clone(),
                    span: doc.value_span(&route.key("stage_entered")),
                }),
            });
        }
        let column = t.date.clone().unwrap_or_default();
        let mut ok = true;
        if !DATE_FIELDS.contains(&column.as_str()) {
            let help = match crate::source::yaml::closest(&column, DATE_FIELDS.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!(
                    "date triggers use one of {}",
                    DATE_FIELDS
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.error(
                "bad-date-column",
                format!("`{column}` is not a date field of the customer"),
                doc.value_span(&route.key("date")),
                help,
            );
            ok = false;
        }
        let at = match t.at.as_deref() {
            None => chrono::NaiveTime::from_hms_opt(9, 0, 0),
            Some(text) => {
                let parsed = duration::parse_time_of_day(text);
                if parsed.is_none() {
                    self.error(
                        "bad-time",
                        format!("`{text}` is not a time of day"),
                        doc.value_span(&route.key("at")),
                        "write 24-hour local time as `HH:MM`, e.g. `09:00`",
                    );
                }
                parsed
            }
        };
        let offset = match t.offset.as_deref() {
            None => Some(TimeDelta::zero()),
            Some(text) => self.duration(text, doc, &route.key("offset")),
        };
        let (at, offset) = (at?, offset?);
        ok.then_some(Trigger::Date { column, at, offset })
    }

    fn zone(&mut self, name: &str, doc: &Document, route: &Route) -> Option<Tz> {
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

    fn duration(&mut self, text: &str, doc: &Document, route: &Route) -> Option<TimeDelta> {
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

    fn positive_duration(
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
    fn expression(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
        vars: Vars,
        what: &str,
    ) -> Option<Expr> {
        crate::workflow::expr::check::check_expression(
            &self.engine,
            self.now,
            text,
            doc,
            route,
            vars,
            what,
            &mut self.diags,
        )
    }

    fn steps(
        &mut self,
        steps: &[raw::Step],
        route: &Route,
        prefix: &str,
        ctx: &mut FileCtx<'_>,
    ) -> Vec<plan::Step> {
        let mut out = Vec::new();
        let mut exited: Option<usize> = None;
        for (i, step) in steps.iter().enumerate() {
            let sroute = route.index(i);
            if let Some(at) = exited {
                self.error(
                    "unreachable-step",
                    format!("step {} comes after an `exit` and never runs", i + 1),
                    ctx.doc.value_span(&sroute),
                    format!(
                        "remove it, or move the `exit` (step {}) into an `if`",
                        at + 1
                    ),
                );
                exited = None;
            }
            let position = format!("{prefix}{}", i + 1);
            if let Some(s) = self.step(step, &sroute, &position, ctx) {
                if matches!(s.kind, StepKind::Exit { .. }) && i + 1 < steps.len() {
                    exited = Some(i);
                }
                out.push(s);
            }
        }
        out
    }

    fn step(
        &mut self,
        s: &raw::Step,
        route: &Route,
        position: &str,
        ctx: &mut FileCtx<'_>,
    ) -> Option<plan::Step> {
        let doc = ctx.doc;
        let kinds: Vec<&str> = [
            ("email", s.email.is_some()),
            ("wait", s.wait.is_some()),
            ("if", s.if_.is_some()),
            ("webhook", s.webhook.is_some()),
            ("update", s.update.is_some()),
            ("exit", s.exit.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if kinds.len() != 1 {
            let msg = if kinds.is_empty() {
                "step does nothing".to_string()
            } else {
                format!(
                    "step has more than one action: {}",
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.error("bad-step", msg, doc.value_span(route), "each step is one of `email`, `wait`, `if`, `webhook`, `update` or `exit`; split it into several steps");
            return None;
        }
        let kind = kinds[0];
        let email_only = [
            ("subject", s.subject.is_some()),
            ("coupon", s.coupon.is_some()),
            ("when_capped", s.when_capped.is_some()),
            ("in_quiet_hours", s.in_quiet_hours.is_some()),
        ];
        for (key, present) in email_only {
            if present && kind != "email" {
                self.error(
                    "misplaced-key",
                    format!("`{key}` belongs to an `email` step, not `{kind}`"),
                    doc.key_span(&route.key(key)),
                    format!("move `{key}` to the email step it is for"),
                );
            }
        }
        for (key, present) in [("then", s.then.is_some()), ("else", s.else_.is_some())] {
            if present && kind != "if" {
                self.error(
                    "misplaced-key",
                    format!("`{key}` belongs to an `if` step"),
                    doc.key_span(&route.key(key)),
                    "add `if: CONDITION` to this step, or remove the branch",
                );
            }
        }
        let id = match &s.id {
            Some(id) => {
                let span = doc.value_span(&route.key("id"));
                if id.is_empty()
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                {
                    self.error(
                        "bad-step-id",
                        format!("step id `{id}` may only use letters, digits, `-` and `_`"),
                        span.clone(),
                        "e.g. `id: last-chance`",
                    );
                }
                if let Some(first) = ctx.ids.get(id) {
                    let line = first.start.line;
                    self.error(
                        "duplicate-step-id",
                        format!("step id `{id}` is already used on line {line}"),
                        span,
                        "give each step a unique `id:`; enrollments resume by it",
                    );
                } else {
                    ctx.ids.insert(id.clone(), span);
                }
                id.clone()
            }
            None => {
                let derived = match &s.email {
                    Some(t) if !ctx.ids.contains_key(t) => t.clone(),
                    _ => position.to_string(),
                };
                ctx.ids
                    .entry(derived.clone())
                    .or_insert_with(|| doc.value_span(route));
                derived
            }
        };
        let kind = match kind {
            "email" => StepKind::Email(self.email(s, route, &id, ctx)?),
            "wait" => StepKind::Wait(match s.wait.as_ref()? {
                raw::Wait::For(text) => {
                    Wait::For(self.positive_duration(text, doc, &route.key("wait"), "a wait")?)
                }
                raw::Wait::Until(text) => match duration::parse_time_of_day(text) {
                    Some(t) => Wait::Until(t),
                    None => {
                        self.error(
                            "bad-time",
                            format!("`{text}` is not a time of day"),
                            doc.value_span(&route.key("wait").key("until")),
                            "write 24-hour local time as `HH:MM`, e.g. `09:00`",
                        );
                        return None;
                    }
                },
            }),
            "if" => {
                let text = s.if_.as_deref()?;
                let condition = self.expression(
                    text,
                    doc,
                    &route.key("if"),
                    Vars {
                        event: ctx.has_event,
                        enrollment: true,
                    },
                    "if",
                );
                if s.then.is_none() {
                    self.error(
                        "missing-then",
                        "`if` step has no `then:`",
                        doc.key_span(&route.key("if")),
                        "add `then:` with the steps to run when the condition holds",
                    );
                }
                let then = self.steps(
                    s.then.as_deref().unwrap_or(&[]),
                    &route.key("then"),
                    &format!("{position}.then."),
                    ctx,
                );
                let else_ = self.steps(
                    s.else_.as_deref().unwrap_or(&[]),
                    &route.key("else"),
                    &format!("{position}.else."),
                    ctx,
                );
                StepKind::If {
                    condition: condition?,
                    then,
                    else_,
                }
            }
            "webhook" => StepKind::Webhook(self.webhook(s.webhook.as_ref()?, route, ctx)?),
            "update" => StepKind::Update(self.update(s.update.as_ref()?, route, ctx)?),
            _ => {
                let reason = s.exit.clone()?;
                if reason.trim().is_empty() {
                    self.error("bad-exit", "`exit` needs a reason", doc.value_span(&route.key("exit")), "e.g. `exit: already-reviewed`; the reason is recorded and shown in reports");
                }
                StepKind::Exit { reason }
            }
        };
        Some(plan::Step { id, kind })
    }

    fn email(
        &mut self,
        s: &raw::Step,
        route: &Route,
        id: &str,
        ctx: &FileCtx<'_>,
    ) -> Option<plan::EmailStep> {
        let doc = ctx.doc;
        let base = s.email.as_deref()?.trim_end_matches(".html");
        let eroute = route.key("email");
        let coupon = match &s.coupon {
            None => None,
            Some(c) => {
                let croute = route.key("coupon");
                if c.prefix.is_empty()
                    || !c
                        .prefix
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                {
                    self.error(
                        "bad-coupon",
                        format!(
                            "coupon prefix `{}` may only use letters, digits and `-`",
                            c.prefix
                        ),
                        doc.value_span(&croute.key("prefix")),
                        "e.g. `prefix: BDAY`",
                    );
                }
                let valid_for = self.positive_duration(
                    &c.valid_for,
                    doc,
                    &croute.key("valid_for"),
                    "a coupon's lifetime",
                );
                valid_for.map(|valid_for| plan::Coupon {
                    prefix: c.prefix.to_uppercase(),
                    valid_for,
                })
            }
        };
        let scope = TemplateScope {
            event: ctx.has_event,
            coupon: s.coupon.is_some(),
        };
        let context = self.sample_context(ctx.workflow, scope);
        let subjects = self.subjects(s.subject.as_ref(), route, ctx, id, scope, &context);
        let Some(files) = self.templates.resolve(base) else {
            let folder = self.templates.folder().to_string();
            let help = match self.templates.suggest(base) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("create `{folder}{base}.html` (and optionally `{base}.txt`)"),
            };
            self.error(
                "missing-template",
                format!("template `{base}.html` does not exist"),
                doc.value_span(&eroute),
                help,
            );
            return None;
        };
        for name in files.all_files().map(str::to_string).collect::<Vec<_>>() {
            if !self
                .checked_templates
                .insert((name.clone(), scope.event, scope.coupon))
            {
                continue;
            }
            let found = self.templates.check_file(&name, scope, &context);
            self.diags.extend(found);
        }
        if ctx.class == MailClass::Marketing {
            for html in files.all_html().map(str::to_string).collect::<Vec<_>>() {
                if self.templates.is_broken(&html) {
                    continue;
                }
                if !self.templates.variables(&html).contains("unsubscribe_url") {
                    self.error(
                        "missing-unsubscribe",
                        format!("marketing email `{html}` has no unsubscribe link"),
                        doc.value_span(&eroute),
                        format!("add `<a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a>` to `{}{html}`, or mark the workflow `class: transactional` if it is not marketing", self.templates.folder()),
                    );
                }
            }
        }
        Some(plan::EmailStep {
            files,
            subjects: subjects?,
            coupon,
            when_capped: s.when_capped.unwrap_or(Deferral::Wait),
            in_quiet_hours: s.in_quiet_hours.unwrap_or(Deferral::Wait),
        })
    }

    fn sample_context(&self, workflow: &str, scope: TemplateScope) -> Context {
        let mut context = Context::new();
        context.insert("customer", &Customer::sample(self.now));
        if scope.event {
            context.insert("event", &Event::sample("sample", self.now));
        }
        if scope.coupon {
            context.insert("coupon", &serde_json::json!({ "code": "SAMPLE-7KQ2-M9XD", "expires_at": self.now.to_rfc3339() }));
        }
        context.insert(
            "workflow",
            &serde_json::json!({ "name": workflow, "description": "" }),
        );
        context.insert("now", &self.now.to_rfc3339());
        context.insert("unsubscribe_url", "https://example.com/u/sample-token");
        context
    }

    fn subjects(
        &mut self,
        subject: Option<&Subject>,
        route: &Route,
        ctx: &FileCtx<'_>,
        id: &str,
        scope: TemplateScope,
        context: &Context,
    ) -> Option<BTreeMap<String, String>> {
        let doc = ctx.doc;
        let sroute = route.key("subject");
        let entries: Vec<(String, String, Route)> = match subject {
            None => {
                self.error("missing-subject", "email step has no `subject:`", doc.value_span(&route.key("email")), "add `subject: \"...\"` to the step (Tera, e.g. `\"{{ customer.first_name }}, a gift for you\"`)");
                return None;
            }
            Some(Subject::One(text)) => vec![(String::new(), text.clone(), sroute.clone())],
            Some(Subject::ByLocale(map)) => {
                if !map.contains_key("default") {
                    self.error("missing-subject", "subject by locale has no `default`", doc.key_span(&sroute), "add `default: \"...\"` for customers whose locale has no subject of its own");
                }
                map.iter()
                    .map(|(k, v)| {
                        (
                            if k == "default" {
                                String::new()
                            } else {
                                k.clone()
                            },
                            v.clone(),
                            sroute.key(k),
                        )
                    })
                    .collect()
            }
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (locale, text, r) in entries {
            if text.contains('\n') || text.contains('\r') {
                self.error(
                    "bad-subject",
                    "a subject must be one line",
                    doc.value_span(&r),
                    "remove the line break",
                );
                ok = false;
                continue;
            }
            let name = format!(
                "@subject/{}/{}/{}",
                ctx.workflow,
                id,
                if locale.is_empty() {
                    "default"
                } else {
                    &locale
                }
            );
            let mut scratch = Tera::new();
            if let Err(e) = scratch.add_raw_template(&name, &text) {
                ok = false;
                let (msg, span) = match e.kind() {
                    tera::ErrorKind::SyntaxError(r2) => (
                        crate::source::diagnostic::lowercase_first(r2.message()),
                        Some(r2.span().clone()),
                    ),
                    _ => (e.to_string(), None),
                };
                let at = span.map_or(0, |s| text[..s.range.start.min(text.len())].chars().count());
                self.diags.push(
                    Diagnostic::error("template-syntax", format!("subject syntax error: {msg}"))
                        .at(doc.locate(&r, at, 1))
                        .help("subjects are Tera templates: `{{ customer.first_name }}`"),
                );
                continue;
            }
            // Names are checked against a one-off file holding the subject, then moved onto
            // the workflow file at the subject's position.
            let tmp = SourceFile::new(doc.file.path(), text.clone());
            let top: HashSet<String> = scratch
                .get_template_variables(&name)
                .map(|v| v.into_iter().map(str::to_string).collect())
                .unwrap_or_default();
            for mut d in templates::check_names(&tmp, &top, scope, &|_| true) {
                ok = false;
                if let Some(span) = &d.span {
                    let offset = tmp.byte_offset(span.start);
                    let chars = text[..offset.min(text.len())].chars().count();
                    d.span = Some(doc.locate(&r, chars, span.len));
                }
                self.diags.push(d);
            }
            if ok && let Err(e) = scratch.render(&name, context) {
                ok = false;
                self.error(
                    "template-render",
                    format!("subject fails to render for a sample customer: {e}"),
                    doc.value_span(&r),
                    "check filters and value types in the subject",
                );
            }
            self.subjects.push((name.clone(), text));
            out.insert(locale, name);
        }
        ok.then_some(out)
    }

    fn webhook(
        &mut self,
        w: &raw::Webhook,
        route: &Route,
        ctx: &FileCtx<'_>,
    ) -> Option<plan::WebhookStep> {
        let doc = ctx.doc;
        let wroute = route.key("webhook");
        let mut ok = true;
        if let Err(crate::config::EnvError::Malformed { at }) =
            crate::config::env_references(&w.url)
        {
            self.diags.push(
                Diagnostic::error(
                    "bad-webhook",
                    "malformed environment reference in the webhook URL",
                )
                .at(doc.locate(&wroute.key("url"), at, 2))
                .help("write `${NAME}`; the value comes from the daemon's environment"),
            );
            ok = false;
        } else if !(w.url.starts_with("https://")
            || w.url.starts_with("http://")
            || w.url.starts_with("${"))
        {
            self.error(
                "bad-webhook",
                format!(
                    "webhook URL `{}` must start with `https://` or `http://`",
                    w.url
                ),
                doc.value_span(&wroute.key("url")),
                "use a full URL; put secrets and hosts in `${ENV}` references",
            );
            ok = false;
        }
        let method = w
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            self.error(
                "bad-webhook",
                format!("`{method}` is not an HTTP method a webhook can use"),
                doc.value_span(&wroute.key("method")),
                "use `POST`, `PUT`, `PATCH`, `GET` or `DELETE`",
            );
            ok = false;
        }
        let timeout = match &w.timeout {
            None => Some(TimeDelta::seconds(10)),
            Some(t) => self.positive_duration(t, doc, &wroute.key("timeout"), "a webhook timeout"),
        };
        let json = w.json.as_ref().and_then(|j| serde_json::to_value(j).ok());
        (ok && timeout.is_some()).then(|| plan::WebhookStep {
            url: w.url.clone(),
            method,
            json,
            headers: w.headers.clone(),
            timeout: timeout.unwrap_or_default(),
        })
    }

    fn update(
        &mut self,
        u: &raw::Update,
        route: &Route,
        ctx: &FileCtx<'_>,
    ) -> Option<plan::UpdateStep> {
        let doc = ctx.doc;
        let uroute = route.key("update");
        let mut ok = true;
        for key in u.set.keys() {
            if [
                "id",
                "email",
                "tags",
                "attributes",
                "unsubscribed_at",
                "created_at",
            ]
            .contains(&key.as_str())
            {
                let help = if key == "tags" {
                    "use `tags: { add: [...], remove: [...] }`"
                } else {
                    "a workflow may change attributes and profile fields, not the customer's identity or consent"
                };
                self.error(
                    "bad-update",
                    format!("`{key}` cannot be set by a workflow"),
                    doc.key_span(&uroute.key("set").key(key)),
                    help,
                );
                ok = false;
            }
        }
        if u.set.is_empty() && u.tags.add.is_empty() && u.tags.remove.is_empty() {
            self.error(
                "bad-update",
                "update changes nothing",
                doc.key_span(&uroute),
                "add `set: { ... }` or `tags: { add: [...] }`",
            );
            ok = false;
        }
        let set = u
            .set
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        ok.then(|| plan::UpdateStep {
            set,
            add_tags: u.tags.add.clone(),
            remove_tags: u.tags.remove.clone(),
        })
    }
}
