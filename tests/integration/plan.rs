//! `tidings plan`: after the demo shop ran, a changed audience moves its count as the
//! store's data says it should, a removed step strands the journeys standing at it, a
//! removed workflow strands all of its own, and a new workflow shows as new — compared
//! with the deployed set and with a git ref.

use serde_json::Value;

use crate::common::{edit, write};
use crate::store::{Backend, backends, demo_with_stages, pass, text_pairs, tidings, with_store};

const DEPLOYED_AT: &str = "2026-06-01T08:00:00Z";
const NOW: &str = "2026-06-01T09:00:00Z";

fn plan(b: &Backend, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--now", NOW, "--format", "json"];
    args.extend_from_slice(extra);
    let run = tidings(b).args(&args).run();
    assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    serde_json::from_str(&run.stdout).unwrap()
}

fn line<'a>(doc: &'a Value, workflow: &str) -> &'a Value {
    doc["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["workflow"] == workflow)
        .unwrap_or_else(|| panic!("no line for {workflow}: {doc}"))
}

/// Customers with an order for whom `days_since(customer.last_order_at) > days` at `NOW`
/// (whole days elapsed, so at least `days + 1` days), counted by SQL in the store, not by
/// the rule engine under test.
fn lapsed_for(b: &Backend, days: i64) -> u64 {
    let cutoff = chrono::DateTime::parse_from_rfc3339(NOW)
        .unwrap()
        .timestamp_millis()
        - (days + 1) * 86_400_000;
    with_store(b, async move |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM customers WHERE orders_count >= 1 AND last_order_at <= $1",
        )
        .bind(cutoff)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get(0);
        n as u64
    })
}

