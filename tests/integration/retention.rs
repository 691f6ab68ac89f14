//! `retention.bodies`: the outbox is a queue, not an archive. A pass drops the bodies of mail
//! done longer ago than the retention (default 7 days) and keeps their rows; `outbox show`
//! prints a kept body, or says when and why it is gone and how to see the email again.

use crate::common::write;
use crate::daemon::count;
use crate::store::{backends, pass, tidings};

fn project(b: &crate::store::Backend, retention: &str) {
    write(
        &b.dir,
        "tidings.yaml",
        &format!("database: ${{TIDINGS_DB}}\n{retention}"),
    );
    write(
        &b.dir,
        "workflows/hello.yaml",
        "name: hello\ntrigger:\n  event: signed_up\nsteps:\n  - id: hi\n    email: hi\n    subject: Hello {{ customer.first_name }}\n",
    );
    write(
        &b.dir,
        "templates/hi.html",
        "<p>Hi {{ customer.first_name }}, welcome aboard.</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        &b.dir,
        "customers.csv",
        "id,email,first_name\nc1,c1@example.com,Ada\nc2,c2@example.com,Bo\nc3,c3@example.com,Cy\n",
    );
    write(
        &b.dir,
        "events.csv",
        "customer_id,name,at\nc1,signed_up,2026-06-01T09:00:00Z\nc2,signed_up,2026-06-01T09:00:00Z\nc3,signed_up,2026-06-07T09:00:00Z\n",
    );
    crate::store::import_both(b);
}

/// The id `outbox list` shows (its last column) for a customer's email.
fn email_of(b: &crate::store::Backend, customer: &str) -> String {
    let list = tidings(b)
        .args(["outbox", "list", "--customer", customer])
        .run();
    assert_eq!(list.code, 0, "{}", list.transcript());
    let line = list.stdout.lines().nth(1).unwrap_or_default().to_string();
    line.rsplit(' ').next().unwrap_or_default().to_string()
}

/// Two emails sent on the 1st, one on the 7th: the pass of the 9th drops the first two
/// bodies (done more than 7 days before) and keeps the third and every row, on both
/// stores; `outbox show` tells the two apart.
#[test]
fn bodies_are_dropped_after_the_retention_and_rows_stay() {
    for b in backends("retention") {
        project(&b, "");
        pass(&b, "2026-06-01T09:05:00Z");
        pass(&b, "2026-06-07T09:05:00Z");
        let bodies = || count(&b, "SELECT COUNT(*) FROM delivery_bodies");
        assert_eq!(bodies(), 3, "{}", b.label);
        let out = pass(&b, "2026-06-09T10:00:00Z");
        assert!(
            out.contains("dropped the bodies of 2 emails done before retention.bodies"),
            "{}: {out}",
            b.label
        );
        assert_eq!(bodies(), 1, "{}", b.label);
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'"),
            3
        );

        let gone = tidings(&b)
            .args(["outbox", "show", &email_of(&b, "c1")])
            .run();
        assert_eq!(gone.code, 0, "{}", gone.transcript());
        assert!(
            gone.stdout.contains("subject     Hello Ada"),
            "{}",
            gone.stdout
        );
        assert!(
            gone.stdout
                .contains("body        dropped: kept for 7d after the email was done")
                && gone
                    .stdout
                    .contains("`tidings preview hello hi --customer c1`"),
            "{}",
            gone.stdout
        );
        let kept = tidings(&b)
            .args(["outbox", "show", &email_of(&b, "c3")])
            .run();
        assert_eq!(kept.code, 0, "{}", kept.transcript());
        assert!(
            kept.stdout.contains("Hi Cy, welcome aboard."),
            "{}",
            kept.stdout
        );
        assert!(!kept.stdout.contains("dropped"), "{}", kept.stdout);

        // A later pass the same day drops nothing more; the retention can be shorter.
        let out = pass(&b, "2026-06-09T11:00:00Z");
        assert!(!out.contains("dropped"), "{}: {out}", b.label);
    }
}

/// `retention.bodies: 1d` drops the first two bodies on the 7th and the third on the 9th; a retention that is not a duration is
/// refused at its line and column; `outbox show` without an id, or with an unknown one, is
/// a clear error.
#[test]
fn the_retention_is_a_setting_and_show_needs_a_known_id() {
    let b = backends("retention-setting").remove(0);
    project(&b, "retention:\n  bodies: 1d\n");
    pass(&b, "2026-06-01T09:05:00Z");
    let out = pass(&b, "2026-06-07T09:05:00Z");
    assert!(out.contains("dropped the bodies of 2 emails"), "{out}");
    let out = pass(&b, "2026-06-09T10:00:00Z");
    assert!(out.contains("dropped the bodies of 1 email done"), "{out}");

    let none = tidings(&b).args(["outbox", "show"]).run();
    assert_eq!(none.code, 2, "{}", none.transcript());
    assert!(
        none.stderr.contains("name the email to show"),
        "{}",
        none.stderr
    );
    let unknown = tidings(&b).args(["outbox", "show", "nope"]).run();
    assert_eq!(unknown.code, 2, "{}", unknown.transcript());
    assert!(
        unknown.stderr.contains("no email `nope` in the outbox"),
        "{}",
        unknown.stderr
    );

    write(
        &b.dir,
        "tidings.yaml",
        "database: ${TIDINGS_DB}\nretention:\n  bodies: soon\n",
    );
    let bad = tidings(&b).args(["validate"]).run();
    assert_ne!(bad.code, 0, "{}", bad.transcript());
    assert!(
        bad.stderr
            .contains("`soon` is not a duration for `retention.bodies`")
            && bad.stderr.contains("tidings.yaml:3:11"),
        "{}",
        bad.stderr
    );
}
