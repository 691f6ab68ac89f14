//! Runs test cases: each on a fresh in-memory SQLite store and a virtual clock, through the
//! engine's own passes (the same code the daemon runs), with emails recorded as sent but
//! sent nowhere and webhooks never called. Cases run in parallel.

mod engage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};

use crate::config::{Config, EmailConfig};
use crate::delivery::{DispatchOptions, Transport};
use crate::engine::Engine;
use crate::import;
use crate::pass::Runner;
use crate::rehearsal::workflow_tests::spec::{Action, Case, EmailMatch, Suite};
use crate::source::diagnostic::Span;
use crate::store::Store;
use crate::store::deliveries::SentEmail;
use crate::store::{deliveries, enrollments};
use crate::workflow::plan::Plan;

/// The longest the clock jumps without a pass. Every moment something can happen is
/// computed, so this is only a backstop; a day keeps `advance: 365d` to 365 passes.
const MAX_JUMP: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// How one case ended.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub workflow: String,
    pub name: String,
    /// The case's `name:`.
    pub span: Span,
    pub failure: Option<Failure>,
    pub elapsed: Duration,
}

/// The first expectation that did not hold.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The expectation's position (or the case's, when it could not run).
    pub span: Span,
    pub message: String,
    /// The expectation, as one line of the diff.
    pub expected: Option<String>,
    /// Every email sent in the case so far, and whether an earlier expectation matched it.
    pub sent: Vec<(bool, SentEmail)>,
    /// The workflow's journeys, for a failed `expect_exit`.
    pub journeys: Vec<String>,
}

/// Runs every case of `suites` against `plan`, at most `jobs` at once; results in the
/// order of the files.
pub fn run_all(plan: &Plan, config: &Config, suites: &[Suite], jobs: usize) -> Vec<CaseResult> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(jobs.clamp(1, 8))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return suites
                .iter()
                .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
                .map(|(s, c)| {
                    could_not_run(&s.workflow, c, format!("no runtime: {e}"), Duration::ZERO)
                })
                .collect();
        }
    };
    let mut config = config.clone();
    // Test mail never leaves, so it is not signed and needs no key.
    config.email = EmailConfig {
        dkim: None,
        ..config.email
    };
    let config = Arc::new(config);
    // Every case has a result: one that could not start or whose task died (a panic) is
    // a failure in its place, never a case that silently went missing from the count.
    let cases: Vec<(&Suite, &Case)> = suites
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s, c)))
        .collect();
    let mut results: Vec<Option<CaseResult>> = vec![None; cases.len()];
    runtime.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
        let mut set = tokio::task::JoinSet::new();
        let mut plans: HashMap<&str, Arc<Plan>> = HashMap::new();
        for (i, (suite, case)) in cases.iter().enumerate() {
            let only = match plans.get(suite.workflow.as_str()) {
                Some(p) => p.clone(),
                None => match plan.only(std::slice::from_ref(&suite.workflow)) {
                    Ok(p) => {
                        let p = Arc::new(p);
                        plans.insert(&suite.workflow, p.clone());
                        p
                    }
                    Err(e) => {
                        results[i] = Some(could_not_run(&suite.workflow, case, e, Duration::ZERO));
                        continue;
                    }
                },
            };
            let (config, case, limit) = (config.clone(), (*case).clone(), limit.clone());
            let workflow = suite.workflow.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, run_case(only, &config, &workflow, &case).await)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done {
                results[i] = Some(r);
            }
        }
    });
    results
        .into_iter()
        .zip(&cases)
        .map(|(r, (suite, case))| {
            r.unwrap_or_else(|| {
                could_not_run(
                    &suite.workflow,
                    case,
                    "it stopped on an internal error (see the message above); please report it"
                        .to_string(),
                    Duration::ZERO,
                )
            })
        })
        .collect()
}

fn could_not_run(workflow: &str, case: &Case, message: String, elapsed: Duration) -> CaseResult {
    CaseResult {
        workflow: workflow.to_string(),
        name: case.name.clone(),
        span: case.span.clone(),
        failure: Some(Failure {
            span: case.span.clone(),
            message: format!("the case could not run: {message}"),
            expected: None,
            sent: Vec::new(),
            journeys: Vec::new(),
        }),
        elapsed,
    }
}

