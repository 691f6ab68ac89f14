//! What comes back from an email, through the real daemon on loopback: a tracked link in a
//! real `.eml` followed (302 to exactly its URL with the UTM parameters, one
//! `email_clicked`), a scanner's early click and a HEAD left out of the rates, a forged
//! token refused, the open pixel, an answer and its comment; a journey waiting for the
//! click goes on at once; `status --json` counts it all. On SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, Tidings, free_port, scratch_dir, write};
use crate::daemon::{Daemon, count, http};
use crate::store::{Backend, backends, tidings};

const DEAL_HTML: &str = r#"<!doctype html><html><body>
<p>Hello {{ customer.first_name }}, <a href="https://shop.example/sale?x=1&amp;y=2#top">see the sale</a>.</p>
<p><a href="mailto:help@shop.example">Write to us</a> or <a href="tel:+4930123">call</a>.</p>
<p>How likely are you to recommend us? <a href="{{ answer_url(question="nps", value=9) }}">9</a>
<a href="{{ answer_url(question="nps", value=3) }}">3</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>"#;

const DEAL: &str = "name: deal
trigger:
  event: signed_up
steps:
  - id: first
    email: deal
    subject: A deal for you
  - wait: { for: email_clicked, at_most: 3d }
  - if: clicked(\"first\")
    then:
      - id: thanks
        email: thanks
        subject: Thanks for looking
";

pub(crate) fn project(b: &Backend, smtp: u16) {
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  transport: smtp://127.0.0.1:{smtp}\n  from: \"Shop <hi@shop.example>\"\nserver:\n  public_url: https://mail.shop.example\n  token: ${{TIDINGS_TEST_API_TOKEN}}\ntracking:\n  opens: true\n  machine_window: 2s\n  utm: {{ source: tidings, campaign: \"{{workflow}}\" }}\n"
        ),
    );
    write(&b.dir, "templates/deal.html", DEAL_HTML);
    write(
        &b.dir,
        "templates/thanks.html",
        "<p>Thanks! <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
    );
    write(&b.dir, "workflows/deal.yaml", DEAL);
    write(
        &b.dir,
        "customers.csv",
        "id,email,first_name,locale\nada,ada@example.com,Ada,ja-JP\n",
    );
    write(&b.dir, "events.csv", "customer_id,name\nada,signed_up\n");
    for kind in ["customers", "events"] {
        let file = format!("{kind}.csv");
        let run = tidings(b).args(["import", kind, &file]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
    }
}

/// The paths after the public address of every link of a kind (`/c/`, `/a/`, `/o/`) in
/// the email's HTML, as a mail client would follow them.
pub(crate) fn links(html: &str, kind: &str) -> Vec<String> {
    let marker = format!("https://mail.shop.example/{kind}/");
    html.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len() - kind.len() - 2..];
            let end = rest.find(['"', '\'', '<', ' ']).unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .collect()
}

