//! `tidings report`: one self-contained HTML page with the stage, flow, funnel and sends
//! charts, whose numbers are the store's; opened in headless Chromium (Debian's package,
//! driven by playwright-core from `tests/browser`), which must show every chart and log no
//! error.

use std::path::Path;
use std::process::Command;

use crate::common::repo_root;
use crate::store::{backends, demo_with_stages, outbox, pass, tidings, with_store};

const PASSES: [&str; 5] = [
    "2026-06-01T08:00:00Z",
    "2026-06-03T10:00:00Z",
    "2026-06-08T08:00:00Z",
    "2026-06-09T10:00:00Z",
    "2026-06-15T10:00:00Z",
];

const WORKFLOWS: [&str; 6] = [
    "birthday-offer",
    "cancellation-feedback",
    "post-purchase-thank-you",
    "reactivation-deal",
    "review-request",
    "welcome-series",
];

#[test]
fn the_report_is_one_page_with_every_chart_and_the_stores_numbers() {
    for b in backends("report") {
        demo_with_stages(&b);
        for now in PASSES {
            pass(&b, now);
        }
        // A person clicks their reactivation deal; a scanner clicks the other.
        let (deliveries, _) = outbox(&b);
        let deals: Vec<String> = deliveries
            .iter()
            .filter(|d| d.workflow == "reactivation-deal" && d.step == "deal" && d.state == "sent")
            .map(|d| d.id.clone())
            .collect();
        assert_eq!(deals.len(), 2, "{}: the demo's two lapsed buyers", b.label);
        with_store(&b, async |s| {
            for (i, id) in deals.iter().enumerate() {
                let email = s.sent_email(id).await.unwrap().unwrap();
                let visit = tidings::store::engagement::Visit {
                    at: email.sent_at.unwrap() + chrono::TimeDelta::hours(2),
                    agent: Some(if i == 0 { "Mozilla/5.0" } else { "Barracuda" }.into()),
                    client: None,
                };
                let window = chrono::TimeDelta::seconds(10);
                s.record_click(&email, "https://shop.acme.example/", &visit, window)
                    .await
                    .unwrap();
            }
        });
        let out = b.dir.join("report.html");
        let run = tidings(&b)
            .args(["report", "--out", out.to_str().unwrap()])
            .args(["--now", "2026-06-16T00:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let page = std::fs::read_to_string(&out).unwrap();
        let mut charts = vec![
            "stage-distribution".to_string(),
            "stage-flow".into(),
            "sends-per-day".into(),
            "click-rates".into(),
        ];
        charts.extend(WORKFLOWS.iter().map(|w| format!("funnel-{w}")));
        for chart in &charts {
            let at = page
                .find(&format!("data-chart=\"{chart}\""))
                .unwrap_or_else(|| panic!("{}: no chart {chart}", b.label));
            assert!(page[at..].trim_start_matches(|c| c != '<').contains("<svg"));
        }
        // Self-contained: nothing fetched, nothing run.
        for needle in ["<script", "src=", "href=", "@import"] {
            assert!(!page.contains(needle), "{}: the page has {needle}", b.label);
        }
        // The numbers are the store's: each workflow's sent emails, counted from the outbox.
        let (deliveries, _) = outbox(&b);
        for wf in WORKFLOWS {
            let sent = deliveries
                .iter()
                .filter(|d| d.workflow == wf && d.channel == "email" && d.state == "sent")
                .count();
            let row = page
                .split("<tr>")
                .find(|r| r.starts_with(&format!("<td>{wf}</td>")))
                .unwrap_or_else(|| panic!("{}: no row for {wf}", b.label));
            let cells: Vec<&str> = row
                .split("<td>")
                .skip(1)
                .map(|c| c.split("</td>").next().unwrap())
                .collect();
            // workflow, five journey states, then emails sent.
            assert_eq!(cells[6], sent.to_string(), "{}: {wf}: {row}", b.label);
        }
        // The click rate is the person's click over the deals delivered: 1 of 2.
        let row = page
            .split("<tr>")
            .find(|r| r.starts_with("<td>reactivation-deal/deal</td>"))
            .unwrap_or_else(|| panic!("{}: no engagement row", b.label));
        assert!(
            row.starts_with("<td>reactivation-deal/deal</td><td>2</td><td>2</td><td>0</td><td>1</td><td>50.0%</td>"),
            "{}: {row}",
            b.label
        );
        if b.label == "sqlite" {
            // A funnel with no journeys has no bars to draw.
            let (_, enrollments) = outbox(&b);
            charts.retain(|c| {
                c.strip_prefix("funnel-")
                    .is_none_or(|wf| enrollments.iter().any(|e| e.0 == wf))
            });
            assert!(charts.len() > 6, "{charts:?}");
            in_a_browser(&out, &charts);
        }
    }
}

/// Whether the browser check can run here; on CI it must (the assertion says what to
/// install), elsewhere a skipped check says so.
fn browser_ready() -> bool {
    let browser = repo_root().join("tests/browser");
    let ready = browser.join("node_modules/playwright-core").exists()
        && Path::new(&std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into())).exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the report in a browser: install Debian's chromium and run `npm ci --prefix tests/browser` (.ci/run does both)"
        );
        crate::common::say_skipped(
            "skipping the browser check of the report: needs Debian's chromium and `npm ci --prefix tests/browser`",
        );
    }
    ready
}

