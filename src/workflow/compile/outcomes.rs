//! What a workflow is measured by: `holdout:` (the share kept as the control) and `goal:`
//! (the event that converts, how long after an email it counts, and its value).

use super::Compiler;
use crate::model::customer::{Customer, Event};
use crate::source::diagnostic::Diagnostic;
use crate::source::yaml::{Document, Route};
use crate::workflow::expr::{EvalInput, Expr, Vars};
use crate::workflow::plan::Goal;
use crate::workflow::raw;

impl Compiler {
    /// `holdout: 10%`: a share above 0 and below 100 per cent.
    pub(super) fn holdout(&mut self, text: &str, doc: &Document) -> Option<f64> {
        let share = text
            .trim()
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<f64>().ok())
            .filter(|n| *n > 0.0 && *n < 100.0);
        if share.is_none() {
            self.error(
                "bad-holdout",
                format!("`{text}` is not a holdout share"),
                doc.value_span(&Route::root().key("holdout")),
                "write a percentage above 0 and below 100, e.g. `holdout: 10%`",
            );
        }
        share.map(|n| n / 100.0)
    }

    /// `goal: {event, within, value?}`: an event name, a time above zero, and a Rhai
    /// expression that gives the revenue (tried on a sample order).
    pub(super) fn goal(&mut self, goal: &raw::Goal, doc: &Document) -> Option<Goal> {
        let route = Route::root().key("goal");
        let event = goal.event.trim();
        let well_formed = self.event_name(event, doc.value_span(&route.key("event")));
        let within =
            self.positive_duration(&goal.within, doc, &route.key("within"), "a goal's window");
        let value = match &goal.value {
            Some(text) => Some(self.goal_value(text, doc, &route.key("value"))?),
            None => None,
        };
        Some(Goal {
            event: well_formed.then(|| event.to_string())?,
            within: within?,
            value,
        })
    }

    fn goal_value(&mut self, text: &str, doc: &Document, route: &Route) -> Option<Expr> {
        let vars = Vars {
            event: true,
            enrollment: false,
        };
        let expr = match self.engine.compile(text, vars) {
            Ok(e) => e,
            Err(issues) => {
                for i in issues {
                    self.diags.push(
                        Diagnostic::error(i.code, format!("in `goal.value`: {}", i.message))
                            .at(doc.locate(route, i.offset, i.len))
                            .help(i.help),
                    );
                }
                return None;
            }
        };
        let customer = Customer::sample(self.now);
        let event = Event::sample("order_placed", self.now);
        let input = EvalInput {
            customer: &customer,
            event: Some(&event),
            enrollment: None,
            now: self.now,
            history: None,
        };
        if let Err(e) = self.engine.eval_number(&expr, &input) {
            self.error(
                "rhai-runtime",
                format!("`goal.value` fails for a sample order: {e}"),
                doc.value_span(route),
                "give the revenue as a number, e.g. `event.properties.total`",
            );
            return None;
        }
        Some(expr)
    }
}
