//! Send-rate limits: at most so many messages a second overall, and per recipient domain
//! (mailbox providers throttle or defer a sender that arrives too fast, so a campaign to
//! many Gmail addresses must be paced without holding up everyone else's mail).
//!
//! Time is passed in, so the rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Evenly spaced slots: one every `interval`, never two at once, never saved up while idle.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// `per_second` slots a second; 0 means no limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            interval: if per_second == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(1.0 / f64::from(per_second))
            },
            next: None,
        }
    }

    /// When the next slot is free.
    pub fn free_at(&self, now: Instant) -> Instant {
        self.next.map_or(now, |n| n.max(now))
    }

    /// Takes the next slot and returns when it starts.
    pub fn take(&mut self, now: Instant) -> Instant {
        let slot = self.free_at(now);
        self.next = Some(slot + self.interval);
        slot
    }
}

/// Waits until `at`, or not at all when it has come. Tokio rounds a deadline up to its next
/// millisecond tick, so sleeping until "now" made every email wait up to a millisecond for
/// its slot: a third of a campaign's sending time at 8 sessions.
pub async fn wait_until(at: Instant) {
    let at = tokio::time::Instant::from_std(at);
    if at > tokio::time::Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

/// One pacer per recipient domain, at the rate configured for it or the default.
#[derive(Debug, Clone, Default)]
pub struct DomainPacing {
    default: u32,
    rates: HashMap<String, u32>,
    pacers: HashMap<String, Pacer>,
}

impl DomainPacing {
    /// From `email.rate_per_domain`: `default` for every domain not named (0: no limit).
    pub fn new(rates: &std::collections::BTreeMap<String, u32>) -> Self {
        let mut rates: HashMap<String, u32> = rates
            .iter()
            .map(|(d, r)| (d.to_ascii_lowercase(), *r))
            .collect();
        Self {
            default: rates.remove("default").unwrap_or(0),
            rates,
            pacers: HashMap::new(),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.default == 0 && self.rates.values().all(|r| *r == 0)
    }

    fn pacer(&mut self, domain: &str) -> &mut Pacer {
        let rate = self.rates.get(domain).copied().unwrap_or(self.default);
        self.pacers
            .entry(domain.to_string())
            .or_insert_with(|| Pacer::new(rate))
    }

    /// Takes a slot for `domain` if one is free `now`; otherwise says when one will be,
    /// so the caller can send to another domain meanwhile.
    pub fn try_take(&mut self, domain: &str, now: Instant) -> Result<(), Instant> {
        let pacer = self.pacer(domain);
        let free = pacer.free_at(now);
        if free > now {
            return Err(free);
        }
        pacer.take(now);
        Ok(())
    }
}

/// The domain of an address, lower-cased (the part after the last `@`).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or(address, |(_, d)| d)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot that has come is taken at once; one still ahead is waited for. (On a paused
    /// clock tokio moves time on only for a sleep that is pending.)
    #[tokio::test(start_paused = true)]
    async fn a_slot_that_has_come_is_not_waited_for() {
        // Between two ticks, as a real clock almost always is.
        tokio::time::advance(Duration::from_micros(300)).await;
        let start = tokio::time::Instant::now();
        let mut pacer = Pacer::new(0);
        wait_until(pacer.take(start.into_std())).await;
        wait_until(pacer.take(start.into_std())).await;
        assert_eq!(tokio::time::Instant::now(), start);
        let mut pacer = Pacer::new(10);
        pacer.take(start.into_std());
        wait_until(pacer.take(start.into_std())).await;
        assert!(tokio::time::Instant::now() >= start + Duration::from_millis(100));
    }

    #[test]
    fn slots_are_evenly_spaced_and_not_saved_up() {
        let t0 = Instant::now();
        let mut p = Pacer::new(4);
        assert_eq!(p.take(t0), t0);
        assert_eq!(p.take(t0), t0 + Duration::from_millis(250));
        assert_eq!(p.take(t0), t0 + Duration::from_millis(500));
        // Idle for a minute: the next slot is now, not a burst of the 240 missed ones.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(p.take(later), later);
        assert_eq!(p.take(later), later + Duration::from_millis(250));
        let mut unlimited = Pacer::new(0);
        assert_eq!(unlimited.take(t0), t0);
        assert_eq!(unlimited.take(t0), t0);
    }

    #[test]
    fn a_busy_domain_waits_while_others_go() {
        let t0 = Instant::now();
        let rates = [("default".to_string(), 0), ("GMAIL.com".to_string(), 2)]
            .into_iter()
            .collect();
        let mut d = DomainPacing::new(&rates);
        assert!(!d.is_unlimited());
        assert_eq!(d.try_take("gmail.com", t0), Ok(()));
        assert_eq!(
            d.try_take("gmail.com", t0),
            Err(t0 + Duration::from_millis(500))
        );
        for _ in 0..10 {
            assert_eq!(d.try_take("example.com", t0), Ok(()));
        }
        let half = t0 + Duration::from_millis(500);
        assert_eq!(d.try_take("gmail.com", half), Ok(()));
        assert_eq!(domain_of("Ada@Example.COM"), "example.com");
        assert!(DomainPacing::new(&Default::default()).is_unlimited());
    }
}
