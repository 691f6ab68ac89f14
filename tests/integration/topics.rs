//! Topics and the preference centre, through the real daemon on both stores: the one-click
//! POST from an `offers` email opts out of `offers` only (the next `offers` email is not
//! sent, the `reviews` one is); `/u/TOKEN` shows a box per topic in the customer's language
//! and saves a choice at once, without script; "unsubscribe from everything" does so.

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, free_port, write};
use crate::daemon::{Daemon, count, http};
use crate::store::{Backend, backends, tidings};

/// The shop's project with two topics. Its saves come 100 at once from one address (the
/// test's), more than one address may hold by default: the limit is raised here, as it is
/// about the store's answers, not the listener's.
fn project(b: &Backend, smtp: u16) {
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  transport: smtp://127.0.0.1:{smtp}\n  from: \"Shop <hi@shop.example>\"\nserver:\n  public_url: https://mail.shop.example\n  token: ${{TIDINGS_TEST_API_TOKEN}}\n  max_connections_per_client: 128\ntopics:\n  offers: {{ en: \"Deals and coupons\", ja: \"お得な情報\" }}\n  reviews: {{ en: \"Asking for your review\", ja: \"レビューのお願い\" }}\n"
        ),
    );
    let page = "<p>Hi</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>";
    write(&b.dir, "templates/deal.html", page);
    write(&b.dir, "templates/ask.html", page);
    for (name, topic, template) in [("deals", "offers", "deal"), ("asks", "reviews", "ask")] {
        write(
            &b.dir,
            &format!("workflows/{name}.yaml"),
            &format!(
                "name: {name}\ntopic: {topic}\ntrigger:\n  event: nudge\nreentry: always\nsteps:\n  - email: {template}\n    subject: {name}\n"
            ),
        );
    }
    write(
        &b.dir,
        "customers.csv",
        "id,email,locale\nada,ada@example.com,ja-JP\n",
    );
    let run = tidings(b)
        .args(["import", "customers", "customers.csv"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
}

fn nudge(b: &Backend, at: &str) {
    let run = tidings(b)
        .args(["event", "nudge", "--customer", "ada", "--at", at])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let run = tidings(b).args(["run", "--once", "--now", at]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
}

fn subjects(server: &SmtpServer) -> Vec<String> {
    server
        .received()
        .iter()
        .map(|r| {
            let m = MessageParser::default().parse(&r.bytes).unwrap();
            m.subject().unwrap_or_default().to_string()
        })
        .collect()
}

#[test]
fn a_topic_is_opted_out_of_alone_and_the_preference_centre_saves_choices() {
    for b in backends("topics") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        nudge(&b, "2026-06-01T08:00:00Z");
        assert_eq!(subjects(&server).len(), 2, "{}", b.label);
        let received = server.received();
        let deal = received
            .iter()
            .map(|r| MessageParser::default().parse(&r.bytes).unwrap())
            .find(|m| m.subject() == Some("deals"))
            .unwrap()
            .header_raw("List-Unsubscribe")
            .unwrap()
            .trim()
            .trim_matches(['<', '>'])
            .to_string();
        let path = deal
            .strip_prefix("https://mail.shop.example")
            .unwrap()
            .to_string();

        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        // The one-click POST of the `offers` email: `offers` only.
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let (status, page) = http(port, "POST", &path, &form, b"List-Unsubscribe=One-Click");
        assert_eq!(status, 200, "{}: {page}", b.label);
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM topic_optouts WHERE topic = 'offers'"
            ),
            1
        );
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM customers WHERE unsubscribed_at IS NOT NULL"
            ),
            0
        );
        daemon.stop();
        nudge(&b, "2026-06-02T08:00:00Z");
        let mut got = subjects(&server);
        got.sort();
        assert_eq!(
            got,
            ["asks", "asks", "deals"],
            "{}: the next offer is not sent, the review request is",
            b.label
        );

        // The preference centre: a box per topic, in Japanese, `offers` unticked.
        let daemon = Daemon::start(&b, port, "1h");
        let (status, page) = http(port, "GET", &path, &[], b"");
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("lang=\"ja\"")
                && page.contains("お得な情報")
                && page.contains("レビューのお願い"),
            "{page}"
        );
        assert!(
            page.contains("data-topic=\"offers\">")
                && page.contains("data-topic=\"reviews\" checked>"),
            "{page}"
        );
        if b.label == "sqlite" {
            let file = b.dir.join("preferences.html");
            std::fs::write(&file, &page).unwrap();
            let items = [
                "--no-js".to_string(),
                "css:input[type=checkbox][data-topic=offers]".into(),
                "css:input[type=checkbox][data-topic=reviews]".into(),
                "css:button[value=everything]".into(),
            ];
            crate::report::passes_in_a_browser(&file, &items);
        }
        // Ticking both boxes saves at once: nothing opted out.
        let (status, page) = http(
            port,
            "POST",
            &path,
            &form,
            b"topic=offers&topic=reviews&action=save",
        );
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("data-topic=\"offers\" checked>"), "{page}");
        assert_eq!(count(&b, "SELECT COUNT(*) FROM topic_optouts"), 0);
        // Everything: unsubscribed from all marketing mail.
        let (status, page) = http(port, "POST", &path, &form, b"action=everything");
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM customers WHERE unsubscribed_at IS NOT NULL"
            ),
            1
        );
        daemon.stop();

        let status = tidings(&b).args(["status", "--json"]).run();
        let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(doc["opted_out"]["offers"], 0, "{doc:#}");
        assert_eq!(doc["opted_out"]["reviews"], 0);
    }
}

