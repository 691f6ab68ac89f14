//! Turns workflow files into a `Plan`, collecting every problem in one pass.
//!
//! Each check reports at the exact place of the offending value — inside a cron line, a Rhai
//! expression, a subject or a template file — and says what to do. A file that does not
//! deserialize at all reports its first structural error; every other file and every other
//! check still runs.

mod email;
mod outcomes;
mod steps;
mod trigger;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Project;
use crate::source::SourceFile;
use crate::source::diagnostic::{Diagnostic, Span};
use crate::source::yaml::{Document, Route};
use crate::workflow::expr::{ExprEngine, Vars};
use crate::workflow::plan::{Plan, Reentry, Trigger, Workflow};
use crate::workflow::raw::{self as raw, MailClass};
use crate::workflow::templates::Templates;

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
        match SourceFile::read_text(path, "workflow-unreadable") {
            Ok(f) => sources.push(f),
            Err(d) => diagnostics.push(*d),
        }
    }
    let mut compiled = compile_sources(&sources, templates, Utc::now());
    let settings = crate::config::Settings::of(&project.config);
    if let Ok(budget) = settings.expression_time.to_std() {
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
    check_topics(&compiled.plan, &project.config, &mut diagnostics);
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

/// The events the `wait: {for: ...}` steps of a list (and its branches) wait for.
fn waited_for(steps: &[crate::workflow::plan::Step]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for s in steps {
        if let crate::workflow::plan::StepKind::WaitFor(w) = &s.kind {
            out.insert(w.event.clone());
        }
        for branch in s.kind.branches() {
            out.extend(waited_for(branch));
        }
    }
    out
}

/// `topic:` must name one of tidings.yaml's `topics:`, on a marketing workflow (receipts
/// have no topic: nobody opts out of them).
fn check_topics(plan: &Plan, config: &crate::config::Config, diagnostics: &mut Vec<Diagnostic>) {
    for wf in &plan.workflows {
        let Some(topic) = &wf.topic else {
            untopical(wf, config, diagnostics);
            continue;
        };
        let doc = Document::index(&wf.file);
        let span = doc.value_span(&Route::root().key("topic"));
        let problem = if wf.class == MailClass::Transactional {
            Some((
                "a transactional workflow has no topic".to_string(),
                "remove `topic:`; topics are for marketing mail, which customers may opt out of"
                    .to_string(),
            ))
        } else if !config.topics.contains_key(topic) {
            let names = config.topics.keys().map(String::as_str);
            let help = match crate::source::yaml::closest(topic, names) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!(
                    "name it under `topics:` in tidings.yaml, e.g. `topics: {{ {topic}: {{ en: \"...\" }} }}`"
                ),
            };
            Some((format!("there is no topic `{topic}`"), help))
        } else {
            None
        };
        if let Some((message, help)) = problem {
            diagnostics.push(
                Diagnostic::error("unknown-topic", message)
                    .at(span)
                    .help(help),
            );
        }
    }
}

/// A warning for each `${NAME}` of a webhook's URL or headers that is not set in this
/// environment, at its first place in the workflow's file: every call would fail. For
/// `validate` and the daemon's start, where the environment is the one that will send;
/// not part of compiling (`tidings test` calls no webhook).
pub fn unset_variables(plan: &Plan) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for wf in &plan.workflows {
        let mut seen = HashSet::new();
        for step in wf.all_steps() {
            let crate::workflow::plan::StepKind::Webhook(hook) = &step.kind else {
                continue;
            };
            let values = std::iter::once(&hook.url).chain(hook.headers.values());
            for name in values.flat_map(|v| crate::config::env_references(v).unwrap_or_default()) {
                if std::env::var_os(&name).is_some() || !seen.insert(name.clone()) {
                    continue;
                }
                let written = format!("${{{name}}}");
                let at = wf.file.text().find(&written).unwrap_or(0);
                let span = Span::new(&wf.file, wf.file.line_col(at), written.chars().count());
                out.push(
                    Diagnostic::warning(
                        "unset-variable",
                        format!("`{written}` is not set in this environment: the webhook of step `{}` would fail at every call", step.id),
                    )
                    .at(span)
                    .help(format!("set `{name}` where the daemon runs (and here, to silence this)")),
                );
            }
        }
    }
    out
}

