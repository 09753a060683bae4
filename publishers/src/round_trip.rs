//! Round-trip time from RTCP receiver reports (RFC 3550 §6.4.1): a report block's LSR names a sender report this
//! side sent (the middle 32 bits of its NTP time) and its DLSR says how long the receiver held it, in 1/65536 s.
//! What remains of the time since that sender report left is the round trip. Sans-IO: the caller says when.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Sender reports remembered; at one a second this covers far more than any real round trip.
const REMEMBERED: usize = 32;

/// The sender reports a session sent, by their compact NTP time.
#[derive(Debug, Default)]
pub struct SentReports {
    sent: VecDeque<(u32, Instant)>,
}

impl SentReports {
    /// Notes a sender report with this 64-bit NTP time, sent at `at`.
    pub fn sent(&mut self, ntp_time: u64, at: Instant) {
        if self.sent.len() == REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back(((ntp_time >> 16) as u32, at));
    }

    /// The round trip a report block with `lsr` and `dlsr`, received at `now`, measures; `None` when it names no
    /// sender report of ours (LSR 0: none received yet) or the numbers don't add up.
    pub fn round_trip(&self, lsr: u32, dlsr: u32, now: Instant) -> Option<Duration> {
        if lsr == 0 {
            return None;
        }
        let (_, at) = self
            .sent
            .iter()
            .rev()
            .find(|(compact, _)| *compact == lsr)?;
        let held = Duration::from_nanos(u64::from(dlsr) * 1_000_000_000 / 65_536);
        now.checked_duration_since(*at)?.checked_sub(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracts_the_receivers_hold_time() {
        let t0 = Instant::now();
        let mut s = SentReports::default();
        let ntp = 0x1234_5678_9abc_def0_u64;
        s.sent(ntp, t0);
        let lsr = 0x5678_9abc;
        // Held 0.5 s (32768/65536), received 0.53 s after sending: 30 ms round trip.
        let rtt = s
            .round_trip(lsr, 32_768, t0 + Duration::from_millis(530))
            .unwrap();
        assert_eq!(rtt.as_millis(), 30);
        assert_eq!(s.round_trip(0, 0, t0), None, "no sender report seen yet");
        assert_eq!(s.round_trip(0x1111_1111, 0, t0), None, "not one of ours");
        assert_eq!(
            s.round_trip(lsr, 65_536, t0 + Duration::from_millis(530)),
            None,
            "held longer than it was away"
        );
    }

    #[test]
    fn forgets_old_reports() {
        let t0 = Instant::now();
        let mut s = SentReports::default();
        for i in 0..(REMEMBERED as u64 + 1) {
            s.sent((i + 1) << 16, t0);
        }
        assert_eq!(s.round_trip(1, 0, t0), None);
        assert!(s.round_trip(2, 0, t0).is_some());
    }
}