fn head_location(port: u16, method: &str, path: &str, agent: &str) -> (u16, Option<String>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: mail.shop.example\r\nUser-Agent: {agent}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let location = response
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .map(str::to_string);
    (status, location)
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

#[test]
fn tracked_links_opens_and_answers_come_back_through_the_daemon() {
    for b in backends("engagement-links") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        let run = tidings(&b).args(["run", "--once"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let sent_at = Instant::now();
        let received = server.received();
        assert_eq!(received.len(), 1, "{}: the deal", b.label);
        let message = MessageParser::default().parse(&received[0].bytes).unwrap();
        let html = message.body_html(0).unwrap().into_owned();
        // The unsubscribe link, mailto: and tel: are as they were; the sale link is not.
        assert!(html.contains("mailto:help@shop.example") && html.contains("tel:+4930123"));
        assert!(html.contains("https://mail.shop.example/u/"), "{html}");
        assert!(!html.contains("shop.example/sale"), "{html}");
        let clicks = links(&html, "c");
        assert_eq!(clicks.len(), 1, "{}: {html}", b.label);
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");

        // A scanner's click, within the machine window of the send: redirected, recorded
        // as a machine's. A HEAD: redirected, not recorded.
        let target = "https://shop.example/sale?x=1&y=2&utm_campaign=deal&utm_source=tidings#top";
        assert!(
            sent_at.elapsed() < Duration::from_secs(2),
            "too slow to test the window"
        );
        let (status, location) = head_location(port, "GET", &clicks[0], BROWSER);
        assert_eq!(
            (status, location.as_deref()),
            (302, Some(target)),
            "{}",
            b.label
        );
        let (status, location) = head_location(port, "HEAD", &clicks[0], BROWSER);
        assert_eq!((status, location.as_deref()), (302, Some(target)));
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM events WHERE name = 'email_clicked'"
            ),
            1
        );
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM engagements WHERE machine = 1"),
            1
        );

        // A forged or altered token: 400, no redirect, nothing recorded.
        let mut altered = clicks[0].clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        for path in [altered.as_str(), "/c/bm90IGEgdG9rZW4", "/c/..%2f..%2fetc"] {
            let (status, location) = head_location(port, "GET", path, BROWSER);
            assert_eq!((status, location), (400, None), "{}: {path}", b.label);
        }
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM events WHERE name = 'email_clicked'"
            ),
            1
        );

        // A person, after the window: one human click, and the journey waiting for it
        // sends its thanks at once (the daemon's timer is an hour).
        std::thread::sleep(Duration::from_secs(2).saturating_sub(sent_at.elapsed()));
        let (status, _) = head_location(port, "GET", &clicks[0], BROWSER);
        assert_eq!(status, 302);
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.received().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "{}: the thanks did not come",
                b.label
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let received = server.received();
        let thanks = MessageParser::default().parse(&received[1].bytes).unwrap();
        assert_eq!(thanks.subject(), Some("Thanks for looking"));

        // The open pixel, and an answer with its comment, in the customer's language.
        let pixel = links(&html, "o");
        let (status, gif) = http(port, "GET", &pixel[0], &[("User-Agent", BROWSER)], b"");
        assert_eq!(status, 200);
        assert!(gif.starts_with("GIF89a"), "{gif:?}");
        let answers = links(&html, "a");
        assert_eq!(answers.len(), 2);
        let (status, page) = http(port, "GET", &answers[1], &[("User-Agent", BROWSER)], b"");
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains("lang=\"ja\"") && page.contains(">3<"),
            "{page}"
        );
        let (status, _) = http(port, "GET", &answers[0], &[("User-Agent", BROWSER)], b"");
        assert_eq!(status, 200);
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let (status, page) = http(port, "POST", &answers[0], &form, b"comment=Great+tea%21");
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            crate::store::text_pairs(
                &b,
                "SELECT value, comment FROM engagements WHERE kind = 'answer'"
            ),
            [("9".to_string(), "Great tea!".to_string())],
            "{}: one answer per email and question, the latest wins",
            b.label
        );
        let status = tidings(&b).args(["status", "--json"]).run();
        assert_eq!(status.code, 0, "{}", status.transcript());
        let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        let deal = &doc["workflows"][0]["engagement"];
        assert_eq!(deal["sent"], 2, "{}: {doc:#}", b.label);
        assert_eq!(
            deal["clicked"], 1,
            "{}: the scanner's click is left out",
            b.label
        );
        assert_eq!(deal["opened"], 1);
        assert_eq!(deal["answered"], 1);
        let first = &deal["steps"][0];
        assert_eq!(
            (first["step"].as_str(), first["click_rate"].as_f64()),
            (Some("first"), Some(1.0))
        );
        assert_eq!(doc["questions"][0]["question"], "nps");
        assert_eq!(doc["questions"][0]["nps"], 100.0);

        // Forgetting the customer takes everything kept about them, engagement included.
        let auth = [("Authorization", "Bearer s3cret-token")];
        let (status, body) = http(port, "DELETE", "/v1/customers/ada", &auth, b"");
        assert_eq!(status, 204, "{}: {body}", b.label);
        for sql in [
            "SELECT COUNT(*) FROM engagements",
            "SELECT COUNT(*) FROM events",
            "SELECT COUNT(*) FROM deliveries",
            "SELECT COUNT(*) FROM delivery_bodies",
            "SELECT COUNT(*) FROM enrollments",
            "SELECT COUNT(*) FROM customers",
        ] {
            assert_eq!(count(&b, sql), 0, "{}: {sql}", b.label);
        }
        let (status, _) = http(port, "DELETE", "/v1/customers/ada", &auth, b"");
        assert_eq!(status, 404);
        // Its links still go where they went, and record nothing.
        let (status, location) = head_location(port, "GET", &clicks[0], BROWSER);
        assert_eq!((status, location.as_deref()), (302, Some(target)));
        assert_eq!(count(&b, "SELECT COUNT(*) FROM events"), 0);
        daemon.stop();
    }
}

const WAITS: &str = "name: nudge
trigger:
  event: signed_up
steps:
  - id: hello
    email: hello
    subject: Hello
  - wait: { for: email_clicked, at_most: 3d }
  - id: next
    email: next
    subject: Next
