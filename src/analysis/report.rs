//! `tidings report --out report.html`: one self-contained page a marketer opens in a
//! browser — stage distribution, stage flow by week, each workflow's funnel, sends per day,
//! and the numbers behind them. The charts are inline SVG; the page loads nothing and runs
//! no script (its content security policy says so to the browser).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};

use crate::analysis::charts::{
    ChartError, Series, WIDTH, bars, interval_bars, percent_bars, stacked,
};
use crate::analysis::counts::{EMAILS, JOURNEYS, emails, journey_label, journeys, stage_rows};
use crate::model::states::JourneyState;
use crate::store::rates::{Rates, StepRates};
use crate::store::report::History;
use crate::store::status::Counts;
use crate::workflow::templates::escape_html;

pub struct Page<'a> {
    pub now: DateTime<Utc>,
    pub counts: &'a Counts,
    pub history: &'a History,
    pub rates: &'a Rates,
    pub arms: &'a [crate::store::results::Arm],
    /// Each topic and the customers opted out of it.
    pub topics: &'a [(String, i64)],
    pub stage_order: &'a [String],
    pub workflows: &'a [String],
    pub weeks: Vec<NaiveDate>,
    pub days: Vec<NaiveDate>,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:880px;padding:0 1rem;color:#222}\
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem}\
.meta{color:#666;margin-top:0}figure{margin:1rem 0}figcaption{color:#555;font-size:.9rem}\
svg{max-width:100%;height:auto}table{border-collapse:collapse;font-size:.9rem;margin:1rem 0}\
th,td{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}\
th:first-child,td:first-child{text-align:left}.none{color:#888}\
.grid{display:grid;grid-template-columns:1fr 1fr;gap:0 12px}.grid figure{margin:0}\
.numbers{overflow-x:auto}@media (max-width:700px){.grid{grid-template-columns:1fr}body{margin:1rem auto}}";

impl Page<'_> {
    pub fn render(&self) -> Result<String, ChartError> {
        let mut out = String::new();
        let customers: i64 = self.counts.stages.values().sum();
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>tidings report</title><style>{STYLE}</style></head><body>\n\
             <h1>tidings report</h1>\n<p class=\"meta\">{} customers · made {}</p>\n",
            customers,
            self.now.format("%Y-%m-%d %H:%M UTC")
        );
        out.push_str("<h2>Lifecycle stages</h2>\n");
        if self.stage_order.is_empty() {
            out.push_str("<p class=\"none\">No <code>stages.yaml</code>: customers are not placed in stages.</p>\n");
        } else {
            let rows = stage_rows(self.counts, self.stage_order);
            let (labels, values): (Vec<String>, Vec<i64>) = rows.into_iter().unzip();
            figure(
                &mut out,
                "stage-distribution",
                &bars("Customers per stage", &labels, &values, WIDTH)?,
                "Where customers stand now, in the order of stages.yaml.",
            );
            figure(
                &mut out,
                "stage-flow",
                &self.stage_flow()?,
                &format!(
                    "Customers entering each stage, per week (weeks start on Monday, UTC), over the last {} weeks.",
                    self.weeks.len()
                ),
            );
        }
        out.push_str(
            "<h2>Workflows</h2>\n<p>Each funnel counts the journeys that entered, that were sent \
             at least one email, that met <code>exit_when</code>, that finished every \
             step, and that left otherwise (exited or failed).</p>\n<div class=\"grid\">\n",
        );
        for wf in self.workflows {
            let entered: i64 = JOURNEYS.iter().map(|s| journeys(self.counts, wf, *s)).sum();
            let labels: Vec<String> = ["entered", "emailed", "exit_when", "completed", "exited"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let values = vec![
                entered,
                self.history.emailed.get(wf).copied().unwrap_or(0),
                journeys(self.counts, wf, JourneyState::Converted),
                journeys(self.counts, wf, JourneyState::Completed),
                journeys(self.counts, wf, JourneyState::Exited)
                    + journeys(self.counts, wf, JourneyState::Failed),
            ];
            figure(
                &mut out,
                &format!("funnel-{wf}"),
                &bars(wf, &labels, &values, WIDTH / 2 - 6)?,
                "",
            );
        }
        out.push_str("</div>\n");
        self.failed_webhooks(&mut out);
        figure(
            &mut out,
            "sends-per-day",
            &self.sends_per_day()?,
            &format!(
                "Emails sent per day (UTC), by workflow, over the last {} days.",
                self.days.len()
            ),
        );
        self.engagement(&mut out)?;
        self.experiments(&mut out)?;
        self.numbers(&mut out);
        out.push_str("</body></html>\n");
        Ok(out)
    }

    fn stage_flow(&self) -> Result<String, ChartError> {
        let labels: Vec<String> = self
            .weeks
            .iter()
            .map(|w| w.format("%b %d").to_string())
            .collect();
        let mut names: Vec<String> = self.stage_order.to_vec();
        for week in self.history.stage_flow.values() {
            for stage in week.keys() {
                if !names.contains(stage) {
                    names.push(stage.clone());
                }
            }
        }
        let series = columns(&names, &self.weeks, &self.history.stage_flow);
        stacked("Stage entries per week", &labels, &series)
    }

    fn sends_per_day(&self) -> Result<String, ChartError> {
        let labels: Vec<String> = self
            .days
            .iter()
            .map(|d| d.format("%m-%d").to_string())
            .collect();
        let series = columns(self.workflows, &self.days, &self.history.sends);
        stacked("Emails sent per day", &labels, &series)
    }

    /// What came back, per email step: the click rate charted, every rate in a table, and
    /// each survey question's NPS.
    fn engagement(&self, out: &mut String) -> Result<(), ChartError> {
        out.push_str("<h2>Engagement</h2>\n");
        let steps: Vec<_> = self
            .workflows
            .iter()
            .flat_map(|wf| self.rates.steps_of(wf))
            .filter(|s| s.delivered > 0)
            .collect();
        if steps.is_empty() {
            out.push_str("<p class=\"none\">No email delivered yet.</p>\n");
            return Ok(());
        }
        let labels: Vec<String> = steps
            .iter()
            .map(|s| format!("{}/{}", s.workflow, s.step))
            .collect();
        type Rate = fn(&StepRates) -> Option<f64>;
        let charts: [(&str, &str, Rate); 2] = [
            (
                "click-rates",
                "Click rate per email step",
                StepRates::click_rate,
            ),
            (
                "answer-rates",
                "Answer rate per email step",
                StepRates::answer_rate,
            ),
        ];
        for (id, title, rate) in charts {
            let shares: Vec<f64> = steps.iter().map(|s| rate(s).unwrap_or(0.0)).collect();
            if id == "answer-rates" && shares.iter().all(|s| *s == 0.0) {
                continue;
            }
            let svg = percent_bars(title, &labels, &shares, WIDTH)?;
            let caption = "Unique emails a person clicked (or answered) per email delivered; link scanners' clicks are left out.";
            figure(out, id, &svg, caption);
        }
        out.push_str("<div class=\"numbers\"><table><thead><tr><th>email step</th><th>sent</th><th>delivered</th><th>opened</th><th>clicked</th><th>click rate</th><th>answers</th><th>unsubscribed</th><th>bounced</th><th>complaints</th></tr></thead><tbody>\n");
        for (label, s) in labels.iter().zip(&steps) {
            let rate = s
                .click_rate()
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rate}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(label),
                s.sent,
                s.delivered,
                s.opened,
                s.clicked,
                s.answered,
                s.unsubscribed,
                s.bounced,
                s.complained
            );
        }
        out.push_str("</tbody></table></div>\n");
        self.opt_outs(out);
        for q in &self.rates.questions {
            let nps = q.nps.map_or(String::new(), |n| {
                format!(
                    " · NPS <strong>{n:+.0}</strong> ({} promoters, {} passives, {} detractors)",
                    q.promoters, q.passives, q.detractors
                )
            });
            let _ = writeln!(
                out,
                "<p>Question <code>{}</code>: {} answers{nps}</p>",
                escape_html(&q.question),
                q.answers
            );
        }
        Ok(())
    }

    /// Webhook calls given up on, per step: the journeys went on without them.
    fn failed_webhooks(&self, out: &mut String) {
        let rows = (self.counts.failed_webhooks.iter())
            .map(|((wf, step), n)| (format!("{wf}/{step}"), *n));
        count_table(
            out,
            "failed-webhooks",
            ("webhook step", "calls that failed"),
            rows,
        );
    }

    /// How many customers opted out of each topic.
    fn opt_outs(&self, out: &mut String) {
        let rows = self.topics.iter().map(|(topic, n)| (topic.clone(), *n));
        count_table(out, "opt-outs", ("topic", "opted out"), rows);
    }

    /// Each experimenting workflow's variants: conversion rates with 95% interval
    /// whiskers, and `tidings results`' verdict.
    fn experiments(&self, out: &mut String) -> Result<(), ChartError> {
        let mut names: Vec<&str> = Vec::new();
        for a in self.arms.iter().filter(|a| a.variant.is_some()) {
            if !names.contains(&a.workflow.as_str()) {
                names.push(&a.workflow);
            }
        }
        if names.is_empty() {
            return Ok(());
        }
        out.push_str("<h2>Experiments</h2>\n");
        for name in names {
            let arms: Vec<_> = self
                .arms
                .iter()
                .filter(|a| a.workflow == name)
                .cloned()
                .collect();
            let experiment = crate::analysis::results::Experiment::of(name, arms, true);
            let (labels, shares): (Vec<String>, Vec<(f64, f64, f64)>) = experiment
                .rows
                .iter()
                .filter_map(|r| {
                    let i = r.rate?;
                    let label = r
                        .arm
                        .variant
                        .clone()
                        .unwrap_or_else(|| crate::workflow::plan::NO_VARIANT.into());
                    Some((label, (i.estimate, i.low, i.high)))
                })
                .unzip();
            let svg = interval_bars(&format!("{name}: conversion rate"), &labels, &shares, WIDTH)?;
            let caption = format!(
                "Journeys converted per journey entered, with 95% Wilson intervals. {}",
                experiment.verdict
            );
            figure(out, &format!("experiment-{name}"), &svg, &caption);
        }
        Ok(())
    }

    /// `status`'s table, for the numbers behind the charts.
    fn numbers(&self, out: &mut String) {
        out.push_str(
            "<h2>The numbers</h2>\n<div class=\"numbers\"><table><thead><tr><th>workflow</th>",
        );
        for &h in JOURNEYS {
            let _ = write!(out, "<th>{}</th>", journey_label(h));
        }
        for (h, _) in EMAILS {
            let _ = write!(out, "<th>emails {h}</th>");
        }
        out.push_str("</tr></thead><tbody>\n");
        for wf in self.workflows {
            let _ = write!(out, "<tr><td>{}</td>", escape_html(wf));
            for &h in JOURNEYS {
                let _ = write!(out, "<td>{}</td>", journeys(self.counts, wf, h));
            }
            for (_, states) in EMAILS {
                let _ = write!(out, "<td>{}</td>", emails(self.counts, wf, states));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></div>\n");
    }
}

/// One series per name, with its count in each column (day or week) of `table`.
fn columns(
    names: &[String],
    keys: &[NaiveDate],
    table: &std::collections::BTreeMap<NaiveDate, std::collections::BTreeMap<String, i64>>,
) -> Vec<Series> {
    names
        .iter()
        .map(|name| Series {
            name: name.clone(),
            values: keys
                .iter()
                .map(|k| table.get(k).and_then(|m| m.get(name)).copied().unwrap_or(0))
                .collect(),
        })
        .collect()
}

fn figure(out: &mut String, id: &str, svg: &str, caption: &str) {
    let _ = write!(
        out,
        "<figure class=\"chart\" data-chart=\"{}\">\n{svg}\n",
        escape_html(id)
    );
    if !caption.is_empty() {
        let _ = write!(out, "<figcaption>{}</figcaption>", escape_html(caption));
    }
    out.push_str("</figure>\n");
}

/// A table of a label and a count per row, `id` for the page's readers and tests; nothing
/// when there are no rows.
fn count_table(
    out: &mut String,
    id: &str,
    (label, count): (&str, &str),
    rows: impl Iterator<Item = (String, i64)>,
) {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return;
    }
    let _ = writeln!(
        out,
        "<div class=\"numbers\"><table id=\"{id}\"><thead><tr><th>{label}</th><th>{count}</th></tr></thead><tbody>"
    );
    for (name, n) in rows {
        let _ = writeln!(out, "<tr><td>{}</td><td>{n}</td></tr>", escape_html(&name));
    }
    out.push_str("</tbody></table></div>\n");
}
