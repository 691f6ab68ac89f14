//! `tidings outbox [list|retry|cancel|show]`: what the operator needs when mail is stuck.

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
    if args.action == OutboxAction::Show {
        let Some(id) = &args.id else {
            return Err(CommandError::Usage(
                "name the email to show: `tidings outbox show ID` (the id is the last column of `outbox list`)".into(),
            ));
        };
        return show(root, id);
    }
    if args.id.is_some() {
        return Err(CommandError::Usage(
            "only `outbox show` takes an email's id; select the emails to list, retry or cancel with --workflow, --customer and --state".into(),
        ));
    }
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
            OutboxAction::Show => {}
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
    let (ws, ww, wp, wr) = (
        width(|d| d.state.as_str(), 5),
        width(|d| &d.workflow, 8),
        width(|d| &d.step, 4),
        width(|d| &d.recipient, 9),
    );
    if !rows.is_empty() {
        writeln!(
            out,
            "{:<16}  {:<ws$}  {:<ww$}  {:<wp$}  {:<wr$}  id",
            "due (UTC)", "state", "workflow", "step", "recipient"
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
            "{}  {:<ws$}  {:<ww$}  {:<wp$}  {:<wr$}  {}{error}",
            d.due_at.format("%Y-%m-%d %H:%M"),
            d.state,
            d.workflow,
            d.step,
            d.recipient,
            d.id,
        )?;
    }
    Ok(())
}

/// `outbox show ID`: the email's row, then its body while it is kept, or when it was
/// dropped and how to see it again.
fn show(root: &Path, id: &str) -> Result<ExitCode, CommandError> {
    let (runtime, project, store) = open_store(root)?;
    let shown = runtime.block_on(async {
        let mut conn = store.connection().await?;
        crate::store::retention::shown(&mut conn, id).await
    });
    runtime.block_on(store.close());
    let Some(shown) = shown? else {
        return Err(CommandError::Usage(format!(
            "no email `{id}` in the outbox; `tidings outbox list` shows their ids"
        )));
    };
    let d = &shown.row;
    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "id          {}", d.id)?;
    writeln!(out, "workflow    {} (step {})", d.workflow, d.step)?;
    writeln!(out, "customer    {} <{}>", d.customer_id, d.recipient)?;
    if let Some(subject) = &d.subject {
        writeln!(out, "subject     {subject}")?;
    }
    let sent = shown.sent_at.map(|t| format!(", sent {}", when(t)));
    writeln!(
        out,
        "state       {} (due {}{}, {} attempts)",
        d.state,
        when(d.due_at),
        sent.unwrap_or_default(),
        d.attempts
    )?;
    if let Some(error) = &d.last_error {
        writeln!(out, "last error  {error}")?;
    }
    writeln!(out, "message-id  {}", d.message_id)?;
    if !shown.body_kept {
        let keep = &project.config.retention.bodies;
        writeln!(
            out,
            "body        dropped: kept for {keep} after the email was done (`retention.bodies`); `tidings preview {} {} --customer {}` renders it as it would be now",
            d.workflow, d.step, d.customer_id
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(call @ crate::model::payload::Payload::Webhook(_)) = &d.payload {
        writeln!(out, "\n{}", call.to_json().unwrap_or_default())?;
    }
    match (&d.text, &d.html) {
        (Some(text), _) => writeln!(out, "\n{text}")?,
        (None, Some(html)) => writeln!(out, "\n{html}")?,
        (None, None) => {}
    }
    Ok(ExitCode::SUCCESS)
}
