//! The counts `status` and the report show, grouped as a reader reads them: journeys by
//! state, emails by what became of them, stages in the order of stages.yaml.

use crate::model::states::{DeliveryState, JourneyState};
use crate::store::status::Counts;

/// A journey's states, in the order tables show them.
pub const JOURNEYS: &[JourneyState] = JourneyState::ALL;

/// How a journey state is shown: "converted" is the goal's word (`results`), so journeys
/// that `exit_when` ended are shown as what they are.
pub fn journey_label(state: JourneyState) -> &'static str {
    match state {
        JourneyState::Converted => "exit_when",
        other => other.as_str(),
    }
}

/// What became of emails, as a reader groups the outbox's states.
pub const EMAILS: [(&str, &[DeliveryState]); 5] = [
    ("sent", &[DeliveryState::Sent]),
    ("failed", &[DeliveryState::Failed]),
    (
        "suppressed",
        &[DeliveryState::Suppressed, DeliveryState::Cancelled],
    ),
    (
        "waiting",
        &[
            DeliveryState::Pending,
            DeliveryState::Sending,
            DeliveryState::Retrying,
        ],
    ),
    ("unknown", &[DeliveryState::Unknown]),
];

/// Stages in the order of stages.yaml; workflows as deployed, then any the store
/// remembers that are gone.
pub fn order(plan: &crate::workflow::plan::Plan, c: &Counts) -> (Vec<String>, Vec<String>) {
    let stage_order: Vec<String> = plan
        .stages
        .as_ref()
        .map(|s| s.names().map(str::to_string).collect())
        .unwrap_or_default();
    let mut workflows: Vec<String> = plan.workflows.iter().map(|w| w.name.clone()).collect();
    for name in c.journeys.keys().chain(c.emails.keys()) {
        if !workflows.contains(name) {
            workflows.push(name.clone());
        }
    }
    (stage_order, workflows)
}

pub fn emails(c: &Counts, wf: &str, states: &[DeliveryState]) -> i64 {
    c.emails.get(wf).map_or(0, |m| {
        states
            .iter()
            .map(|s| m.get(s.as_str()).copied().unwrap_or(0))
            .sum()
    })
}

pub fn journeys(c: &Counts, wf: &str, state: JourneyState) -> i64 {
    c.journeys
        .get(wf)
        .and_then(|m| m.get(state.as_str()))
        .copied()
        .unwrap_or(0)
}

pub fn stage_rows(c: &Counts, order: &[String]) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = order
        .iter()
        .map(|s| {
            (
                s.clone(),
                c.stages.get(&Some(s.clone())).copied().unwrap_or(0),
            )
        })
        .collect();
    for (stage, n) in &c.stages {
        match stage {
            Some(s) if !order.contains(s) => rows.push((s.clone(), *n)),
            None if !order.is_empty() => rows.push(("(not placed yet)".into(), *n)),
            _ => {}
        }
    }
    rows
}
