//! What an expression reads of a customer's past: their events by name, and what came back
//! from the emails they were sent. The store fills it; `event_count`, `clicked`, `opened`,
//! `redeemed` and `answer` read it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// When a customer's events of each name happened, oldest first; the emails they clicked
/// and opened (a person's, not a scanner's); their latest answer to each question.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventHistory(pub BTreeMap<String, Vec<DateTime<Utc>>>, pub Engagement);

/// What `clicked`, `opened` and `answer` read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Engagement {
    pub engaged: Vec<Engaged>,
    /// The emails whose coupon an order redeemed (`click` unused).
    pub redeemed: Vec<Engaged>,
    /// Each question's latest answer.
    pub answers: BTreeMap<String, serde_json::Value>,
}

/// A person clicked or opened one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engaged {
    pub click: bool,
    pub workflow: String,
    pub step: String,
    pub enrollment: String,
}

impl EventHistory {
    /// Whether a person clicked (or opened) the email of `step`: `workflow/step` in any
    /// enrollment, a bare `step` in this enrollment.
    pub fn engaged(&self, click: bool, step: &str, enrollment: Option<(&str, &str)>) -> bool {
        let mine = self.1.engaged.iter().filter(|e| e.click == click);
        Self::names(mine, step, enrollment)
    }

    /// Whether the coupon of the email of `step` was redeemed (as [`EventHistory::engaged`]
    /// reads `step`).
    pub fn redeemed(&self, step: &str, enrollment: Option<(&str, &str)>) -> bool {
        Self::names(self.1.redeemed.iter(), step, enrollment)
    }

    fn names<'a>(
        mut among: impl Iterator<Item = &'a Engaged>,
        step: &str,
        enrollment: Option<(&str, &str)>,
    ) -> bool {
        let (workflow, step, enrollment) = match (step.split_once('/'), enrollment) {
            (Some((w, s)), _) => (w, s, None),
            (None, Some((id, w))) => (w, step, Some(id)),
            (None, None) => return false,
        };
        among.any(|e| {
            e.workflow == workflow
                && e.step == step
                && enrollment.is_none_or(|id| e.enrollment == id)
        })
    }

    pub fn count_since(&self, name: &str, since: DateTime<Utc>) -> i64 {
        self.0.get(name).map_or(0, |times| {
            times.iter().filter(|t| **t >= since).count() as i64
        })
    }
}
