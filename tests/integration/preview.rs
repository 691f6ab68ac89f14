//! `tidings preview`: a workflow's emails as a customer will see them, pinned by snapshots
//! for customers with Japanese, Hindi and Chinese names and locales, and for the sample
//! customer.

use crate::common::write;
use crate::store::{backends, tidings, with_examples};

fn demo(name: &str) -> crate::store::Backend {
    let b = backends(name).remove(0);
    with_examples(&b);
    // A fixed key, so that the unsubscribe links in the snapshots are stable.
    write(
        &b.dir,
        "tidings.yaml",
        "database: ${TIDINGS_DB}\nunsubscribe:\n  base_url: https://acme.example/u\n  secret: preview-test-key\n",
    );
    crate::store::import_demo(&b, "customers");
    b
}

#[test]
fn previews_render_in_each_customers_language() {
    let b = demo("preview-locales");
    for (customer, language) in [("c2", "japanese"), ("c3", "hindi"), ("c4", "chinese")] {
        let run = tidings(&b)
            .args([
                "preview",
                "birthday-offer",
                "--customer",
                customer,
                "--now",
                "2026-06-02T00:00:00Z",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        insta::assert_snapshot!(format!("birthday-{language}"), run.stdout);
    }
    let run = tidings(&b)
        .args([
            "preview",
            "welcome-series",
            "--sample",
            "--now",
            "2026-06-01T08:00:00Z",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    insta::assert_snapshot!("welcome-sample", run.stdout);
}

#[test]
fn every_locale_and_an_html_page() {
    let b = demo("preview-page");
    let run = tidings(&b)
        .args([
            "preview",
            "birthday-offer",
            "gift",
            "--sample",
            "--all-locales",
            "--now",
            "2026-06-02T00:00:00Z",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let headers: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("=== "))
        .collect();
    assert_eq!(
        headers,
        [
            "=== birthday-offer › gift · to ada@example.com · locale default",
            "=== birthday-offer › gift · to ada@example.com · locale hi",
            "=== birthday-offer › gift · to ada@example.com · locale ja",
            "=== birthday-offer › gift · to ada@example.com · locale zh",
        ]
    );
    let page = b.dir.join("preview.html");
    let run = tidings(&b)
        .args([
            "preview",
            "birthday-offer",
            "--customer",
            "c2",
            "--out",
            page.to_str().unwrap(),
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<iframe sandbox srcdoc=") && html.contains("山田様"),
        "{html}"
    );

    // Mistakes say what to do.
    for (args, says) in [
        (
            vec!["preview", "birthday-ofer", "--sample"],
            "did you mean `birthday-offer`?",
        ),
        (
            vec!["preview", "welcome-series", "nope", "--sample"],
            "its email steps are: hello, tips, first-order-offer",
        ),
        (
            vec!["preview", "welcome-series", "--customer", "c9"],
            "no customer has the id `c9`",
        ),
        (
            vec!["preview", "welcome-series"],
            "`--customer ID` or `--sample`",
        ),
    ] {
        let run = tidings(&b).args(&args).run();
        assert_ne!(run.code, 0, "{args:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
    }
}

/// `--send-to`: the email goes through the configured SMTP server to the reviewer, marked as
/// a proof, and nothing is recorded — no outbox row, no journey, no coupon reserved.
#[test]
fn a_proof_arrives_marked_and_leaves_no_row() {
    use crate::common::{Act, SmtpServer};
    for b in backends("preview-proof") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        crate::smtp::project(&b, server.port, "");
        let run = tidings(&b)
            .args(["preview", "reactivation-deal", "deal", "--customer", "c4"])
            .args(["--send-to", "reviewer@acme.example"])
            .run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        assert_eq!(
            run.stdout,
            "proof of `deal` (zh-CN) sent to reviewer@acme.example\n"
        );
        let received = server.received();
        assert_eq!(received.len(), 1, "{}", b.label);
        assert_eq!(received[0].to, "reviewer@acme.example");
        let m = mail_parser::MessageParser::default()
            .parse(&received[0].bytes)
            .unwrap();
        assert_eq!(m.header_raw("X-Tidings-Proof").map(str::trim), Some("1"));
        assert!(
            m.subject().unwrap().starts_with("[proof] "),
            "{:?}",
            m.subject()
        );
        for sql in [
            "SELECT COUNT(*) FROM deliveries",
            "SELECT COUNT(*) FROM enrollments",
            "SELECT COUNT(*) FROM coupons",
        ] {
            assert_eq!(crate::daemon::count(&b, sql), 0, "{}: {sql}", b.label);
        }
        let run = tidings(&b)
            .args([
                "preview",
                "reactivation-deal",
                "--sample",
                "--send-to",
                "not an address",
            ])
            .run();
        assert_eq!(run.code, 2, "{}", run.transcript());
    }
}

/// `--event`: the preview shows the email the given event would bring; without it, a note
/// says that a sample event is used.
#[test]
fn a_preview_takes_the_event_it_is_asked_for() {
    let b = demo("preview-event");
    let run = tidings(&b)
        .args(["preview", "review-request", "--customer", "c2"])
        .args([
            "--event",
            r#"{"properties": {"product_name": "Teapot", "order_id": "77"}}"#,
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stdout.contains("Teapot") && run.stdout.contains("77"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    write(
        &b.dir,
        "event.json",
        r#"{"properties": {"product_name": "Kettle"}}"#,
    );
    let run = tidings(&b)
        .args([
            "preview",
            "review-request",
            "--customer",
            "c2",
            "--event",
            "@event.json",
        ])
        .run();
    assert!(run.stdout.contains("Kettle"), "{}", run.transcript());
    let run = tidings(&b)
        .args(["preview", "review-request", "--customer", "c2"])
        .run();
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("a sample event is used"),
        "{}",
        run.stderr
    );
    let run = tidings(&b)
        .args([
            "preview",
            "review-request",
            "--sample",
            "--event",
            "{\"nope\": 1}",
        ])
        .run();
    assert_eq!(run.code, 2, "{}", run.transcript());
    assert!(run.stderr.contains("unknown key `nope`"), "{}", run.stderr);
}

/// Dates are written in the language of the text the customer gets (`template.locale`):
/// a Japanese reader of the English welcome offer (there is no Japanese one) reads an
/// English date, an `en-GB` reader a British one, and a Traditional-Chinese reader gets
/// the English birthday offer, not the Simplified one, with an English date.
#[test]
fn dates_follow_the_language_of_the_chosen_text() {
    let b = demo("preview-template-locale");
    write(
        &b.dir,
        "taiwan.csv",
        "id,email,first_name,locale,birthday\ntw,mei@example.tw,美,zh-Hant-TW,1990-06-02\n",
    );
    let run = tidings(&b)
        .args(["import", "customers", "taiwan.csv"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let preview = |workflow: &str, customer: &str| {
        let run = tidings(&b)
            .args(["preview", workflow, "--customer", customer])
            .args(["--now", "2026-06-02T00:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        run.stdout
    };
    // c2 is ja-JP, c1 en-GB (examples/demo/customers.csv).
    let japanese = preview("welcome-series", "c2");
    assert!(japanese.contains("June 16, 2026"), "{japanese}");
    assert!(!japanese.contains('年'), "{japanese}");
    let british = preview("welcome-series", "c1");
    assert!(british.contains("16 June 2026"), "{british}");
    let traditional = preview("birthday-offer", "tw");
    assert!(!traditional.contains("八五折"), "{traditional}");
    assert!(traditional.contains("15% off"), "{traditional}");
    assert!(!traditional.contains('年'), "{traditional}");
}
