//! Files and values shaped to break tidings (what issue 29's fuzzing found): `validate`, a
//! test run and a pass answer each with a diagnostic or a failed journey, never a panic, a
//! hang or a process killed for memory.

use crate::common::{Tidings, scratch_dir, write};
use crate::store::{backends, tidings};

/// `validate FILE` in a scratch project holding only that file; the run and the file name.
fn validate(name: &str, text: &str, format: &str) -> crate::common::Run {
    let dir = scratch_dir(&format!("hostile-{name}"));
    write(&dir, &format!("workflows/{name}.yaml"), text);
    Tidings::new()
        .cwd(&dir)
        .args(["validate", "--format", format])
        .run()
}

fn assert_no_panic(run: &crate::common::Run, what: &str) {
    assert!(
        !run.stderr.contains("panicked") && run.code != 101,
        "{what}: {}",
        run.transcript()
    );
}

/// Regression: a YAML error after a multi-byte character was reported at a character
/// count used as a byte offset, and `validate` panicked ("not a char boundary").
#[test]
fn an_error_after_multibyte_text_is_reported_at_its_line() {
    for (name, text, line) in [
        ("kanji", "r: 物", 1),
        ("quote", "a: {ああ\"}", 1),
        ("accent", "name: x\nsteps: [é, x]", 2),
    ] {
        let run = validate(name, text, "human");
        assert_no_panic(&run, name);
        assert_eq!(run.code, 1, "{name}: {}", run.transcript());
        assert!(
            run.stderr
                .contains(&format!(" --> workflows/{name}.yaml:{line}:")),
            "{name}: {}",
            run.stderr
        );
        let run = validate(name, text, "json");
        assert_eq!(run.code, 1, "{name}: {}", run.transcript());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", run.transcript()));
        assert!(doc.to_string().contains(&format!("{name}.yaml")), "{doc}");
    }
}

/// Regression: nesting thousands deep and an alias chain that expands to millions of
/// values took gigabytes and minutes. Each stops at a bound, with its line.
#[test]
fn nesting_aliases_and_second_documents_stop_at_a_bound() {
    let mut laughs =
        String::from("name: laughs\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let blocks = format!("name: blocks\nsteps:\n{}x\n", "- ".repeat(8_000));
    let flows = format!(
        "name: flows\nsteps: {}x{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let second = "name: second\n---\nname: third\n".to_string();
    for (name, text, line, says) in [
        ("laughs", laughs, 7, "aliases"),
        ("blocks", blocks, 3, "nests more than 64 levels"),
        ("flows", flows, 2, "nests more than 64 levels"),
        ("second", second, 2, "a second YAML document"),
    ] {
        let run = validate(name, &text, "human");
        assert_no_panic(&run, name);
        assert_eq!(run.code, 1, "{name}: {}", run.transcript());
        assert!(
            run.stderr.contains("error[yaml-limits]") && run.stderr.contains(says),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!(" --> workflows/{name}.yaml:{line}:")),
            "{name}: {}",
            run.stderr
        );
    }
}

/// Regression: `advance: 100000000d` panicked on a runner thread; the case vanished and
/// the run said `0 passed, 0 failed` and exited 0. Durations are capped (a hundred years)
/// and a test advances at most ten years at once: both are diagnostics at their line.
#[test]
fn a_test_that_advances_too_far_is_an_error_at_its_line() {
    let dir = scratch_dir("hostile-advance");
    write(
        &dir,
        "workflows/hello.yaml",
        "name: hello\ntrigger:\n  event: customer_created\nsteps:\n  - email: hello\n    subject: Hello\n",
    );
    write(
        &dir,
        "templates/hello.html",
        "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    for (advance, says) in [
        ("100000000d", "a duration is at most 36500d"),
        ("3661d", "longer than a test advances at once"),
    ] {
        write(
            &dir,
            "workflows/hello.test.yaml",
            &format!(
                "tests:\n  - name: far\n    start: 2026-06-01T08:00:00Z\n    customers: [{{ id: c1 }}]\n    steps:\n      - advance: {advance}\n"
            ),
        );
        let run = Tidings::new().cwd(&dir).args(["test"]).run();
        assert_no_panic(&run, advance);
        assert_eq!(run.code, 1, "{advance}: {}", run.transcript());
        assert!(
            run.stderr.contains(says) && run.stderr.contains("hello.test.yaml:6:"),
            "{advance}: {}",
            run.transcript()
        );
    }
}

/// Regression: `event_count("order_placed", customer.orders_count)` with an
/// `orders_count` of 100,000,000 overflowed a date and the process exited 101, again at
/// every start. The count now reaches back to the calendar's start: every event counts.
#[test]
fn a_customers_huge_number_fails_nothing() {
    for b in backends("hostile-overflow") {
        write(
            &b.dir,
            "workflows/count.yaml",
            "name: count\ntrigger:\n  event: order_placed\naudience: event_count(\"order_placed\", customer.orders_count) >= 1\nsteps:\n  - email: hello\n    subject: Hello\n",
        );
        write(
            &b.dir,
            "templates/hello.html",
            "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        );
        write(
            &b.dir,
            "stages.yaml",
            "stages:\n  - name: busy\n    when: event_count(\"x\", 100000000) >= 0\n",
        );
        let run = tidings(&b).args(["validate"]).run();
        assert_no_panic(&run, "validate");
        write(
            &b.dir,
            "customers.csv",
            "id,email,orders_count\nbig,big@example.com,100000000\n",
        );
        let run = tidings(&b)
            .args(["import", "customers", "customers.csv"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b)
            .args(["event", "order_placed", "--customer", "big"])
            .args(["--at", "2026-06-01T08:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b)
            .args(["run", "--once", "--now", "2026-06-01T08:00:00Z"])
            .run();
        assert_no_panic(&run, "run");
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        // `big` counts every order since the calendar's start (1): it enters.
        assert_eq!(
            crate::daemon::count(
                &b,
                "SELECT COUNT(*) FROM enrollments WHERE customer_id = 'big'"
            ),
            1,
            "{}",
            b.label
        );
    }
}
