//! A workflow's steps, one kind at a time: emails, waits, conditions, webhooks, updates,
//! exits — with ids, positions and what may follow what.

use super::{Compiler, FileCtx};
use crate::source::diagnostic::Span;
use crate::source::yaml::{Document, Route};
use crate::time::duration;
use crate::workflow::expr::Vars;
use crate::workflow::plan::{self, StepKind, Wait};
use crate::workflow::raw::{self as raw};

impl Compiler {
    pub(super) fn steps(
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

    pub(super) fn step(
        &mut self,
        s: &raw::Step,
        route: &Route,
        position: &str,
        ctx: &mut FileCtx<'_>,
    ) -> Option<plan::Step> {
        let doc = ctx.doc;
        let kind = self.step_kind(s, route, doc)?;
        self.misplaced_keys(s, kind, route, doc);
        let id = self.step_id(s, route, position, ctx);
        let kind = match kind {
            "email" => StepKind::Email(self.email(s, route, &id, ctx)?),
            "wait" => match s.wait.as_ref()? {
                raw::Wait::ForEvent { event, at_most } => {
                    StepKind::WaitFor(self.wait_for(event, at_most, route, doc)?)
                }
                wait => StepKind::Wait(self.wait(wait, route, doc)?),
            },
            "if" => self.branch(s, route, position, ctx)?,
            "webhook" => StepKind::Webhook(self.webhook(s.webhook.as_ref()?, route, ctx)?),
            "update" => StepKind::Update(self.update(s.update.as_ref()?, route, ctx)?),
            "split" => StepKind::Split(self.split(s.split.as_ref()?, route, position, ctx)?),
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

    /// Which one action a step takes; none, or more than one, is an error.
    fn step_kind(&mut self, s: &raw::Step, route: &Route, doc: &Document) -> Option<&'static str> {
        let kinds: Vec<&'static str> = [
            ("email", s.email.is_some()),
            ("wait", s.wait.is_some()),
            ("if", s.if_.is_some()),
            ("webhook", s.webhook.is_some()),
            ("update", s.update.is_some()),
            ("exit", s.exit.is_some()),
            ("split", s.split.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if kinds.len() == 1 {
            return Some(kinds[0]);
        }
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
        self.error("bad-step", msg, doc.value_span(route), "each step is one of `email`, `wait`, `if`, `webhook`, `update`, `exit` or `split`; split it into several steps");
        None
    }

    /// Keys that belong to another kind of step (an email's `subject` on a wait).
    fn misplaced_keys(&mut self, s: &raw::Step, kind: &str, route: &Route, doc: &Document) {
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
    }

    /// The step's id: as written (checked, unique in the file), or derived from its template
    /// or its position.
    fn step_id(
        &mut self,
        s: &raw::Step,
        route: &Route,
        position: &str,
        ctx: &mut FileCtx<'_>,
    ) -> String {
        let doc = ctx.doc;
        let Some(id) = &s.id else {
            let derived = match &s.email {
                Some(t) if !ctx.ids.contains_key(t) => t.clone(),
                _ => position.to_string(),
            };
            ctx.ids
                .entry(derived.clone())
                .or_insert_with(|| doc.value_span(route));
            return derived;
        };
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

    /// A `wait:` step: a duration above zero, or `until:` a local time of day.
    fn wait(&mut self, wait: &raw::Wait, route: &Route, doc: &Document) -> Option<Wait> {
        match wait {
            raw::Wait::For(text) => Some(Wait::For(self.positive_duration(
                text,
                doc,
                &route.key("wait"),
                "a wait",
            )?)),
            raw::Wait::ForEvent { .. } => None,
            raw::Wait::Until(text) => match duration::parse_time_of_day(text) {
                Some(t) => Some(Wait::Until(t)),
                None => {
                    self.error(
                        "bad-time",
                        format!("`{text}` is not a time of day"),
                        doc.value_span(&route.key("wait").key("until")),
                        "write 24-hour local time as `HH:MM`, e.g. `09:00`",
                    );
                    None
                }
            },
        }
    }

    /// An event name as triggers write them (lowercase letters, digits, `_`); an error at
    /// `span` when it is not one.
    pub(super) fn event_name(&mut self, event: &str, span: Span) -> bool {
        let well_formed = !event.is_empty()
            && event
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            self.error(
                "bad-event-name",
                format!("`{event}` is not an event name"),
                span,
                "event names use lowercase letters, digits and `_`, e.g. `email_clicked` or `order_placed`",
            );
        }
        well_formed
    }

    /// `wait: { for: EVENT, at_most: DURATION }`: an event name as triggers write them,
    /// and a limit above zero (a journey never waits for ever).
    fn wait_for(
        &mut self,
        event: &str,
        at_most: &str,
        route: &Route,
        doc: &Document,
    ) -> Option<plan::WaitForEvent> {
        let wroute = route.key("wait");
        let well_formed = self.event_name(event, doc.value_span(&wroute.key("for")));
        if well_formed {
            let span = doc.value_span(&wroute.key("for"));
            self.waited_events.push((event.to_string(), span));
        }
        let at_most = self.positive_duration(at_most, doc, &wroute.key("at_most"), "a wait")?;
        well_formed.then(|| plan::WaitForEvent {
            event: event.to_string(),
            at_most,
        })
    }

    /// An `if:` step: its condition, and both branches' steps (each checked, so every
    /// problem of the file is found in one run).
    fn branch(
        &mut self,
        s: &raw::Step,
        route: &Route,
        position: &str,
        ctx: &mut FileCtx<'_>,
    ) -> Option<StepKind> {
        let doc = ctx.doc;
        let text = s.if_.as_deref()?;
        let vars = Vars {
            event: ctx.has_event,
            enrollment: true,
        };
        let condition = self.expression(text, doc, &route.key("if"), vars, "if");
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
        Some(StepKind::If {
            condition: condition?,
            then,
            else_,
        })
    }

    /// A `split:` step: a name unique in the workflow, two variants or more with names of
    /// their own, positive weights (any total), steps each checked — and variants that
    /// differ, or the experiment measures nothing.
    fn split(
        &mut self,
        split: &raw::Split,
        route: &Route,
        position: &str,
        ctx: &mut FileCtx<'_>,
    ) -> Option<plan::SplitStep> {
        let doc = ctx.doc;
        let sroute = route.key("split");
        let errors = self.error_count();
        self.split_name(&split.name, &sroute, ctx);
        if split.variants.len() < 2 {
            let message = "a split needs two variants or more";
            let help =
                "add the variant to compare with, e.g. `- { name: b, weight: 50, steps: [...] }`";
            self.error(
                "bad-split",
                message,
                doc.value_span(&sroute.key("variants")),
                help,
            );
        }
        let mut variants: Vec<plan::Variant> = Vec::new();
        let mut shapes: Vec<(String, String)> = Vec::new();
        for (k, v) in split.variants.iter().enumerate() {
            let vroute = sroute.key("variants").index(k);
            let taken: Vec<&str> = variants.iter().map(|w| w.name.as_str()).collect();
            self.variant_checks(v, &vroute, doc, &taken);
            let shape = format!("{:?}", without_ids(&v.steps));
            if let Some((same, _)) = shapes.iter().find(|(_, s)| *s == shape) {
                let message = format!("variants `{same}` and `{}` do the same thing", v.name);
                let help =
                    "change what one of them sends (a subject, a template, a wait), or remove it";
                self.error(
                    "same-variants",
                    message,
                    doc.value_span(&vroute.key("steps")),
                    help,
                );
            }
            shapes.push((v.name.clone(), shape));
            let prefix = format!("{position}.{}.", v.name);
            let steps = self.steps(&v.steps, &vroute.key("steps"), &prefix, ctx);
            variants.push(plan::Variant {
                name: v.name.clone(),
                weight: v.weight,
                steps,
            });
        }
        (self.error_count() == errors).then(|| plan::SplitStep {
            name: split.name.clone(),
            variants,
        })
    }

    /// A variant's name (well formed, not taken) and weight (above zero).
    fn variant_checks(&mut self, v: &raw::Variant, vroute: &Route, doc: &Document, taken: &[&str]) {
        if !well_named(&v.name) {
            let message = format!("`{}` cannot name a variant", v.name);
            let help =
                "use lowercase letters, digits, `-` and `_` (not `holdout`, the control's name)";
            self.error(
                "bad-variant",
                message,
                doc.value_span(&vroute.key("name")),
                help,
            );
        } else if taken.contains(&v.name.as_str()) {
            let message = format!("variant `{}` is named twice", v.name);
            self.error(
                "bad-variant",
                message,
                doc.value_span(&vroute.key("name")),
                "give each variant its own name",
            );
        }
        if !(v.weight.is_finite() && v.weight > 0.0) {
            let message = format!("a weight must be above zero, not {}", v.weight);
            let help = "weights are relative: 50 and 50, or 1 and 3, or 90 and 10";
            self.error(
                "bad-weight",
                message,
                doc.value_span(&vroute.key("weight")),
                help,
            );
        }
    }

    /// A split's name: well formed, not `holdout`, unique in the workflow.
    fn split_name(&mut self, name: &str, sroute: &Route, ctx: &mut FileCtx<'_>) {
        let span = ctx.doc.value_span(&sroute.key("name"));
        if !well_named(name) {
            let message = format!("`{name}` cannot name a split");
            let help = "use lowercase letters, digits, `-` and `_` (not `holdout`), e.g. `name: subject-test`";
            self.error("bad-split", message, span, help);
        } else if let Some(first) = ctx.splits.get(name) {
            let message = format!(
                "split `{name}` is already used on line {}",
                first.start.line
            );
            self.error(
                "bad-split",
                message,
                span,
                "give each split of a workflow its own name",
            );
        } else {
            ctx.splits.insert(name.to_string(), span);
        }
    }

    pub(super) fn update(
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

/// A split's or a variant's name: lowercase letters, digits, `-` and `_`, and not the
/// holdout's.
fn well_named(name: &str) -> bool {
    !name.is_empty()
        && name != crate::workflow::plan::HOLDOUT
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Steps as written but without their ids: what two variants are compared by.
fn without_ids(steps: &[raw::Step]) -> Vec<raw::Step> {
    steps
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.id = None;
            s.then = s.then.as_deref().map(without_ids);
            s.else_ = s.else_.as_deref().map(without_ids);
            s
        })
        .collect()
}
