//! The command line: clap definitions and the dispatch to `commands`. Nothing else.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::source::diagnostic::Format;

#[derive(Debug, Parser)]
#[command(
    name = "tidings",
    version,
    about = "Lifecycle-marketing workflows kept in git: validate, test, preview and run them.",
    propagate_version = true
)]
pub struct Cli {
    /// The workflows repository (where `tidings.yaml` lives).
    #[arg(
        short = 'C',
        long,
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub project: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

/// `--progress`, on the commands that show a progress line (`run`, `import`, `simulate`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ProgressArg {
    /// A progress line on stderr: on a terminal (`auto`), `always` (the final line only,
    /// when not a terminal) or `never`.
    #[arg(long, value_enum, default_value_t = crate::progress::ProgressMode::Auto)]
    pub progress: crate::progress::ProgressMode,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files and templates; report every problem with file, line and column.
    Validate(ValidateArgs),
    /// Print the next fire times of a schedule- or date-triggered workflow.
    Schedule(ScheduleArgs),
    /// Load customers, events or orders from a CSV or JSONL file into the store.
    Import(ImportArgs),
    /// Record one event for a customer.
    Event(EventArgs),
    /// Read the shop's own database (`sources:` in tidings.yaml) from where the last sync
    /// stopped: customers, then orders.
    Sync(SyncArgs),
    /// Run one pass of every trigger and every due step, then exit.
    Run(RunArgs),
    /// Backfill: enroll the customers a workflow would have taken had it been running —
    /// its trigger's past events, or the customers an audience keeps. `--dry-run` shows
    /// who would enter.
    Enroll(EnrollArgs),
    /// Rehearse a time window on a copy of the store: what would be sent, when, to whom.
    Simulate(SimulateArgs),
    /// The operator's view of queued and sent emails: list, retry, cancel.
    Outbox(OutboxArgs),
    /// What the workflows would do now, and what a change does to running journeys: a
    /// table for a pull request.
    Plan(PlanArgs),
    /// Customers per lifecycle stage; journeys and emails per workflow.
    Status(StatusArgs),
    /// Each workflow's experiment: per variant and the holdout, conversion with a 95%
    /// interval, revenue, lift, and a verdict.
    Results(ResultsArgs),
    /// One self-contained HTML page with charts: stages, stage flow, funnels, sends per day.
    Report(ReportArgs),
    /// Show a workflow's emails as one customer will see them.
    Preview(PreviewArgs),
    /// Run the workflows' behaviour tests (`tests:` blocks and `NAME.test.yaml` files).
    Test(TestArgs),
    /// Run continuously: passes on a timer, and the HTTP endpoints (unsubscribe links,
    /// bounce and complaint reports, health).
    ///
    /// The write endpoints (`POST /v1/...`) take `Authorization: Bearer TOKEN` with the
    /// token of `server.token` in tidings.yaml or, when that is not set, of the
    /// environment variable TIDINGS_API_TOKEN; with neither they are off (403).
    Daemon(DaemonArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The workflow's name.
    pub workflow: String,
    /// For a workflow started by an event: replay its trigger's events since this date or
    /// time (`2026-11-23`); each customer enters as of their event.
    #[arg(long)]
    pub since: Option<String>,
    /// Only customers this Rhai expression keeps, besides the workflow's own audience
    /// (`days_since(customer.first_order_at) <= 7`). Required for a workflow started by a
    /// schedule or a date.
    #[arg(long)]
    pub audience: Option<String>,
    /// For a workflow started by a schedule or a date: the moment the customers enter
    /// (date or RFC 3339; default now).
    #[arg(long = "as-of")]
    pub as_of: Option<String>,
    /// Show who would enter and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The present moment (RFC 3339; default now): events after it are not replayed.
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Compare with the workflows at this git ref (default: the set the store last ran).
    #[arg(long, value_name = "REF")]
    pub against: Option<String>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Markdown)]
    pub format: PlanFormat,
    /// The moment to plan from (RFC 3339; default now).
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// A table to paste into a pull request.
    Markdown,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Where to write the page.
    #[arg(long, value_name = "FILE", default_value = "report.html")]
    pub out: std::path::PathBuf,
    /// Weeks of stage flow to chart.
    #[arg(long, default_value_t = 8)]
    pub weeks: u32,
    /// Days of sends to chart.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// The moment the report is made at (RFC 3339; default now).
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// One JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ResultsArgs {
    /// One workflow (default: every workflow).
    pub workflow: Option<String>,
    /// Only journeys that entered since this date or time (`2026-06-01`).
    #[arg(long)]
    pub since: Option<String>,
    /// `table` for people, `json` for programs, `markdown` for a pull request.
    #[arg(long, value_enum, default_value_t = ResultsFormat::Table)]
    pub format: ResultsFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultsFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// The workflow's name.
    pub workflow: String,
    /// One email step's id (default: every email of the workflow).
    pub step: Option<String>,
    /// The customer, from the store.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// A generated customer with every field set.
    #[arg(long)]
    pub sample: bool,
    /// Every locale the templates have, and the default.
    #[arg(long)]
    pub all_locales: bool,
    /// Render as of this time (RFC 3339; default now).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Write an HTML page here instead of printing.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write the HTML page to the temp folder and print its path.
    #[arg(long)]
    pub open: bool,
    /// The triggering event, for an event-triggered workflow: JSON such as
    /// `{"properties": {"product": "Teapot"}}`, or `@FILE` holding it (default: a sample).
    #[arg(long, value_name = "JSON")]
    pub event: Option<String>,
    /// Send the emails to this address through the configured transport, as proofs:
    /// `[proof]` before the subject and `X-Tidings-Proof: 1`; nothing is recorded.
    #[arg(long, value_name = "ADDRESS")]
    pub send_to: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Workflow or test files, or folders, whose tests to run (default: all).
    pub paths: Vec<PathBuf>,
    /// `human`, `json`, `github` (Actions annotations) or `junit` (XML).
    #[arg(long, value_enum, default_value = "human")]
    pub format: TestFormat,
    /// Cases run at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    Human,
    Json,
    Github,
    Junit,
}

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Where to serve HTTP (default: `server.listen` of tidings.yaml).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Time between passes, e.g. `15s` or `1m`.
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    pub every: String,
    /// `text` for people, `json` (one object a line) for a log pipeline.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutboxAction {
    /// Show the selected emails (newest first).
    List,
    /// Queue failed, unknown or retrying emails to go on the next pass.
    Retry,
    /// Cancel emails that have not left yet.
    Cancel,
    /// Show one email (its id from `outbox list`): its row and, while `retention.bodies`
    /// keeps it, its body.
    Show,
}