/// A page in headless Chromium with the charts it must draw: the exit code, what the
/// check printed (and its errors), and the screenshot's path.
fn check_page(html: &Path, charts: &[String]) -> (Option<i32>, String, String, std::path::PathBuf) {
    let shot = html.with_extension("png");
    let out = Command::new("node")
        .arg(repo_root().join("tests/browser/check-page.mjs"))
        .arg(html)
        .arg(&shot)
        .args(charts)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code(), stdout, stderr, shot)
}

/// A page passes the browser check with these charts drawn (when the check can run).
pub(crate) fn passes_in_a_browser(page: &Path, charts: &[String]) {
    if browser_ready() {
        let (code, stdout, stderr, _) = check_page(page, charts);
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        assert!(stdout.contains("\"problems\":[]"), "{stdout}");
    }
}

/// The page in headless Chromium: every chart drawn, no console error, a screenshot; and
/// the check fails on a page with a chart taken out or something fetched from the network.
fn in_a_browser(page: &Path, charts: &[String]) {
    if !browser_ready() {
        return;
    }
    let check = |html: &Path| check_page(html, charts);
    let (code, stdout, stderr, shot) = check(page);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"problems\":[]"), "{stdout}");
    let size = std::fs::metadata(&shot).unwrap().len();
    assert!(
        size > 20_000,
        "the screenshot is {size} bytes: a blank page?"
    );

    // The check can fail: a chart whose drawing is gone, and an image from the network
    // (which the page's content security policy refuses, with a console error).
    let text = std::fs::read_to_string(page).unwrap();
    let at = text.find("data-chart=\"stage-flow\"").unwrap();
    let start = at + text[at..].find("<svg").unwrap();
    let end = start + text[start..].find("</svg>").unwrap() + "</svg>".len();
    let no_chart = page.with_file_name("no-chart.html");
    std::fs::write(&no_chart, format!("{}{}", &text[..start], &text[end..])).unwrap();
    let (code, stdout, _, _) = check(&no_chart);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("chart not drawn: stage-flow"), "{stdout}");

    let fetches = page.with_file_name("fetches.html");
    std::fs::write(
        &fetches,
        text.replacen(
            "<h1>",
            "<img src=\"http://127.0.0.1:9/pixel.png\" alt=\"\"><h1>",
            1,
        ),
    )
    .unwrap();
    let (code, stdout, _, _) = check(&fetches);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("console error"), "{stdout}");

    // The page is read at 1280 px, 900 px and on a phone: one that scrolls sideways on a
    // phone (a fixed width where the page's own styles let it shrink) fails there only.
    let fixed = page.with_file_name("fixed-width.html");
    std::fs::write(
        &fixed,
        text.replacen("<h1>", "<div style=\"width: 800px\">&nbsp;</div><h1>", 1),
    )
    .unwrap();
    let (code, stdout, _, _) = check(&fixed);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("390 px: the page scrolls sideways") && !stdout.contains("1280 px:"),
        "{stdout}"
    );
    for wide in ["shot-1280.png", "shot-390.png"] {
        let path = shot
            .with_file_name(shot.file_stem().unwrap().to_string_lossy().to_string() + &wide[4..]);
        assert!(path.exists(), "no screenshot at {}", path.display());
    }
}

/// A report as of a past moment counts stages as the stage moves recorded then: before
/// the first pass nobody is placed; after it, the same counts as the store's own column.
#[test]
fn stages_are_counted_as_of_the_reports_moment() {
    for b in backends("report-as-of") {
        demo_with_stages(&b);
        pass(&b, "2026-06-01T08:00:00Z");
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let (before, after, now) = with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            let report = tidings::store::report::stages_as_of;
            let before = report(&mut conn, at("2026-05-01T00:00:00Z")).await.unwrap();
            let after = report(&mut conn, at("2026-06-02T00:00:00Z")).await.unwrap();
            let now = tidings::store::status::counts(&mut conn)
                .await
                .unwrap()
                .stages;
            (before, after, now)
        });
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            [&None],
            "{}: {before:?}",
            b.label
        );
        assert_eq!(after, now, "{}", b.label);
        assert!(after.keys().any(Option::is_some), "{after:?}");
    }
}
