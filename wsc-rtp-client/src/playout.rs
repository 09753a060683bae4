//! When a client that shows frames by their RTP timestamps would show each one: the first frame at once, each
//! next one its timestamp delta later, never before it arrived. The hold of a frame (shown minus arrived) is how
//! far behind what it receives such a client plays; a join burst whose timestamps span a whole GOP would keep it
//! that far behind for the rest of the session (WSC-RTP-PROTOCOL.md §6, "The join burst").

use std::time::{Duration, Instant};

/// The playout of one session's frames.
#[derive(Debug, Default)]
pub struct Playout {
    last: Option<(Instant, u32)>,
    /// Hold of the last frame.
    pub hold_last: Duration,
    /// Largest hold of any frame.
    pub hold_max: Duration,
}

impl Playout {
    /// A frame with RTP timestamp `timestamp` arrived at `arrived`; returns its hold.
    pub fn push(&mut self, arrived: Instant, timestamp: u32) -> Duration {
        let shown = match self.last {
            None => arrived,
            Some((shown, ts)) => {
                // Timestamps are modulo 2^32; one that goes back is shown at once.
                let delta = timestamp.wrapping_sub(ts) as i32;
                let due = shown + Duration::from_micros(u64::from(delta.max(0) as u32) * 100 / 9);
                due.max(arrived)
            }
        };
        self.last = Some((shown, timestamp));
        self.hold_last = shown - arrived;
        self.hold_max = self.hold_max.max(self.hold_last);
        self.hold_last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_spanning_its_timestamps_is_held_then_live_frames_too() {
        let t0 = Instant::now();
        let mut p = Playout::default();
        // Ten frames 40 ms apart in RTP time, all arriving at once.
        for i in 0..10 {
            p.push(t0, i * 3600);
        }
        assert_eq!(p.hold_last, Duration::from_millis(360));
        // The next frame arrives 40 ms later but is due 400 ms after the first: still held 360 ms.
        assert_eq!(
            p.push(t0 + Duration::from_millis(40), 36_000),
            Duration::from_millis(360)
        );
        assert_eq!(p.hold_max, Duration::from_millis(360));
    }

    #[test]
    fn frames_that_arrive_late_are_shown_on_arrival() {
        let t0 = Instant::now();
        let mut p = Playout::default();
        p.push(t0, 0);
        assert_eq!(
            p.push(t0 + Duration::from_millis(100), 3600),
            Duration::ZERO
        );
        assert_eq!(
            p.push(t0 + Duration::from_millis(120), 7200),
            Duration::from_millis(20)
        );
    }
}
