//! `tracking:` — what comes back from an email: clicks (on by default for marketing mail),
//! opens (off: pixels are unreliable and intrusive), UTM parameters, and whether a click's
//! address and user agent are kept (not by default).

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct TrackingConfig {
    /// `clicks: true` — links of marketing emails become tracked links (`/c/TOKEN`).
    pub clicks: bool,
    /// `opens: false` — an open pixel (`/o/TOKEN.gif`) in marketing HTML.
    pub opens: bool,
    /// `utm: { source: tidings, medium: email, campaign: "{workflow}" }` — added to every
    /// tracked link's URL (`source` is written `utm_source`; `{workflow}` and `{step}` are
    /// filled in). Parameters a link already has are kept as they are.
    pub utm: BTreeMap<String, String>,
    /// `store_client: false` — keep the IP address and user agent of a click, open or
    /// answer. Off: neither is stored.
    pub store_client: bool,
    /// `machine_window: 10s` — a click or open this soon after the email left is a link
    /// scanner's, recorded as `machine` and left out of rates.
    pub machine_window: String,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            clicks: true,
            opens: false,
            utm: BTreeMap::new(),
            store_client: false,
            machine_window: "10s".into(),
        }
    }
}

/// A workflow's `tracking:`, each key overriding the project's. Transactional mail is
/// tracked only when its workflow asks.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct WorkflowTracking {
    /// `clicks: false` — this workflow's links stay as written.
    pub clicks: Option<bool>,
    /// `opens: true` — an open pixel in this workflow's emails.
    pub opens: Option<bool>,
    /// `utm: { campaign: spring-sale }` — replaces the project's UTM parameters.
    pub utm: Option<BTreeMap<String, String>>,
}

/// What one email does, the project's settings and its workflow's combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailTracking {
    pub clicks: bool,
    pub opens: bool,
    pub utm: Vec<(String, String)>,
}

impl TrackingConfig {
    /// The tracking of one email step.
    pub fn for_email(
        &self,
        workflow: &WorkflowTracking,
        marketing: bool,
        names: (&str, &str),
    ) -> EmailTracking {
        let (name, step) = names;
        let utm = workflow.utm.as_ref().unwrap_or(&self.utm);
        EmailTracking {
            clicks: workflow.clicks.unwrap_or(marketing && self.clicks),
            opens: workflow.opens.unwrap_or(marketing && self.opens),
            utm: utm
                .iter()
                .map(|(k, v)| {
                    let key = match k.starts_with("utm_") {
                        true => k.clone(),
                        false => format!("utm_{k}"),
                    };
                    (key, v.replace("{workflow}", name).replace("{step}", step))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_mail_is_tracked_only_when_its_workflow_asks() {
        let mut project = TrackingConfig::default();
        project.utm.insert("source".into(), "tidings".into());
        project
            .utm
            .insert("utm_campaign".into(), "{workflow}-{step}".into());
        let none = WorkflowTracking::default();
        let t = project.for_email(&none, true, ("deal", "first"));
        assert!(t.clicks && !t.opens);
        assert_eq!(
            t.utm,
            [
                ("utm_source".to_string(), "tidings".to_string()),
                ("utm_campaign".to_string(), "deal-first".to_string())
            ]
        );
        assert!(!project.for_email(&none, false, ("r", "s")).clicks);
        let asks = WorkflowTracking {
            clicks: Some(true),
            opens: Some(true),
            utm: Some(BTreeMap::new()),
        };
        let t = project.for_email(&asks, false, ("r", "s"));
        assert!(t.clicks && t.opens && t.utm.is_empty());
    }
}
