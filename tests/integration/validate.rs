//! `tidings validate`: the shipped examples pass; every broken fixture fails with a
//! diagnostic that pins file, line and column.

use crate::common::{Tidings, edit, fixtures, repo_root, scratch_dir, write};

#[test]
fn shipped_examples_are_valid_with_a_summary_per_workflow() {
    let run = Tidings::new()
        .cwd(repo_root())
        .env("CRM_URL", "https://crm.example")
        .env("SUPPORT_URL", "https://support.example")
        .args(["validate"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert_eq!(run.stderr, "");
    insta::assert_snapshot!("shipped-examples", run.stdout);
}

/// A webhook's `${NAME}` that is not set where `validate` runs is a warning at the value
/// (every call would fail): the shipped examples' CRM and support hooks without theirs.
#[test]
fn a_webhook_variable_that_is_not_set_is_a_warning() {
    let run = Tidings::new()
        .cwd(repo_root())
        .env("CRM_URL", "https://crm.example")
        .args(["validate"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("warning[unset-variable]: `${SUPPORT_URL}` is not set")
            && run.stderr.contains("workflows/nps-survey.yaml:25:")
            && !run.stderr.contains("CRM_URL"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("1 warning"), "{}", run.stdout);
}

fn invalid_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_invalid_corpus_is_large_enough() {
    assert!(
        invalid_fixtures().len() >= 25,
        "{}",
        invalid_fixtures().len()
    );
}

#[test]
fn every_invalid_fixture_fails_with_its_pinned_diagnostic() {
    for name in invalid_fixtures() {
        let stem = name.trim_end_matches(".yaml");
        let run = Tidings::new()
            .args(["validate", &format!("invalid/{name}")])
            .run();
        assert_eq!(run.code, 1, "{name}: {}", run.transcript());
        // Every diagnostic names a file, a line and a column.
        let locations = run.stderr.matches(" --> ").count();
        let errors =
            run.stderr.matches("\nerror[").count() + usize::from(run.stderr.starts_with("error["));
        assert!(errors >= 1 && locations == errors, "{name}: {}", run.stderr);
        insta::assert_snapshot!(format!("invalid-{stem}"), run.transcript());
    }
}

#[test]
fn one_run_reports_every_error_of_every_file() {
    let run = Tidings::new().args(["validate", "invalid"]).run();
    assert_eq!(run.code, 1);
    let files_with_errors: std::collections::BTreeSet<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix(" --> "))
        .filter_map(|l| l.split(':').next())
        .collect();
    // Each workflow fixture contributes its file (template errors name the template).
    assert!(files_with_errors.len() >= 30, "{files_with_errors:?}");
    let several = Tidings::new()
        .args(["validate", "invalid/several-errors.yaml"])
        .run();
    assert!(
        several.stdout.contains("6 errors"),
        "{}",
        several.transcript()
    );
}

#[test]
fn json_format_has_positions_for_programs() {
    let run = Tidings::new()
        .args([
            "validate",
            "--format",
            "json",
            "invalid/several-errors.yaml",
        ])
        .run();
    assert_eq!(run.code, 1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["errors"], 6);
    let first = &json["diagnostics"][0];
    assert_eq!(first["file"], "invalid/several-errors.yaml");
    assert_eq!(first["line"], 3);
    assert_eq!(first["column"], 22);
    assert_eq!(first["code"], "bad-cron");
    insta::assert_snapshot!("json-several-errors", run.stdout);
}

#[test]
fn github_format_annotates_the_pull_request() {
    let run = Tidings::new()
        .args([
            "validate",
            "--format",
            "github",
            "invalid/several-errors.yaml",
        ])
        .run();
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with(
        "::error file=invalid/several-errors.yaml,line=3,col=22,endColumn=25,title=bad-cron::invalid cron line"
    ));
    insta::assert_snapshot!("github-several-errors", run.stdout);
}

#[test]
fn usage_errors_exit_2() {
    let run = Tidings::new().args(["validate", "--format", "xml"]).run();
    assert_eq!(run.code, 2, "{}", run.transcript());
    let run = Tidings::new().args(["frobnicate"]).run();
    assert_eq!(run.code, 2);
    // Arguments the command cannot take are usage errors too, found before anything is
    // opened (no store is made).
    let dir = scratch_dir("usage-errors");
    let run = Tidings::new()
        .cwd(&dir)
        .args(["preview", "welcome-series"])
        .run();
    assert_eq!(run.code, 2, "{}", run.transcript());
    assert!(
        run.stderr.contains("`--customer ID` or `--sample`"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("tidings.db").exists());
    let run = Tidings::new()
        .cwd(&dir)
        .args(["simulate", "--to", "nonsense"])
        .run();
    assert_eq!(run.code, 2, "{}", run.transcript());
}

#[test]
fn duplicate_workflow_names_across_files() {
    let run = Tidings::new()
        .args([
            "validate",
            "duplicates/dup1/same-name.yaml",
            "duplicates/dup2/same-name.yaml",
        ])
        .run();
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("duplicate-workflow", run.transcript());
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let dir = scratch_dir("warnings");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    for f in ["ok/hello.html", "ok/hello.txt"] {
        write(
            &dir,
            &format!("templates/{f}"),
            &std::fs::read_to_string(fixtures().join("templates").join(f)).unwrap(),
        );
    }
    write(
        &dir,
        "workflows/tiered.yaml",
        "name: tiered\ntrigger: { event: customer_created }\naudience: customer.attributes.tier.len() > 0\nsteps:\n  - email: ok/hello\n    subject: Hi\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stderr.contains("warning[rhai-runtime]"),
        "{}",
        run.stderr
    );
    let run = Tidings::new()
        .cwd(&dir)
        .args(["validate", "--deny-warnings"])
        .run();
    assert_eq!(run.code, 1);
}

#[test]
fn a_bad_config_file_is_reported_with_its_position() {
    let dir = scratch_dir("config");
    write(
        &dir,
        "tidings.yaml",
        "database: sqlite://x.db\nemail:\n  form: hello@acme.example\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("tidings.yaml:3:3"), "{}", run.stderr);
    assert!(
        run.stderr.contains("did you mean `from`?"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_limits_in_the_config_are_errors() {
    let dir = scratch_dir("limits");
    write(
        &dir,
        "tidings.yaml",
        "limits:\n  quiet_hours: { from: \"9pm\", to: \"08:00\" }\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("`9pm` is not a time of day"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("tidings.yaml:2:"), "{}", run.stderr);
    write(
        &dir,
        "tidings.yaml",
        "limits:\n  frequency_cap: { count: 3, per: a week }\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert!(
        run.stderr.contains("`a week` is not a period"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unused_broken_template_is_reported_when_checking_the_whole_project() {
    let dir = scratch_dir("unused-template");
    write(
        &dir,
        "templates/ok/hello.html",
        "<a href=\"{{ unsubscribe_url }}\">u</a>",
    );
    write(&dir, "templates/drafts/next.html", "{% if %}");
    write(
        &dir,
        "workflows/hi.yaml",
        "name: hi\ntrigger: { event: customer_created }\nsteps:\n  - email: ok/hello\n    subject: Hi\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("templates/drafts/next.html:1:"),
        "{}",
        run.stderr
    );
    // Checking one workflow file reports only what that workflow uses.
    let run = Tidings::new()
        .cwd(&dir)
        .args(["validate", "workflows/hi.yaml"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
}

#[test]
fn help_lists_every_command_with_one_line() {
    let run = Tidings::new().args(["--help"]).run();
    assert_eq!(run.code, 0);
    let commands: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        commands
            .iter()
            .any(|l| l.trim_start().starts_with("validate ")),
        "{}",
        run.stdout
    );
    assert!(
        commands
            .iter()
            .any(|l| l.trim_start().starts_with("schedule ")),
        "{}",
        run.stdout
    );
    // One line each: every entry starts with a command name.
    assert!(
        commands
            .iter()
            .all(|l| l.starts_with("  ") && !l.starts_with("    ")),
        "{}",
        run.stdout
    );
}

/// A subject in a language the template has no variant for is a warning at its locale:
/// the customer would read a Japanese subject over an English email.
#[test]
fn a_subject_without_a_body_in_its_language_is_a_warning() {
    let dir = scratch_dir("subject-without-body");
    write(
        &dir,
        "templates/hello.html",
        "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        &dir,
        "workflows/hi.yaml",
        "name: hi\ntrigger:\n  event: signed_up\nsteps:\n  - email: hello\n    subject:\n      default: Hello\n      ja: こんにちは\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stderr.contains("warning[subject-without-body]: the `ja` subject goes over `hello.html`, which has no `ja` variant")
            && run.stderr.contains("workflows/hi.yaml:8:7"),
        "{}",
        run.stderr
    );
    write(
        &dir,
        "templates/hello.ja.html",
        "<a href=\"{{ unsubscribe_url }}\">配信停止</a>",
    );
    let run = Tidings::new()
        .cwd(&dir)
        .args(["validate", "--deny-warnings"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
}

/// `coupons.STEP` must name an earlier email step that reserves a coupon.
#[test]
fn a_coupon_shown_later_must_be_reserved_earlier() {
    let dir = scratch_dir("coupons-later");
    write(
        &dir,
        "templates/deal.html",
        "<p>{{ coupon.code }}</p><a href=\"{{ unsubscribe_url }}\">x</a>",
    );
    write(
        &dir,
        "templates/reminder.html",
        "<p>{{ coupons.deal.code }} until {{ coupons.deal.expires_at }}, {{ coupons.dael.code }}</p><a href=\"{{ unsubscribe_url }}\">x</a>",
    );
    write(
        &dir,
        "workflows/w.yaml",
        "name: w\ntrigger:\n  event: lapsed\nsteps:\n  - id: deal\n    email: deal\n    subject: A deal\n    coupon: { prefix: BACK, valid_for: 14d }\n  - wait: 7d\n  - email: reminder\n    subject: Your code\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains(
            "error[unknown-coupon]: no email step before this one in `w` reserves a coupon `dael`"
        ) && run.stderr.contains("templates/reminder.html:1:76")
            && !run.stderr.contains("template-render")
            && run
                .stderr
                .contains("the earlier steps with a coupon are: deal"),
        "{}",
        run.stderr
    );
    edit(
        &dir,
        "templates/reminder.html",
        ", {{ coupons.dael.code }}",
        "",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
}

/// `validate` follows `{% extends %}`: the unsubscribe link in a shared layout counts for
/// every email that extends it, and a layout without one fails each of them.
#[test]
fn the_unsubscribe_link_may_live_in_a_layout() {
    let dir = scratch_dir("layouts");
    write(
        &dir,
        "templates/layout.html",
        "<html><body>{% block content %}{% endblock content %}<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></body></html>",
    );
    write(
        &dir,
        "templates/hello.html",
        "{% extends \"layout.html\" %}{% block content %}<p>Hello</p>{% endblock content %}",
    );
    write(
        &dir,
        "workflows/hi.yaml",
        "name: hi\ntrigger:\n  event: signed_up\nsteps:\n  - email: hello\n    subject: Hello\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    write(
        &dir,
        "templates/layout.html",
        "<html><body>{% block content %}{% endblock content %}</body></html>",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains(
            "error[missing-unsubscribe]: marketing email `hello.html` has no unsubscribe link"
        ),
        "{}",
        run.stderr
    );
}

/// A broken template that two workflows use is reported once, naming both, and neither
/// workflow is valid.
#[test]
fn a_template_shared_by_two_workflows_is_reported_once() {
    let dir = scratch_dir("shared-template");
    write(
        &dir,
        "templates/hello.html",
        "<p>{{ customer.nmae }}</p><a href=\"{{ unsubscribe_url }}\">x</a>",
    );
    for w in ["one", "two"] {
        write(
            &dir,
            &format!("workflows/{w}.yaml"),
            &format!(
                "name: {w}\ntrigger:\n  event: signed_up\nsteps:\n  - email: hello\n    subject: Hi\n"
            ),
        );
    }
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert_eq!(
        run.stderr.matches("has no field `nmae`").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("in the template of workflows `one`, `two`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("0 valid workflows, 1 error"),
        "{}",
        run.stdout
    );
}

/// `validate --format json` in `dir`, which must fail (exit 1): its JSON report.
fn failing_json(dir: &std::path::Path) -> serde_json::Value {
    let run = Tidings::new()
        .cwd(dir)
        .args(["validate", "--format", "json"])
        .run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    serde_json::from_str(&run.stdout).unwrap()
}

/// A config whose workflows folder holds nothing is a finding, not a usage error: exit 1,
/// and with `--format json` the diagnostic on stdout, at the setting.
#[test]
fn a_workflows_folder_that_is_not_there_is_a_finding() {
    let dir = scratch_dir("no-workflows");
    write(&dir, "tidings.yaml", "workflows: nope\n");
    let doc = failing_json(&dir);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "config-workflows", "{doc}");
    assert!(
        d["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("tidings.yaml")),
        "{doc}"
    );
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(1), Some(12)),
        "{doc}"
    );
    assert!(
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{doc}"
    );
}

/// A file that is not UTF-8 and a template whose parent is missing are reported at their
/// line, so an annotation lands on them (once each).
#[test]
fn unreadable_text_and_a_missing_parent_are_placed() {
    let dir = scratch_dir("placed");
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    std::fs::write(
        dir.join("workflows/latin1.yaml"),
        b"name: latin1\ntrigger:\n  event: x\nsteps:\n  - email: child\n    subject: \"Caf\xe9\"\n",
    )
    .unwrap();
    write(
        &dir,
        "workflows/child.yaml",
        "name: child\ntrigger:\n  event: x\nsteps:\n  - email: child\n    subject: Hi\n",
    );
    write(
        &dir,
        "templates/child.html",
        "{% extends \"base.html\" %}\n",
    );
    let doc = failing_json(&dir);
    let found: Vec<(String, String, u64, u64)> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_string(),
                d["file"].as_str().unwrap_or("(none)").to_string(),
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        found
            .iter()
            .all(|(_, file, line, _)| file != "(none)" && *line > 0),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "workflow-unreadable".into(),
            "workflows/latin1.yaml".into(),
            6,
            18
        )),
        "{found:?}"
    );
    let links: Vec<_> = found.iter().filter(|f| f.0 == "template-link").collect();
    assert_eq!(links.len(), 1, "{found:?}");
    assert_eq!((links[0].2, links[0].3), (1, 13), "{found:?}");
}

/// A subject is checked once per scope and reused, so 500 workflows do not each build a Tera
/// for it; the reuse must not hide a problem: the same text is an error again where its
/// scope lacks what it reads (here `coupon`), and a broken one is reported in every file.
#[test]
fn a_subject_checked_once_still_fails_where_its_scope_differs() {
    let dir = scratch_dir("subject-scopes");
    write(
        &dir,
        "templates/hello.html",
        "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">x</a>",
    );
    let step = |coupon: bool, subject: &str| {
        format!(
            "  - email: hello\n    subject: \"{subject}\"\n{}",
            if coupon {
                "    coupon: { prefix: HI, valid_for: 7d }\n"
            } else {
                ""
            }
        )
    };
    for (w, coupon) in [("a", true), ("b", true), ("c", false)] {
        write(
            &dir,
            &format!("workflows/{w}.yaml"),
            &format!(
                "name: {w}\ntrigger:\n  event: signed_up\nsteps:\n{}{}",
                step(coupon, "Your code {{ coupon.code }}"),
                step(false, "Hi {{ customer.first_name | nosuchfilter }}"),
            ),
        );
    }
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    // `c` has no coupon where `a` and `b` had one: its subject is an error there only.
    assert_eq!(
        run.stderr.matches("unknown variable `coupon`").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("unknown variable `coupon`\n --> workflows/c.yaml:6:"),
        "{}",
        run.stderr
    );
    // The broken subject, the same text in each file, is reported in each.
    assert_eq!(
        run.stderr.matches("Unknown filter `nosuchfilter`").count(),
        3,
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("0 valid workflows"), "{}", run.stdout);
}
