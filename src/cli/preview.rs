//! `tidings preview WORKFLOW [STEP] --customer ID | --sample`: a workflow's emails as one
//! customer will see them — subject, text and HTML in their locale — on stdout, or as an
//! HTML page (`--out FILE`, or `--open` for a file in the temp folder).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::args::PreviewArgs;
use crate::cli::shared::{CommandError, compile_or_report, open_store, time_arg};
use crate::engine::{Engine, Rendered};
use crate::model::customer::{Customer, Event};
use crate::workflow::plan::StepKind;
use crate::workflow::templates::escape_html;

pub fn run(root: &Path, args: &PreviewArgs) -> Result<ExitCode, CommandError> {
    let at = time_arg(args.now.as_deref())?;
    if args.customer.is_some() == args.sample {
        return Err(CommandError::Usage(
            "say whose emails to show: `--customer ID` or `--sample`".into(),
        ));
    }
    let (runtime, project, store) = open_store(root)?;
    let Some(compiled) = compile_or_report(&project, "nothing to preview") else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = Arc::new(compiled.plan);
    let Some(wf) = plan.workflow(&args.workflow).cloned() else {
        return Err(CommandError::Usage(plan.no_such_workflow(&args.workflow)));
    };
    let customer = match (&args.customer, args.sample) {
        (Some(id), false) => runtime.block_on(store.customer(id))?.ok_or_else(|| {
            CommandError::Usage(format!(
                "no customer has the id `{id}`; import it, or use `--sample`"
            ))
        })?,
        _ => Customer::sample(at),
    };
    let locales = locales(&wf, args.all_locales);
    let event = match (&args.event, &wf.trigger) {
        (Some(text), _) => Some(event_arg(text, at)?),
        (None, crate::workflow::plan::Trigger::Event { name, .. }) => {
            eprintln!(
                "note: `{}` is triggered by `{name}`: a sample event is used (properties {}); pass `--event '{{\"properties\": {{...}}}}'` for another",
                wf.name,
                serde_json::Value::Object(Event::sample(name, at).properties)
            );
            None
        }
        (None, _) => None,
    };
    let engine = Engine::new(plan.clone(), store.clone(), project.config.clone());
    let mut rendered = Vec::new();
    for locale in &locales {
        let mut r = runtime.block_on(engine.preview(
            &wf.name,
            args.step.as_deref(),
            &customer,
            locale.as_deref(),
            event.as_ref(),
            at,
        ))?;
        rendered.append(&mut r);
    }
    runtime.block_on(store.close());
    if let Some(to) = &args.send_to {
        return send_proofs(&runtime, &project, &wf.name, &rendered, to);
    }
    let page = match (&args.out, args.open) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(
            std::env::temp_dir().join(format!("tidings-preview-{}-{}.html", wf.name, customer.id)),
        ),
        (None, false) => None,
    };
    let mut out = std::io::stdout().lock();
    match page {
        None => out.write_all(as_text(&wf.name, &rendered).as_bytes())?,
        Some(path) => {
            write_page(&path, &wf.name, &rendered)?;
            writeln!(out, "{}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The customer's own locale (`None`), or each locale the templates have, and the default.
fn locales(wf: &crate::workflow::plan::Workflow, all: bool) -> Vec<Option<String>> {
    if all {
        let mut tags: Vec<String> = wf
            .all_steps()
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::Email(e) => Some(e.files.variants.keys().cloned().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        tags.sort();
        tags.dedup();
        std::iter::once(Some(String::new()))
            .chain(tags.into_iter().map(Some))
            .collect()
    } else {
        vec![None]
    }
}

/// `--send-to`: each email through the configured transport, as a proof.
fn send_proofs(
    runtime: &tokio::runtime::Runtime,
    project: &crate::config::Project,
    workflow: &str,
    rendered: &[Rendered],
    to: &str,
) -> Result<ExitCode, CommandError> {
    if crate::delivery::envelope_address(to).is_err() {
        return Err(CommandError::Usage(format!(
            "--send-to: `{to}` is not an email address"
        )));
    }
    let settings = crate::config::Settings::of(&project.config);
    let setting = |e: crate::delivery::DeliveryError| CommandError::Failed(e.to_string());
    let transport = crate::delivery::configured_transport(project).map_err(setting)?;
    let options = crate::delivery::DispatchOptions::from_config(
        &project.config.email,
        &settings,
        &project.root,
        false,
    )
    .map_err(setting)?;
    let mut out = std::io::stdout().lock();
    for email in rendered {
        runtime
            .block_on(crate::delivery::proof::send_proof(
                &transport, &options, workflow, email, to,
            ))
            .map_err(setting)?;
        writeln!(
            out,
            "proof of `{}` ({}) sent to {to}",
            email.step,
            locale_label(email)
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--event`: a JSON object (`properties`, and optionally `at` and `id`), or `@FILE`.
fn event_arg(text: &str, at: chrono::DateTime<chrono::Utc>) -> Result<Event, CommandError> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| CommandError::Read {
            path: path.to_string(),
            source,
        })?,
        None => text.to_string(),
    };
    let usage = |m: &str| {
        CommandError::Usage(format!(
            "--event: {m}; e.g. `--event '{{\"properties\": {{\"product\": \"Teapot\"}}}}'`"
        ))
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(&format!("not JSON ({e})")))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(usage("expected a JSON object"));
    };
    let properties = match object.remove("properties") {
        Some(serde_json::Value::Object(p)) => p,
        None => serde_json::Map::new(),
        Some(_) => return Err(usage("`properties` must be an object")),
    };
    let at = match object.remove("at") {
        Some(serde_json::Value::String(t)) => crate::time::parse_time(&t).map_err(|e| usage(&e))?,
        None => at,
        Some(_) => return Err(usage("`at` must be a time such as 2026-06-01T10:00:00Z")),
    };
    let id = match object.remove("id") {
        Some(serde_json::Value::String(id)) => id,
        _ => "preview-event".into(),
    };
    if let Some(other) = object.keys().next() {
        return Err(usage(&format!(
            "unknown key `{other}` (it takes `properties`, `at`, `id`)"
        )));
    }
    Ok(Event {
        id,
        name: String::new(),
        at,
        properties,
        recorded_at: None,
    })
}

fn locale_label(r: &Rendered) -> &str {
    match r.locale.as_deref() {
        None | Some("") => "default",
        Some(l) => l,
    }
}

pub fn as_text(workflow: &str, rendered: &[Rendered]) -> String {
    let mut s = String::new();
    for r in rendered {
        s.push_str(&format!(
            "=== {workflow} › {} · to {} · locale {}\nSubject: {}\n",
            r.step,
            r.to,
            locale_label(r),
            r.subject
        ));
        if let (Some(file), Some(text)) = (&r.text_file, &r.text) {
            s.push_str(&format!("--- text ({file})\n{}\n", text.trim_end()));
        }
        s.push_str(&format!(
            "--- html ({})\n{}\n\n",
            r.html_file,
            r.html.trim_end()
        ));
    }
    s
}

/// One page: each email's subject and text above its HTML, shown in a sandboxed frame so
/// that its styles do not leak into the page.
fn write_page(path: &PathBuf, workflow: &str, rendered: &[Rendered]) -> Result<(), CommandError> {
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{w} — preview</title>\n<style>body{{font-family:sans-serif;margin:2em;background:#f4f4f4}}section{{background:#fff;margin:0 0 2em;padding:1em;border-radius:6px}}iframe{{width:100%;height:600px;border:1px solid #ddd}}pre{{white-space:pre-wrap;background:#fafafa;padding:1em}}</style></head><body>\n<h1>{w}</h1>\n",
        w = escape_html(workflow)
    );
    for r in rendered {
        html.push_str(&format!(
            "<section><h2>{} · {}</h2><p>To {} — <b>Subject:</b> {}</p>\n<iframe sandbox srcdoc=\"{}\"></iframe>\n",
            escape_html(&r.step),
            escape_html(locale_label(r)),
            escape_html(&r.to),
            escape_html(&r.subject),
            escape_html(&r.html)
        ));
        if let Some(text) = &r.text {
            html.push_str(&format!("<pre>{}</pre>\n", escape_html(text)));
        }
        html.push_str("</section>\n");
    }
    html.push_str("</body></html>\n");
    std::fs::write(path, html).map_err(|source| CommandError::Read {
        path: path.display().to_string(),
        source,
    })
}