tests:
  - name: a click on day 1 moves the journey on that day
    start: 2026-06-01T09:00:00Z
    customers: [ { id: ada } ]
    events: [ { name: signed_up } ]
    steps:
      - expect_email: { template: hello }
      - advance: 1d
      - click: { template: hello }
      - expect_email: { template: next, at: 2026-06-02T09:00:00Z }
  - name: without a click the journey goes on after three days
    start: 2026-06-01T09:00:00Z
    customers: [ { id: ada } ]
    events: [ { name: signed_up } ]
    steps:
      - advance: 2d
      - expect_no_email: { template: next }
      - advance: 1d
      - expect_email: { template: next, at: 2026-06-04T09:00:00Z }
";

fn nudge(dir: &std::path::Path, workflow: &str) -> crate::common::Run {
    write(
        dir,
        "templates/hello.html",
        "<a href=\"https://shop.example/\">Shop</a> <a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        dir,
        "templates/next.html",
        "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(dir, "workflows/nudge.yaml", workflow);
    Tidings::new().cwd(dir).args(["test"]).run()
}

/// `wait: {for: email_clicked, at_most: 3d}`: a click on day 1 moves the journey on at
/// day 1, none at day 3 — and a plain `wait: 3d` in its place fails the first case.
#[test]
fn a_wait_for_a_click_ends_with_the_click_or_the_time_limit() {
    let dir = scratch_dir("engagement-wait");
    let run = nudge(&dir, WAITS);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stdout.contains("2 passed"), "{}", run.stdout);
    let run = nudge(
        &dir,
        &WAITS.replace("{ for: email_clicked, at_most: 3d }", "3d"),
    );
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stdout.contains("FAIL  nudge › a click on day 1"),
        "{}",
        run.stdout
    );
}

/// `validate` names the step a `clicked()` names and the event a wait is for.
#[test]
fn validate_checks_engagement_references() {
    let dir = scratch_dir("engagement-validate");
    write(
        &dir,
        "templates/hello.html",
        "<a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
    );
    write(
        &dir,
        "workflows/nudge.yaml",
        "name: nudge\ntrigger:\n  event: signed_up\naudience: clicked(\"hello\")\nsteps:\n  - id: hello\n    email: hello\n    subject: Hi\n  - wait: { for: email_clikced, at_most: 3d }\n  - if: clicked(\"helo\") || opened(\"other/x\")\n    then:\n      - exit: done\n",
    );
    let run = Tidings::new().cwd(&dir).args(["validate"]).run();
    assert_eq!(run.code, 1, "{}", run.transcript());
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "error[engagement-in-audience]",
        "error[unknown-step]: in `if`: this workflow has no email step `helo`",
        "did you mean `hello`?",
        "error[unknown-workflow]: there is no workflow `other`",
        "warning[unknown-event]: no workflow is triggered by `email_clikced`",
        "did you mean `email_clicked`?",
        "nudge.yaml:4:19",
    ] {
        assert!(out.contains(expected), "{expected} in\n{out}");
    }
}

/// Every shipped workflow's emails, in every locale: the unsubscribe link stays as it is
/// (never a tracked link, never inside one), and every tracked link opens to a web URL
/// that is not one of tidings' own.
#[test]
fn the_unsubscribe_link_is_never_rewritten_in_any_shipped_email() {
    use tidings::links::{Click, Token};
    let dir = crate::workflow_tests::examples_copy("engagement-unsubscribe");
    write(
        &dir,
        "tidings.yaml",
        "unsubscribe:\n  secret: ${TIDINGS_UNSUBSCRIBE_SECRET}\nserver:\n  public_url: https://mail.acme.example\n",
    );
    let secret = "a known secret for this test";
    let mut tracked = 0;
    for entry in std::fs::read_dir(dir.join("workflows")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".test.yaml") {
            continue;
        }
        let workflow = name.trim_end_matches(".yaml");
        let run = Tidings::new()
            .cwd(&dir)
            .env("TIDINGS_UNSUBSCRIBE_SECRET", secret)
            .args(["preview", workflow, "--sample", "--all-locales"])
            .args(["--now", "2026-06-01T08:00:00Z"])
            .run();
        assert_eq!(run.code, 0, "{workflow}: {}", run.transcript());
        let signer = tidings::unsubscribe::Signer::new(secret.as_bytes()).unwrap();
        let marketing = !std::fs::read_to_string(&path)
            .unwrap()
            .contains("class: transactional");
        let unsubscribe = run.stdout.matches("https://mail.acme.example/u/").count();
        assert!(
            !marketing || unsubscribe > 0,
            "{workflow}: no unsubscribe link"
        );
        for (i, _) in run.stdout.match_indices("/c/") {
            let rest = &run.stdout[i + 3..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            let click = Click::open(&signer, &rest[..end])
                .unwrap_or_else(|e| panic!("{workflow}: a /c/ link that does not open: {e}"));
            assert!(
                click.url.starts_with("https://") && !click.url.contains("/u/"),
                "{workflow}: {}",
                click.url
            );
            tracked += 1;
        }
    }
    assert!(
        tracked >= 4,
        "the shipped emails have {tracked} tracked links"
    );
}