/// A marketing workflow that sends email without a topic while the project has topics:
/// a customer who opted out of every topic still gets it, which is seldom what was meant.
fn untopical(wf: &Workflow, config: &crate::config::Config, diagnostics: &mut Vec<Diagnostic>) {
    let emails = wf
        .all_steps()
        .iter()
        .any(|s| matches!(s.kind, crate::workflow::plan::StepKind::Email(_)));
    if wf.class != MailClass::Marketing || config.topics.is_empty() || !emails {
        return;
    }
    let doc = Document::index(&wf.file);
    let topics: Vec<String> = config.topics.keys().map(|t| format!("`{t}`")).collect();
    diagnostics.push(
        Diagnostic::warning(
            "no-topic",
            "a marketing workflow without a topic reaches customers who opted out of every topic",
        )
        .at(doc.key_span(&Route::root().key("name")))
        .help(format!(
            "add `topic:` with one of {} (only unsubscribing from everything stops it now)",
            topics.join(", ")
        )),
    );
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
        checked_templates: HashMap::new(),
        subjects: Vec::new(),
        clean_subjects: HashSet::new(),
        coupon_refs: HashMap::new(),
        email_steps: HashSet::new(),
        engagement_refs: Vec::new(),
        waited_events: Vec::new(),
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
    c.check_references(&workflows);
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

impl Compiler {
    /// What expressions and waits name across workflows: `clicked("workflow/step")` must
    /// name an email step of a workflow, and a waited-for event should be one that comes
    /// (one tidings records, or one that triggers a workflow) — else it is a typo.
    fn check_references(&mut self, workflows: &[Workflow]) {
        for (workflow, step, span) in std::mem::take(&mut self.engagement_refs) {
            let Some(wf) = workflows.iter().find(|w| w.name == workflow) else {
                let names = workflows.iter().map(|w| w.name.as_str());
                let help = match crate::source::yaml::closest(&workflow, names) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "name a workflow of this project".into(),
                };
                let message = format!("there is no workflow `{workflow}`");
                self.error("unknown-workflow", message, span, help);
                continue;
            };
            let emails: Vec<String> = wf.email_templates().into_iter().map(|(id, _)| id).collect();
            if !emails.contains(&step) {
                let message = format!("workflow `{workflow}` has no email step `{step}`");
                let help = format!("its email steps are: {}", emails.join(", "));
                self.error("unknown-step", message, span, help);
            }
        }
        let mut known: Vec<&str> = crate::model::customer::RAISED_EVENTS.to_vec();
        for wf in workflows {
            if let Trigger::Event { name, .. } = &wf.trigger {
                known.push(name);
            }
        }
        for (event, span) in std::mem::take(&mut self.waited_events) {
            if known.contains(&event.as_str()) {
                continue;
            }
            let help = match crate::source::yaml::closest(&event, known.iter().copied()) {
                Some(best) => format!(
                    "did you mean `{best}`? (an event your shop sends is fine: ignore this)"
                ),
                None => "an event your shop sends is fine; otherwise check the spelling".into(),
            };
            self.diags.push(
                Diagnostic::warning(
                    "unknown-event",
                    format!(
                        "no workflow is triggered by `{event}`, and tidings does not record it"
                    ),
                )
                .at(span)
                .help(help),
            );
        }
    }
}

/// A template as one email step uses it: its name, whether `event` and `coupon` are in
/// scope, and the earlier coupons it may show.
type TemplateUse = (String, bool, bool, String);

struct Compiler {
    engine: Arc<ExprEngine>,
    templates: Templates,
    diags: Vec<Diagnostic>,
    now: DateTime<Utc>,
    /// (template, event in scope, coupon in scope, earlier coupons) already checked.
    /// The problems found (their places in `diags`) and the workflows that use it alike.
    checked_templates: HashMap<TemplateUse, (Vec<usize>, Vec<String>)>,
    /// Inline subject templates to register: (name, source).
    subjects: Vec<(String, String)>,
    /// Subjects already checked clean, with a render, in the same scope: the same text in
    /// another of 500 workflows needs no Tera of its own again.
    clean_subjects: HashSet<(String, crate::workflow::templates::TemplateScope, String)>,
    /// Each template's `coupons.STEP` names and their offsets, read once.
    coupon_refs: HashMap<String, Vec<(String, usize)>>,
    /// The email step ids of the file being compiled, for `clicked("step")`.
    email_steps: HashSet<String>,
    /// `clicked("workflow/step")` and the like: checked once every workflow is read.
    engagement_refs: Vec<(String, String, Span)>,
    /// `wait: {for: EVENT}`: checked against the events tidings records and the triggers.
    waited_events: Vec<(String, Span)>,
}

