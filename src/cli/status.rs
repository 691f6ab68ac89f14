//! `tidings status`: customers per lifecycle stage, and per workflow the journeys (active,
//! completed, converted, exited, failed) and emails (sent, failed, suppressed, waiting).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::analysis::counts::{
    EMAILS, JOURNEYS, emails, journey_label, journeys, order, stage_rows,
};
use crate::cli::args::StatusArgs;
use crate::cli::shared::{CommandError, open_store};
use crate::store::rates::{Rates, rates};
use crate::store::results::{Arm, arms};
use crate::store::sources::FeedStatus;
use crate::store::status::{Counts, counts};
use crate::sync::rows::plain;
use crate::workflow::compile::compile_project;

pub fn run(root: &Path, args: &StatusArgs) -> Result<ExitCode, CommandError> {
    let (runtime, project, store) = open_store(root)?;
    let compiled = compile_project(&project, &[]);
    let (c, r, x, t, s) = runtime.block_on(async {
        let mut conn = store.connection().await?;
        let c = counts(&mut conn).await?;
        let r = rates(&mut conn).await?;
        let x = arms(&mut conn, chrono::DateTime::<chrono::Utc>::MIN_UTC).await?;
        let t = crate::store::topics::counts(&mut conn).await?;
        drop(conn);
        let s = store.source_status().await?;
        Ok::<_, crate::store::StoreError>((c, r, x, t, s))
    })?;
    runtime.block_on(store.close());
    let (stage_order, workflows) = order(&compiled.plan, &c);
    let text = if args.json {
        let mut doc = json(&c, &r, &x, &stage_order, &workflows);
        // Customers opted out of each topic of tidings.yaml.
        let topics: serde_json::Map<String, serde_json::Value> = project
            .config
            .topics
            .keys()
            .map(|k| (k.clone(), t.get(k).copied().unwrap_or(0).into()))
            .collect();
        doc["opted_out"] = topics.into();
        doc["sources"] = sources_json(&s, chrono::Utc::now());
        format!("{doc:#}\n")
    } else {
        let mut text = table(&c, &stage_order, &workflows);
        text.push_str(&too_old_events(&c));
        text.push_str(&failed_webhooks(&c));
        text.push_str(&engagement_table(&r, &workflows));
        text.push_str(&experiment_table(&x));
        for topic in project.config.topics.keys() {
            let n = t.get(topic).copied().unwrap_or(0);
            let _ = writeln!(text, "topic `{topic}`: {n} opted out");
        }
        text.push_str(&sources_table(&s, chrono::Utc::now()));
        text
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Each source's feeds: where the cursor is, rows read and refused, how far behind, and
/// the last error.
fn sources_table(feeds: &[FeedStatus], now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::new();
    if feeds.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<24} {:>10} {:>8} {:>10}  cursor",
        "source", "rows read", "refused", "lag"
    );
    for f in feeds {
        let lag = crate::sync::lag(f.caught_up_at, now)
            .map_or("never".to_string(), crate::time::duration::format);
        let cursor = f.position.as_ref().map_or("(start)".to_string(), |p| {
            format!("updated_at {} id {}", plain(&p.updated_at), plain(&p.id))
        });
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>8} {:>10}  {cursor}",
            format!("{}/{}", f.source, f.feed),
            f.rows_read,
            f.rows_refused,
            lag
        );
        if let Some(e) = &f.last_error {
            let _ = writeln!(out, "  last error: {e}");
        }
    }
    out
}

fn sources_json(feeds: &[FeedStatus], now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let stamp = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    feeds
        .iter()
        .map(|f| {
            serde_json::json!({
                "source": f.source,
                "feed": f.feed,
                "cursor": f.position.as_ref().map(|p| serde_json::json!({"updated_at": p.updated_at, "id": p.id})),
                "rows_read": f.rows_read,
                "rows_refused": f.rows_refused,
                "last_run_at": stamp(f.last_run_at),
                "caught_up_at": stamp(f.caught_up_at),
                "lag_seconds": crate::sync::lag(f.caught_up_at, now).map(|d| d.num_seconds()),
                "last_error": f.last_error,
                "last_error_at": stamp(f.last_error_at),
            })
        })
        .collect()
}

pub fn table(c: &Counts, order: &[String], workflows: &[String]) -> String {
    let mut out = String::new();
    let customers: i64 = c.stages.values().sum();
    let _ = writeln!(out, "customers: {customers}");
    if !order.is_empty() {
        let _ = writeln!(out, "\n{:<20} {:>10}", "stage", "customers");
        for (stage, n) in stage_rows(c, order) {
            let _ = writeln!(out, "{stage:<20} {n:>10}");
        }
    }
    let width = workflows.iter().map(String::len).max().unwrap_or(8).max(8);
    let _ = writeln!(
        out,
        "\n{:<width$} {:>49} │ {:>54}",
        "", "journeys", "emails"
    );
    let _ = write!(out, "{:<width$}", "workflow");
    for &h in JOURNEYS {
        let _ = write!(out, " {:>9}", journey_label(h));
    }
    let _ = write!(out, " │");
    for (h, _) in EMAILS {
        let _ = write!(out, " {h:>10}");
    }
    out.push('\n');
    for wf in workflows {
        let _ = write!(out, "{wf:<width$}");
        for &h in JOURNEYS {
            let _ = write!(out, " {:>9}", journeys(c, wf, h));
        }
        let _ = write!(out, " │");
        for (_, states) in EMAILS {
            let _ = write!(out, " {:>10}", emails(c, wf, states));
        }
        out.push('\n');
    }
    out
}

