//! `/metrics`, in Prometheus' text format: what the store holds (journeys, emails, stages,
//! the queue, what came back from the emails) and what this process's passes did.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::api::{Api, PassMetrics, unavailable};

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Journeys, conversions and revenue per workflow and variant (`none` outside a split).
fn experiment_gauges(arms: &[crate::store::results::Arm]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    type Value = fn(&crate::store::results::Arm) -> f64;
    let gauges: [(&str, &str, Value); 3] = [
        (
            "tidings_experiment_journeys",
            "Journeys entered, per workflow and variant.",
            |a| a.entered as f64,
        ),
        (
            "tidings_experiment_conversions",
            "Journeys a goal was credited to, per workflow and variant.",
            |a| a.converted as f64,
        ),
        (
            "tidings_experiment_revenue",
            "Goal value credited, per workflow and variant.",
            |a| a.revenue,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for a in arms {
            let _ = writeln!(
                out,
                "{name}{{workflow=\"{}\",variant=\"{}\"}} {}",
                label(&a.workflow),
                label(a.variant.as_deref().unwrap_or("none")),
                value(a)
            );
        }
    }
    out
}

/// What came back per email step (unique emails a person engaged with), and each 0–10
/// question's NPS.
fn engagement_gauges(r: &crate::store::rates::Rates) -> String {
    use std::fmt::Write as _;
    let name = "tidings_email_engagement";
    let mut out = format!(
        "# HELP {name} Emails per workflow and step that were sent, delivered, opened, clicked or answered by a person, or that brought an unsubscribe, bounce or complaint.\n# TYPE {name} gauge\n"
    );
    for s in &r.steps {
        for (kind, n) in [
            ("sent", s.sent),
            ("delivered", s.delivered),
            ("opened", s.opened),
            ("clicked", s.clicked),
            ("answered", s.answered),
            ("unsubscribed", s.unsubscribed),
            ("bounced", s.bounced),
            ("complained", s.complained),
        ] {
            let _ = writeln!(
                out,
                "{name}{{workflow=\"{}\",step=\"{}\",kind=\"{kind}\"}} {n}",
                label(&s.workflow),
                label(&s.step)
            );
        }
    }
    let name = "tidings_nps";
    let _ = writeln!(
        out,
        "# HELP {name} Net promoter score (% promoters - % detractors) of each 0-10 question.\n# TYPE {name} gauge"
    );
    for q in &r.questions {
        if let Some(nps) = q.nps {
            let _ = writeln!(out, "{name}{{question=\"{}\"}} {nps}", label(&q.question));
        }
    }
    out
}

/// Each source's feeds: rows read and refused, whether the last run failed, how far
/// behind the feed is (since it last caught up) and where its cursor is.
fn source_gauges(
    feeds: &[crate::store::sources::FeedStatus],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    use std::fmt::Write as _;
    type Value =
        fn(&crate::store::sources::FeedStatus, chrono::DateTime<chrono::Utc>) -> Option<f64>;
    let series: [(&str, &str, &str, Value); 5] = [
        (
            "tidings_source_rows_read_total",
            "counter",
            "Rows read from the shop's database, per source and feed.",
            |f, _| Some(f.rows_read as f64),
        ),
        (
            "tidings_source_rows_refused_total",
            "counter",
            "Rows refused (each time read), per source and feed.",
            |f, _| Some(f.rows_refused as f64),
        ),
        (
            "tidings_source_failing",
            "gauge",
            "1 when the feed's last run ended in an error.",
            |f, _| Some(if f.last_error.is_some() { 1.0 } else { 0.0 }),
        ),
        (
            "tidings_source_lag_seconds",
            "gauge",
            "Seconds since the feed last read every row there was with none refused.",
            |f, now| {
                crate::sync::lag(f.caught_up_at, now).map(|d| d.num_milliseconds() as f64 / 1000.0)
            },
        ),
        (
            "tidings_source_cursor_timestamp_seconds",
            "gauge",
            "The `updated_at` of the last row the feed's cursor covers, as a Unix time.",
            |f, _| {
                f.position
                    .as_ref()
                    .and_then(crate::sync::cursor_time)
                    .map(|t| t.timestamp() as f64)
            },
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for f in feeds {
            if let Some(v) = value(f, now) {
                let _ = writeln!(
                    out,
                    "{name}{{source=\"{}\",feed=\"{}\"}} {v}",
                    label(&f.source),
                    label(&f.feed)
                );
            }
        }
    }
    out
}

/// Prometheus text: the store's counts (journeys and emails by workflow and state,
/// customers by stage, queue depth) and the passes' counters and durations.
pub async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let counts = async {
        let mut conn = api.store.connection().await?;
        let c = crate::store::status::counts(&mut conn).await?;
        let r = crate::store::rates::rates(&mut conn).await?;
        let since = chrono::DateTime::<chrono::Utc>::MIN_UTC;
        let x = crate::store::results::arms(&mut conn, since).await?;
        drop(conn);
        let s = api.store.source_status().await?;
        Ok::<_, crate::store::StoreError>((c, r, x, s))
    };
    let Ok((c, r, x, s)) = counts.await else {
        return unavailable();
    };
    let p = api.passes.lock().map(|p| p.clone()).unwrap_or_default();
    let mut out = store_gauges(&c);
    out.push_str(&engagement_gauges(&r));
    out.push_str(&experiment_gauges(&x));
    out.push_str(&source_gauges(&s, chrono::Utc::now()));
    out.push_str(&pass_counters(&p, &api.meter));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// What the store holds: journeys and emails by workflow and state, customers by stage,
/// the queue's depth.
fn store_gauges(c: &crate::store::status::Counts) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (name, help, by_workflow) in [
        (
            "tidings_enrollments",
            "Journeys by workflow and state.",
            &c.journeys,
        ),
        (
            "tidings_emails",
            "Emails by workflow and outbox state.",
            &c.emails,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (wf, states) in by_workflow {
            for (state, n) in states {
                let _ = writeln!(
                    out,
                    "{name}{{workflow=\"{}\",state=\"{}\"}} {n}",
                    label(wf),
                    label(state)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP tidings_customers Customers by lifecycle stage.\n# TYPE tidings_customers gauge"
    );
    for (stage, n) in &c.stages {
        let _ = writeln!(
            out,
            "tidings_customers{{stage=\"{}\"}} {n}",
            label(stage.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(
        out,
        "# HELP tidings_queue_depth Emails and webhook calls waiting to go.\n# TYPE tidings_queue_depth gauge\ntidings_queue_depth {}",
        c.queued
    );
    let _ = writeln!(
        out,
        "# HELP tidings_webhooks_failed Webhook calls given up on, by workflow and step.\n# TYPE tidings_webhooks_failed gauge"
    );
    for ((wf, step), n) in &c.failed_webhooks {
        let _ = writeln!(
            out,
            "tidings_webhooks_failed{{workflow=\"{}\",step=\"{}\"}} {n}",
            label(wf),
            label(step)
        );
    }
    out
}

/// What this process's passes did.
fn pass_counters(p: &PassMetrics, meter: &crate::progress::Meter) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (name, help, value) in [
        ("tidings_passes_total", "Passes run.", p.passes as f64),
        (
            "tidings_failed_passes_total",
            "Passes that stopped with an error.",
            p.failed_passes as f64,
        ),
        (
            "tidings_pass_seconds_total",
            "Time spent in passes.",
            p.seconds_total,
        ),
        ("tidings_steps_total", "Journey steps run.", p.steps as f64),
        (
            "tidings_store_statements_total",
            "Statements this process sent to the database (a transaction's BEGIN and COMMIT count).",
            crate::store::statements() as f64,
        ),
        (
            "tidings_emails_sent_total",
            "Emails sent by this process.",
            p.emails_sent as f64,
        ),
        (
            "tidings_emails_failed_total",
            "Emails failed for good by this process.",
            p.emails_failed as f64,
        ),
        (
            "tidings_emails_retried_total",
            "Email attempts to be retried.",
            p.emails_retried as f64,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let (buckets, count, sum) = meter.handoff.snapshot();
    let name = "tidings_event_to_handoff_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} From an event accepted to its email accepted by the SMTP server.\n# TYPE {name} histogram"
    );
    for (bound, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
    );
    let _ = writeln!(
        out,
        "# HELP tidings_last_pass_seconds How long the last pass took.\n# TYPE tidings_last_pass_seconds gauge\ntidings_last_pass_seconds {}",
        p.last_seconds
    );
    out
}
