//! The campaign benchmark's project (`examples/bench`), small: 2,000 customers through the
//! real pipeline into an SMTP server on loopback — every message arrives once, parses as
//! MIME, and is personalised. (`examples/bench/campaign.sh` runs it at 100,000 into
//! Postfix's smtp-sink for speed; this checks that what it measures is right.)

use std::collections::BTreeSet;

use mail_parser::MessageParser;

use crate::common::{Act, SmtpServer, repo_root, write};
use crate::store::{backends, copy_dir, outbox, tidings};

#[test]
fn the_benchmark_campaign_delivers_every_message_once() {
    const N: usize = 2_000;
    let b = backends("campaign").remove(0);
    let server = SmtpServer::start(Box::new(|_, _, _| Act::Accept));
    let bench = repo_root().join("examples/bench");
    for dir in ["workflows", "templates"] {
        copy_dir(&bench.join(dir), &b.dir.join(dir));
    }
    write(
        &b.dir,
        "tidings.yaml",
        &format!(
            "database: ${{TIDINGS_DB}}\nemail:\n  from: \"Acme <news@acme.example>\"\n  transport: smtp://127.0.0.1:{}\n  concurrency: 8\nunsubscribe:\n  base_url: https://acme.example/u\n  secret: bench-secret-not-for-production\n",
            server.port
        ),
    );
    let mut csv = String::from("id,email,first_name,last_name,locale\n");
    for i in 0..N {
        csv.push_str(&format!(
            "c{i:07},customer{i}@bench.example,Name{i},Family{i},en-GB\n"
        ));
    }
    write(&b.dir, "customers.csv", &csv);
    let run = tidings(&b)
        .args(["import", "customers", "customers.csv"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    let run = tidings(&b)
        .args(["run", "--once", "--now", "2026-06-01T10:00:00Z"])
        .run();
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stdout.contains(&format!("delivered {N} emails")),
        "{}",
        run.stdout
    );

    let received = server.received();
    assert_eq!(received.len(), N, "one message each, none twice");
    let mut ids = BTreeSet::new();
    let mut recipients = BTreeSet::new();
    for r in &received {
        let m = MessageParser::default().parse(&r.bytes).unwrap();
        assert!(ids.insert(m.message_id().unwrap().to_string()));
        assert!(recipients.insert(r.to.clone()));
        let i: usize =
            r.to.strip_prefix("customer")
                .and_then(|s| s.strip_suffix("@bench.example"))
                .unwrap()
                .parse()
                .unwrap();
        assert_eq!(
            m.subject(),
            Some(format!("Name{i}, the autumn collection is here").as_str())
        );
        let html = m.body_html(0).unwrap();
        let text = m.body_text(0).unwrap();
        assert!(html.contains(&format!("Hello Name{i},")), "{html}");
        assert!(html.contains(&format!("Sent to customer{i}@bench.example")));
        assert!(html.contains("https://acme.example/u/"), "{html}");
        assert!(text.contains(&format!("Hello Name{i},")), "{text}");
        assert!(
            (3_300..4_000).contains(&html.len()),
            "a ~3.5 KB email: {}",
            html.len()
        );
    }
    let (deliveries, _) = outbox(&b);
    assert_eq!(deliveries.len(), N);
    assert!(deliveries.iter().all(|d| d.state == "sent"));
}
