//! A workflow's trigger (a schedule, an event, a stage, a yearly date), and the pieces
//! every part of a workflow shares: zones, durations and expressions, each checked where
//! it is written.

use super::Compiler;
use crate::model::customer::DATE_FIELDS;
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};
use crate::time::cron::CronSchedule;
use crate::time::duration;
use crate::workflow::expr::{Expr, Vars};
use crate::workflow::plan::{Trigger, Zone};
use crate::workflow::raw::{self as raw};
use chrono::TimeDelta;
use chrono_tz::Tz;
use std::str::FromStr;

impl Compiler {
    pub(super) fn trigger(&mut self, t: &raw::Trigger, doc: &Document) -> Option<Trigger> {
        let route = Route::root().key("trigger");
        self.one_trigger(t, doc, &route)?;
        if let Some(line) = &t.schedule {
            return self.schedule(line, t.timezone.as_deref(), doc, &route);
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
                name: crate::model::customer::STAGE_ENTERED.to_string(),
                to_stage: Some(crate::workflow::plan::StageRef {
                    name: stage.clone(),
                    span: doc.value_span(&route.key("stage_entered")),
                }),
            });
        }
        self.date_trigger(t, doc, &route)
    }

    /// Exactly one kind of trigger, and no key that belongs to another kind.
    fn one_trigger(&mut self, t: &raw::Trigger, doc: &Document, route: &Route) -> Option<()> {
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
                doc.key_span(route),
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
        Some(())
    }

    /// A `schedule:` trigger: a cron line that fires, in a zone (or each customer's).
    fn schedule(
        &mut self,
        line: &str,
        timezone: Option<&str>,
        doc: &Document,
        route: &Route,
    ) -> Option<Trigger> {
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
        let zone = match timezone {
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
        Some(Trigger::Schedule {
            cron,
            line: line.to_string(),
            zone,
        })
    }

    /// A `date:` trigger: a date column of the customer, a local time and an offset.
    fn date_trigger(&mut self, t: &raw::Trigger, doc: &Document, route: &Route) -> Option<Trigger> {
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

    pub(super) fn zone(&mut self, name: &str, doc: &Document, route: &Route) -> Option<Tz> {
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

    pub(super) fn duration(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
    ) -> Option<TimeDelta> {
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

    pub(super) fn positive_duration(
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
    pub(super) fn expression(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
        vars: Vars,
        what: &str,
    ) -> Option<Expr> {
        let expr = crate::workflow::expr::check::check_expression(
            &self.engine,
            self.now,
            text,
            doc,
            route,
            vars,
            what,
            &mut self.diags,
        )?;
        self.engagement_steps(text, doc, route, vars, what);
        Some(expr)
    }

    /// `clicked("step")` and `opened("step")` name an email step: of this workflow (within
    /// the enrollment, so not in an audience), or `workflow/step` of any, checked when all
    /// workflows are read.
    fn engagement_steps(
        &mut self,
        text: &str,
        doc: &Document,
        route: &Route,
        vars: Vars,
        what: &str,
    ) {
        for (function, name, offset) in engagement_calls(text) {
            let span = doc.locate(route, offset, name.chars().count() + 2);
            if let Some((workflow, step)) = name.split_once('/') {
                self.engagement_refs
                    .push((workflow.to_string(), step.to_string(), span));
                continue;
            }
            if !vars.enrollment {
                self.error(
                    "engagement-in-audience",
                    format!("in `{what}`: `{function}(\"{name}\")` needs an enrollment, and an audience has none"),
                    span,
                    format!("name the workflow too: `{function}(\"WORKFLOW/{name}\")` is true when the customer ever did it"),
                );
            } else if !self.email_steps.contains(&name) {
                let mut known: Vec<&str> = self.email_steps.iter().map(String::as_str).collect();
                known.sort_unstable();
                let help = match crate::source::yaml::closest(&name, known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None if known.is_empty() => "this workflow sends no email".to_string(),
                    None => format!("its email steps are: {}", known.join(", ")),
                };
                self.error(
                    "unknown-step",
                    format!("in `{what}`: this workflow has no email step `{name}`"),
                    span,
                    help,
                );
            }
        }
    }
}

/// Every `clicked("…")` and `opened("…")` of an expression: the function, the name, and
/// the character offset of its string literal.
pub(super) fn engagement_calls(text: &str) -> Vec<(&'static str, String, usize)> {
    let mut out = Vec::new();
    for function in ["clicked", "opened", "redeemed"] {
        let mut from = 0;
        while let Some(rel) = text[from..].find(function) {
            let at = from + rel;
            from = at + function.len();
            let word_before = text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
            let rest = text[from..].trim_start();
            let Some(rest) = rest.strip_prefix('(') else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(literal) = rest.strip_prefix('"') else {
                continue;
            };
            let Some(end) = literal.find('"') else {
                continue;
            };
            if word_before {
                continue;
            }
            let quote = text.len() - rest.len();
            let offset = text[..quote].chars().count();
            out.push((function, literal[..end].to_string(), offset));
        }
    }
    out
}

impl Compiler {
    /// The email step ids of a file's steps as written (`id:`, else the template name),
    /// before the steps compile: an audience is checked before its steps are.
    pub(super) fn collect_email_steps(&mut self, steps: &[raw::Step]) {
        for s in steps {
            if let Some(email) = &s.email {
                self.email_steps
                    .insert(s.id.clone().unwrap_or_else(|| email.clone()));
            }
            self.collect_email_steps(s.then.as_deref().unwrap_or(&[]));
            self.collect_email_steps(s.else_.as_deref().unwrap_or(&[]));
        }
    }
}
