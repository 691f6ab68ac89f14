//! `cargo bench --bench render`: the CPU one email costs before it reaches SMTP, by stage —
//! rendering its subject, ~3.5 KB HTML and text part (Tera 2, with the customer's context
//! and a signed unsubscribe link), then building the MIME message and its wire bytes
//! (lettre's builder and `formatted()`). The campaign benchmark's project
//! (`examples/bench`) supplies the workflow and templates. Set `TIDINGS_BENCH_MESSAGES` for
//! a shorter run.

#![allow(clippy::expect_used)] // a benchmark, like a test, stops at the first surprise

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tidings::config::Project;
use tidings::delivery::build_message;
use tidings::engine::Engine;
use tidings::model::customer::Customer;
use tidings::store::Store;
use tidings::store::deliveries::DeliveryRow;

fn main() {
    let n: usize = std::env::var("TIDINGS_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bench");
    let project = Project::load(&root).expect("the bench project loads");
    let compiled = tidings::workflow::compile::compile_project(&project, &[]);
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let store = runtime
        .block_on(Store::open("sqlite::memory:"))
        .expect("a memory store");
    let engine = Engine::new(Arc::new(compiled.plan), store, project.config.clone());
    let customers: Vec<Customer> = (0..n)
        .map(|i| {
            let mut c = Customer::new(format!("c{i:07}"), format!("customer{i}@bench.example"));
            c.first_name = Some(format!("Name{i}"));
            c.locale = Some("en-GB".into());
            c
        })
        .collect();
    let now = Utc::now();

    let started = Instant::now();
    let mut rendered = Vec::with_capacity(n);
    for c in &customers {
        let mut r = runtime
            .block_on(engine.preview("campaign", None, c, None, None, now))
            .expect("it renders");
        rendered.push(r.remove(0));
    }
    let render = started.elapsed();

    let from = "Acme <news@acme.example>".parse().expect("a mailbox");
    let started = Instant::now();
    let mut bytes = 0;
    for (i, r) in rendered.into_iter().enumerate() {
        let row = DeliveryRow {
            id: format!("d{i}"),
            channel: tidings::model::states::Channel::Email,
            workflow: "campaign".into(),
            customer_id: format!("c{i:07}"),
            step: "news".into(),
            recipient: r.to,
            subject: Some(r.subject),
            html: Some(r.html),
            text: r.text,
            coupon_code: None,
            message_id: format!("<d{i}@acme.example>"),
            state: tidings::model::states::DeliveryState::Pending,
            due_at: now,
            class: tidings::model::states::MailClass::Marketing,
            payload: None,
            attempts: 0,
            last_error: None,
            mode: tidings::model::states::DeliveryMode::AtLeastOnce,
            created_at: now,
            accepted_at: None,
            variant: None,
        };
        let message = build_message(&row, &from, row.due_at).expect("it builds");
        bytes += message.formatted().len();
    }
    let build = started.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("{n} emails, {} bytes each on average", bytes / n);
    println!(
        "render (subject, HTML, text):   {:6.1} µs per email",
        per(render)
    );
    println!(
        "MIME build and wire bytes:      {:6.1} µs per email",
        per(build)
    );
    println!(
        "together:                       {:6.1} µs per email",
        per(render + build)
    );
}