#[derive(Debug, clap::Args)]
pub struct OutboxArgs {
    #[arg(value_enum, default_value = "list")]
    pub action: OutboxAction,
    /// The email `show` shows.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Only this workflow's emails.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only this customer's emails.
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Only emails in these states (repeatable): pending, sending, sent, retrying, failed,
    /// suppressed, unknown, cancelled, skipped.
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,
    /// How many to list.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub progress: ProgressArg,
    /// Where the rehearsal starts: a date (midnight UTC) or an RFC 3339 time (default now).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Where it ends (inclusive): a date (midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Write each email as an `.eml` file here, plus `summary.csv`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only these workflows (repeatable; default all).
    #[arg(long = "workflow", value_name = "NAME")]
    pub workflows: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub progress: ProgressArg,
    /// Required: one pass and exit (`tidings daemon` runs continuously).
    #[arg(long, required = true)]
    pub once: bool,
    /// The pass's time (RFC 3339; default now).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportKind {
    Customers,
    Events,
    /// The shop's orders, upserted by id: each customer's order figures follow from them.
    Orders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub progress: ProgressArg,
    /// What the file holds.
    #[arg(value_enum)]
    pub kind: ImportKind,
    /// A CSV file with a header row, or JSONL (one object a line); `-` reads stdin.
    pub file: PathBuf,
    /// The file's format (default: from its extension; `.jsonl`/`.ndjson` are JSONL).
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Write the good rows and list the bad ones, instead of writing nothing.
    #[arg(long)]
    pub skip_invalid: bool,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// One source of tidings.yaml (default: every source).
    pub source: Option<String>,
    /// Read and check every row, keep nothing (the cursors stay where they are).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// The event's name, e.g. `order_placed`.
    pub name: String,
    /// The customer's id.
    #[arg(long, value_name = "ID")]
    pub customer: String,
    /// Properties as a JSON object; `{"set": {...}}` inside changes the customer.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// When it happened (RFC 3339; default now).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// An idempotency key: recording the same id twice records one event.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Workflow files or folders to check (default: the configured workflows folder).
    pub paths: Vec<PathBuf>,
    /// Output shape: `human` for people, `json` for programs, `github` for Actions annotations.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// The workflow's name.
    pub name: String,
    /// How many fire times to print.
    #[arg(long, default_value_t = 10)]
    pub count: usize,
    /// Start after this time (RFC 3339, e.g. 2026-03-01T00:00:00Z; default: now).
    #[arg(long, value_name = "TIME")]
    pub after: Option<String>,
    /// For a date trigger: the customer's date, e.g. 2000-02-29.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<String>,
    /// The zone for a date trigger or a `timezone: customer` schedule (default UTC).
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
}
