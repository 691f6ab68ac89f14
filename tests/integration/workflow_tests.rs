//! `tidings test`: the shipped examples' tests pass; a deliberately broken copy of each
//! example fails its tests with a readable diff (pinned by snapshots); mistakes in test files
//! are file:line diagnostics, from `tidings test` and from `tidings validate`.

use crate::common::{Tidings, edit, repo_root, scratch_dir, write};
use crate::store::copy_dir;

/// A copy of the shipped workflows, templates and stages, for breaking.
pub(crate) fn examples_copy(name: &str) -> std::path::PathBuf {
    let dir = scratch_dir(name);
    for sub in ["workflows", "templates"] {
        copy_dir(&repo_root().join(sub), &dir.join(sub));
    }
    std::fs::copy(repo_root().join("stages.yaml"), dir.join("stages.yaml")).unwrap();
    dir
}

#[test]
fn the_shipped_examples_pass_their_tests() {
    let run = Tidings::new().cwd(repo_root()).args(["test"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    insta::assert_snapshot!("shipped-examples", run.stdout);
    // Every shipped workflow carries tests.
    for entry in std::fs::read_dir(repo_root().join("workflows")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".test.yaml") {
            continue;
        }
        let workflow = name.trim_end_matches(".yaml");
        assert!(
            run.stdout.contains(&format!("ok    {workflow} › ")),
            "{workflow} has no tests"
        );
    }
}

/// Each example broken the way a pull request might break it — a wrong wait, audience,
/// goal, re-entry rule, time or trigger — fails its tests, and the output shows where and what
/// was sent instead.
#[test]
fn a_broken_copy_of_each_example_fails_with_a_readable_diff() {
    let breakages = [
        (
            "welcome-wait",
            "workflows/welcome-series.yaml",
            "  - wait: 2d",
            "  - wait: 3d",
        ),
        (
            "welcome-exit",
            "workflows/welcome-series.yaml",
            "exit_when: customer.orders_count > 0",
            "exit_when: customer.orders_count > 1",
        ),
        (
            "birthday-time",
            "workflows/birthday-offer.yaml",
            "at: \"09:00\"",
            "at: \"10:00\"",
        ),
        (
            "reactivation-audience",
            "workflows/reactivation-deal.yaml",
            "days_since(customer.last_order_at) > 90",
            "days_since(customer.last_order_at) > 200",
        ),
        (
            "reactivation-reentry",
            "workflows/reactivation-deal.yaml",
            "reentry: { after: 180d }",
            "reentry: { after: 14d }",
        ),
        (
            "review-wait",
            "workflows/review-request.yaml",
            "  - wait: 7d",
            "  - wait: 5d",
        ),
        (
            "thanks-trigger",
            "workflows/post-purchase-thank-you.yaml",
            "event: order_placed",
            "event: order_delivered",
        ),
        (
            "feedback-wait",
            "workflows/cancellation-feedback.yaml",
            "  - wait: { for: survey_answered, at_most: 3d }",
            "  - wait: 3d",
        ),
        (
            "reactivation-click",
            "workflows/reactivation-deal.yaml",
            " && !clicked(\"deal\")",
            "",
        ),
        (
            "nps-promoter",
            "workflows/nps-survey.yaml",
            "answer(\"nps\") >= 9",
            "answer(\"nps\") >= 10",
        ),
    ];
    for (name, file, from, to) in breakages {
        let dir = examples_copy(&format!("broken-{name}"));
        edit(&dir, file, from, to);
        let run = Tidings::new().cwd(&dir).args(["test", file]).run();
        assert_eq!(run.code, 1, "{name}: {}", run.transcript());
        assert!(run.stdout.contains("FAIL  "), "{name}: {}", run.stdout);
        insta::assert_snapshot!(format!("broken-{name}"), run.stdout);
    }
}

/// Mistakes in a test — an unknown expectation, a bad time, a template the workflow does
/// not send, an unknown customer — are diagnostics at their line, from `test` and
/// `validate` alike, and nothing runs.
#[test]
fn bad_test_files_get_file_line_diagnostics() {
    let dir = examples_copy("bad-tests");
    write(
        &dir,
        "workflows/welcome-series.test.yaml",
        "tests:
  - name: a typo in an expectation
    start: 2026-06-01T08:00:00Z
    events:
      - { name: customer_created }
    steps:
      - expect_mail: { template: welcome/hello }
  - name: a bad time and a template that does not exist
    start: 2026-06-31T08:00:00Z
    steps:
      - expect_email: { template: welcome/helo }
      - expect_email: { template: welcome/hello, at: yesterday }
  - name: an event for nobody
    start: 2026-06-01T08:00:00Z
    customers: [{ id: ada }]
    events:
      - { customer: bob, name: customer_created }
    steps:
      - advance: soon
      - expect_exit: {}
",
    );
    let test = Tidings::new().cwd(&dir).args(["test"]).run();
    assert_eq!(test.code, 1, "{}", test.transcript());
    assert!(test.stderr.contains("no test was run"), "{}", test.stderr);
    insta::assert_snapshot!("bad-tests", test.transcript());
    let validate = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(validate.code, 1, "{}", validate.transcript());
    for line in [
        "workflows/welcome-series.test.yaml:7:9",
        "workflows/welcome-series.test.yaml:9:12",
        "workflows/welcome-series.test.yaml:11:35",
        "workflows/welcome-series.test.yaml:12:54",
        "workflows/welcome-series.test.yaml:17:21",
        "workflows/welcome-series.test.yaml:19:18",
        "workflows/welcome-series.test.yaml:20:22",
    ] {
        assert!(
            validate.stderr.contains(line),
            "validate misses {line}:\n{}",
            validate.stderr
        );
    }
}

/// The machine formats carry the same verdicts: JSON with the diff, GitHub annotations on
/// the failing line, JUnit XML with one failure.
#[test]
fn failures_are_reported_as_json_github_annotations_and_junit() {
    let dir = examples_copy("formats");
    edit(
        &dir,
        "workflows/review-request.yaml",
        "  - wait: 7d",
        "  - wait: 5d",
    );
    let file = "workflows/review-request.test.yaml";

    let json = Tidings::new()
        .cwd(&dir)
        .args(["test", file, "--format", "json"])
        .run();
    assert_eq!(json.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (doc["passed"].as_u64(), doc["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let failed = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["passed"] == false)
        .unwrap();
    assert_eq!(failed["failure"]["file"], file);
    assert_eq!(failed["failure"]["line"], 10);
    assert!(
        failed["failure"]["diff"][0]
            .as_str()
            .unwrap()
            .starts_with("+ 2026-06-06 12:00 UTC  review/request")
    );

    let github = Tidings::new()
        .cwd(&dir)
        .args(["test", file, "--format", "github"])
        .run();
    assert_eq!(github.code, 1);
    assert!(
        github.stdout.starts_with(&format!("::error file={file},line=10,col=9,title=tidings test%3A review-request › asks for a review a week after delivery::expected no other email")),
        "{}",
        github.stdout
    );

    let junit = Tidings::new()
        .cwd(&dir)
        .args(["test", file, "--format", "junit"])
        .run();
    assert_eq!(junit.code, 1);
    assert!(
        junit
            .stdout
            .contains("<testsuites name=\"tidings test\" tests=\"2\" failures=\"1\""),
        "{}",
        junit.stdout
    );
    assert_eq!(junit.stdout.matches("<failure message=").count(), 1);
}

/// No tests at all is a failure in CI, not a silent pass.
#[test]
fn no_tests_is_an_error() {
    let dir = scratch_dir("no-tests");
    copy_dir(&repo_root().join("templates"), &dir.join("templates"));
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::copy(
        repo_root().join("workflows/review-request.yaml"),
        dir.join("workflows/review-request.yaml"),
    )
    .unwrap();
    let run = Tidings::new().cwd(&dir).args(["test"]).run();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no test cases found"), "{}", run.stderr);
}

/// Lifecycle stages: each customer is in the first stage whose rule holds, computed on the
/// first pass of the day and again when the customer changes; each move is a
/// `stage_entered` event with `from` and `to`, recorded once.
#[test]
fn customers_move_between_stages_as_orders_and_time_change() {
    use crate::store::{backends, demo_with_stages, text_pairs, tidings};
    for b in backends("stages") {
        demo_with_stages(&b);
        let stages = |b: &crate::store::Backend| {
            text_pairs(
                b,
                "SELECT id, COALESCE(stage, '') FROM customers ORDER BY id",
            )
        };
        let moves = |b: &crate::store::Backend| {
            text_pairs(
                b,
                "SELECT customer_id, properties FROM events WHERE name = 'stage_entered' ORDER BY customer_id, at, id",
            )
        };
        for _ in 0..2 {
            let run = tidings(&b)
                .args(["run", "--once", "--now", "2026-06-01T08:00:00Z"])
                .run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        }
        let expected = |c1: &str| {
            vec![
                ("c1".to_string(), c1.to_string()),
                ("c2".into(), "at-risk".into()), // 137 days since the last order
                ("c3".into(), "repeat".into()),  // two orders, the second this morning
                ("c4".into(), "lapsed".into()),  // 182 days
                ("c5".into(), "first-time".into()),
            ]
        };
        assert_eq!(stages(&b), expected("prospect"), "{}", b.label);
        let first = moves(&b);
        // Each customer's orders came with the import: one entry each, into the stage
        // their orders give, however often the passes run.
        assert_eq!(first.len(), 5, "{}: one entry each: {first:?}", b.label);
        assert!(
            first.contains(&("c3".into(), r#"{"from":null,"to":"repeat"}"#.into())),
            "{}: {first:?}",
            b.label
        );

        // Ada's first order moves her at once; the day's sweep moves nobody else.
        crate::common::write(
            &b.dir,
            "ada.csv",
            "id,customer_id,total,placed_at\n7001,c1,24.00,2026-06-02T09:00:00Z\n",
        );
        let run = tidings(&b).args(["import", "orders", "ada.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b)
            .args(["run", "--once", "--now", "2026-06-02T10:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert_eq!(stages(&b), expected("first-time"), "{}", b.label);
        assert_eq!(moves(&b).len(), 6, "{}", b.label);
        assert!(
            moves(&b).contains(&(
                "c1".into(),
                r#"{"from":"prospect","to":"first-time"}"#.into()
            )),
            "{}",
            b.label
        );

        // Time alone: by mid-July Ken has had no order for 180 days and lapses.
        let run = tidings(&b)
            .args(["run", "--once", "--now", "2026-07-15T10:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert_eq!(stages(&b)[1].1, "lapsed", "{}", b.label);
    }
}

/// `stages.yaml` is checked like a workflow: a bad name, a repeated name and a broken rule
/// are diagnostics at their line, and `expect_stage` must name a stage that exists.
#[test]
fn bad_stages_are_diagnostics() {
    let dir = examples_copy("bad-stages");
    write(
        &dir,
        "stages.yaml",
        "stages:
  - name: VIP
    when: customer.total_spent > 1000.0
  - name: lapsed
    when: days_since(customer.last_ordered_at) > 180
  - name: lapsed
    when: \"true\"
",
    );
    let run = Tidings::new()
        .cwd(&dir)
        .env("CRM_URL", "https://crm.example")
        .env("SUPPORT_URL", "https://support.example")
        .args(["validate"])
        .run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    insta::assert_snapshot!("bad-stages", run.stderr);

    std::fs::copy(repo_root().join("stages.yaml"), dir.join("stages.yaml")).unwrap();
    write(
        &dir,
        "workflows/welcome-series.test.yaml",
        "tests:
  - name: a stage that does not exist
    start: 2026-06-01T08:00:00Z
    steps:
      - expect_stage: { stage: lapsd }
",
    );
    let run = Tidings::new().cwd(&dir).args(["test"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("workflows/welcome-series.test.yaml:5:32")
            && run.stderr.contains("there is no stage `lapsd`")
            && run.stderr.contains("did you mean `lapsed`?"),
        "{}",
        run.stderr
    );
}

/// A workflow triggered by `stage_entered: lapsed` enrolls a customer who lapses — with
/// time alone — once, and not one who only became at-risk; shown by a workflow test.
#[test]
fn a_workflow_on_stage_entered_enrolls_each_lapsing_customer_once() {
    let dir = examples_copy("stage-entered");
    write(
        &dir,
        "workflows/lapsed-winback.yaml",
        r#"name: lapsed-winback
description: One last offer when a customer lapses.
trigger:
  stage_entered: lapsed
reentry: { after: 365d }
steps:
  - id: offer
    email: reactivation/deal
    subject: "We miss you, {{ customer.first_name or \"friend\" }}"
    coupon: { prefix: MISSYOU, valid_for: 14d }
tests:
  - name: a customer who lapses gets one offer, once
    start: 2026-06-01T12:00:00Z
    customers:
      - { id: ada, first_name: Ada, orders_count: 2, last_order_at: 2026-01-01T12:00:00Z }
      - { id: bo, orders_count: 2, last_order_at: 2026-05-01T12:00:00Z }
    steps:
      - expect_stage: { customer: ada, stage: at-risk }
      - advance: 32d
      - expect_stage: { customer: ada, stage: lapsed }
      - expect_email: { template: reactivation/deal, to: ada, at: 2026-07-01T12:00:00Z }
      - advance: 60d
      - expect_no_email: { template: reactivation/deal, to: ada }
      - expect_stage: { customer: bo, stage: at-risk }
      - expect_no_email: { template: reactivation/deal, to: bo }
"#,
    );
    let run = Tidings::new()
        .cwd(&dir)
        .args(["test", "workflows/lapsed-winback.yaml"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);
    // And the test can fail: on every stage move, the one who did not lapse is mailed too.
    edit(
        &dir,
        "workflows/lapsed-winback.yaml",
        "  stage_entered: lapsed\n",
        "  event: stage_entered\n",
    );
    let run = Tidings::new()
        .cwd(&dir)
        .args(["test", "workflows/lapsed-winback.yaml"])
        .run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    // The spelled-out form is the same trigger.
    edit(
        &dir,
        "workflows/lapsed-winback.yaml",
        "  event: stage_entered\n",
        "  event: stage_entered\naudience: event.properties.to == \"lapsed\"\n",
    );
    let run = Tidings::new()
        .cwd(&dir)
        .args(["test", "workflows/lapsed-winback.yaml"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    // A stage that `stages.yaml` does not name is a validation error at its place.
    edit(
        &dir,
        "workflows/lapsed-winback.yaml",
        "  event: stage_entered\naudience: event.properties.to == \"lapsed\"\n",
        "  stage_entered: lapsd\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("there is no stage `lapsd`")
            && run.stderr.contains("workflows/lapsed-winback.yaml:4:18")
            && run.stderr.contains("did you mean `lapsed`?"),
        "{}",
        run.stderr
    );
}

/// `event_count` reads the customer's past events, which are loaded only for workflows
/// that call it: in an audience (entry a page of customers at a time) and in an `if`
/// (a journey's step) it counts what happened, shown by a workflow test that fails when
/// the counts are not read.
#[test]
fn event_count_in_an_audience_and_an_if_counts_past_events() {
    let dir = examples_copy("event-count");
    write(
        &dir,
        "workflows/loyal-thanks.yaml",
        r#"name: loyal-thanks
description: Thanks to customers with two orders this month; a reviewer gets another note.
trigger:
  schedule: "0 9 * * *"
audience: event_count("order_placed", 30) >= 2
steps:
  - if: event_count("review_submitted", 30) >= 1
    then:
      - id: reviewer
        email: welcome/tips
        subject: "Thanks for the review"
    else:
      - id: thanks
        email: welcome/hello
        subject: "Thanks for ordering again"
tests:
  - name: only the customer with two orders enters, and the reviewer branch follows reviews
    start: 2026-06-01T10:00:00Z
    customers:
      - { id: ada, first_name: Ada }
      - { id: bo, first_name: Bo }
      - { id: cy, first_name: Cy }
    steps:
      - event: { name: order_placed, customer: ada }
      - event: { name: order_placed, customer: bo }
      - event: { name: order_placed, customer: cy }
      - advance: 1h
      - event: { name: order_placed, customer: ada }
      - event: { name: order_placed, customer: cy }
      - event: { name: review_submitted, customer: cy }
      - advance: 1d
      - expect_email: { template: welcome/hello, to: ada, at: 2026-06-02T09:00:00Z }
      - expect_email: { template: welcome/tips, to: cy, at: 2026-06-02T09:00:00Z }
      - expect_no_email: { template: welcome/hello, to: bo }
      - expect_no_email: { template: welcome/hello, to: cy }
"#,
    );
    let test = |dir: &std::path::Path| {
        Tidings::new()
            .cwd(dir)
            .args(["test", "workflows/loyal-thanks.yaml"])
            .run()
    };
    let run = test(&dir);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stdout.contains("1 passed, 0 failed"), "{}", run.stdout);
    // The counts decide: with a threshold nobody reaches, the expected emails are missing.
    edit(
        &dir,
        "workflows/loyal-thanks.yaml",
        "audience: event_count(\"order_placed\", 30) >= 2",
        "audience: event_count(\"order_placed\", 30) >= 3",
    );
    let run = test(&dir);
    assert_eq!(run.code, 1, "{}", run.transcript());
}

/// A case's `orders:` and `order:` steps are read as `tidings import orders` reads a row:
/// a bad value is a diagnostic at its line, and a fixture order needs its `placed_at`.
#[test]
fn orders_in_a_test_are_checked_like_imported_orders() {
    let dir = examples_copy("test-orders");
    write(
        &dir,
        "workflows/post-purchase-thank-you.test.yaml",
        "tests:
  - name: bad orders
    start: 2026-06-01T12:00:00Z
    customers:
      - { id: ada }
    orders:
      - { total: 10 }
      - { total: 10, placed_at: 2026-05-01T00:00:00Z, currency: euros }
    steps:
      - order: { total: lots }
",
    );
    let run = Tidings::new()
        .cwd(&dir)
        .env("CRM_URL", "https://crm.example")
        .env("SUPPORT_URL", "https://support.example")
        .args(["test"])
        .run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    for expected in [
        "post-purchase-thank-you.test.yaml:7:9",
        "a fixture order needs `placed_at`",
        "post-purchase-thank-you.test.yaml:8:",
        "`euros` is not a currency",
        "post-purchase-thank-you.test.yaml:10:",
        "`\"lots\"` is not a number",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{}", run.stderr);
    }
}
