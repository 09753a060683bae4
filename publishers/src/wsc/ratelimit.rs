//! Sans-IO per-source rate limit for WSC-RTP control datagrams: a token bucket per source address (IP and port),
//! so a flood of guesses from one socket costs the server little and can't crowd out other clients' proofs.
//! Per address, not per IP: every viewer behind one NAT shares an IP, each with its own port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Source addresses tracked at most; the idle ones are forgotten first when full.
const MAX_SOURCES: usize = 4096;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Allows `rate` datagrams a second per source address, in bursts of up to `rate`.
#[derive(Debug)]
pub struct ProofRateLimiter {
    rate: f64,
    buckets: HashMap<SocketAddr, Bucket>,
}

impl ProofRateLimiter {
    pub fn new(per_second: u32) -> Self {
        ProofRateLimiter {
            rate: f64::from(per_second.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// True if a datagram from `from` at `now` may be processed.
    pub fn allow(&mut self, from: SocketAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&from) {
            let rate = self.rate;
            // A full bucket is an idle source: nothing lost by forgetting it.
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < rate
            });
            if self.buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let b = self.buckets.entry(from).or_insert(Bucket {
            tokens: self.rate,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn refill_interval(per_second: u32) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(per_second))
    }

    #[test]
    fn bursts_then_throttles_per_source() {
        let t0 = Instant::now();
        let mut l = ProofRateLimiter::new(20);
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:5001".parse().unwrap();
        assert_eq!((0..30).filter(|_| l.allow(a, t0)).count(), 20);
        assert!(
            l.allow(b, t0),
            "another port of the same host is not affected"
        );
        assert!(!l.allow(a, t0 + refill_interval(20) / 2));
        assert!(l.allow(a, t0 + refill_interval(20)));
        assert_eq!(
            (0..30)
                .filter(|_| l.allow(a, t0 + Duration::from_secs(5)))
                .count(),
            20
        );
    }

    #[test]
    fn memory_is_bounded_under_a_spoofed_source_flood() {
        let t0 = Instant::now();
        let mut l = ProofRateLimiter::new(20);
        for i in 0..10_000u32 {
            l.allow(
                SocketAddr::from((i.to_be_bytes(), 9)),
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(l.tracked() <= MAX_SOURCES);
    }
}