/// The steps the running enrollments of a workflow stand at.
fn running(b: &Backend, workflow: &str) -> Vec<String> {
    text_pairs(
        b,
        "SELECT workflow, step FROM enrollments WHERE state = 'active'",
    )
    .into_iter()
    .filter(|(w, _)| w == workflow)
    .map(|(_, step)| step)
    .collect()
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn plan_shows_audience_moves_stranded_journeys_and_new_workflows() {
    for b in backends("plan") {
        demo_with_stages(&b);
        // Before anything ran, every workflow is new.
        let fresh = plan(&b, &[]);
        assert_eq!(fresh["against"]["kind"], "none", "{fresh}");
        assert_eq!(line(&fresh, "welcome-series")["change"]["kind"], "added");

        pass(&b, DEPLOYED_AT);
        git(&b.dir, &["init", "-q"]);
        git(&b.dir, &["add", "-A"]);
        git(&b.dir, &["commit", "-q", "-m", "deployed"]);

        let before = plan(&b, &[]);
        assert_eq!(before["against"]["kind"], "deployed", "{before}");
        assert_eq!(before["customers"], 5);
        for l in before["workflows"].as_array().unwrap() {
            assert_eq!(l["change"]["kind"], "unchanged", "{}: {l}", b.label);
            assert_eq!(l["stranded"], serde_json::json!({}), "{}: {l}", b.label);
        }
        let deal = line(&before, "reactivation-deal");
        assert_eq!(
            deal["audience_now"],
            lapsed_for(&b, 90),
            "{}: {deal}",
            b.label
        );
        // The next Monday 10:00 in Berlin. That week, each journey the deployment's own
        // Monday started gets its last chance (nobody has ordered since), and each new
        // entrant the deal; reentry after 180 days keeps the first from entering again.
        assert_eq!(deal["next_entry"]["kind"], "at");
        assert_eq!(deal["next_entry"]["at"], "2026-06-08T08:00:00Z");
        let started = running(&b, "reactivation-deal").len() as u64;
        assert_eq!(started, lapsed_for(&b, 90), "{}", b.label);
        assert_eq!(deal["next_entry"]["customers"], 0, "{deal}");
        assert_eq!(deal["emails_7d"], started, "{}: {deal}", b.label);
        assert_eq!(deal["emails_24h"], 0);
        // The welcome series' audience (no orders yet) holds Ada; it waits for events to
        // enroll anyone, and her next two emails fall due in the week.
        let welcome = line(&before, "welcome-series");
        assert_eq!(welcome["audience_now"], 1, "{}: {welcome}", b.label);
        assert_eq!(welcome["next_entry"]["kind"], "on_event");
        assert_eq!(welcome["emails_7d"], 2, "{}: {welcome}", b.label);

        // The change under review: a wider reactivation audience, a welcome step removed
        // under a running journey, the review request removed, a new workflow.
        let standing = running(&b, "welcome-series");
        assert_eq!(standing.len(), 1, "{}: {standing:?}", b.label);
        let step = standing[0].clone();
        assert_eq!(step, "tips", "{}: Ada waits for her second email", b.label);
        edit(
            &b.dir,
            "workflows/reactivation-deal.yaml",
            "days_since(customer.last_order_at) > 90",
            "days_since(customer.last_order_at) > 0",
        );
        edit(
            &b.dir,
            "workflows/welcome-series.yaml",
            "  - id: tips\n    email: welcome/tips\n    subject: \"Three ways to get the most from Acme\"\n  - wait: 5d\n",
            "",
        );
        let reviews = running(&b, "review-request");
        assert!(
            !reviews.is_empty(),
            "{}: María's review request waits",
            b.label
        );
        std::fs::remove_file(b.dir.join("workflows/review-request.yaml")).unwrap();
        std::fs::remove_file(b.dir.join("workflows/review-request.test.yaml")).unwrap();
        write(
            &b.dir,
            "workflows/vip-thanks.yaml",
            "name: vip-thanks\nclass: transactional\ntrigger:\n  stage_entered: vip\naudience: event.properties.from != \"lapsed\"\nsteps:\n  - id: thanks\n    email: thanks/order\n    subject: Thank you\n",
        );
        for against in [&[][..], &["--against", "HEAD"][..]] {
            let after = plan(&b, against);
            let kind = if against.is_empty() {
                "deployed"
            } else {
                "ref"
            };
            assert_eq!(after["against"]["kind"], kind, "{after}");
            let deal = line(&after, "reactivation-deal");
            assert_eq!(deal["change"]["kind"], "changed", "{deal}");
            assert_eq!(deal["change"]["removed_steps"], serde_json::json!([]));
            let wider = lapsed_for(&b, 0);
            assert!(
                wider > lapsed_for(&b, 90),
                "{}: the scenario moves the count",
                b.label
            );
            assert_eq!(deal["audience_now"], wider, "{}: {deal}", b.label);
            let welcome = line(&after, "welcome-series");
            assert_eq!(
                welcome["change"]["removed_steps"],
                serde_json::json!(["tips", "4"]),
                "{}: {welcome}",
                b.label
            );
            assert_eq!(
                welcome["stranded"],
                serde_json::json!({ "tips": 1 }),
                "{}",
                b.label
            );
            // Ada's journey would exit at `tips`: no more welcome mail this week.
            assert_eq!(welcome["emails_7d"], 0, "{}: {welcome}", b.label);
            let gone = line(&after, "review-request");
            assert_eq!(gone["change"]["kind"], "removed");
            let stranded: u64 = gone["stranded"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum();
            assert_eq!(stranded, reviews.len() as u64, "{}: {gone}", b.label);
            let new = line(&after, "vip-thanks");
            assert_eq!(new["change"]["kind"], "added", "{new}");
            assert_eq!(
                new["trigger"], "entering stage `vip`, 1 step, 1 email",
                "{new}"
            );
            // Its audience reads the event, which has not happened: no count to give.
            assert_eq!(new["audience_now"], Value::Null, "{new}");
        }
        // The table a reviewer pastes into the pull request.
        let run = tidings(&b).args(["plan", "--now", NOW]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(
            run.stdout.contains("| workflow | change | trigger | audience now |")
                && run.stdout.contains("| welcome-series | changed (steps removed: `tips`, `4`) |")
                && run.stdout.contains("1 running enrollment of `welcome-series` at step `tips`: step `tips` no longer exists; it would exit at its next step.")
                && run.stdout.contains("| vip-thanks | **new** |")
                && run.stdout.contains("| review-request | **removed** |"),
            "{}",
            run.stdout
        );
    }
}

/// A ref git does not know is a clear error, not a panic or an empty plan.
#[test]
fn plan_against_an_unknown_ref_says_so() {
    let b = backends("plan-bad-ref").remove(0);
    demo_with_stages(&b);
    git(&b.dir, &["init", "-q"]);
    git(&b.dir, &["add", "-A"]);
    git(&b.dir, &["commit", "-q", "-m", "one"]);
    let run = tidings(&b)
        .args(["plan", "--now", NOW, "--against", "no-such-branch"])
        .run();
    assert_eq!(run.code, 2, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("`--against no-such-branch`: git cannot export that ref"),
        "{}",
        run.stderr
    );
}
