//! What a dispatch tells its caller: emails by outcome, and lines for the operator.

use std::collections::BTreeMap;

/// What one dispatch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: u64,
    pub failed: u64,
    pub retrying: u64,
    /// Not sent: the address is suppressed or the customer unsubscribed since it was queued.
    pub suppressed: u64,
    /// `at_most_once` emails whose fate the server left unknown.
    pub unknown: u64,
    /// One line per email that did not simply go, for the operator — but for emails to be
    /// retried, only the first few of each cause, and then one line with how many more.
    pub problems: Vec<String>,
    /// Emails to be retried, by cause: a server that is down would otherwise print a line
    /// for every email claimed.
    retries_by_cause: BTreeMap<String, u64>,
}

/// Lines printed for emails retried for one cause before the rest are counted.
const RETRY_LINES_PER_CAUSE: u64 = 3;

impl DispatchReport {
    /// Notes an email to be retried: its own line while its cause is new.
    pub(super) fn retry(&mut self, what: &str, cause: &str) {
        let seen = self.retries_by_cause.entry(cause.to_string()).or_insert(0);
        *seen += 1;
        if *seen <= RETRY_LINES_PER_CAUSE {
            self.problems
                .push(format!("{what} will be retried: {cause}"));
        }
    }

    /// One line per cause with more emails to be retried than it had lines.
    pub(super) fn count_the_rest(&mut self) {
        for (cause, n) in std::mem::take(&mut self.retries_by_cause) {
            if n > RETRY_LINES_PER_CAUSE {
                let more = n - RETRY_LINES_PER_CAUSE;
                let emails = if more == 1 { "email" } else { "emails" };
                self.problems.push(format!(
                    "... and {more} more {emails} will be retried: {cause}"
                ));
            }
        }
    }
}