/// `topic:` must name a topic of tidings.yaml, and only on marketing mail.
#[test]
fn validate_checks_topics() {
    let b = backends("topics-validate").remove(0);
    project(&b, 2525);
    crate::common::edit(
        &b.dir,
        "workflows/deals.yaml",
        "topic: offers",
        "topic: ofers",
    );
    let run = tidings(&b).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("error[unknown-topic]: there is no topic `ofers`")
            && run.stderr.contains("did you mean `offers`?"),
        "{}",
        run.stderr
    );
    // Without a topic, while the project has topics: a warning at the workflow's name.
    crate::common::edit(&b.dir, "workflows/deals.yaml", "topic: ofers\n", "");
    let run = tidings(&b).args(["validate"]).run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("warning[no-topic]: a marketing workflow without a topic")
            && run.stderr.contains("deals.yaml:1:1")
            && run.stderr.contains("`offers`, `reviews`"),
        "{}",
        run.stderr
    );
    let run = tidings(&b).args(["validate", "--deny-warnings"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
}

/// Topic preferences come in with customers: a CSV column (`a;b`) or a JSON array over the
/// API, each replacing what the customer had.
#[test]
fn topic_preferences_are_imported_and_posted() {
    for b in backends("topics-import") {
        project(&b, 2525);
        write(
            &b.dir,
            "more.csv",
            "id,email,unsubscribed_topics\nbo,bo@example.com,offers;reviews\n",
        );
        let run = tidings(&b).args(["import", "customers", "more.csv"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let sql = "SELECT COUNT(*) FROM topic_optouts WHERE customer_id = 'bo'";
        assert_eq!(count(&b, sql), 2, "{}", b.label);
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let headers = [
            ("Authorization", "Bearer s3cret-token"),
            ("Content-Type", "application/json"),
        ];
        let body =
            br#"{"id": "bo", "email": "bo@example.com", "unsubscribed_topics": ["reviews"]}"#;
        let (status, answer) = http(port, "POST", "/v1/customers", &headers, body);
        assert_eq!(status, 200, "{}: {answer}", b.label);
        daemon.stop();
        assert_eq!(count(&b, sql), 1, "{}", b.label);
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM topic_optouts WHERE customer_id = 'bo' AND topic = 'reviews'"
            ),
            1
        );
    }
}

/// Regression (issue 29, item 2): a proof carried the customer's working `/u/` link, and a
/// reviewer who tried "unsubscribe" in the proof unsubscribed the customer. A proof's links
/// open the page, which says it is a proof, and change nothing: neither the one-click POST
/// nor "unsubscribe from everything" nor a saved choice.
#[test]
fn a_proofs_unsubscribe_link_changes_nothing() {
    for b in backends("topics-proof") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        let run = tidings(&b)
            .args(["preview", "deals", "--customer", "ada"])
            .args(["--send-to", "reviewer@shop.example"])
            .run();
        assert_eq!(run.code, 0, "{}: {}", b.label, run.transcript());
        let received = server.received();
        assert_eq!(received.len(), 1, "{}", b.label);
        let message = MessageParser::default().parse(&received[0].bytes).unwrap();
        let html = message.body_html(0).unwrap().to_string();
        let at = html.find("https://mail.shop.example/u/").unwrap();
        let link = &html[at..at + html[at..].find('"').unwrap()];
        let path = link
            .strip_prefix("https://mail.shop.example")
            .unwrap()
            .to_string();

        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let (status, page) = http(port, "GET", &path, &[], b"");
        assert_eq!(status, 200, "{}: {page}", b.label);
        assert!(
            page.contains("プルーフ"),
            "{}: the page says it is a proof: {page}",
            b.label
        );
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        for body in [
            b"List-Unsubscribe=One-Click".as_slice(),
            b"action=everything",
            b"action=save&topic=reviews",
        ] {
            let (status, page) = http(port, "POST", &path, &form, body);
            assert_eq!(status, 200, "{}: {page}", b.label);
            assert!(page.contains("プルーフ"), "{page}");
        }
        daemon.stop();
        for sql in [
            "SELECT COUNT(*) FROM topic_optouts",
            "SELECT COUNT(*) FROM customers WHERE unsubscribed_at IS NOT NULL",
            "SELECT COUNT(*) FROM events WHERE name = 'unsubscribed'",
        ] {
            assert_eq!(count(&b, sql), 0, "{}: {sql}", b.label);
        }
    }
}

