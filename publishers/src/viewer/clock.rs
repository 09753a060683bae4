//! The RTP timestamp of each frame a viewer is sent (RFC 3550 §5.1: any progression, but players punish jumps).
//!
//! Between discontinuities a frame's timestamp advances by its presentation-time delta divided by the playback
//! speed, so at any speed the timestamps move at wall pace and a client's jitter buffer needs no notion of speed.
//! After a discontinuity ([`MediaClock::rebase`]: a switch of input, a seek, a speed change, a gap, a pause) the
//! timestamp continues by the wall time that really passed since the last frame sent, at least one frame
//! interval: time never runs backwards.
//!
//! Catch-up: a run's timestamps never lead the wall time since the run began by more than
//! [`CATCH_UP_SLACK_TICKS`]. Frames that would (a join burst: the GOP cache, seconds of frames handed over at once;
//! recorded frames released at once to reach a seek's target) are squeezed to [`CATCH_UP_STEP_TICKS`] apart, and
//! the run goes on from the last squeezed frame. A client that plays by RTP time therefore shows the burst as a
//! quick fast-forward and is at the live edge within about a millisecond per burst frame, instead of staying a
//! whole GOP behind for the rest of the session. Frames that arrive at their own pace never lead, so they are
//! never touched.

use std::time::{Duration, Instant};

/// Frame interval assumed when none has been seen yet (90 kHz ticks at 30 fps).
const DEFAULT_FRAME_TICKS: u32 = 3000;

/// How far (90 kHz ticks, 60 ms) a run's timestamps may lead the wall time since it began: more than the
/// jitter between a camera's frames, less than two frames at 30 fps.
pub const CATCH_UP_SLACK_TICKS: u32 = 5_400;

/// Timestamp step between squeezed frames (1 ms): distinct frames that a client shows as fast as it decodes them.
pub const CATCH_UP_STEP_TICKS: u32 = 90;

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
    /// The run's first timestamp and when it was sent: where the wall time of the run is measured from.
    wall: (u32, Option<Instant>),
    /// Frames squeezed by catch-up, over the clock's life.
    squeezed: u64,
}

impl Default for MediaClock {
    fn default() -> Self {
        MediaClock {
            last: None,
            base: (0, 0),
            speed: 1.0,
            frame_ticks: DEFAULT_FRAME_TICKS,
            rebase: true,
            wall: (0, None),
            squeezed: 0,
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
                let timestamp = self.base.0.wrapping_add(run as u32);
                let wall = match self.wall.1 {
                    Some(at) => self
                        .wall
                        .0
                        .wrapping_add(ticks(now.saturating_duration_since(at)) as u32),
                    None => timestamp,
                };
                if lead(timestamp, wall) > i64::from(CATCH_UP_SLACK_TICKS) {
                    let step = last.timestamp.wrapping_add(CATCH_UP_STEP_TICKS);
                    let squeezed = if lead(wall, step) > 0 { wall } else { step };
                    // The run goes on from here, at the input's pace again.
                    self.base = (squeezed, pts_90k);
                    self.squeezed += 1;
                    squeezed
                } else {
                    timestamp
                }
            }
        };
        if self.rebase || self.last.is_none() {
            self.base = (timestamp, pts_90k);
            self.wall = (timestamp, Some(now));
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

impl MediaClock {
    /// Frames whose timestamps catch-up squeezed so far.
    pub fn squeezed(&self) -> u64 {
        self.squeezed
    }
}

/// How far timestamp `a` is after `b`, modulo 2^32.
fn lead(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
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
        // 1000 frames at 30 fps (3003 ticks each, not divisible by 4), released at 4×: exactly a quarter, no
        // accumulated rounding.
        let at = |pts: i64, speed: f64| t0 + Duration::from_secs_f64(pts as f64 / 90_000.0 / speed);
        let last = (1..=1000)
            .map(|i| c.timestamp(at(i * 3003, 4.0), i * 3003))
            .last()
            .unwrap();
        assert_eq!(last.wrapping_sub(first), 3003 * 1000 / 4);
        assert_eq!(c.squeezed(), 0);
        c.set_speed(0.25);
        let t1 = t0 + Duration::from_secs(9);
        let a = c.timestamp(t1, 3_003_000);
        let b = c.timestamp(t1 + Duration::from_micros(133_333), 3_003_000 + 3000);
        assert_eq!(b - a, 12_000);
    }

    #[test]
    fn timestamps_wrap_around_2_pow_32() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        c.timestamp(t0, 0);
        // Just under 2^32 ticks of input later (13 h), then one frame more: the timestamp wraps, as RTP's does.
        let at = |pts: i64| t0 + Duration::from_micros(pts as u64 * 100 / 9);
        let near = c.timestamp(at(i64::from(u32::MAX) - 100), i64::from(u32::MAX) - 100);
        let after = c.timestamp(at(i64::from(u32::MAX) + 3500), i64::from(u32::MAX) + 3500);
        assert_eq!(near, u32::MAX - 100);
        assert_eq!(after, 3499);
        assert_eq!(after.wrapping_sub(near), 3600);
    }

    #[test]
    fn a_join_burst_is_squeezed_then_the_run_follows_the_input_again() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        // A 20 s GOP at 25 fps handed over at once: 500 frames at t0.
        let burst: Vec<u32> = (0..500).map(|i| c.timestamp(t0, i * 3600)).collect();
        // The first 60 ms keep their spacing, then 1 ms apart.
        assert_eq!(&burst[..3], &[0, 3600, 3600 + CATCH_UP_STEP_TICKS]);
        assert!(burst
            .windows(2)
            .skip(1)
            .all(|w| w[1] - w[0] == CATCH_UP_STEP_TICKS));
        let end = *burst.last().unwrap();
        assert!(end < 90 * 600, "20 s of frames in {} ms", end / 90);
        // Live frames every 40 ms: squeezed while the burst still leads the wall time, then spaced by their pts
        // again, within the slack of the wall time.
        let (mut prev, mut prev_lead) = (end, i64::MAX);
        for i in 500..600i64 {
            let now = t0 + Duration::from_millis(40 * (i as u64 - 499));
            let ts = c.timestamp(now, i * 3600);
            assert!(ts > prev, "timestamps always move forward");
            let wall = u32::try_from((now - t0).as_micros() * 9 / 100).unwrap();
            let ahead = lead(ts, wall);
            assert!(ahead <= prev_lead.max(i64::from(CATCH_UP_SLACK_TICKS)));
            prev_lead = ahead;
            if i >= 520 {
                assert!(ahead <= i64::from(CATCH_UP_SLACK_TICKS));
                assert_eq!(ts - prev, 3600, "at the input's pace again by frame {i}");
            }
            prev = ts;
        }
    }

    #[test]
    fn frames_at_their_own_pace_are_never_squeezed() {
        let t0 = Instant::now();
        let mut c = MediaClock::default();
        let mut prev = c.timestamp(t0, 0);
        for i in 1..1000i64 {
            // Up to 50 ms of arrival jitter, the other way every other frame.
            let jitter = if i % 2 == 0 { 50 } else { 0 };
            let ts = c.timestamp(t0 + Duration::from_millis(40 * i as u64 + jitter), i * 3600);
            assert_eq!(ts - prev, 3600);
            prev = ts;
        }
        assert_eq!(c.squeezed(), 0);
    }
}
