//! What came back from the emails, per workflow and email step: sent, delivered, unique
//! human opens and clicks, answers, unsubscribes, bounces and complaints; and each survey
//! question's answers, with its NPS when the answers are 0–10 scores. `status`, the report
//! and `/metrics` read these.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::model::states::EngagementKind;

/// One email step's counts (or a workflow's, summed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepRates {
    pub workflow: String,
    pub step: String,
    /// Accepted by the mail server.
    pub sent: u64,
    /// Sent, less those that bounced afterwards.
    pub delivered: u64,
    /// Emails a person opened (open tracking on), clicked, or answered: each email once.
    pub opened: u64,
    pub clicked: u64,
    pub answered: u64,
    pub unsubscribed: u64,
    /// Refused for good by the mail server, or reported as a bounce afterwards.
    pub bounced: u64,
    pub complained: u64,
}

impl StepRates {
    /// Share of delivered emails a person clicked.
    pub fn click_rate(&self) -> Option<f64> {
        ratio(self.clicked, self.delivered)
    }

    pub fn open_rate(&self) -> Option<f64> {
        ratio(self.opened, self.delivered)
    }

    pub fn answer_rate(&self) -> Option<f64> {
        ratio(self.answered, self.delivered)
    }

    pub fn unsubscribe_rate(&self) -> Option<f64> {
        ratio(self.unsubscribed, self.delivered)
    }

    fn add(&mut self, o: &StepRates) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.opened += o.opened;
        self.clicked += o.clicked;
        self.answered += o.answered;
        self.unsubscribed += o.unsubscribed;
        self.bounced += o.bounced;
        self.complained += o.complained;
    }

    /// The counts with the rates, as `status --json` writes them.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            for (key, rate) in [
                ("click_rate", self.click_rate()),
                ("open_rate", self.open_rate()),
                ("answer_rate", self.answer_rate()),
                ("unsubscribe_rate", self.unsubscribe_rate()),
            ] {
                m.insert(key.into(), rate.map_or(Value::Null, Value::from));
            }
        }
        v
    }
}

fn ratio(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

/// A survey question's answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Question {
    pub question: String,
    pub answers: u64,
    /// How often each value was given, as shown (`9`, `too-expensive`).
    pub values: BTreeMap<String, u64>,
    /// For 0–10 scores only: promoters (9–10), passives (7–8), detractors (0–6).
    pub promoters: u64,
    pub passives: u64,
    pub detractors: u64,
    /// % promoters − % detractors, when every answer is a 0–10 score.
    pub nps: Option<f64>,
}

/// Every email step's counts and every question's answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub steps: Vec<StepRates>,
    pub questions: Vec<Question>,
}

impl Rates {
    /// A workflow's steps, summed.
    pub fn workflow(&self, name: &str) -> StepRates {
        let mut total = StepRates {
            workflow: name.to_string(),
            ..StepRates::default()
        };
        for s in self.steps.iter().filter(|s| s.workflow == name) {
            total.add(s);
        }
        total
    }

    pub fn steps_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a StepRates> + 'a {
        self.steps.iter().filter(move |s| s.workflow == name)
    }
}

pub async fn rates(conn: &mut AnyConnection) -> Result<Rates, StoreError> {
    let mut steps: BTreeMap<(String, String), StepRates> = BTreeMap::new();
    let rows = super::sql::query("SELECT workflow, step, state, COUNT(*) FROM deliveries WHERE channel = 'email' AND state IN ('sent', 'failed') GROUP BY workflow, step, state")
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let (workflow, step): (String, String) = (r.try_get(0)?, r.try_get(1)?);
        let state: String = r.try_get(2)?;
        let n = r.try_get::<i64, _>(3)?.max(0) as u64;
        let s = step_of(&mut steps, workflow, step);
        match state.as_str() {
            "sent" => s.sent += n,
            _ => s.bounced += n,
        }
    }
    let (counts, answers) = super::engagement::counts(conn).await?;
    // Bounces reported after an email was sent: it was sent, but not delivered.
    let mut reported: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((workflow, step, kind), n) in counts {
        if kind == EngagementKind::Bounce {
            reported.insert((workflow.clone(), step.clone()), n);
        }
        let s = step_of(&mut steps, workflow, step);
        match kind {
            EngagementKind::Click => s.clicked += n,
            EngagementKind::Open => s.opened += n,
            EngagementKind::Answer => s.answered += n,
            EngagementKind::Unsubscribe => s.unsubscribed += n,
            EngagementKind::Bounce => s.bounced += n,
            EngagementKind::Complaint => s.complained += n,
        }
    }
    for (key, s) in &mut steps {
        s.delivered = s
            .sent
            .saturating_sub(reported.get(key).copied().unwrap_or(0));
    }
    Ok(Rates {
        steps: steps.into_values().collect(),
        questions: questions(answers),
    })
}

fn step_of(
    steps: &mut BTreeMap<(String, String), StepRates>,
    workflow: String,
    step: String,
) -> &mut StepRates {
    steps
        .entry((workflow.clone(), step.clone()))
        .or_insert_with(|| StepRates {
            workflow,
            step,
            ..StepRates::default()
        })
}

/// Answers by question, with the NPS of questions answered with 0–10 scores.
pub fn questions(answers: Vec<(String, Value)>) -> Vec<Question> {
    let mut by: BTreeMap<String, Question> = BTreeMap::new();
    let mut scores_only: BTreeMap<String, bool> = BTreeMap::new();
    for (question, value) in answers {
        let q = by.entry(question.clone()).or_insert_with(|| Question {
            question: question.clone(),
            ..Question::default()
        });
        q.answers += 1;
        let shown = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        *q.values.entry(shown).or_default() += 1;
        let score = value.as_i64().filter(|s| (0..=10).contains(s));
        match score {
            Some(9..=10) => q.promoters += 1,
            Some(7..=8) => q.passives += 1,
            Some(_) => q.detractors += 1,
            None => {
                scores_only.insert(question, false);
            }
        }
    }
    by.into_values()
        .map(|mut q| {
            let all_scores = scores_only.get(&q.question).copied().unwrap_or(true);
            if all_scores && q.answers > 0 {
                let pct = |n: u64| 100.0 * n as f64 / q.answers as f64;
                q.nps = Some(pct(q.promoters) - pct(q.detractors));
            }
            q
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nps_is_promoters_less_detractors_for_scores_only() {
        let answers = [10, 9, 9, 8, 7, 6, 3, 0, 10, 5]
            .iter()
            .map(|s| ("nps".to_string(), json!(s)))
            .chain([("why".to_string(), json!("too-expensive"))])
            .collect();
        let qs = questions(answers);
        let nps = &qs[0];
        assert_eq!((nps.promoters, nps.passives, nps.detractors), (4, 2, 4));
        assert_eq!(nps.nps, Some(0.0));
        assert_eq!(qs[1].nps, None);
        assert_eq!(qs[1].values.get("too-expensive"), Some(&1));
    }
}