/// Regression (issue 29, items 3 and 7): a scanner fetching every answer link within two
/// seconds of delivery stored each answer as a person's; a second GET of an answer link
/// (a reload) erased its comment and recorded another `survey_answered`; a POST without a
/// comment field wiped it; NUL was a 503 on PostgreSQL; a long comment was cut silently.
#[test]
fn scanners_answer_nothing_and_a_reload_keeps_the_comment() {
    for b in backends("engagement-answers") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        let run = tidings(&b).args(["run", "--once"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let sent_at = Instant::now();
        let received = server.received();
        let message = MessageParser::default().parse(&received[0].bytes).unwrap();
        let html = message.body_html(0).unwrap().into_owned();
        let answers = links(&html, "a");
        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let answered = |b: &Backend| {
            count(
                b,
                "SELECT COUNT(*) FROM events WHERE name = 'survey_answered'",
            )
        };

        // The scanner: both links at once, as python-requests.
        for path in &answers {
            let (status, _) = http(
                port,
                "GET",
                path,
                &[("User-Agent", "python-requests/2.32")],
                b"",
            );
            assert_eq!(status, 200);
        }
        assert!(
            sent_at.elapsed() < Duration::from_secs(2),
            "too slow to test the window"
        );
        let scanned_at = Instant::now();
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM engagements WHERE kind = 'answer' AND machine = 0"
            ),
            0,
            "{}: a scanner's answers are machine answers",
            b.label
        );
        let machine_events = answered(&b);
        assert!(machine_events >= 1, "{}", b.label);

        // A person, after the window and the scanner's burst: 9, with a comment.
        std::thread::sleep(Duration::from_millis(5_300).saturating_sub(scanned_at.elapsed()));
        let person = [("User-Agent", BROWSER)];
        let (status, _) = http(port, "GET", &answers[0], &person, b"");
        assert_eq!(status, 200);
        assert_eq!(answered(&b), machine_events + 1, "{}", b.label);
        let form = [("Content-Type", "application/x-www-form-urlencoded")];
        let (status, _) = http(port, "POST", &answers[0], &form, b"comment=Great%00tea");
        assert_eq!(status, 200, "{}", b.label);
        let kept = "SELECT value, comment FROM engagements WHERE kind = 'answer' AND machine = 0";
        let great = [("9".to_string(), "Greattea".to_string())];
        assert_eq!(crate::store::text_pairs(&b, kept), great, "{}", b.label);

        // A reload, a scanner after the person, a form without the field, a comment too
        // long: nothing recorded, nothing erased.
        let (status, page) = http(port, "GET", &answers[0], &person, b"");
        assert_eq!(status, 200);
        assert!(
            page.contains("Greattea"),
            "{}: the box shows the comment: {page}",
            b.label
        );
        let (status, _) = http(
            port,
            "GET",
            &answers[0],
            &[("User-Agent", "python-requests/2.32")],
            b"",
        );
        assert_eq!(status, 200);
        let (status, _) = http(port, "POST", &answers[0], &form, b"other=1");
        assert_eq!(status, 422, "{}", b.label);
        let long = format!("comment={}", "x".repeat(2_001));
        let (status, page) = http(port, "POST", &answers[0], &form, long.as_bytes());
        assert_eq!(status, 413, "{}: {page}", b.label);
        assert_eq!(crate::store::text_pairs(&b, kept), great, "{}", b.label);
        assert_eq!(answered(&b), machine_events + 1, "{}", b.label);
        daemon.stop();

        let status = tidings(&b).args(["status", "--json"]).run();
        let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(
            doc["workflows"][0]["engagement"]["answered"], 1,
            "{}: {doc:#}",
            b.label
        );
    }
}

