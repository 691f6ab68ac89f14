//! The store and `import`/`event`, on a real SQLite file and on the PostgreSQL server named
//! by `TIDINGS_TEST_DATABASE_URL` (skipped, and said so, when it is not set).

use std::path::PathBuf;

use tidings::store::Store;

use crate::common::{Tidings, scratch_dir, write};

/// A project folder whose `tidings.yaml` points at one backend, and that backend's URL.
pub(crate) struct Backend {
    pub(crate) label: &'static str,
    pub(crate) dir: PathBuf,
    pub(crate) url: String,
    /// The PostgreSQL schema of this test, dropped with the backend.
    schema: Option<(String, String)>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((base, schema)) = self.schema.take() {
            runtime().block_on(drop_schema(&base, &schema));
        }
    }
}

async fn drop_schema(base: &str, schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(base).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// Drops the schemas of test runs whose process is gone (one killed before its backends
/// were dropped), once per run.
fn sweep_stale_schemas(base: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        runtime().block_on(async {
            use sqlx::{Connection, Row};
            let Ok(mut conn) = sqlx::PgConnection::connect(base).await else {
                return;
            };
            let names: Vec<String> =
                sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'")
                    .fetch_all(&mut conn)
                    .await
                    .map(|rows| rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
                    .unwrap_or_default();
            for name in names {
                let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
                let alive =
                    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                if pid.is_some() && !alive {
                    drop_schema(base, &name).await;
                }
            }
        });
    });
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Says once per run, past the test harness's output capture, that PostgreSQL is skipped.
fn say_skipped() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::common::say_skipped(
            "skipping the PostgreSQL runs of the store tests: TIDINGS_TEST_DATABASE_URL is not set",
        );
    });
}

/// SQLite always; PostgreSQL when the environment names a server, each test in a fresh
/// schema so that tests run in parallel without seeing each other's rows.
pub(crate) fn backends(test: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    let dir = scratch_dir(&format!("{test}-sqlite"));
    out.push(Backend {
        label: "sqlite",
        url: format!("sqlite://{}", dir.join("tidings.db").display()),
        dir,
        schema: None,
    });
    match std::env::var("TIDINGS_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            sweep_stale_schemas(&base);
            let schema = format!("t_{}_{}", std::process::id(), test.replace('-', "_"));
            runtime().block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&base)
                    .await
                    .expect("PostgreSQL at TIDINGS_TEST_DATABASE_URL accepts connections");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            });
            let sep = if base.contains('?') { '&' } else { '?' };
            let dir = scratch_dir(&format!("{test}-postgres"));
            out.push(Backend {
                label: "postgres",
                url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                dir,
                schema: Some((base.clone(), schema)),
            });
        }
        _ => say_skipped(),
    }
    for b in &out {
        // The URL comes from the environment, as a deployment would pass it.
        write(&b.dir, "tidings.yaml", "database: ${TIDINGS_DB}\n");
    }
    out
}

/// The PostgreSQL backend alone, for what only PostgreSQL does (row locks, replicas);
/// `None` (and `backends`' note that PostgreSQL is skipped) without a server.
pub(crate) fn postgres(test: &str) -> Option<Backend> {
    backends(test).into_iter().find(|b| b.label == "postgres")
}

pub(crate) fn tidings(b: &Backend) -> Tidings {
    Tidings::new().cwd(&b.dir).env("TIDINGS_DB", &b.url)
}

pub(crate) fn with_store<T>(b: &Backend, f: impl AsyncFnOnce(&Store) -> T) -> T {
    runtime().block_on(async {
        let store = Store::open(&b.url).await.unwrap();
        let out = f(&store).await;
        store.close().await;
        out
    })
}

const BAD_ROWS: &str = "id,email,first_name,birthday,orders_count,timezone,total_spent\n\
1,ada@example.com,Ada,1990-12-10,3,Europe/London,149.50\n\
2,bob@,Bob,,,,\n\
3,cy@example.com,Cy,1990-02-30,,,\n\
4,di@example.com,Di,,two,,\n\
5,ed@example.com,Ed,,,Mars/Base,\n\
6,fa@example.com,Fa,,,,1.2.3\n\
7,gu@example.com,山田,2000-02-29,0,Asia/Tokyo,0\n";

#[test]
fn a_bad_row_means_nothing_is_imported_and_each_problem_is_shown() {
    for b in backends("all-or-nothing") {
        write(&b.dir, "customers.csv", BAD_ROWS);
        let run = tidings(&b)
            .args(["import", "customers", "customers.csv"])
            .run();
        assert_eq!(run.code, 1, "{}: {}", b.label, run.transcript());
        insta::assert_snapshot!(format!("import-bad-rows-{}", b.label), run.transcript());
        assert_eq!(
            with_store(&b, async |s| s.customer_count().await.unwrap()),
            0,
            "{}",
            b.label
        );

        let run = tidings(&b)
            .args(["import", "customers", "customers.csv", "--skip-invalid"])
            .run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        assert_eq!(run.stdout, "imported 2 customers from customers.csv\n");
        assert!(run.stderr.contains("skipped 5 bad rows"), "{}", run.stderr);
        let (count, yamada) = with_store(&b, async |s| {
            (
                s.customer_count().await.unwrap(),
                s.customer("7").await.unwrap().unwrap(),
            )
        });
        assert_eq!(count, 2, "{}", b.label);
        assert_eq!(yamada.first_name.as_deref(), Some("山田"));
        assert_eq!(
            yamada.birthday.map(|d| d.to_string()).as_deref(),
            Some("2000-02-29")
        );
    }
}

