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
    let file = crate::common::repo_root().join("examples/demo/customers.csv");
    let run = tidings(&b)
        .args(["import", "customers", file.to_str().unwrap()])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
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