/// Regression (issue 29, item 6): forgetting a customer left their conversions, and the
/// suppression list kept their address in clear. Now nothing of theirs is left but a hash
/// of a suppressed address — which still stops mail to that address if it comes back.
#[test]
fn forgetting_leaves_only_a_hash_that_still_suppresses() {
    for b in backends("engagement-forget") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        write(
            &b.dir,
            "workflows/deal.yaml",
            &format!("{DEAL}goal: {{ event: order_placed, within: 7d }}\n"),
        );
        let run = tidings(&b).args(["run", "--once"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b)
            .args(["event", "order_placed", "--customer", "ada"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b).args(["run", "--once"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM conversions"),
            1,
            "{}",
            b.label
        );

        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        let auth = [
            ("Authorization", "Bearer s3cret-token"),
            ("Content-Type", "application/json"),
        ];
        let report = br#"{"email": "Ada@Example.com", "type": "bounce"}"#;
        let (status, body) = http(port, "POST", "/v1/suppressions", &auth, report);
        assert!(status < 300, "{}: {status} {body}", b.label);
        let (status, body) = http(port, "DELETE", "/v1/customers/ada", &auth, b"");
        assert_eq!(status, 204, "{}: {body}", b.label);
        daemon.stop();
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM conversions"),
            0,
            "{}",
            b.label
        );
        assert_eq!(count(&b, "SELECT COUNT(*) FROM suppressions"), 1);
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM suppressions WHERE email LIKE '%ada%' OR email LIKE '%@%'"
            ),
            0,
            "{}: no address in clear",
            b.label
        );

        // The same address comes back: nothing is sent to it.
        let sent = server.received().len();
        for kind in ["customers", "events"] {
            let file = format!("{kind}.csv");
            let run = tidings(&b).args(["import", kind, &file]).run();
            assert_eq!(run.code, 0, "{}", run.transcript());
        }
        let run = tidings(&b).args(["run", "--once"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        assert_eq!(
            server.received().len(),
            sent,
            "{}: still suppressed",
            b.label
        );
    }
}

/// Regression (issue 29, items 4 and 5): five links of one email fetched at once kept
/// every click human on PostgreSQL (each transaction saw none of the others); a URL in a
/// customer's value became a tracked redirect on the brand's domain; a link with a
/// control character answered 302 without a `Location`.
#[test]
fn bursts_hold_under_concurrency_and_only_written_links_redirect() {
    for b in backends("engagement-burst") {
        let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
        project(&b, server.port);
        let anchors: String = (1..=5)
            .map(|i| format!("<a href=\"https://shop.example/p{i}\">p{i}</a>\n"))
            .collect();
        write(
            &b.dir,
            "templates/deal.html",
            &format!(
                "<p>Hi</p>\n{anchors}<a href=\"https://shop.example/a&#9;b\">tab</a>\n<a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a>"
            ),
        );
        write(
            &b.dir,
            "templates/deal.txt",
            "Hi {{ customer.first_name }}, see https://shop.example/p1\n{{ unsubscribe_url }}\n",
        );
        write(
            &b.dir,
            "customers.csv",
            "id,email,first_name,locale\nada,ada@example.com,Bob https://evil.example/phish,ja-JP\n",
        );
        let run = tidings(&b)
            .args(["import", "customers", "customers.csv"])
            .run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let run = tidings(&b).args(["run", "--once"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let received = server.received();
        let message = MessageParser::default().parse(&received[0].bytes).unwrap();
        let text = message.body_text(0).unwrap().into_owned();
        assert!(
            text.contains("Bob https://evil.example/phish,") && !text.contains("shop.example/p1"),
            "{}: the customer's URL is left as it is, the template's is tracked: {text}",
            b.label
        );
        let html = message.body_html(0).unwrap().into_owned();
        let clicks = links(&html, "c");
        assert_eq!(clicks.len(), 6, "{}: {html}", b.label);

        let port = free_port();
        let daemon = Daemon::start(&b, port, "1h");
        std::thread::sleep(Duration::from_secs(2));
        // The tab link: a valid Location, percent-encoded.
        let (status, location) = head_location(port, "HEAD", &clicks[5], BROWSER);
        assert_eq!(
            (status, location.as_deref()),
            (
                302,
                Some("https://shop.example/a%09b?utm_campaign=deal&utm_source=tidings")
            ),
            "{}",
            b.label
        );
        // Five links at once, as a scanner fetches them.
        let threads: Vec<_> = clicks[..5]
            .iter()
            .cloned()
            .map(|path| std::thread::spawn(move || head_location(port, "GET", &path, BROWSER)))
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().0, 302);
        }
        daemon.stop();
        assert_eq!(
            count(&b, "SELECT COUNT(*) FROM engagements WHERE kind = 'click'"),
            5
        );
        assert_eq!(
            count(
                &b,
                "SELECT COUNT(*) FROM engagements WHERE kind = 'click' AND machine = 0"
            ),
            0,
            "{}: a burst over five links is a machine's",
            b.label
        );
    }
}
