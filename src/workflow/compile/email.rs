//! An email step (templates by locale, subjects, the coupon, the unsubscribe link) and a
//! webhook step (URL, method, headers, a JSON body of templates), each rendered once for a
//! sample customer so that a mistake fails `validate`, not a send.

use super::{Compiler, FileCtx};
use crate::model::customer::{Customer, Event};
use crate::source::SourceFile;
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};
use crate::workflow::plan::{self};
use crate::workflow::raw::{self as raw, Deferral, MailClass, Subject};
use crate::workflow::templates::EmailFiles;
use crate::workflow::templates::{self, TemplateScope};
use chrono::TimeDelta;
use std::collections::{BTreeMap, HashSet};
use tera::{Context, Tera};

impl Compiler {
    /// A step's `coupon:`: a prefix of letters, digits and `-`, and a lifetime above zero.
    fn coupon(&mut self, c: &raw::Coupon, croute: &Route, doc: &Document) -> Option<plan::Coupon> {
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

    /// Every HTML variant of a marketing email carries the unsubscribe link.
    fn unsubscribe_links(&mut self, files: &EmailFiles, doc: &Document, eroute: &Route) {
        for html in files.all_html().map(str::to_string).collect::<Vec<_>>() {
            if self.templates.is_broken(&html) {
                continue;
            }
            if !self.templates.variables(&html).contains("unsubscribe_url") {
                self.error(
                    "missing-unsubscribe",
                    format!("marketing email `{html}` has no unsubscribe link"),
                    doc.value_span(eroute),
                    format!("add `<a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a>` to `{}{html}`, or mark the workflow `class: transactional` if it is not marketing", self.templates.folder()),
                );
            }
        }
    }

    pub(super) fn email(
        &mut self,
        s: &raw::Step,
        route: &Route,
        id: &str,
        ctx: &mut FileCtx<'_>,
    ) -> Option<plan::EmailStep> {
        let doc = ctx.doc;
        let base = s.email.as_deref()?.trim_end_matches(".html");
        let eroute = route.key("email");
        let coupon = match &s.coupon {
            None => None,
            Some(c) => self.coupon(c, &route.key("coupon"), doc),
        };
        let scope = TemplateScope {
            event: ctx.has_event,
            coupon: s.coupon.is_some(),
        };
        let context = self.sample_context(ctx.workflow, scope, &ctx.coupon_steps);
        // A customer with nothing but an id and an address: a filter that fails on a
        // missing value fails here, not at the send.
        let mut bare = context.clone();
        bare.insert("customer", &Customer::bare());
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
        let earlier = ctx.coupon_steps.join(",");
        let mut earlier_coupons = Vec::new();
        for name in files.all_files().map(str::to_string).collect::<Vec<_>>() {
            let before = self.error_count();
            earlier_coupons.extend(self.earlier_coupons(&name, ctx));
            let key = (name.clone(), scope.event, scope.coupon, earlier.clone());
            // A coupon that is not there fails the trial render too: said once is enough.
            if self.error_count() > before {
                continue;
            }
            let contexts = [
                ("a sample customer", &context),
                ("a customer with no name, locale or dates", &bare),
            ];
            if self.check_template(key, ctx.workflow, scope, &contexts) {
                ctx.broken_template = true;
            }
        }
        earlier_coupons.sort();
        earlier_coupons.dedup();
        if coupon.is_some() {
            ctx.coupon_steps.push(id.to_string());
        }
        if ctx.class == MailClass::Marketing {
            self.unsubscribe_links(&files, doc, &eroute);
        }
        if let Some(raw::Subject::ByLocale(by)) = &s.subject {
            self.subjects_without_bodies(by, &files, doc, &route.key("subject"));
        }
        Some(plan::EmailStep {
            files,
            subjects: subjects?,
            coupon,
            earlier_coupons,
            when_capped: s.when_capped.unwrap_or(Deferral::Wait),
            in_quiet_hours: s.in_quiet_hours.unwrap_or(Deferral::Wait),
        })
    }

    /// A subject in a language whose body the template does not have: a Japanese subject
    /// over an English email. A warning, at the subject's locale key.
    fn subjects_without_bodies(
        &mut self,
        by: &std::collections::BTreeMap<String, String>,
        files: &crate::workflow::templates::EmailFiles,
        doc: &Document,
        sroute: &Route,
    ) {
        for locale in by.keys().filter(|k| *k != "default") {
            let (html, _) = files.for_locale(Some(locale));
            if html != files.html {
                continue;
            }
            let stem = files.html.trim_end_matches(".html");
            self.diags.push(
                Diagnostic::warning(
                    "subject-without-body",
                    format!("the `{locale}` subject goes over `{}`, which has no `{locale}` variant", files.html),
                    )
                    .at(doc.key_span(&sroute.key(locale)))
                    .help(format!("add `{stem}.{locale}.html` (and `.txt`), or remove the `{locale}` subject so that both are in the default language")),
            );
        }
    }

    /// Checks a template once for all the workflows that use it alike: a problem is
    /// reported once, naming every workflow that uses the template. Whether it has an error
    /// (each workflow that uses it is then invalid).
    fn check_template(
        &mut self,
        key: super::TemplateUse,
        workflow: &str,
        scope: TemplateScope,
        contexts: &[(&str, &Context)],
    ) -> bool {
        if let Some((found, users)) = self.checked_templates.get_mut(&key) {
            if !users.iter().any(|u| u == workflow) {
                users.push(workflow.to_string());
            }
            let label = format!("in the template of workflows `{}`", users.join("`, `"));
            let found = found.clone();
            for i in &found {
                self.diags[*i].label = Some(label.clone());
            }
            return found.iter().any(|i| self.diags[*i].is_error());
        }
        let found = self.templates.check_file(&key.0, scope, contexts);
        let broken = found.iter().any(Diagnostic::is_error);
        let at = self.diags.len();
        self.diags.extend(found);
        let users = vec![workflow.to_string()];
        self.checked_templates
            .insert(key, ((at..self.diags.len()).collect(), users));
        broken
    }

    /// The steps whose coupons a template shows (`coupons.deal.code`), each one an earlier
    /// email step of the workflow that reserves a coupon; an error at the reference when not.
    fn earlier_coupons(&mut self, name: &str, ctx: &FileCtx<'_>) -> Vec<String> {
        let Some(file) = self.templates.file(name).cloned() else {
            return Vec::new();
        };
        let refs = self
            .coupon_refs
            .entry(name.to_string())
            .or_insert_with(|| {
                templates::references(file.text())
                    .into_iter()
                    .filter(|r| r.path[0] == "coupons")
                    .filter_map(|r| Some((r.path.get(1)?.clone(), r.at)))
                    .collect()
            })
            .clone();
        let mut out = Vec::new();
        for (step, at) in refs {
            let step = &step;
            if ctx.coupon_steps.contains(step) {
                out.push(step.clone());
                continue;
            }
            let at = at + "coupons.".len();
            let span = crate::source::diagnostic::Span::new(
                &file,
                file.line_col(at),
                step.chars().count(),
            );
            let help = match ctx.coupon_steps.as_slice() {
                [] => "no step before this one reserves a coupon: add `coupon: { prefix: ..., valid_for: ... }` to an earlier email step".to_string(),
                steps => format!("the earlier steps with a coupon are: {}", steps.join(", ")),
            };
            self.diags.push(
                Diagnostic::error(
                    "unknown-coupon",
                    format!(
                        "no email step before this one in `{}` reserves a coupon `{step}`",
                        ctx.workflow
                    ),
                )
                .at(span)
                .help(help),
            );
        }
        out
    }

    pub(super) fn sample_context(
        &self,
        workflow: &str,
        scope: TemplateScope,
        earlier_coupons: &[String],
    ) -> Context {
        let mut context = Context::new();
        let sample = serde_json::json!({ "code": "SAMPLE-7KQ2-M9XD", "expires_at": self.now.format("%Y-%m-%d").to_string() });
        let coupons: serde_json::Map<String, serde_json::Value> = earlier_coupons
            .iter()
            .map(|s| (s.clone(), sample.clone()))
            .collect();
        context.insert("coupons", &coupons);
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
        context.insert("template", &serde_json::json!({ "locale": "en" }));
        context
    }

    pub(super) fn subjects(
        &mut self,
        subject: Option<&Subject>,
        route: &Route,
        ctx: &FileCtx<'_>,
        id: &str,
        scope: TemplateScope,
        context: &Context,
    ) -> Option<BTreeMap<String, String>> {
        let doc = ctx.doc;
        let entries = self.subject_entries(subject, route, doc)?;
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
            let shown = if locale.is_empty() {
                "default"
            } else {
                &locale
            };
            let name = format!("@subject/{}/{}/{shown}", ctx.workflow, id);
            let key = (text.clone(), scope, ctx.coupon_steps.join(","));
            if !(ok && self.clean_subjects.contains(&key)) {
                let Some(clean) = self.check_subject(&name, &text, &r, doc, scope, context, ok)
                else {
                    ok = false;
                    continue;
                };
                // Only a check that rendered, and found nothing, stands for the next use.
                if ok && clean {
                    self.clean_subjects.insert(key);
                }
                ok &= clean;
            }
            self.subjects.push((name.clone(), text));
            out.insert(locale, name);
        }
        ok.then_some(out)
    }

