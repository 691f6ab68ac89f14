//! `click:`, `open:` and `answer:` in a test: the customer follows a link the email really
//! holds (found in its body and opened with the project's key, as the daemon would), at
//! the case's moment, as a person; then a pass runs, so that what waits for it goes on.

use super::{Failure, Run, why};
use crate::links::{Answer, Click, Open, Token};
use crate::rehearsal::workflow_tests::runner::matches;
use crate::rehearsal::workflow_tests::spec::{EmailMatch, Engagement};
use crate::source::diagnostic::Span;
use crate::store::engagement::Visit;
use crate::store::{deliveries, enrollments};
use crate::unsubscribe::Signer;
use serde_json::Value as Json;

/// The sealed tokens after `/KIND/` in a body.
fn tokens<'a>(body: &'a str, kind: &str) -> Vec<&'a str> {
    let marker = format!("/{kind}/");
    body.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &body[i + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Two answers are the same when they read the same (`9` and `"9"`).
fn same_value(a: &Json, b: &Json) -> bool {
    let shown = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    shown(a) == shown(b)
}

/// What the email offers for the action: the link's URL (a click), or nothing else to say.
fn offered(signer: &Signer, bodies: &str, act: &Engagement) -> Result<String, String> {
    match act {
        Engagement::Click { url } => {
            let urls: Vec<String> = tokens(bodies, "c")
                .into_iter()
                .filter_map(|t| Click::open(signer, t).ok())
                .map(|c| c.url)
                .collect();
            let found = urls
                .iter()
                .find(|u| url.as_ref().is_none_or(|want| u.starts_with(want.as_str())));
            match (found, url) {
                (Some(u), _) => Ok(u.clone()),
                (None, _) if urls.is_empty() => {
                    Err("it has no tracked link (is `tracking.clicks` off?)".into())
                }
                (None, Some(want)) => Err(format!(
                    "it has no link to {want}; its links go to {}",
                    urls.join(", ")
                )),
                (None, None) => Err("it has no tracked link".into()),
            }
        }
        Engagement::Open => {
            let has_pixel = tokens(bodies, "o")
                .into_iter()
                .any(|t| Open::open(signer, t.trim_end_matches(".gif")).is_ok());
            match has_pixel {
                true => Ok(String::new()),
                false => Err("it has no open pixel (`tracking.opens` is off)".into()),
            }
        }
        Engagement::Answer { question, value } => {
            let answers: Vec<Answer> = tokens(bodies, "a")
                .into_iter()
                .filter_map(|t| Answer::open(signer, t).ok())
                .collect();
            if answers
                .iter()
                .any(|a| a.question == *question && same_value(&a.value, value))
            {
                return Ok(String::new());
            }
            let offers: Vec<String> = answers
                .iter()
                .filter(|a| a.question == *question)
                .map(|a| a.value.to_string())
                .collect();
            Err(match offers.is_empty() {
                true => format!("it asks no question `{question}`"),
                false => format!(
                    "it offers `{question}` answers {}, not {value}",
                    offers.join(", ")
                ),
            })
        }
    }
}

impl Run {
    /// The customer's latest journey in the workflow went down `variant`.
    pub(super) async fn expect_variant(
        &mut self,
        span: &Span,
        customer: &str,
        variant: &str,
    ) -> Result<Option<Failure>, String> {
        let mut conn = self.store.connection().await.map_err(why)?;
        let took = enrollments::variant_of(&mut conn, &self.workflow, customer)
            .await
            .map_err(why)?;
        drop(conn);
        if took.as_ref().and_then(|v| v.as_deref()) == Some(variant) {
            return Ok(None);
        }
        let went = match took {
            None => format!("{customer} has no journey"),
            Some(None) => "their journey went down no variant".to_string(),
            Some(Some(v)) => format!("their journey went down `{v}`"),
        };
        let message = format!("expected {customer} to go down `{variant}`, but {went}");
        Ok(Some(self.failure(span, message, None, Vec::new())))
    }

    pub(super) async fn expect_goal(
        &mut self,
        span: &Span,
        customer: &str,
        converted: bool,
        value: Option<f64>,
    ) -> Result<Option<Failure>, String> {
        let mut conn = self.store.connection().await.map_err(why)?;
        let values = crate::store::outcomes::conversions_of(&mut conn, &self.workflow, customer)
            .await
            .map_err(why)?;
        drop(conn);
        let total: f64 = values.iter().sum();
        let message = match (converted, values.is_empty(), value) {
            (true, true, _) => {
                format!("expected the goal to convert {customer}'s journey, but it did not")
            }
            (false, false, _) => format!(
                "expected {customer}'s journey not to convert, but the goal converted it ({} time{}, value {total})",
                values.len(),
                if values.len() == 1 { "" } else { "s" }
            ),
            (true, false, Some(v)) if (v - total).abs() > 1e-9 => {
                format!(
                    "expected the conversion of {customer}'s journey to be worth {v}, but it counted {total}"
                )
            }
            _ => return Ok(None),
        };
        Ok(Some(self.failure(span, message, None, Vec::new())))
    }

    pub(super) async fn engage(
        &mut self,
        span: &Span,
        m: &EmailMatch,
        act: &Engagement,
    ) -> Result<Option<Failure>, String> {
        let sent = self.sent().await?;
        let verb = match act {
            Engagement::Click { .. } => "click",
            Engagement::Open => "open",
            Engagement::Answer { .. } => "answer",
        };
        let Some(email) = sent.iter().rev().find(|s| matches(m, s)) else {
            let message = format!("cannot {verb} {}: it was not sent", m.describe());
            return Ok(Some(self.failure(span, message, None, sent)));
        };
        let mut conn = self.store.connection().await.map_err(why)?;
        let (html, text) = deliveries::bodies(&mut conn, &email.id)
            .await
            .map_err(why)?;
        drop(conn);
        let bodies = format!("{}\n{}", html.unwrap_or_default(), text.unwrap_or_default());
        let signer = self.runner.engine.signer().await.map_err(why)?;
        let url = match offered(&signer, &bodies, act) {
            Ok(url) => url,
            Err(why_not) => {
                let message = format!("cannot {verb} the {} email: {why_not}", email.template);
                return Ok(Some(self.failure(span, message, None, sent)));
            }
        };
        let Some(stored) = self.store.sent_email(&email.id).await.map_err(why)? else {
            return Err(format!("the email {} is not in the store", email.id));
        };
        // A person, not a scanner: a test's click is never taken for a machine's.
        let visit = Visit {
            at: self.now,
            agent: Some("Mozilla/5.0 (tidings test)".into()),
            client: None,
        };
        let human = chrono::TimeDelta::zero();
        let recorded = match act {
            Engagement::Click { .. } => self
                .store
                .record_click(&stored, &url, &visit, human)
                .await
                .map(drop),
            Engagement::Open => self
                .store
                .record_open(&stored, &visit, human)
                .await
                .map(drop),
            Engagement::Answer { question, value } => self
                .store
                .record_answer(&stored, question, value, &visit, human)
                .await
                .map(drop),
        };
        recorded.map_err(why)?;
        self.pass().await?;
        Ok(None)
    }
}
