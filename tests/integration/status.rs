//! `tidings status`: customers per stage and journeys and emails per workflow, counted by
//! the test from the store itself.

use crate::store::{backends, demo_with_stages, outbox, pass, tidings};

#[test]
fn status_counts_stages_journeys_and_emails() {
    for b in backends("status") {
        demo_with_stages(&b);
        for now in [
            "2026-06-01T08:00:00Z",
            "2026-06-03T10:00:00Z",
            "2026-06-09T10:00:00Z",
        ] {
            pass(&b, now);
        }
        let run = tidings(&b).args(["status", "--json"]).run();
        assert_eq!(run.code, 0, "{}", run.transcript());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(doc["customers"], 5);
        assert_eq!(doc["stages"]["lapsed"], 1, "{}: {doc}", b.label);
        assert_eq!(doc["stages"]["prospect"], 1);
        let (deliveries, enrollments) = outbox(&b);
        for wf in doc["workflows"].as_array().unwrap() {
            let name = wf["workflow"].as_str().unwrap();
            let sent = deliveries
                .iter()
                .filter(|d| d.workflow == name && d.channel == "email" && d.state == "sent")
                .count();
            assert_eq!(wf["emails"]["sent"], sent as u64, "{}: {name}", b.label);
            let completed = enrollments
                .iter()
                .filter(|e| e.0 == name && e.2 == "completed")
                .count();
            assert_eq!(
                wf["journeys"]["completed"], completed as u64,
                "{}: {name}",
                b.label
            );
        }
        let total: u64 = doc["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["emails"]["sent"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 12, "{}: the quickstart's twelve emails", b.label);
        let table = tidings(&b).args(["status"]).run();
        assert!(
            table.stdout.contains("lapsed                        1")
                && table.stdout.contains("welcome-series"),
            "{}",
            table.stdout
        );
    }
}