    /// The subject, or its variants by locale: (locale, `""` for the default; text; route).
    fn subject_entries(
        &mut self,
        subject: Option<&Subject>,
        route: &Route,
        doc: &Document,
    ) -> Option<Vec<(String, String, Route)>> {
        let sroute = route.key("subject");
        match subject {
            None => {
                self.error("missing-subject", "email step has no `subject:`", doc.value_span(&route.key("email")), "add `subject: \"...\"` to the step (Tera, e.g. `\"{{ customer.first_name }}, a gift for you\"`)");
                None
            }
            Some(Subject::One(text)) => Some(vec![(String::new(), text.clone(), sroute.clone())]),
            Some(Subject::ByLocale(map)) => {
                if !map.contains_key("default") {
                    self.error("missing-subject", "subject by locale has no `default`", doc.key_span(&sroute), "add `default: \"...\"` for customers whose locale has no subject of its own");
                }
                Some(
                    map.iter()
                        .map(|(k, v)| {
                            let locale = if k == "default" {
                                String::new()
                            } else {
                                k.clone()
                            };
                            (locale, v.clone(), sroute.key(k))
                        })
                        .collect(),
                )
            }
        }
    }

    /// One subject template: its syntax (`None` when it does not parse), its names, and —
    /// while everything so far was clean (`render`) — a render for the sample customer.
    /// `Some(false)` when a name or the render failed.
    #[allow(clippy::too_many_arguments)] // the template, where it is written, and its scope
    fn check_subject(
        &mut self,
        name: &str,
        text: &str,
        r: &Route,
        doc: &Document,
        scope: TemplateScope,
        context: &Context,
        render: bool,
    ) -> Option<bool> {
        let mut scratch = Tera::new();
        if let Err(e) = scratch.add_raw_template(name, text) {
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
                    .at(doc.locate(r, at, 1))
                    .help("subjects are Tera templates: `{{ customer.first_name }}`"),
            );
            return None;
        }
        // Names are checked against a one-off file holding the subject, then moved onto the
        // workflow file at the subject's position.
        let tmp = SourceFile::new(doc.file.path(), text.to_string());
        let top: HashSet<String> = scratch
            .get_template_variables(name)
            .map(|v| v.into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        let mut clean = true;
        for mut d in templates::check_names(&tmp, &top, scope, &|_| true) {
            clean = false;
            if let Some(span) = &d.span {
                let offset = tmp.byte_offset(span.start);
                let chars = text[..offset.min(text.len())].chars().count();
                d.span = Some(doc.locate(r, chars, span.len));
            }
            self.diags.push(d);
        }
        if render
            && clean
            && let Err(e) = scratch.render(name, context)
        {
            clean = false;
            self.error(
                "template-render",
                format!("subject fails to render for a sample customer: {e}"),
                doc.value_span(r),
                "check filters and value types in the subject",
            );
        }
        Some(clean)
    }

    pub(super) fn webhook(
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
}
