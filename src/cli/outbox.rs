//! `tidings outbox [list|retry|cancel]`: what the operator needs when mail is stuck.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::args::{OutboxAction, OutboxArgs};
use crate::cli::shared::{CommandError, counted, open_store};
use crate::model::states::DeliveryState;
use crate::store::outbox::{self, Selection};

pub fn run(root: &Path, args: &OutboxArgs) -> Result<ExitCode, CommandError> {
    let states = args
        .state
        .iter()
        .map(|s| s.parse::<DeliveryState>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|bad| {
            let all: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
            CommandError::Usage(format!(
                "`{}` is not an outbox state; use one of {}",
                bad.text,
                all.join(", ")
            ))
        })?;
    if args.action != OutboxAction::List && args.workflow.is_none() && args.customer.is_none() {
        return Err(CommandError::Usage(
            "name the emails to act on with --workflow or --customer (or both)".into(),
        ));
    }
    let selection = Selection {
        workflow: args.workflow.clone(),
        customer_id: args.customer.clone(),
        states,
    };
    let (runtime, _project, store) = open_store(root)?;
    let mut out = std::io::stdout().lock();
    runtime.block_on(async {
        let mut conn = store.connection().await?;
        match args.action {
            OutboxAction::List => {
                let rows = outbox::list(&mut conn, &selection, args.limit.max(1)).await?;
                print_rows(&mut out, &rows)?;
                writeln!(out, "{}", counted(rows.len() as u64, "email"))?;
            }
            OutboxAction::Retry => {
                let n = outbox::retry(&mut conn, &selection, chrono::Utc::now()).await?;
                let they = if n == 1 { "it goes" } else { "they go" };
                let n = counted(n, "email");
                writeln!(out, "{n} queued again; {they} on the next pass")?;
            }
            OutboxAction::Cancel => {
                let n = outbox::cancel(&mut conn, &selection).await?;
                let codes = if n == 1 {
                    "its coupon code is"
                } else {
                    "their coupon codes are"
                };
                let n = counted(n, "email");
                writeln!(out, "{n} cancelled; {codes} released")?;
            }
        }
        Ok::<_, CommandError>(())
    })?;
    runtime.block_on(store.close());
    Ok(ExitCode::SUCCESS)
}

/// The rows under a header, each column as wide as its longest value (names of any length
/// line up).
fn print_rows(
    out: &mut impl std::io::Write,
    rows: &[crate::store::deliveries::DeliveryRow],
) -> std::io::Result<()> {
    let width = |f: fn(&crate::store::deliveries::DeliveryRow) -> &str, min: usize| {
        rows.iter()
            .map(|d| f(d).chars().count())
            .max()
            .unwrap_or(0)
            .max(min)
    };
    let (ws, ww, wp) = (
        width(|d| d.state.as_str(), 5),
        width(|d| &d.workflow, 8),
        width(|d| &d.step, 4),
    );
    if !rows.is_empty() {
        writeln!(
            out,
            "{:<16}  {:<ws$}  {:<ww$}  {:<wp$}  recipient",
            "due (UTC)", "state", "workflow", "step"
        )?;
    }
    for d in rows {
        let error = d
            .last_error
            .as_deref()
            .map(|e| format!("  ({e})"))
            .unwrap_or_default();
        writeln!(
            out,
            "{}  {:<ws$}  {:<ww$}  {:<wp$}  {}{error}",
            d.due_at.format("%Y-%m-%d %H:%M"),
            d.state,
            d.workflow,
            d.step,
            d.recipient,
        )?;
    }
    Ok(())
}