pub async fn run_case(plan: Arc<Plan>, config: &Config, workflow: &str, case: &Case) -> CaseResult {
    let started = Instant::now();
    let failure = match Run::start(plan, config, workflow, case).await {
        Ok(mut run) => match run.steps(case).await {
            Ok(f) => f,
            Err(e) => Some(could_not_run(workflow, case, e, Duration::ZERO).failure).flatten(),
        },
        Err(e) => Some(could_not_run(workflow, case, e, Duration::ZERO).failure).flatten(),
    };
    CaseResult {
        workflow: workflow.to_string(),
        name: case.name.clone(),
        span: case.span.clone(),
        failure,
        elapsed: started.elapsed(),
    }
}

/// One case in progress.
struct Run {
    store: Store,
    /// The same pass as `run --once` runs, over the case's store.
    runner: Runner,
    plan: Arc<Plan>,
    workflow: String,
    now: DateTime<Utc>,
    /// Deliveries an `expect_email` has matched.
    matched: HashSet<String>,
    /// Step id to the template it sends.
    templates: HashMap<String, String>,
}

impl Run {
    async fn start(
        plan: Arc<Plan>,
        config: &Config,
        workflow: &str,
        case: &Case,
    ) -> Result<Self, String> {
        let store = Store::open_scratch("sqlite::memory:").await.map_err(why)?;
        let report = store
            .import_customers(import::customers_of(&case.customers).into_iter(), false)
            .await
            .map_err(why)?;
        if let Some(e) = report.errors.first() {
            return Err(format!("fixture customer {}: {}", e.line, e.message));
        }
        let report = store
            .import_orders(
                import::orders_of(&case.orders).into_iter(),
                false,
                case.start,
            )
            .await
            .map_err(why)?;
        if let Some(e) = report.errors.first() {
            return Err(format!("fixture order {}: {}", e.line, e.message));
        }
        let templates = plan
            .workflow(workflow)
            .map(|wf| wf.email_templates().into_iter().collect())
            .unwrap_or_default();
        let options = DispatchOptions::from_config(
            &config.email,
            &crate::config::Settings::of(config),
            std::path::Path::new("."),
            true,
        )
        .map_err(why)?;
        let engine =
            Engine::new(plan.clone(), store.clone(), config.clone()).with_pins(case.pins.clone());
        let mut run = Self {
            runner: Runner::rehearsal(engine, store.clone(), Transport::Discard, options),
            store,
            plan,
            workflow: workflow.to_string(),
            now: case.start,
            matched: HashSet::new(),
            templates,
        };
        run.record(&case.events).await?;
        run.pass().await?;
        Ok(run)
    }

