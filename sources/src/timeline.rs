//! Sans-IO mapping from each input session's media clock onto one stream timeline.
//!
//! Every input session (and every slate picture) starts its own 90 kHz clock at zero. The stream's `pts_90k`
//! must stay monotonic across reconnects and fail-overs, and should advance with real time through an outage, so a
//! new session's base is the last output plus the monotonic time elapsed since it. Wall-clock milliseconds are
//! anchored at the session's first frame and then follow the camera's clock.

use std::time::Instant;

#[derive(Clone, Copy, Debug)]
struct Anchor {
    pts_base: i64,
    wall_base_ms: i64,
}

/// Maps session-relative media times to stream `pts_90k` and `wall_ms`.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    last: Option<(i64, Instant)>,
    anchor: Option<Anchor>,
}

impl Timeline {
    /// Forgets the current session; the next mapped frame starts a new one.
    pub fn discontinuity(&mut self) {
        self.anchor = None;
    }

    /// Whether the next mapped frame starts a new run (nothing mapped since the last discontinuity).
    pub fn starts_run(&self) -> bool {
        self.anchor.is_none()
    }

    /// Maps a frame of the current session (media time since the session started) observed at `now`
    /// (`wall_now_ms` on the wall clock): its `(pts_90k, wall_ms)`.
    pub fn map(&mut self, media_90k: i64, now: Instant, wall_now_ms: i64) -> (i64, i64) {
        let anchor = *self.anchor.get_or_insert_with(|| {
            let pts_base = match self.last {
                None => 0,
                Some((pts, at)) => {
                    let gap_90k = (now.saturating_duration_since(at).as_micros() as i64) * 9 / 100;
                    pts + gap_90k.max(1)
                }
            };
            Anchor {
                pts_base: pts_base - media_90k,
                wall_base_ms: wall_now_ms - media_90k / 90,
            }
        });
        let mut pts = anchor.pts_base + media_90k;
        if let Some((last, _)) = self.last {
            // A camera whose clock steps backwards must not make the stream go backwards.
            pts = pts.max(last + 1);
        }
        self.last = Some((pts, now));
        (pts, anchor.wall_base_ms + media_90k / 90)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn continues_across_sessions_with_the_real_gap() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        assert_eq!(tl.map(0, t0, 1_000_000), (0, 1_000_000));
        assert_eq!(
            tl.map(3000, t0 + Duration::from_millis(33), 1_000_033),
            (3000, 1_000_033)
        );
        tl.discontinuity();
        // New session starts 2 s after the last frame; its own clock starts at 500 (first delivered keyframe).
        let (pts, wall) = tl.map(500, t0 + Duration::from_millis(2033), 1_002_040);
        assert_eq!(pts, 3000 + 180_000);
        assert_eq!(wall, 1_002_040);
        assert_eq!(
            tl.map(3500, t0 + Duration::from_millis(2066), 0).0,
            3000 + 180_000 + 3000
        );
    }

    #[test]
    fn says_which_frame_starts_a_run() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        assert!(tl.starts_run(), "the very first frame");
        tl.map(0, t0, 0);
        assert!(!tl.starts_run());
        tl.discontinuity();
        assert!(
            tl.starts_run(),
            "the first frame after a reconnect or the slate"
        );
    }

    #[test]
    fn never_goes_backwards() {
        let t0 = Instant::now();
        let mut tl = Timeline::default();
        tl.map(0, t0, 0);
        assert_eq!(tl.map(9000, t0, 0).0, 9000);
        assert_eq!(tl.map(100, t0, 0).0, 9001);
    }
}
