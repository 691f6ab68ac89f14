//! Restart safety: `run --once` killed (SIGKILL, no chance to clean up) while it enrolls
//! customers and again while it writes emails, then run again to the end, has written every
//! email exactly once — nothing twice, nothing skipped — on SQLite and on PostgreSQL.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sqlx::Row;
use tidings::store::Store;

use crate::common::write;
use crate::store::{Backend, backends, runtime, tidings, with_examples};

/// 09:00 in London, when the birthday gifts fire: a fresh store fires a time equal to the pass.
const NOW: &str = "2026-06-02T08:00:00Z";
const BIRTHDAYS: usize = 1_500;
const NEWCOMERS: usize = 300;

fn count(rt: &tokio::runtime::Runtime, store: &Store, sql: &str) -> i64 {
    rt.block_on(async {
        let mut conn = store.connection().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut *conn)
            .await
            .map(|r| r.get::<i64, _>(0))
            .unwrap_or(0)
    })
}

fn eml_files(b: &Backend) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(b.dir.join("out/mail"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts a pass and kills it as soon as `ready` says it is in the middle of its work.
/// Returns whether it was still running when killed.
fn interrupt(b: &Backend, ready: impl Fn() -> bool) -> bool {
    let mut child = crate::common::spawn(&b.dir, &b.url, &["run", "--once", "--now", NOW]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false; // finished before the moment came
        }
        if ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

#[test]
fn a_killed_pass_run_again_sends_everything_exactly_once() {
    for b in backends("restart") {
        with_examples(&b);
        write(
            &b.dir,
            "tidings.yaml",
            "database: ${TIDINGS_DB}\nemail: { lease: 1s }\n",
        );
        let mut customers = String::from("id,email,first_name,timezone,birthday,orders_count\n");
        let mut events = String::from("customer_id,name,at\n");
        for i in 0..BIRTHDAYS + NEWCOMERS {
            let birthday = if i < BIRTHDAYS { "1990-06-02" } else { "" };
            customers.push_str(&format!(
                "r{i:05},r{i}@example.com,R{i},Europe/London,{birthday},0\n"
            ));
            if i >= BIRTHDAYS {
                events.push_str(&format!("r{i:05},customer_created,2026-06-02T07:30:00Z\n"));
            }
        }
        write(&b.dir, "customers.csv", &customers);
        write(&b.dir, "events.csv", &events);
        for (kind, file) in [("customers", "customers.csv"), ("events", "events.csv")] {
            let run = tidings(&b).args(["import", kind, file]).run();
            assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        }
        let expected = BIRTHDAYS + NEWCOMERS; // a birthday gift each, a welcome each

        let rt = runtime();
        let store = rt.block_on(Store::open(&b.url)).unwrap();
        // Killed while customers are being enrolled ...
        let mid_enroll = interrupt(&b, || {
            count(&rt, &store, "SELECT COUNT(*) FROM enrollments") > 200
        });
        let enrolled = count(&rt, &store, "SELECT COUNT(*) FROM enrollments");
        // ... and while emails are being written.
        let mid_send = interrupt(&b, || eml_files(&b).len() > 100);
        let sent = count(
            &rt,
            &store,
            "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'",
        );
        assert!(
            mid_enroll || mid_send,
            "{}: neither pass was interrupted mid-way; the test proves nothing",
            b.label
        );
        eprintln!(
            "{}: killed after {enrolled} enrollments (mid-way: {mid_enroll}) and after {sent} sends (mid-way: {mid_send})",
            b.label
        );

        // SQLite has one sender and takes over at once; on PostgreSQL another sender may be
        // alive, so what the killed one held waits for its lease (1 s here) to run out.
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        let run = tidings(&b).args(["run", "--once", "--now", NOW]).run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        // A pass at the same moment again finds nothing left to do.
        let again = tidings(&b).args(["run", "--once", "--now", NOW]).run();
        assert!(
            again.stdout.contains("0 enrolled") && again.stdout.contains("delivered 0 emails"),
            "{}: {}",
            b.label,
            again.stdout
        );

        for (sql, want) in [
            (
                "SELECT COUNT(*) FROM enrollments WHERE workflow = 'birthday-offer'",
                BIRTHDAYS,
            ),
            (
                "SELECT COUNT(*) FROM enrollments WHERE workflow = 'welcome-series'",
                NEWCOMERS,
            ),
            ("SELECT COUNT(*) FROM deliveries", expected),
            (
                "SELECT COUNT(*) FROM deliveries WHERE state IN ('sent', 'unknown')",
                expected,
            ),
            (
                "SELECT COUNT(DISTINCT coupon_code) FROM deliveries WHERE workflow = 'birthday-offer'",
                BIRTHDAYS,
            ),
        ] {
            assert_eq!(count(&rt, &store, sql), want as i64, "{}: {sql}", b.label);
        }
        // The birthday gift is `at_most_once`: the one email a kill caught mid-write is
        // left `unknown` (its file may or may not be whole), never written twice.
        let unknown = count(
            &rt,
            &store,
            "SELECT COUNT(*) FROM deliveries WHERE state = 'unknown'",
        );
        assert!(unknown <= 1, "{}: {unknown} unknown", b.label);
        let files = eml_files(&b);
        assert_eq!(files.len() as i64, expected as i64 - unknown, "{}", b.label);
        let mut recipients = BTreeSet::new();
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            let to = text
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap()
                .to_string();
            let workflow = text
                .lines()
                .find_map(|l| l.strip_prefix("X-Tidings-Workflow: "))
                .unwrap()
                .to_string();
            assert!(
                recipients.insert((workflow, to)),
                "{}: {}",
                b.label,
                f.display()
            );
        }
        assert!(
            !b.dir.join("out/mail").read_dir().unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
            "{}: a half-written file was left behind",
            b.label
        );
        rt.block_on(store.close());
    }
}