    async fn record(&mut self, events: &[Map<String, Json>]) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let report = self
            .store
            .record_events(import::events_of(events, self.now).into_iter(), false)
            .await
            .map_err(why)?;
        match report.errors.first() {
            Some(e) => Err(e.message.clone()),
            None => Ok(()),
        }
    }

    /// An order the shop reports now (unless it says when it was placed).
    async fn order(&mut self, row: &Map<String, Json>) -> Result<(), String> {
        let mut row = row.clone();
        row.entry("placed_at")
            .or_insert_with(|| Json::String(self.now.to_rfc3339()));
        let report = self
            .store
            .import_orders(import::orders_of(&[row]).into_iter(), false, self.now)
            .await
            .map_err(why)?;
        match report.errors.first() {
            Some(e) => Err(e.message.clone()),
            None => Ok(()),
        }
    }

    /// The engine's pass at the case's time, then the outbox into nowhere.
    async fn pass(&mut self) -> Result<(), String> {
        self.runner.pass(self.now).await.map_err(why)?;
        Ok(())
    }

    async fn sent(&self) -> Result<Vec<SentEmail>, String> {
        let mut conn = self.store.connection().await.map_err(why)?;
        let mut sent = deliveries::sent_emails(&mut conn).await.map_err(why)?;
        for s in &mut sent {
            if let Some(t) = self.templates.get(&s.step) {
                s.template = t.clone();
            }
        }
        Ok(sent)
    }

    /// Runs the steps; the first expectation that fails, if one does.
    async fn steps(&mut self, case: &Case) -> Result<Option<Failure>, String> {
        for (span, action) in &case.steps {
            let failed = match action {
                Action::Advance(by) => {
                    self.advance(*by).await?;
                    None
                }
                Action::Event(row) => {
                    self.record(std::slice::from_ref(row)).await?;
                    self.pass().await?;
                    None
                }
                Action::Order(row) => {
                    self.order(row).await?;
                    self.pass().await?;
                    None
                }
                Action::UpdateCustomer { customer, set } => {
                    let mut row = Map::new();
                    row.insert("customer_id".into(), Json::String(customer.clone()));
                    row.insert("name".into(), Json::String("customer_updated".into()));
                    row.insert("set".into(), Json::Object(set.clone()));
                    self.record(&[row]).await?;
                    self.pass().await?;
                    None
                }
                Action::ExpectEmail(m) => self.expect_email(span, m).await?,
                Action::ExpectNoEmail(m) => self.expect_no_email(span, m).await?,
                Action::ExpectCoupon { email, prefix } => {
                    self.expect_coupon(span, email, prefix.as_deref()).await?
                }
                Action::ExpectStage { customer, stage } => {
                    self.expect_stage(span, customer, stage).await?
                }
                Action::ExpectExit { customer, reason } => {
                    self.expect_exit(span, customer.as_deref(), reason).await?
                }
                Action::Engage { email, act } => self.engage(span, email, act).await?,
                Action::ExpectVariant { customer, variant } => {
                    self.expect_variant(span, customer, variant).await?
                }
                Action::ExpectGoal {
                    customer,
                    converted,
                    value,
                } => self.expect_goal(span, customer, *converted, *value).await?,
            };
            if failed.is_some() {
                return Ok(failed);
            }
        }
        Ok(None)
    }

    /// Moves the clock on by `by`, running the engine at every moment something is due.
    async fn advance(&mut self, by: chrono::TimeDelta) -> Result<(), String> {
        let target = self
            .now
            .checked_add_signed(by)
            .ok_or_else(|| format!("the clock cannot advance {by} past {}", self.now))?;
        while self.now < target {
            // Asked afresh: a case's own steps write between passes.
            let due = crate::store::look::next_due(&self.store, self.now)
                .await
                .map_err(why)?;
            let next = crate::rehearsal::simulate::next_moment(
                &self.store,
                &self.plan,
                self.now,
                MAX_JUMP,
                due,
            )
            .await
            .map_err(why)?;
            self.now = next.min(target);
            self.pass().await?;
        }
        Ok(())
    }

    async fn expect_email(
        &mut self,
        span: &Span,
        m: &EmailMatch,
    ) -> Result<Option<Failure>, String> {
        let sent = self.sent().await?;
        match sent
            .iter()
            .find(|s| !self.matched.contains(&s.id) && matches(m, s))
        {
            Some(s) => {
                self.matched.insert(s.id.clone());
                Ok(None)
            }
            None => {
                let message = format!("expected {}; it was not sent", m.describe());
                Ok(Some(self.failure(span, message, Some(m.describe()), sent)))
            }
        }
    }

    async fn expect_no_email(
        &mut self,
        span: &Span,
        m: &EmailMatch,
    ) -> Result<Option<Failure>, String> {
        let sent = self.sent().await?;
        let extra = sent
            .iter()
            .filter(|s| !self.matched.contains(&s.id) && matches(m, s))
            .count();
        if extra == 0 {
            return Ok(None);
        }
        let what = if m == &EmailMatch::default() {
            "no other email".to_string()
        } else {
            format!("no {}", m.describe().trim_start_matches("any "))
        };
        let message = format!(
            "expected {what}, but {extra} more {} sent",
            if extra == 1 { "was" } else { "were" }
        );
        Ok(Some(self.failure(span, message, None, sent)))
    }

    async fn expect_coupon(
        &mut self,
        span: &Span,
        email: &EmailMatch,
        prefix: Option<&str>,
    ) -> Result<Option<Failure>, String> {
        let sent = self.sent().await?;
        let ok = sent.iter().any(|s| {
            matches(email, s)
                && s.coupon
                    .as_deref()
                    .is_some_and(|c| prefix.is_none_or(|p| c.starts_with(&format!("{p}-"))))
        });
        if ok {
            return Ok(None);
        }
        let coupon = prefix.map_or("a coupon".to_string(), |p| format!("a `{p}-` coupon"));
        let message = format!("expected {} with {coupon}; none was sent", email.describe());
        let expected = Some(format!("{} with {coupon}", email.describe()));
        Ok(Some(self.failure(span, message, expected, sent)))
    }

    async fn expect_stage(
        &mut self,
        span: &Span,
        customer: &str,
        stage: &str,
    ) -> Result<Option<Failure>, String> {
        let mut conn = self.store.connection().await.map_err(why)?;
        let now = crate::store::stages::current(&mut conn, customer)
            .await
            .map_err(why)?;
        drop(conn);
        if now.as_deref() == Some(stage) {
            return Ok(None);
        }
        let is = now.map_or("in no stage".to_string(), |s| format!("in `{s}`"));
        let message = format!("expected {customer} in stage `{stage}`, but they are {is}");
        Ok(Some(self.failure(span, message, None, Vec::new())))
    }

    async fn expect_exit(
        &mut self,
        span: &Span,
        customer: Option<&str>,
        reason: &str,
    ) -> Result<Option<Failure>, String> {
        let mut conn = self.store.connection().await.map_err(why)?;
        let all = enrollments::enrollments(&mut conn).await.map_err(why)?;
        drop(conn);
        let mine: Vec<_> = all
            .iter()
            .filter(|(wf, c, ..)| *wf == self.workflow && customer.is_none_or(|x| x == c))
            .collect();
        // `exit_when` is the journeys `exit_when` ended (stored as `converted`, the word
        // earlier tests used and that still passes).
        let state_of = |s: &str| if s == "exit_when" { "converted" } else { s }.to_string();
        let ended = mine.iter().any(|(_, _, state, why, _)| {
            *state == state_of(reason) || (state == "exited" && why.as_deref() == Some(reason))
        });
        if ended {
            return Ok(None);
        }
        let whose = customer.map_or(String::new(), |c| format!(" for {c}"));
        let message = format!("expected the journey{whose} to end `{reason}`");
        let mut failure = self.failure(span, message, None, Vec::new());
        failure.journeys = mine
            .iter()
            .map(|(_, c, state, why, error)| {
                let detail = why
                    .as_deref()
                    .or(error.as_deref())
                    .map_or(String::new(), |w| format!(" ({w})"));
                let shown = if state == "converted" {
                    "exit_when"
                } else {
                    state
                };
                format!("{c}: {shown}{detail}")
            })
            .collect();
        if failure.journeys.is_empty() {
            failure
                .journeys
                .push("no journey: nobody entered the workflow".into());
        }
        Ok(Some(failure))
    }

    fn failure(
        &self,
        span: &Span,
        message: String,
        expected: Option<String>,
        sent: Vec<SentEmail>,
    ) -> Failure {
        Failure {
            span: span.clone(),
            message,
            expected,
            sent: sent
                .into_iter()
                .map(|s| (self.matched.contains(&s.id), s))
                .collect(),
            journeys: Vec::new(),
        }
    }
}

/// An error with its causes, for the case's failure line.
fn why<E: std::error::Error>(e: E) -> String {
    crate::source::diagnostic::error_chain(&e)
}

fn matches(m: &EmailMatch, s: &SentEmail) -> bool {
    m.template.as_ref().is_none_or(|t| *t == s.template)
        && m.to
            .as_ref()
            .is_none_or(|to| to.eq_ignore_ascii_case(&s.to) || *to == s.customer_id)
        && m.at.is_none_or(|at| at == s.at)
        && m.subject_contains
            .as_ref()
            .is_none_or(|x| s.subject.contains(x.as_str()))
}