/// Regression (issue 29, item 8): 100 preference saves at once, each keeping one topic and
/// opting out of the other, left both topics out on PostgreSQL — a state nobody asked for.
/// Saves apply one after the other: one topic is out, as the last save said.
#[test]
fn preference_saves_at_once_end_as_one_of_them_asked() {
    for b in backends("topics-concurrent") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        nudge(&b, "2026-06-01T08:00:00Z");
        let link = server
            .received()
            .iter()
            .map(|r| MessageParser::default().parse(&r.bytes).unwrap())
            .find(|m| m.subject() == Some("deals"))
            .unwrap()
            .header_raw("List-Unsubscribe")
            .unwrap()
            .trim()
            .trim_matches(['<', '>'])
            .to_string();
        let path = link
            .strip_prefix("https://mail.shop.example")
            .unwrap()
            .to_string();
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        // A race shows only now and then: five rounds of 100.
        for round in 0..5 {
            let threads: Vec<_> = (0..100)
                .map(|i| {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        let keep = if i % 2 == 0 { "offers" } else { "reviews" };
                        let body = format!("action=save&topic={keep}");
                        let form = [("Content-Type", "application/x-www-form-urlencoded")];
                        http(port, "POST", &path, &form, body.as_bytes()).0
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(t.join().unwrap(), 200, "{}", b.label);
            }
            assert_eq!(
                count(&b, "SELECT COUNT(*) FROM topic_optouts"),
                1,
                "{}, round {round}: one save's choice stands",
                b.label
            );
        }
        daemon.stop();
    }
}

/// Regression (issue 29, item 15): the one-click POST from an `offers` email opted out of
/// `offers` but counted in no step's unsubscribes; the report showed no opt-outs per topic.
#[test]
fn an_opt_out_by_topic_is_an_unsubscribe_of_its_email() {
    for b in backends("topics-credited") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        nudge(&b, "2026-06-01T08:00:00Z");
        let link = server
            .received()
            .iter()
            .map(|r| MessageParser::default().parse(&r.bytes).unwrap())
            .find(|m| m.subject() == Some("deals"))
            .unwrap()
            .header_raw("List-Unsubscribe")
            .unwrap()
            .trim()
            .trim_matches(['<', '>'])
            .to_string();
        let path = link
            .strip_prefix("https://mail.shop.example")
            .unwrap()
            .to_string();
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let (status, _) = http(port, "POST", &path, &form, b"List-Unsubscribe=One-Click");
        assert_eq!(status, 200, "{}", b.label);
        daemon.stop();
        let run = tidings(&b).args(["status", "--json"]).run();
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let deals = doc["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workflow"] == "deals")
            .unwrap_or_else(|| panic!("{doc:#}"))
            .clone();
        assert_eq!(
            deals["engagement"]["unsubscribed"], 1,
            "{}: {deals:#}",
            b.label
        );
        let run = tidings(&b).args(["report", "--out", "report.html"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let page = std::fs::read_to_string(b.dir.join("report.html")).unwrap();
        let at = page
            .find("id=\"opt-outs\"")
            .unwrap_or_else(|| panic!("{page}"));
        let table = &page[at..at + page[at..].find("</table>").unwrap()];
        assert!(
            table.contains("<tr><td>offers</td><td>1</td></tr>")
                && table.contains("<tr><td>reviews</td><td>0</td></tr>"),
            "{table}"
        );
    }
}

/// The shipped example of topics is valid without a warning: each of its marketing
/// workflows names one of its topics.
#[test]
fn the_topics_example_is_valid() {
    let dir = crate::common::repo_root().join("examples/topics");
    let run = crate::common::Tidings::new()
        .args(["-C", dir.to_str().unwrap(), "validate", "--deny-warnings"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let topics = ["topic: offers", "topic: reviews"];
    for (file, topic) in ["weekend-deal.yaml", "ask-for-review.yaml"]
        .iter()
        .zip(topics)
    {
        let text = std::fs::read_to_string(dir.join("workflows").join(file)).unwrap();
        assert!(text.contains(topic), "{file}");
    }
}
