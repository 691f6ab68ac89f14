//! What a first-time user and independent clients found (issue 18), each pinned by a test:
//! emails dated when they leave, with links that work when they arrive.

use chrono::Utc;
use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, free_port, write};
use crate::daemon::{Daemon, http};
use crate::store::{backends, tidings};

/// An event from a year ago, run now: the email is dated now, not at the event, and its
/// unsubscribe link (valid for the default 365 days) works when it arrives — it counted
/// from the event and had expired on arrival. (A rehearsed moment, `--now`, dates mail by
/// the virtual clock: `store::run_once_walks_the_welcome_series_and_never_writes_a_step_twice`.)
#[test]
fn an_email_is_dated_when_it_leaves_and_its_links_work_on_arrival() {
    let b = backends("dated-on-send").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let port = free_port();
    crate::smtp::new_customers(&b, server.port, "", &["old@example.com".to_string()]);
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  transport: smtp://127.0.0.1:{}\n  from: \"Acme <hello@acme.example>\"\nunsubscribe:\n  base_url: http://127.0.0.1:{port}/u\n",
            server.port
        ),
    );
    write(
        &b.dir,
        "old.csv",
        "customer_id,name,at\nn00000,customer_created,2025-06-01T07:00:00Z\n",
    );
    // Only the year-old event: the one `new_customers` made is moved there too.
    let run = tidings(&b).args(["import", "events", "old.csv"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    crate::store::with_store(&b, async |s| {
        let mut conn = s.connection().await.unwrap();
        sqlx::query("DELETE FROM events WHERE at > $1")
            .bind(
                chrono::DateTime::parse_from_rfc3339("2025-06-02T00:00:00Z")
                    .unwrap()
                    .timestamp_millis(),
            )
            .execute(&mut *conn)
            .await
            .unwrap();
    });
    let started = Utc::now();
    let run = tidings(&b).args(["run", "--once"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let received = server.received();
    let hello = received
        .iter()
        .map(|r| MessageParser::default().parse(&r.bytes).unwrap())
        .find(|m| m.header_raw("X-Tidings-Step").map(str::trim) == Some("hello"))
        .expect("the welcome email arrived");
    let date = hello.date().unwrap().to_timestamp();
    let age = Utc::now().timestamp() - date;
    assert!(
        date >= started.timestamp() - 1 && age <= 60,
        "Date {} is not when it was sent ({started})",
        hello.date().unwrap()
    );
    let url = hello
        .header_raw("List-Unsubscribe")
        .expect("a marketing email")
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .to_string();
    let daemon = Daemon::start(&b, port, "1h");
    let (status, page) = http(port, "GET", &path, &[], b"");
    assert_eq!(status, 200, "the link expired on arrival: {page}");
    assert!(daemon.stop().success());
}