/// What one file's checks need to know as they walk its steps.
struct FileCtx<'a> {
    doc: &'a Document,
    workflow: &'a str,
    class: MailClass,
    has_event: bool,
    ids: HashMap<String, Span>,
    /// Split names, unique in a workflow.
    splits: HashMap<String, Span>,
    /// The email steps so far that reserve a coupon: what `coupons.STEP` may name.
    coupon_steps: Vec<String>,
    /// A template of the file's emails has an error (reported once, perhaps for another
    /// workflow that uses it too): the workflow is not valid.
    broken_template: bool,
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

    /// `reentry:` — never, always, or after a duration above zero.
    fn reentry(&mut self, reentry: &raw::Reentry, doc: &Document) -> Reentry {
        match reentry {
            raw::Reentry::Never => Reentry::Never,
            raw::Reentry::Always => Reentry::Always,
            raw::Reentry::After(text) => {
                let route = Route::root().key("reentry").key("after");
                match self.positive_duration(text, doc, &route, "re-entry delay") {
                    Some(d) => Reentry::After(d),
                    None => Reentry::Never,
                }
            }
        }
    }

    /// The file as serde reads it, or every structural problem of it reported.
    /// The file as serde reads it, and where each value is: the file is read once for both
    /// the positions and its bounds (against hostile YAML), then by serde.
    fn read_file(&mut self, file: &SourceFile) -> Option<(raw::WorkflowFile, Document)> {
        if file.text().trim().is_empty() {
            self.error(
                "empty-workflow",
                "workflow file is empty",
                Span::file_start(file),
                "start with `name:`, `trigger:` and `steps:`; see README.md",
            );
            return None;
        }
        let doc = match Document::checked(file) {
            Ok(doc) => doc,
            Err(d) => {
                self.diags.push(*d);
                return None;
            }
        };
        match crate::source::yaml::parse_typed_all_checked(file) {
            Ok(wf) => Some((wf, doc)),
            Err(found) => {
                self.diags.extend(found);
                None
            }
        }
    }

    fn compile_file(&mut self, file: &SourceFile) -> Option<(Workflow, Span)> {
        let errors_before = self.error_count();
        let (wf, doc) = self.read_file(file)?;
        let root = Route::root();
        let name_span = doc.value_span(&root.key("name"));
        self.check_name(&wf.name, file, name_span.clone());

        self.email_steps.clear();
        self.collect_email_steps(&wf.steps);
        let trigger = self.trigger(&wf.trigger, &doc);
        let has_event = matches!(trigger, Some(Trigger::Event { .. }));
        let [audience, exit_when] = [
            ("audience", wf.audience.as_deref(), false),
            ("exit_when", wf.exit_when.as_deref(), true),
        ]
        .map(|(key, text, enrollment)| {
            let vars = Vars {
                event: has_event,
                enrollment,
            };
            text.and_then(|text| self.expression(text, &doc, &root.key(key), vars, key))
        });
        let reentry = self.reentry(&wf.reentry, &doc);
        let mut ctx = FileCtx {
            doc: &doc,
            workflow: &wf.name,
            class: wf.class,
            has_event,
            ids: HashMap::new(),
            splits: HashMap::new(),
            coupon_steps: Vec::new(),
            broken_template: false,
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
        let holdout = wf.holdout.as_deref().and_then(|h| self.holdout(h, &doc));
        let goal = wf.goal.as_ref().and_then(|g| self.goal(g, &doc));
        if self.error_count() > ctx.errors_before || ctx.broken_template {
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
                tracking: wf.tracking.clone(),
                topic: wf.topic.clone(),
                waits_for: waited_for(&steps),
                holdout,
                goal,
                graph: crate::workflow::plan::StepGraph::of(&steps),
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
}
