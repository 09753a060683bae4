//! The RTP timestamp of each frame a viewer is sent (RFC 3550 §5.1: any progression, but players punish jumps).
//!
//! Between discontinuities a frame's timestamp advances by its presentation-time delta divided by the playback
//! speed, so at any speed the timestamps move at wall pace and a client's jitter buffer needs no notion of speed.
//! After a discontinuity ([`MediaClock::rebase`]: a switch of input, a seek, a speed change, a gap, a pause) the
//! timestamp continues by the wall time that really passed since the last frame sent, at least one frame
//! interval: time is never compressed and never runs backwards.

use std::time::{Duration, Instant};

/// Frame interval assumed when none has been seen yet (90 kHz ticks at 30 fps).
const DEFAULT_FRAME_TICKS: u32 = 3000;

#[derive(Clone, Copy, Debug)]
struct Sent {
    timestamp: u32,
    pts_90k: i64,
    at: Instant,
}

/// Output timestamps of one viewer.
#[derive(Debug)]
pub struct MediaClock {
    last: Option<Sent>,
    /// Timestamp and input pts the current run of frames is measured from (exact at any speed: no rounding
    /// accumulates from frame to frame).
    base: (u32, i64),
    speed: f64,
    /// Output ticks between two frames, for the minimum advance across a discontinuity.
    frame_ticks: u32,
    rebase: bool,
}

impl Default for MediaClock {
    fn default() -> Self {
        MediaClock {
            last: None,
            base: (0, 0),
            speed: 1.0,
            frame_ticks: DEFAULT_FRAME_TICKS,
            rebase: true,
        }
    }
}

impl MediaClock {
    /// The next frame starts a new run: its timestamp follows the wall time elapsed since the last frame.
    pub fn rebase(&mut self) {
        self.rebase = true;
    }

    /// Input pts now advance at `speed` times the output's pace; starts a new run.
    pub fn set_speed(&mut self, speed: f64) {
        self.speed = speed;
        self.rebase = true;
    }

    /// The timestamp of a frame with presentation time `pts_90k`, sent at `now`.
    pub fn timestamp(&mut self, now: Instant, pts_90k: i64) -> u32 {
        let timestamp = match self.last {
            None => 0,
            Some(last) if self.rebase => {
                let elapsed = ticks(now.saturating_duration_since(last.at));
                last.timestamp.wrapping_add(
                    elapsed
                        .max(u64::from(self.frame_ticks))
                        .min(u64::from(u32::MAX >> 1)) as u32,
                )
            }
            Some(last) => {
                let delta = pts_90k - last.pts_90k;
                // Remember a plausible frame interval (up to 1 s of input) for the next rebase.
                if (1..=90_000).contains(&delta) {
                    self.frame_ticks = ((delta as f64 / self.speed).round() as u32).max(1);
                }
                let run = ((pts_90k - self.base.1) as f64 / self.speed).round() as i64;
                // Wrapping on purpose: RTP timestamps are modulo 2^32.
                self.base.0.wrapping_add(run as u32)
            }
        };
        if self.rebase || self.last.is_none() {
            self.base = (timestamp, pts_90k);
            self.rebase = false;
        }
        self.last = Some(Sent {
            timestamp,
            pts_90k,
            at: now,
        });
        timestamp
    }
}

/// 90 kHz ticks in `d`.
fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * 9 / 100_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_pts_then_wall_time_across_a_rebase() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        assert_eq!(c.timestamp(t0, 1_000_000), 0);
        assert_eq!(c.timestamp(t0 + Duration::from_millis(40), 1_003_600), 3600);
        // A 60 s pause: the next frame is 60 s of wall time later whatever its pts says.
        c.rebase();
        let ts = c.timestamp(t0 + Duration::from_millis(60_040), 5);
        assert_eq!(ts, 3600 + 60_000 * 90);
        assert_eq!(
            c.timestamp(t0 + Duration::from_millis(60_080), 3605),
            ts + 3600
        );
    }

    #[test]
    fn a_rebase_advances_at_least_one_frame() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        c.timestamp(t0, 0);
        c.timestamp(t0, 3600);
        c.rebase();
        assert_eq!(
            c.timestamp(t0, 0),
            7200,
            "no time passed: one frame interval"
        );
    }

    #[test]
    fn speed_divides_pts_deltas_without_drift() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        c.set_speed(4.0);
        let first = c.timestamp(t0, 0);
        // 1000 frames at 30 fps (3003 ticks each, not divisible by 4): exactly a quarter, no accumulated rounding.
        let last = (1..=1000)
            .map(|i| c.timestamp(t0, i * 3003))
            .last()
            .unwrap();
        assert_eq!(last.wrapping_sub(first), 3003 * 1000 / 4);
        c.set_speed(0.25);
        let a = c.timestamp(t0 + Duration::from_millis(1), 3_003_000);
        let b = c.timestamp(t0 + Duration::from_millis(2), 3_003_000 + 3000);
        assert_eq!(b - a, 12_000);
    }

    #[test]
    fn timestamps_wrap_around_2_pow_32() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        c.timestamp(t0, 0);
        // Just under 2^32 ticks of input later, then one frame more: the timestamp wraps, as RTP's does.
        let near = c.timestamp(t0, i64::from(u32::MAX) - 100);
        let after = c.timestamp(t0, i64::from(u32::MAX) + 3500);
        assert_eq!(near, u32::MAX - 100);
        assert_eq!(after, 3499);
        assert_eq!(after.wrapping_sub(near), 3600);
    }
}
