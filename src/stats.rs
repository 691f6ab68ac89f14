//! The statistics `tidings results` reports, written so that a data analyst can check each
//! against a textbook: the Wilson score interval for a conversion rate, Newcombe's hybrid
//! score interval for the difference of two rates (method 10 of Newcombe 1998), the
//! two-proportion z-test with a pooled standard error, and the sample size per group that
//! gives a two-sided test at 5% a power of 80% (Fleiss, without continuity correction).
//! The normal distribution is statrs'.

use statrs::distribution::{ContinuousCDF, Normal};

/// Fewer journeys than this in an arm, and `results` names no winner, whatever the p-value.
pub const MIN_PER_ARM: u64 = 100;
/// Fewer conversions than this in the two arms compared together, likewise.
pub const MIN_CONVERSIONS: u64 = 10;

/// The standard normal distribution.
fn normal() -> Normal {
    // Mean 0 and standard deviation 1 are valid parameters: this does not fail.
    Normal::standard()
}

/// The two-sided critical value for a confidence level (1.959964 for 95%).
pub fn z(confidence: f64) -> f64 {
    normal().inverse_cdf(1.0 - (1.0 - confidence) / 2.0)
}

/// A rate with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// The Wilson score interval of `successes` out of `n` at 95%; `None` when `n` is 0.
pub fn wilson(successes: u64, n: u64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let z = z(0.95);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Interval {
        estimate: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

/// The difference `a − b` of two rates with Newcombe's 95% interval, built from each
/// rate's Wilson interval (better than the Wald interval when rates are small).
pub fn difference(a: (u64, u64), b: (u64, u64)) -> Option<Interval> {
    let (wa, wb) = (wilson(a.0, a.1)?, wilson(b.0, b.1)?);
    let d = wa.estimate - wb.estimate;
    let low = d - ((wa.estimate - wa.low).powi(2) + (wb.high - wb.estimate).powi(2)).sqrt();
    let high = d + ((wa.high - wa.estimate).powi(2) + (wb.estimate - wb.low).powi(2)).sqrt();
    Some(Interval {
        estimate: d,
        low,
        high,
    })
}

/// The two-sided p-value of the pooled two-proportion z-test of `a` against `b`.
pub fn two_proportion_p(a: (u64, u64), b: (u64, u64)) -> Option<f64> {
    if a.1 == 0 || b.1 == 0 {
        return None;
    }
    let (n1, n2) = (a.1 as f64, b.1 as f64);
    let (p1, p2) = (a.0 as f64 / n1, b.0 as f64 / n2);
    let pooled = (a.0 + b.0) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return Some(1.0);
    }
    let z = ((p1 - p2) / se).abs();
    Some(2.0 * (1.0 - normal().cdf(z)))
}

/// Customers per group for a two-sided test at 5% to detect rates `p1` and `p2` with 80%
/// power; `None` when they are equal (no difference to detect).
pub fn sample_size(p1: f64, p2: f64) -> Option<u64> {
    let delta = (p1 - p2).abs();
    if delta == 0.0 || !delta.is_finite() {
        return None;
    }
    let (za, zb) = (z(0.95), normal().inverse_cdf(0.80));
    let mean = (p1 + p2) / 2.0;
    let n = (za * (2.0 * mean * (1.0 - mean)).sqrt()
        + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt())
    .powi(2)
        / (delta * delta);
    Some(n.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    /// Values from Newcombe (1998), Statistics in Medicine 17: 857–872, tables I and II.
    #[test]
    fn intervals_match_the_published_examples() {
        let w = wilson(81, 263).unwrap();
        assert!(close(w.low, 0.2553) && close(w.high, 0.3662), "{w:?}");
        let w = wilson(0, 20).unwrap();
        assert!(close(w.low, 0.0) && close(w.high, 0.1611), "{w:?}");
        let d = difference((56, 70), (48, 80)).unwrap();
        assert!(close(d.low, 0.0524) && close(d.high, 0.3339), "{d:?}");
        let d = difference((9, 10), (3, 10)).unwrap();
        assert!(close(d.low, 0.1705) && close(d.high, 0.8090), "{d:?}");
        assert!(close(z(0.95), 1.959964));
    }

    #[test]
    fn the_test_and_the_sample_size() {
        // 120/1000 against 80/1000: pooled 10%, z = 2.9814, p = 0.002869.
        let p = two_proportion_p((120, 1000), (80, 1000)).unwrap();
        assert!((p - 0.002869).abs() < 1e-6, "{p}");
        assert_eq!(two_proportion_p((5, 10), (5, 10)), Some(1.0));
        // 10% against 15%: 686 per group (Fleiss, no continuity correction).
        assert_eq!(sample_size(0.10, 0.15), Some(686));
        assert_eq!(sample_size(0.1, 0.1), None);
    }
}
