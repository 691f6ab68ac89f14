//! A workflow's trigger: a schedule, an event, a stage, a yearly date.

use super::Compiler;
use crate::model::customer::DATE_FIELDS;
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};
use crate::time::cron::CronSchedule;
use crate::time::duration;
use crate::workflow::plan::{Trigger, Zone};
use crate::workflow::raw::{self as raw};
use chrono::TimeDelta;
use chrono_tz::Tz;

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
