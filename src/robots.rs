//! Telling a person's click or open from a machine's: link scanners of mail gateways follow
//! every link of an email within seconds of its arrival, and mail privacy proxies fetch
//! every image. Machine engagement is recorded (`machine: true`) and left out of rates and
//! of `clicked()`, so that a scanner neither inflates a report nor sends a reminder astray.

use chrono::{DateTime, TimeDelta, Utc};

/// Parts of the user agents of link scanners, security gateways, fetch libraries and
/// image proxies, lowercased.
const AGENTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "scanner",
    "preview",
    "barracuda",
    "proofpoint",
    "mimecast",
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "fortinet",
    "sophos",
    "zscaler",
    "cisco",
    "ironport",
    "safelinks",
    "urldefense",
    "headlesschrome",
    "phantomjs",
    "python-",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "googleimageproxy",
    "yahoomailproxy",
    "ggpht.com",
];

/// Whether a user agent is a machine's: a known one, or none at all.
pub fn machine_agent(agent: Option<&str>) -> bool {
    let Some(agent) = agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let agent = agent.to_ascii_lowercase();
    AGENTS.iter().any(|a| agent.contains(a))
}

/// How a click came, as the endpoint sees it.
pub struct Seen<'a> {
    pub at: DateTime<Utc>,
    pub agent: Option<&'a str>,
    /// When the email was handed to the mail server, if it was.
    pub sent_at: Option<DateTime<Utc>>,
    /// Other links of the same email clicked in the burst window before this one.
    pub other_links_in_burst: usize,
}

/// Within this long after an email leaves, a click or open is a scanner's.
pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::seconds(10);

/// Clicks on this many other links of one email within [`BURST`] make a burst.
pub const BURST_LINKS: usize = 2;
pub const BURST: TimeDelta = TimeDelta::seconds(5);

/// Whether a click (or open) is a machine's: a scanner's agent, too soon after the email
/// left (`window`), or part of a burst over the email's links.
pub fn is_machine(seen: &Seen<'_>, window: TimeDelta) -> bool {
    machine_agent(seen.agent)
        || seen.sent_at.is_some_and(|sent| seen.at - sent < window)
        || seen.other_links_in_burst >= BURST_LINKS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanners_early_clicks_and_bursts_are_machines() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let person = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15";
        let seen = |agent, at: &str, burst| Seen {
            at: t(at),
            agent,
            sent_at: Some(t("2026-06-01T10:00:00Z")),
            other_links_in_burst: burst,
        };
        let w = DEFAULT_WINDOW;
        assert!(!is_machine(
            &seen(Some(person), "2026-06-01T10:05:00Z", 0),
            w
        ));
        assert!(is_machine(
            &seen(Some(person), "2026-06-01T10:00:03Z", 0),
            w
        ));
        assert!(is_machine(
            &seen(Some("Barracuda Sentinel (EE)"), "2026-06-01T11:00:00Z", 0),
            w
        ));
        assert!(is_machine(&seen(None, "2026-06-01T11:00:00Z", 0), w));
        assert!(is_machine(
            &seen(Some(person), "2026-06-01T11:00:00Z", 2),
            w
        ));
        assert!(is_machine(
            &seen(
                Some("Mozilla/5.0 (via ggpht.com GoogleImageProxy)"),
                "2026-06-01T11:00:00Z",
                0
            ),
            w
        ));
    }
}