#[test]
fn upserts_keep_unmentioned_columns_and_merge_attributes() {
    for b in backends("upsert") {
        write(
            &b.dir,
            "a.csv",
            "id,email,first_name,last_name,tags,tier\n1,a@example.com,Priya,शर्मा,vip;new,gold\n",
        );
        write(
            &b.dir,
            "b.jsonl",
            "{\"id\":\"1\",\"email\":\"a@example.com\",\"orders_count\":2,\"points\":120}\n{\"id\":\"2\",\"email\":\"li@example.com\",\"first_name\":\"李\",\"locale\":\"zh-CN\",\"tags\":[\"new\"]}\n",
        );
        assert_eq!(
            tidings(&b)
                .args(["import", "customers", "a.csv"])
                .run()
                .code,
            0
        );
        let run = tidings(&b).args(["import", "customers", "b.jsonl"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let (one, two) = with_store(&b, async |s| {
            (
                s.customer("1").await.unwrap().unwrap(),
                s.customer("2").await.unwrap().unwrap(),
            )
        });
        assert_eq!(one.first_name.as_deref(), Some("Priya"), "{}", b.label);
        assert_eq!(one.last_name.as_deref(), Some("शर्मा"));
        assert_eq!(one.tags, ["vip", "new"]);
        assert_eq!(one.orders_count, 2);
        assert_eq!(one.attributes["tier"], "gold");
        assert_eq!(one.attributes["points"], 120);
        assert_eq!(two.first_name.as_deref(), Some("李"));
        assert_eq!(two.locale.as_deref(), Some("zh-CN"));
    }
}

#[test]
fn events_need_a_known_customer_and_are_recorded_once() {
    for b in backends("events") {
        write(&b.dir, "c.csv", "id,email\n1,a@example.com\n");
        write(
            &b.dir,
            "e.csv",
            "customer_id,name,at,order_id\n1,order_placed,2026-05-01T10:00:00Z,1001\n9,order_placed,2026-05-01T11:00:00Z,1002\n1,order_placed,yesterday,1003\n",
        );
        assert_eq!(
            tidings(&b)
                .args(["import", "customers", "c.csv"])
                .run()
                .code,
            0
        );
        let run = tidings(&b).args(["import", "events", "e.csv"]).run();
        assert_eq!(run.code, 1, "{}", run.transcript());
        assert!(
            run.stderr
                .contains("e.csv:3: `customer_id`: no customer has the id `9`"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains("e.csv:4:3: `at`: `yesterday` is not a time"),
            "{}",
            run.stderr
        );
        assert_eq!(
            with_store(&b, async |s| s
                .event_count("1", "order_placed")
                .await
                .unwrap()),
            0
        );

        let args = [
            "event",
            "order_placed",
            "--customer",
            "1",
            "--at",
            "2026-05-02T09:00:00Z",
            "--data",
            "{\"order_id\":\"7\",\"set\":{\"orders_count\":1}}",
            "--id",
            "order-7",
        ];
        let first = tidings(&b).args(args).run();
        assert_eq!(
            first.stdout,
            "recorded `order_placed` for customer `1`\n",
            "{}",
            first.transcript()
        );
        let again = tidings(&b).args(args).run();
        assert!(
            again.stdout.contains("already recorded"),
            "{}",
            again.transcript()
        );
        assert_eq!(
            with_store(&b, async |s| s
                .event_count("1", "order_placed")
                .await
                .unwrap()),
            1,
            "{}",
            b.label
        );

        // The same id for a different event is refused, not dropped in silence.
        let mut reused = args;
        reused[7] = "{\"order_id\":\"8\"}";
        let reused = tidings(&b).args(reused).run();
        assert_eq!(reused.code, 1, "{}", reused.transcript());
        assert!(
            reused
                .stderr
                .contains("was recorded before for a different event"),
            "{}",
            reused.stderr
        );
        // Without an id, each is an event of its own, however alike.
        for _ in 0..2 {
            let run = tidings(&b)
                .args([
                    "event",
                    "page_view",
                    "--customer",
                    "1",
                    "--at",
                    "2026-05-02T09:00:00Z",
                ])
                .run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        }
        assert_eq!(
            with_store(&b, async |s| s.event_count("1", "page_view").await.unwrap()),
            2,
            "{}",
            b.label
        );

        let unknown = tidings(&b)
            .args(["event", "order_placed", "--customer", "9"])
            .run();
        assert_eq!(unknown.code, 1);
        assert!(unknown.stderr.contains("no customer has the id `9`"));
    }
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let dir = scratch_dir("bad-url");
    write(&dir, "tidings.yaml", "database: mysql://x\n");
    write(&dir, "c.csv", "id,email\n1,a@example.com\n");
    let run = Tidings::new()
        .cwd(&dir)
        .args(["import", "customers", "c.csv"])
        .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("`mysql://x` is not a database URL"),
        "{}",
        run.stderr
    );
    write(&dir, "tidings.yaml", "database: ${NOT_SET_ANYWHERE}\n");
    let run = Tidings::new()
        .cwd(&dir)
        .args(["import", "customers", "c.csv"])
        .run();
    assert!(
        run.stderr
            .contains("environment variable `NOT_SET_ANYWHERE` is not set"),
        "{}",
        run.stderr
    );
}

/// The shipped welcome series, driven by `run --once --now` at chosen times: the outbox
/// holds exactly the expected emails, a customer who orders exits as converted, and passes
/// repeated at the same time write nothing twice.
#[test]
fn run_once_walks_the_welcome_series_and_never_writes_a_step_twice() {
    for b in backends("welcome-run") {
        with_examples(&b);
        write(
            &b.dir,
            "c.csv",
            "id,email,first_name,locale\n1,ada@example.com,Ada,en\n2,ken@example.jp,健,ja-JP\n",
        );
        assert_eq!(
            tidings(&b)
                .args(["import", "customers", "c.csv"])
                .run()
                .code,
            0
        );
        for id in ["1", "2"] {
            let run = tidings(&b)
                .args([
                    "event",
                    "customer_created",
                    "--customer",
                    id,
                    "--at",
                    "2026-06-01T09:00:00Z",
                ])
                .run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        }
        assert!(pass(&b, "2026-06-01T10:00:00Z").contains("2 enrolled"));
        // Customer 2 orders on day 1: the goal ends their series before the tips.
        let order = tidings(&b)
            .args([
                "event",
                "order_placed",
                "--customer",
                "2",
                "--at",
                "2026-06-02T12:00:00Z",
                "--data",
                "{\"order_id\":\"9\",\"set\":{\"orders_count\":1}}",
            ])
            .run();
        assert_eq!(order.code, 0);
        // The order is seen when it comes (an older one would start no thanks).
        pass(&b, "2026-06-02T12:00:00Z");
        pass(&b, "2026-06-04T10:00:00Z");
        pass(&b, "2026-06-09T10:00:00Z");
        let again = pass(&b, "2026-06-09T10:00:00Z");
        assert!(again.contains("0 steps, 0 emails"), "{again}");
        assert!(again.contains("delivered 0 emails"), "{again}");

        // The default transport wrote one .eml per delivery, dated when it left and named
        // by that date: the tips fell due on the 3rd and left with the pass of the 4th.
        let names: Vec<String> = std::fs::read_dir(b.dir.join("out/mail"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let tips = std::fs::read_dir(b.dir.join("out/mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .contains("X-Tidings-Step: tips")
            })
            .unwrap();
        let tips_name = tips.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            tips_name.starts_with("20260604T100000-welcome-series"),
            "{names:?}"
        );
        let mut mails: Vec<String> = std::fs::read_dir(b.dir.join("out/mail"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        mails.sort();
        assert_eq!(mails.len(), 5, "{}", b.label);
        let offer = mails
            .iter()
            .find(|m| m.contains("X-Tidings-Step: first-order-offer"))
            .unwrap();
        assert!(
            offer.contains("Date: Tue, 09 Jun 2026 10:00:00 +0000"),
            "{offer}"
        );
        assert!(
            offer.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{offer}"
        );
        assert!(offer.contains("multipart/alternative"), "{offer}");
        let thanks = mails
            .iter()
            .find(|m| m.contains("X-Tidings-Workflow: post-purchase-thank-you"))
            .unwrap();
        assert!(
            !thanks.contains("List-Unsubscribe"),
            "transactional mail has no unsubscribe header: {thanks}"
        );

        let (deliveries, enrollments) = outbox(&b);
        let sent: Vec<(String, String, String)> = deliveries
            .iter()
            .map(|d| (d.customer_id.clone(), d.step.clone(), d.due_at.to_rfc3339()))
            .collect();
        let expected = [
            ("1", "hello", "2026-06-01T09:00:00+00:00"),
            ("2", "hello", "2026-06-01T09:00:00+00:00"),
            ("2", "thanks", "2026-06-02T12:00:00+00:00"),
            // A journey late for its email (the passes here are hours or a day apart)
            // counts its next wait from when the email actually left: the hello left at
            // 10:00, the tips on the 4th at 10:00.
            ("1", "tips", "2026-06-03T10:00:00+00:00"),
            ("1", "first-order-offer", "2026-06-09T10:00:00+00:00"),
        ];
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(c, s, t)| (c.to_string(), s.to_string(), t.to_string()))
            .collect();
        assert_eq!(sent, expected, "{}", b.label);
        let offer = &deliveries[4];
        let code = offer.coupon_code.clone().unwrap();
        assert!(code.starts_with("WELCOME-"), "{code}");
        assert!(offer.html.as_deref().unwrap().contains(&code));
        assert_eq!(
            offer.subject.as_deref(),
            Some("10% off your first order, Ada")
        );
        assert!(deliveries[1].subject.as_deref().unwrap().contains("健"));
        assert!(
            deliveries
                .iter()
                .all(|d| d.state == "sent" && d.message_id.starts_with('<'))
        );
        let states: Vec<(&str, &str, &str)> = enrollments
            .iter()
            .map(|(w, c, s, _, _)| (w.as_str(), c.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("post-purchase-thank-you", "2", "completed"),
                ("welcome-series", "1", "completed"),
                ("welcome-series", "2", "converted")
            ],
            "{}",
            b.label
        );
    }
}

/// Copies the shipped workflows and templates into a backend's project.
pub(crate) fn with_examples(b: &Backend) {
    let root = crate::common::repo_root();
    for dir in ["workflows", "templates"] {
        copy_dir(&root.join(dir), &b.dir.join(dir));
    }
}

/// One `run --once` at `now`, which must succeed; its summary.
/// A journey that fell far behind (no pass ran for a week) sends one email per pass, and
/// the next waits from when that email left: never the tips and the offer at once.
#[test]
fn a_late_journey_never_sends_two_of_its_emails_in_one_pass() {
    for b in backends("late-journey") {
        with_examples(&b);
        write(
            &b.dir,
            "c.csv",
            "id,email,first_name\n1,ada@example.com,Ada\n",
        );
        let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let at = ["--at", "2026-06-01T09:00:00Z"];
        let run = (tidings(&b).args(["event", "customer_created", "--customer", "1"]))
            .args(at)
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        pass(&b, "2026-06-01T09:00:00Z");
        // Eight days later: the tips (due on the 3rd) go; the offer (due on the 8th, had
        // the tips gone then) waits five days from now.
        pass(&b, "2026-06-09T09:00:00Z");
        let steps = |b: &Backend| -> Vec<(String, String)> {
            (outbox(b).0.iter())
                .map(|d| (d.step.clone(), d.due_at.to_rfc3339()))
                .collect()
        };
        assert_eq!(
            steps(&b),
            [
                ("hello".to_string(), "2026-06-01T09:00:00+00:00".to_string()),
                ("tips".to_string(), "2026-06-03T09:00:00+00:00".to_string()),
            ],
            "{}",
            b.label
        );
        pass(&b, "2026-06-14T09:00:00Z");
        let all = steps(&b);
        assert_eq!(all.len(), 3, "{}: {all:?}", b.label);
        assert_eq!(all[2].1, "2026-06-14T09:00:00+00:00", "{}", b.label);
    }
}

/// Events imported days after they happened start no journey when a pass first sees them
/// (`triggers.max_event_age`, 1 day): `status` counts them, and `tidings enroll --since`
/// takes them on purpose. A longer `max_event_age` lets them in.
#[test]
fn history_imported_late_starts_no_journey() {
    for b in backends("too-old") {
        with_examples(&b);
        write(
            &b.dir,
            "c.csv",
            "id,email,first_name\n1,ada@example.com,Ada\n2,bo@example.com,Bo\n",
        );
        write(
            &b.dir,
            "e.csv",
            "customer_id,name,at\n1,customer_created,2026-06-01T09:00:00Z\n2,customer_created,2026-06-03T20:00:00Z\n",
        );
        for (kind, file) in [("customers", "c.csv"), ("events", "e.csv")] {
            let run = tidings(&b).args(["import", kind, file]).run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        }
        // Ada's sign-up is three days old, Bo's thirteen hours.
        let run = pass(&b, "2026-06-04T09:00:00Z");
        assert!(run.contains("1 enrolled"), "{}: {run}", b.label);
        let status = tidings(&b).args(["status"]).run();
        assert!(
            status.stdout.contains("events too old when first seen")
                && status.stdout.contains("customer_created: 1"),
            "{}: {}",
            b.label,
            status.stdout
        );
        let json = tidings(&b).args(["status", "--json"]).run();
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(doc["events_too_old"]["customer_created"], 1, "{}", b.label);
        let run = tidings(&b)
            .args([
                "enroll",
                "welcome-series",
                "--since",
                "2026-06-01",
                "--now",
                "2026-06-04T09:00:00Z",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let (_, journeys) = outbox(&b);
        assert_eq!(journeys.len(), 2, "{}: {journeys:?}", b.label);
    }
    let b = backends("too-old-allowed").remove(0);
    with_examples(&b);
    write(
        &b.dir,
        "tidings.yaml",
        "database: ${TIDINGS_DB}\ntriggers:\n  max_event_age: 7d\n",
    );
    write(&b.dir, "c.csv", "id,email\n1,ada@example.com\n");
    write(
        &b.dir,
        "e.csv",
        "customer_id,name,at\n1,customer_created,2026-06-01T09:00:00Z\n",
    );
    for (kind, file) in [("customers", "c.csv"), ("events", "e.csv")] {
        let run = tidings(&b).args(["import", kind, file]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
    let run = pass(&b, "2026-06-04T09:00:00Z");
    assert!(run.contains("1 enrolled"), "{run}");
}

pub(crate) fn pass(b: &Backend, now: &str) -> String {
    let run = tidings(b).args(["run", "--once", "--now", now]).run();
    assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    run.stdout
}

pub(crate) type Enrollments = Vec<(String, String, String, Option<String>, Option<String>)>;

/// The outbox and the enrollments, as stored.
pub(crate) fn outbox(b: &Backend) -> (Vec<tidings::store::deliveries::DeliveryRow>, Enrollments) {
    with_store(b, async |s| {
        let mut conn = s.connection().await.unwrap();
        (
            tidings::store::deliveries::deliveries(&mut conn)
                .await
                .unwrap(),
            tidings::store::enrollments::enrollments(&mut conn)
                .await
                .unwrap(),
        )
    })
}

/// The demo shop with the shipped workflows and stages: customers and events imported.
pub(crate) fn demo_with_stages(b: &Backend) {
    with_examples(b);
    let root = crate::common::repo_root();
    std::fs::copy(root.join("stages.yaml"), b.dir.join("stages.yaml")).unwrap();
    crate::common::write(&b.dir, "tidings.yaml", "database: ${TIDINGS_DB}\n");
    import_demo(b, "customers");
    import_demo(b, "events");
}

/// Imports the project's own `customers.csv` and `events.csv`, each without an error.
pub(crate) fn import_both(b: &Backend) {
    for (what, file) in [("customers", "customers.csv"), ("events", "events.csv")] {
        let run = tidings(b).args(["import", what, file]).run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
    }
}

/// Imports one of the demo's files; the customers come with their orders (the shop's
/// history, from which their order figures follow).
pub(crate) fn import_demo(b: &Backend, kind: &str) -> crate::common::Run {
    let import = |kind: &str| {
        let file = crate::common::repo_root().join(format!("examples/demo/{kind}.csv"));
        let run = tidings(b)
            .args(["import", kind, file.to_str().unwrap()])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        run
    };
    let run = import(kind);
    if kind == "customers" {
        import("orders");
    }
    run
}

/// Two text columns of every row a query gives (cast numbers in the SQL).
pub(crate) fn text_pairs(b: &Backend, sql: &'static str) -> Vec<(String, String)> {
    with_store(b, async move |s| {
        use sqlx::Row;
        let mut conn = s.connection().await.unwrap();
        sqlx::query(sql)
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    })
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Schedule and date triggers fire once per fire time across passes; an audience that
/// fails for one customer records a failed enrollment with the error and the rest go on.
#[test]
fn schedules_dates_and_a_failing_audience() {
    for b in backends("triggers") {
        with_examples(&b);
        write(
            &b.dir,
            "workflows/tiered.yaml",
            "name: tiered\nclass: transactional\ntrigger: { event: customer_created }\naudience: customer.attributes.tier.len() > 0\nsteps:\n  - update: { tags: { add: [tiered] } }\n",
        );
        write(
            &b.dir,
            "c.csv",
            "id,email,orders_count,last_order_at,birthday,timezone,tier\n\
             1,lapsed@example.com,2,2026-01-01T10:00:00Z,,Europe/Berlin,gold\n\
             2,recent@example.com,1,2026-05-20T10:00:00Z,,Europe/Berlin,\n\
             3,bday@example.jp,0,,1990-06-02,Asia/Tokyo,\n\
             4,leap@example.com,0,,2000-02-29,,\n",
        );
        assert_eq!(
            tidings(&b)
                .args(["import", "customers", "c.csv"])
                .run()
                .code,
            0
        );
        for id in ["1", "2"] {
            tidings(&b)
                .args([
                    "event",
                    "customer_created",
                    "--customer",
                    id,
                    "--at",
                    "2026-05-31T12:00:00Z",
                ])
                .run();
        }
        pass(&b, "2026-06-01T07:00:00Z");
        // Monday 10:00 in Berlin is 08:00Z; the Tokyo birthday at 09:00 local is 00:00Z.
        pass(&b, "2026-06-02T09:00:00Z");
        let again = pass(&b, "2026-06-02T09:00:00Z");
        assert!(again.contains("0 enrolled"), "{again}");
        let (deliveries, enrollments) = outbox(&b);
        let sent: Vec<(&str, &str, String)> = deliveries
            .iter()
            .map(|d| {
                (
                    d.customer_id.as_str(),
                    d.step.as_str(),
                    d.due_at.to_rfc3339(),
                )
            })
            .collect();
        let expected = [
            ("1", "deal", "2026-06-01T08:00:00+00:00".to_string()),
            ("3", "gift", "2026-06-02T00:00:00+00:00".to_string()),
        ];
        assert_eq!(sent, expected, "{}", b.label);
        let tiered: Vec<_> = enrollments.iter().filter(|e| e.0 == "tiered").collect();
        assert_eq!(tiered.len(), 2, "{tiered:?}");
        assert_eq!(tiered[0].2, "completed");
        assert_eq!(tiered[1].2, "failed");
        assert!(
            tiered[1]
                .4
                .as_deref()
                .unwrap()
                .contains("`audience` failed: Function not found: len"),
            "{tiered:?}"
        );
    }
}

/// Quiet hours in the customer's zone and the frequency cap hold marketing mail back (or
/// skip it, as the step says), and either way it is recorded; transactional mail is exempt.
#[test]
fn quiet_hours_and_the_frequency_cap() {
    for b in backends("fairness") {
        with_examples(&b);
        write(
            &b.dir,
            "tidings.yaml",
            "database: ${TIDINGS_DB}\nlimits:\n  quiet_hours: { from: \"21:00\", to: \"08:00\" }\n  frequency_cap: { count: 1, per: 7d }\n",
        );
        write(
            &b.dir,
            "workflows/flash-sale.yaml",
            "name: flash-sale\ntrigger: { event: flash_sale }\nreentry: always\nsteps:\n  - id: sale\n    email: welcome/tips\n    subject: Sale\n    when_capped: skip\n",
        );
        write(
            &b.dir,
            "c.csv",
            "id,email,timezone\nk,ken@example.jp,Asia/Tokyo\n",
        );
        assert_eq!(
            tidings(&b)
                .args(["import", "customers", "c.csv"])
                .run()
                .code,
            0
        );
        let event = |name: &str, at: &str| {
            let run = tidings(&b)
                .args(["event", name, "--customer", "k", "--at", at])
                .run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        };
        // 13:00Z is 22:00 in Tokyo: quiet until 08:00 local (23:00Z).
        event("customer_created", "2026-06-01T13:00:00Z");
        pass(&b, "2026-06-01T13:00:00Z");
        pass(&b, "2026-06-02T00:00:00Z");
        // A capped flash sale with `when_capped: skip` is skipped, and recorded.
        event("flash_sale", "2026-06-02T01:00:00Z");
        // A transactional thank-you is not capped.
        event("order_placed", "2026-06-02T02:00:00Z");
        for now in [
            "2026-06-02T03:00:00Z",
            "2026-06-09T00:00:00Z",
            "2026-06-16T00:00:00Z",
        ] {
            pass(&b, now);
        }
        let (deliveries, _) = outbox(&b);
        let got: Vec<(String, String, String)> = deliveries
            .iter()
            .map(|d| (d.step.clone(), d.state.to_string(), d.due_at.to_rfc3339()))
            .collect();
        let expected: Vec<(String, String, String)> = [
            ("sale", "skipped", "2026-06-02T01:00:00+00:00"),
            ("thanks", "sent", "2026-06-02T02:00:00+00:00"),
            ("hello", "sent", "2026-06-01T23:00:00+00:00"),
            ("tips", "sent", "2026-06-08T23:00:00+00:00"),
            ("first-order-offer", "sent", "2026-06-15T23:00:00+00:00"),
        ]
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort_by(|x, y| x.2.cmp(&y.2));
        let mut expected_sorted = expected.clone();
        expected_sorted.sort_by(|x, y| x.2.cmp(&y.2));
        assert_eq!(got_sorted, expected_sorted, "{}", b.label);
    }
}

/// Two marketing emails due for one customer in the same pass (so in one group of journeys,
/// whose deliveries are written together) still meet the cap: the second sees the first.
#[test]
fn the_frequency_cap_counts_emails_queued_in_the_same_pass() {
    for b in backends("cap-one-pass") {
        write(
            &b.dir,
            "tidings.yaml",
            "database: ${TIDINGS_DB}\nlimits:\n  frequency_cap: { count: 1, per: 7d }\n",
        );
        write(
            &b.dir,
            "templates/promo/offer.html",
            "<p>Hello {{ customer.email }}</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>\n",
        );
        for name in ["spring", "summer", "autumn"] {
            write(
                &b.dir,
                &format!("workflows/{name}.yaml"),
                &format!(
                    "name: {name}\ntrigger: {{ event: promo }}\nsteps:\n  - id: offer\n    email: promo/offer\n    subject: Offer\n    when_capped: skip\n"
                ),
            );
        }
        write(
            &b.dir,
            "c.csv",
            "id,email\nk,ken@example.com\nm,mia@example.com\n",
        );
        let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        for customer in ["k", "m"] {
            let run = tidings(&b)
                .args([
                    "event",
                    "promo",
                    "--customer",
                    customer,
                    "--at",
                    "2026-06-02T10:00:00Z",
                ])
                .run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        }
        pass(&b, "2026-06-02T10:00:00Z");
        let (deliveries, _) = outbox(&b);
        for customer in ["k", "m"] {
            let mut states: Vec<&str> = deliveries
                .iter()
                .filter(|d| d.customer_id == customer)
                .map(|d| d.state.as_str())
                .collect();
            states.sort();
            assert_eq!(
                states,
                ["sent", "skipped", "skipped"],
                "{} {customer}",
                b.label
            );
        }
    }
}

/// A store made before migration 8 keeps what its queued emails carry: their HTML and text
/// move to `delivery_bodies`, and the emails leave with them.
#[test]
fn queued_emails_keep_their_bodies_across_the_bodies_migration() {
    for b in backends("bodies-migration") {
        with_examples(&b);
        // The server is down: the welcome email waits in the outbox.
        write(
            &b.dir,
            "tidings.yaml",
            "database: ${TIDINGS_DB}\nemail:\n  transport: smtp://127.0.0.1:1\n  from: \"Acme <hello@acme.example>\"\nserver:\n  public_url: https://mail.acme.example\n",
        );
        write(
            &b.dir,
            "c.csv",
            "id,email,first_name\nada,ada@example.com,Ada\n",
        );
        let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b)
            .args([
                "event",
                "customer_created",
                "--customer",
                "ada",
                "--at",
                "2026-06-01T09:00:00Z",
            ])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        pass(&b, "2026-06-01T09:00:00Z");
        // Back to the schema migration 7 left: the bodies in the deliveries' own rows.
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            for sql in [
                "ALTER TABLE deliveries ADD COLUMN html TEXT",
                "ALTER TABLE deliveries ADD COLUMN text TEXT",
                "ALTER TABLE deliveries ADD COLUMN payload TEXT",
                "UPDATE deliveries SET html = (SELECT b.html FROM delivery_bodies b WHERE b.delivery_id = deliveries.id), text = (SELECT b.text FROM delivery_bodies b WHERE b.delivery_id = deliveries.id)",
                "DROP TABLE delivery_bodies",
                "DELETE FROM tidings_migrations WHERE version = 8",
            ] {
                sqlx::query(sql).execute(&mut *conn).await.unwrap();
            }
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM deliveries WHERE state = 'retrying' AND html LIKE '%Welcome, Ada!%'",
            )
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(waiting, 1, "{}", b.label);
        });
        // The server is back (the default transport: a folder).
        write(&b.dir, "tidings.yaml", "database: ${TIDINGS_DB}\n");
        let out = pass(&b, "2026-06-01T12:00:00Z");
        assert!(out.contains("delivered 1 email to"), "{}: {out}", b.label);
        let mails: Vec<String> = std::fs::read_dir(b.dir.join("out/mail"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(mails.len(), 1, "{}", b.label);
        let message = mail_parser::MessageParser::default()
            .parse(mails[0].as_bytes())
            .unwrap();
        assert!(
            message.body_html(0).unwrap().contains("Welcome, Ada!"),
            "{}",
            mails[0]
        );
        assert!(
            message
                .body_text(0)
                .unwrap()
                .contains("Thanks for joining Acme"),
            "{}",
            mails[0]
        );
    }
}

/// The zones a `timezone: customer` schedule fires in: each zone once, `None` only while
/// some customer has no zone, nothing for an empty store.
#[test]
fn the_zones_customers_are_in() {
    for b in backends("zones") {
        let zones = || {
            with_store(&b, async |s| {
                let mut zones = s.customer_zones().await.unwrap();
                zones.sort();
                zones
            })
        };
        assert_eq!(zones(), Vec::<Option<String>>::new(), "{}", b.label);
        write(
            &b.dir,
            "c.csv",
            "id,email,timezone\n1,a@example.com,Asia/Tokyo\n2,b@example.com,Europe/London\n3,c@example.com,Asia/Tokyo\n4,d@example.com,America/New_York\n",
        );
        let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let named =
            ["America/New_York", "Asia/Tokyo", "Europe/London"].map(|z| Some(z.to_string()));
        assert_eq!(zones(), named, "{}", b.label);
        write(&b.dir, "d.csv", "id,email\n5,e@example.com\n");
        let run = tidings(&b).args(["import", "customers", "d.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let mut all = vec![None];
        all.extend(named);
        assert_eq!(zones(), all, "{}", b.label);
    }
}

/// `--progress always` keeps the final progress line of `import`, `run --once` and
/// `simulate` on stderr, with the counts the commands report; without a terminal the
/// default shows none.
#[test]
fn long_commands_show_progress_when_asked() {
    let b = backends("progress").remove(0);
    with_examples(&b);
    let run = import_demo(&b, "customers");
    assert!(!run.stderr.contains("rows read"), "{}", run.stderr);
    let events = crate::common::repo_root().join("examples/demo/events.csv");
    let run = tidings(&b)
        .args([
            "import",
            "events",
            events.to_str().unwrap(),
            "--progress",
            "always",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stderr.contains(" 2 rows read ("), "{}", run.stderr);
    let run = tidings(&b)
        .args([
            "run",
            "--once",
            "--now",
            "2026-06-01T08:00:00Z",
            "--progress",
            "always",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let last = run.stderr.lines().last().unwrap_or_default();
    let queued = run
        .stdout
        .split(" emails and ")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap();
    let sent = run
        .stdout
        .split("delivered ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap();
    assert!(queued.parse::<u64>().unwrap() > 0, "{}", run.stdout);
    assert!(
        last.contains(&format!(" {queued} emails queued · {sent} sent (")),
        "{last}\n{}",
        run.stdout
    );
    let run = tidings(&b)
        .args([
            "simulate",
            "--from",
            "2026-06-01",
            "--to",
            "2026-06-09",
            "--progress",
            "always",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stderr.contains("virtual clock 2026-06-09 00:00 (100%)"),
        "{}",
        run.stderr
    );
}

/// Due journeys are claimed under a lease. On PostgreSQL two workers claiming at once take
/// different rows without waiting for each other (SKIP LOCKED); a live lease keeps a row
/// from the others, an expired one lets another worker take it, and then the first
/// worker's save is refused (the claim's version is the fencing token). On SQLite, the one
/// worker there is takes back what a stopped run left at once.
#[test]
fn due_journeys_are_leased_and_fenced() {
    use sqlx::Connection;
    use tidings::store::enrollments::Lease;
    use tidings::store::enrollments::claim_due;
    use tidings::store::enrollments::save_enrollment;
    for b in backends("leases") {
        with_examples(&b);
        import_demo(&b, "customers");
        import_demo(&b, "events");
        pass(&b, "2026-06-01T08:00:00Z");
        let due_by = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let now = chrono::Utc::now();
        let lease = |at: chrono::DateTime<chrono::Utc>, sole: bool| Lease {
            now: at,
            until: at + chrono::TimeDelta::seconds(60),
            sole,
        };
        with_store(&b, async |s| {
            let backend = s.backend();
            let mut one = s.connection().await.unwrap();
            let mut two = s.connection().await.unwrap();
            let waiting: i64 = {
                use sqlx::Row;
                sqlx::query("SELECT COUNT(*) FROM enrollments WHERE state = 'active'")
                    .fetch_one(&mut *one)
                    .await
                    .unwrap()
                    .get(0)
            };
            assert!(waiting >= 3, "{}: {waiting} journeys wait", b.label);
            if b.label == "sqlite" {
                let first = claim_due(&mut one, backend, due_by, 100, lease(now, true))
                    .await
                    .unwrap();
                assert_eq!(first.len() as i64, waiting);
                // A run that stopped holding them: the next one takes them back.
                let again = claim_due(&mut one, backend, due_by, 100, lease(now, true))
                    .await
                    .unwrap();
                assert_eq!(again.len() as i64, waiting);
                assert!(!save_enrollment(&mut one, &first[0]).await.unwrap());
                assert!(save_enrollment(&mut one, &again[0]).await.unwrap());
                return;
            }
            // Worker one claims two rows and has not committed yet.
            let mut tx = one.begin().await.unwrap();
            let first = claim_due(&mut tx, backend, due_by, 2, lease(now, false))
                .await
                .unwrap();
            assert_eq!(first.len(), 2);
            // Worker two, at the same moment, takes the rest at once.
            let second = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                claim_due(&mut two, backend, due_by, 100, lease(now, false)),
            )
            .await
            .expect("a claim waited for another worker's rows")
            .unwrap();
            assert_eq!(second.len() as i64, waiting - 2, "{second:?}");
            assert!(second.iter().all(|r| first.iter().all(|f| f.id != r.id)));
            tx.commit().await.unwrap();
            // Every row is leased now: nothing more to claim while the leases live.
            let none = claim_due(&mut two, backend, due_by, 100, lease(now, false))
                .await
                .unwrap();
            assert!(none.is_empty(), "{none:?}");
            // Two minutes on, worker one's leases have run out and worker two takes its rows.
            let later = now + chrono::TimeDelta::seconds(120);
            let taken = claim_due(&mut two, backend, due_by, 100, lease(later, false))
                .await
                .unwrap();
            assert_eq!(taken.len() as i64, waiting);
            // Worker one, late, cannot save over worker two; worker two can.
            for row in &first {
                assert!(!save_enrollment(&mut one, row).await.unwrap());
            }
            let theirs = taken.iter().find(|r| r.id == first[0].id).unwrap();
            assert!(save_enrollment(&mut two, theirs).await.unwrap());
        });
    }
}

/// An unsubscribe that lands while the engine holds a customer it will write back is not
/// lost: on PostgreSQL the engine's read locks the row, so the unsubscribe waits for the
/// engine's commit and is applied on top of it (SQLite's one write lock orders them anyway).
#[test]
fn an_unsubscribe_is_not_overwritten_by_a_step_in_flight() {
    use sqlx::Connection;
    use tidings::store::customer_rows::customer_for_update;
    use tidings::store::customer_rows::save_customer;
    let Some(b) = postgres("lost-update") else {
        return;
    };
    import_demo(&b, "customers");
    with_store(&b, async |s| {
        let now = chrono::Utc::now();
        let mut engine = s.connection().await.unwrap();
        let mut tx = engine.begin().await.unwrap();
        // The engine reads c4 to tag it ...
        let mut c4 = customer_for_update(&mut tx, s.backend(), "c4")
            .await
            .unwrap()
            .unwrap();
        assert!(c4.unsubscribed_at.is_none());
        // ... the customer unsubscribes meanwhile (it waits for the engine's row) ...
        let store = s.clone();
        let unsubscribe =
            tokio::spawn(async move { store.unsubscribe("c4", "link", None, now).await.unwrap() });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // ... and the engine writes its copy back and commits.
        c4.tags.push("seen".into());
        save_customer(&mut tx, &c4, now).await.unwrap();
        tx.commit().await.unwrap();
        unsubscribe.await.unwrap();
        let after = s.customer("c4").await.unwrap().unwrap();
        assert!(after.unsubscribed_at.is_some(), "the unsubscribe was lost");
        assert!(after.tags.contains(&"seen".to_string()));
    });
}

/// A command opening the store beside a daemon that holds SQLite's write lock (a long
/// pass) reads what it needs instead of waiting for the lock and failing with "database
/// is locked": opening a store with nothing to migrate takes no write lock.
#[test]
fn opening_the_store_does_not_wait_for_a_writer() {
    let b = backends("busy-writer").remove(0);
    with_examples(&b);
    import_demo(&b, "customers");
    with_store(&b, async |s| {
        let mut writer = s.connection().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *writer)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let run = tidings(&b).args(["status", "--json"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert!(run.stdout.contains("\"customers\": 5"), "{}", run.stdout);
        // The busy timeout is 5 s: a status that waited for the lock would take that long.
        assert!(started.elapsed() < std::time::Duration::from_secs(4));
        sqlx::query("ROLLBACK").execute(&mut *writer).await.unwrap();
    });
}

/// A page of customers (how triggers, the stage sweep and a group of journeys read them;
/// on SQLite one JSON row a page) gives back every field as a single read gives it:
/// quotes, Unicode, NULLs, nested attributes, and money to the last bit of its `f64`.
#[test]
fn a_page_of_customers_reads_back_every_field_exactly() {
    use tidings::store::{customer_rows as journeys, stages};
    for b in backends("customer-page") {
        write(
            &b.dir,
            "c.csv",
            "id,email\na1,a@example.com\n\"b\"\"2\",b@example.com\nc3,c@example.com\n",
        );
        let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            let at = |t: &str| Some(t.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
            let mut written = Vec::new();
            for (id, spent) in [("a1", 0.1 + 0.2), ("b\"2", 1e300), ("c3", 1234567.891)] {
                let mut c = journeys::customer(&mut conn, id).await.unwrap().unwrap();
                if id == "a1" {
                    c.first_name = Some("Zoë \"Z\" O'Brien; DROP TABLE customers; --".into());
                    c.last_name = Some("山田 \\ \u{1F600}\n".into());
                    c.locale = Some("fr-CA".into());
                    c.timezone = Some("Asia/Tokyo".into());
                    c.birthday = Some(chrono::NaiveDate::from_ymd_opt(2000, 2, 29).unwrap());
                    c.created_at = at("2025-06-01T10:00:00.123Z");
                    c.last_order_at = at("1969-12-31T23:59:59.999Z");
                    c.unsubscribed_at = at("2026-01-02T03:04:05Z");
                    c.orders_count = i64::MAX;
                    c.tags = vec!["vip".into(), "\"quoted\"".into()];
                    c.attributes = serde_json::json!({
                        "plan": {"tier": "gold", "seats": [1, 2.5, null]},
                        "note": "line\nbreak ü"
                    })
                    .as_object()
                    .unwrap()
                    .clone();
                }
                c.total_spent = spent;
                journeys::save_customer(&mut conn, &c, chrono::Utc::now())
                    .await
                    .unwrap();
                written.push(c);
            }
            let filter = journeys::CustomerFilter::All;
            let everyone = tidings::model::filter::ColumnFilter::default();
            let page = journeys::customers_page(&mut conn, "", 10, &filter, &everyone)
                .await
                .unwrap();
            assert_eq!(page, written, "{}", b.label);
            let bits: Vec<u64> = page.iter().map(|c| c.total_spent.to_bits()).collect();
            let expected: Vec<u64> = written.iter().map(|c| c.total_spent.to_bits()).collect();
            assert_eq!(bits, expected, "{}", b.label);
            let after_first = journeys::customers_page(&mut conn, "a1", 1, &filter, &everyone)
                .await
                .unwrap();
            assert_eq!(after_first, written[1..2], "{}", b.label);
            let staged = stages::page(&mut conn, "", 10).await.unwrap();
            let read: Vec<_> = staged.iter().map(|(c, _)| c.clone()).collect();
            assert_eq!(read, written, "{}", b.label);
            assert!(staged.iter().all(|(_, s)| s.is_none()), "{}", b.label);
            let backend = s.backend();
            let ids = ["c3", "a1"];
            let locked = journeys::customers_for_update(&mut conn, backend, &ids)
                .await
                .unwrap();
            assert_eq!(locked.len(), 2, "{}", b.label);
            assert_eq!(locked["a1"], written[0], "{}", b.label);
            assert_eq!(locked["c3"], written[2], "{}", b.label);
        });
    }
}

/// Emails queued together reserve their coupons together: each of a pass's birthday gifts
/// has its own coupon row, for its own customer, under the code its email carries.
#[test]
fn each_email_of_a_group_reserves_its_own_coupon() {
    for b in backends("coupon-group") {
        with_examples(&b);
        write(
            &b.dir,
            "c.csv",
            "id,email,birthday\n1,a@example.com,1990-06-02\n2,b@example.com,1985-06-02\n\
             3,c@example.com,2001-06-02\n4,d@example.com,1990-06-03\n",
        );
        let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        pass(&b, "2026-06-02T09:00:00Z");
        let coupons = text_pairs(
            &b,
            "SELECT c.customer_id, c.code || ' ' || d.customer_id || ' ' || COALESCE(d.coupon_code, '') FROM coupons c JOIN deliveries d ON d.id = c.delivery_id ORDER BY c.customer_id",
        );
        let customers: Vec<&str> = coupons.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(customers, ["1", "2", "3"], "{}", b.label);
        let mut codes = std::collections::HashSet::new();
        for (customer, joined) in &coupons {
            let parts: Vec<&str> = joined.split(' ').collect();
            assert_eq!(parts.len(), 3, "{}: {joined}", b.label);
            assert!(parts[0].starts_with("BDAY-"), "{}: {joined}", b.label);
            assert_eq!(parts[1], customer, "{}", b.label);
            assert_eq!(
                parts[2], parts[0],
                "{}: the email carries its coupon",
                b.label
            );
            codes.insert(parts[0].to_string());
        }
        assert_eq!(codes.len(), 3, "{}: {coupons:?}", b.label);
    }
}

/// A later email shows an earlier step's coupon (`{{ coupons.deal.code }}`): the
/// reactivation's last chance carries the very code its deal reserved, and its expiry.
#[test]
fn a_reminder_shows_the_code_its_first_step_reserved() {
    for b in backends("coupon-carries-over") {
        with_examples(&b);
        import_demo(&b, "customers");
        pass(&b, "2026-06-01T08:00:00Z");
        pass(&b, "2026-06-08T08:00:00Z");
        let (deliveries, _) = outbox(&b);
        let of = |step: &str| {
            deliveries
                .iter()
                .find(|d| d.customer_id == "c4" && d.step == step)
                .unwrap_or_else(|| panic!("{}: no {step} for c4", b.label))
        };
        let code = of("deal").coupon_code.clone().expect("the deal's coupon");
        let reminder = of("last-chance");
        assert!(
            reminder.coupon_code.is_none(),
            "the reminder reserves none of its own"
        );
        for body in [reminder.html.as_deref(), reminder.text.as_deref()] {
            let body = body.unwrap();
            assert!(body.contains(&code), "{}: {code} in\n{body}", b.label);
            // The deal's expiry, in the language of the text Wei (zh-CN) gets: there is
            // no Chinese reminder, so an English date in an English sentence.
            assert!(
                body.contains("June 15, 2026"),
                "{}: the deal's expiry in\n{body}",
                b.label
            );
        }
    }
}

/// The statements run for every journey or event find their rows by an index on SQLite: a
/// full scan of the coupons here made a 60-day rehearsal many times slower as coupons piled
/// up, and the wait for an event read every running journey due later.
#[test]
fn per_journey_statements_use_their_indexes() {
    use sqlx::Row;
    let b = backends("query-plans").remove(0);
    assert_eq!(b.label, "sqlite");
    with_store(&b, async |store| {
        let mut conn = store.connection().await.unwrap();
        let plan = async |conn: &mut sqlx::AnyConnection, sql: &str| {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = query.bind(0i64).bind("c1").bind("email_clicked");
            let rows = query.fetch_all(&mut *conn).await.unwrap();
            rows.iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect::<Vec<_>>()
                .join("; ")
        };
        // A page of customers' pasts, read with every journey that needs them.
        use tidings::store::engagement::{ENGAGED_SQL, PAST_EVENTS_SQL, REDEEMED_SQL};
        for (sql, index) in [
            (REDEEMED_SQL, "coupons_redeemed_by_customer"),
            (PAST_EVENTS_SQL, "events_by_customer"),
            (ENGAGED_SQL, "engagements_by_customer"),
        ] {
            let sql = sql.replace("{list}", "$2, $3");
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(0i64)
                .bind("c1")
                .bind("c2")
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            let plan = rows
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect::<Vec<_>>()
                .join("; ");
            assert!(
                plan.contains(&format!("INDEX {index}")) && !plan.contains("SCAN "),
                "{plan}"
            );
        }
        let resume = plan(&mut conn, tidings::store::enrollments::RESUME_SQL).await;
        assert!(
            resume.contains("USING INDEX enrollments_waiting") && !resume.contains("SCAN"),
            "{resume}"
        );
    });
}

/// On PostgreSQL every statement is planned for its values: the store's tables grow from
/// nothing within a run, and a generic plan cached while they were empty (a sequential
/// scan of the enrollments for each page of customers) was kept for the whole campaign.
#[test]
fn postgres_plans_each_execution_for_its_values() {
    use sqlx::Row;
    for b in backends("plan-cache")
        .into_iter()
        .filter(|b| b.label != "sqlite")
    {
        with_store(&b, async |store| {
            let mut conn = store.connection().await.unwrap();
            let mode: String = sqlx::query("SHOW plan_cache_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap()
                .try_get(0)
                .unwrap();
            assert_eq!(mode, "force_custom_plan");
        });
    }
}

/// Migration 16: a store whose suppression list kept addresses in clear keeps their hashes
/// instead, and still honours them.
#[test]
fn suppressed_addresses_kept_in_clear_are_hashed_by_the_migration() {
    for b in backends("hash-suppressions") {
        with_store(&b, async |s| {
            let mut conn = s.connection().await.unwrap();
            for sql in [
                "DELETE FROM tidings_migrations WHERE version = 16",
                "INSERT INTO suppressions (email, reason, created_at) VALUES ('old@example.com', 'bounce', 0)",
            ] {
                sqlx::query(sql).execute(&mut *conn).await.unwrap();
            }
        });
        let (kept, reason) = with_store(&b, async |s| {
            use sqlx::Row;
            let mut conn = s.connection().await.unwrap();
            let kept: Vec<String> = sqlx::query("SELECT email FROM suppressions")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            (kept, s.suppression_reason("OLD@example.com").await.unwrap())
        });
        assert_eq!(
            kept,
            [tidings::store::suppressions::address_key("old@example.com")],
            "{}",
            b.label
        );
        assert_eq!(reason.as_deref(), Some("bounce"), "{}", b.label);
    }
}

/// What a new user's first files get wrong is said plainly, and nothing is stored: a
/// customer twice in one file (the last row would silently win), a file separated by `;`,
/// a misspelt time zone.
#[test]
fn a_first_import_is_told_what_is_wrong() {
    for b in backends("import-hints") {
        with_examples(&b);
        for (text, says) in [
            (
                "id,email\nc1,a@example.com\nc2,b@example.com\nc1,c@example.com\n",
                "c.csv:4: `id`: `c1` appears more than once (also at line 2)",
            ),
            (
                "id;email\nc1;a@example.com\n",
                "the file seems to separate its values with `;`",
            ),
            (
                "id,email,timezone\nc1,a@example.com,Europe/Londn\n",
                "did you mean `Europe/London`?",
            ),
        ] {
            write(&b.dir, "c.csv", text);
            let run = tidings(&b).args(["import", "customers", "c.csv"]).run();
            assert_eq!(run.code, 1, "{}: {}", b.label, run.transcript());
            assert!(run.stderr.contains(says), "{}: {}", b.label, run.stderr);
            let n = crate::daemon::count(&b, "SELECT COUNT(*) FROM customers");
            assert_eq!(n, 0, "{}: {text}", b.label);
        }
    }
}