/// Events too old to start a journey, per name (nothing when there are none).
pub fn too_old_events(c: &Counts) -> String {
    let rows = c.too_old.iter().map(|(name, n)| (name.clone(), *n));
    counted(
        "events too old when first seen to start a journey (`triggers.max_event_age`; `tidings enroll --since` backfills)",
        rows,
    )
}

/// Webhook calls given up on, per step (nothing when none failed).
pub fn failed_webhooks(c: &Counts) -> String {
    let rows = (c.failed_webhooks.iter()).map(|((wf, step), n)| (format!("{wf}/{step}"), *n));
    counted(
        "webhook calls that failed (given up on; the journeys went on)",
        rows,
    )
}

/// A titled list of counts, or nothing when it is empty.
fn counted(title: &str, rows: impl Iterator<Item = (String, i64)>) -> String {
    let mut out = String::new();
    for (label, n) in rows {
        if out.is_empty() {
            let _ = writeln!(out, "\n{title}:");
        }
        let _ = writeln!(out, "  {label}: {n}");
    }
    out
}

/// Per email step: what came back, with the rates; then each survey question.
pub fn engagement_table(r: &Rates, workflows: &[String]) -> String {
    let mut out = String::new();
    let rows: Vec<_> = workflows.iter().flat_map(|wf| r.steps_of(wf)).collect();
    if rows.is_empty() {
        return out;
    }
    let label = |s: &crate::store::rates::StepRates| format!("{}/{}", s.workflow, s.step);
    let width = rows
        .iter()
        .map(|s| label(s).len())
        .max()
        .unwrap_or(8)
        .max(10);
    let _ = writeln!(
        out,
        "\n{:<width$} {:>8} {:>9} {:>7} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "email step",
        "sent",
        "delivered",
        "opened",
        "clicked",
        "click%",
        "answers",
        "unsubs",
        "bounces",
        "compl.",
        "answer%",
    );
    let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}", r * 100.0));
    for s in rows {
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>9} {:>7} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7} {:>9}",
            label(s),
            s.sent,
            s.delivered,
            s.opened,
            s.clicked,
            pct(s.click_rate()),
            s.answered,
            s.unsubscribed,
            s.bounced,
            s.complained,
            pct(s.answer_rate()),
        );
    }
    for q in &r.questions {
        let values: Vec<String> = q.values.iter().map(|(v, n)| format!("{v}: {n}")).collect();
        let _ = write!(out, "\nquestion `{}`: {} answers", q.question, q.answers);
        if let Some(nps) = q.nps {
            let _ = write!(
                out,
                ", NPS {nps:+.0} ({} promoters, {} passives, {} detractors)",
                q.promoters, q.passives, q.detractors
            );
        }
        let _ = writeln!(out, "\n  {}", values.join(", "));
    }
    out
}

/// Journeys per variant of the workflows that experiment (a split or a holdout); the
/// statistics are `tidings results`'.
fn experiment_table(x: &[Arm]) -> String {
    let mut out = String::new();
    let experimenting: Vec<&Arm> = x
        .iter()
        .filter(|a| {
            x.iter()
                .any(|b| b.workflow == a.workflow && b.variant.is_some())
        })
        .collect();
    if experimenting.is_empty() {
        return out;
    }
    let label = |a: &Arm| {
        format!(
            "{}/{}",
            a.workflow,
            a.variant
                .as_deref()
                .unwrap_or(crate::workflow::plan::NO_VARIANT)
        )
    };
    let width = experimenting
        .iter()
        .map(|a| label(a).len())
        .max()
        .unwrap_or(8)
        .max(10);
    let _ = writeln!(
        out,
        "\n{:<width$} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "variant", "entered", "emailed", "clicked", "converted", "revenue"
    );
    for a in experimenting {
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:>8} {:>8} {:>10} {:>10.2}",
            label(a),
            a.entered,
            a.emailed,
            a.clicked,
            a.converted,
            a.revenue
        );
    }
    let _ = writeln!(out, "(intervals, lift and a verdict: `tidings results`)");
    out
}

fn json(
    c: &Counts,
    r: &Rates,
    x: &[Arm],
    order: &[String],
    workflows: &[String],
) -> serde_json::Value {
    let stages: serde_json::Map<String, serde_json::Value> = stage_rows(c, order)
        .into_iter()
        .map(|(s, n)| (s, n.into()))
        .collect();
    let workflows: Vec<serde_json::Value> = workflows
        .iter()
        .map(|wf| {
            let journeys: serde_json::Map<String, serde_json::Value> = JOURNEYS
                .iter()
                .map(|&h| (journey_label(h).to_string(), journeys(c, wf, h).into()))
                .collect();
            let emails: serde_json::Map<String, serde_json::Value> = EMAILS
                .iter()
                .map(|(h, states)| (h.to_string(), emails(c, wf, states).into()))
                .collect();
            let mut engagement = r.workflow(wf).to_json();
            if let Some(m) = engagement.as_object_mut() {
                m.remove("step");
                m.remove("workflow");
            }
            let steps: Vec<serde_json::Value> = r.steps_of(wf).map(|s| s.to_json()).collect();
            engagement["steps"] = steps.into();
            let variants: Vec<&Arm> = x.iter().filter(|a| a.workflow == *wf).collect();
            let failed: serde_json::Map<String, serde_json::Value> = (c.failed_webhooks.iter())
                .filter(|((w, _), _)| w == wf)
                .map(|((_, step), n)| (step.clone(), (*n).into()))
                .collect();
            serde_json::json!({ "workflow": wf, "journeys": journeys, "emails": emails, "webhooks_failed": failed, "engagement": engagement, "variants": variants })
        })
        .collect();
    serde_json::json!({
        "customers": c.stages.values().sum::<i64>(),
        "stages": stages,
        "events_too_old": c.too_old,
        "workflows": workflows,
        "questions": r.questions,
    })
}
