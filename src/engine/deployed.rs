//! The workflow set a store last ran, as fingerprints: `run` and the daemon record it when
//! an engine first passes, so that `tidings plan` can tell a reviewer what a change does to
//! what is running, without a git ref to compare with.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, put_setting, setting};
use crate::workflow::plan::{Plan, Workflow};

const SETTING: &str = "deployed_workflows";

/// One workflow as far as a comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowPrint {
    pub name: String,
    /// A hash of the workflow file and every template it sends: equal prints, equal mail.
    pub digest: String,
    /// Every step id, in order: where a running enrollment can stand.
    pub steps: Vec<String>,
}

/// The set a store last ran, and when that engine started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployedSet {
    pub at: DateTime<Utc>,
    pub workflows: Vec<WorkflowPrint>,
}

impl WorkflowPrint {
    pub fn of(wf: &Workflow, plan: &Plan) -> Self {
        let mut text = String::from(wf.file.text());
        let mut files = wf.template_files();
        files.sort();
        files.dedup();
        for name in files {
            text.push('\0');
            text.push_str(&name);
            text.push('\0');
            if let Some(f) = plan.templates.file(&name) {
                text.push_str(f.text());
            }
        }
        Self {
            name: wf.name.clone(),
            digest: format!("{:016x}", crate::model::ids::fnv(&text)),
            steps: wf.all_steps().iter().map(|s| s.id.clone()).collect(),
        }
    }
}

pub fn prints(plan: &Plan) -> Vec<WorkflowPrint> {
    plan.workflows
        .iter()
        .map(|w| WorkflowPrint::of(w, plan))
        .collect()
}

pub async fn record(store: &Store, plan: &Plan, at: DateTime<Utc>) -> Result<(), StoreError> {
    let set = DeployedSet {
        at,
        workflows: prints(plan),
    };
    let text = serde_json::to_string(&set).unwrap_or_default();
    let mut conn = store.connection().await?;
    put_setting(&mut conn, SETTING, &text).await
}

/// The recorded set; `None` when nothing ran yet (or a record this version cannot read).
pub async fn load(store: &Store) -> Result<Option<DeployedSet>, StoreError> {
    let mut conn = store.connection().await?;
    Ok(setting(&mut conn, SETTING)
        .await?
        .and_then(|t| serde_json::from_str(&t).ok()))
}
