//! Sans-IO stream counters: totals, and fps / bitrate / keyframe interval over the last second of media time.
//!
//! Rates are computed from frame timestamps, not the clock, so they describe the camera and are deterministic in
//! tests. They count camera frames only: slate pictures are counted apart and reset the rates to zero, since
//! while the slate shows the camera delivers nothing.

use std::collections::VecDeque;

use sources::Frame;

const WINDOW_90K: i64 = 90_000;

/// A snapshot of a stream's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubStats {
    /// Camera frames received since the hub started.
    pub frames: u64,
    /// Camera bytes (access unit payload) received.
    pub bytes: u64,
    /// Slate pictures sent while no input delivered.
    pub slate_frames: u64,
    pub fps: f64,
    pub bitrate_bps: u64,
    /// Media time between the last two keyframes.
    pub keyframe_interval_ms: Option<u64>,
    pub subscribers: usize,
    /// Frames not delivered to lagging subscribers, including ones that have left.
    pub drops: u64,
    /// Input sessions that ended and were replaced (from the ingest).
    pub reconnects: u64,
    pub last_frame_wall_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    frames: u64,
    bytes: u64,
    slate_frames: u64,
    window: VecDeque<(i64, usize)>,
    window_bytes: usize,
    last_keyframe_pts: Option<i64>,
    keyframe_interval_ms: Option<u64>,
    last_frame_wall_ms: Option<i64>,
}

impl Counters {
    pub fn on_frame(&mut self, f: &Frame) {
        self.last_frame_wall_ms = Some(f.wall_ms);
        if f.is_slate {
            self.slate_frames += 1;
            self.window.clear();
            self.window_bytes = 0;
            self.last_keyframe_pts = None;
            return;
        }
        self.frames += 1;
        self.bytes += f.data.len() as u64;
        if f.is_keyframe {
            if let Some(prev) = self.last_keyframe_pts {
                self.keyframe_interval_ms = Some(((f.pts_90k - prev).max(0) / 90) as u64);
            }
            self.last_keyframe_pts = Some(f.pts_90k);
        }
        self.window.push_back((f.pts_90k, f.data.len()));
        self.window_bytes += f.data.len();
        while let Some(&(pts, len)) = self.window.front() {
            if f.pts_90k - pts <= WINDOW_90K {
                break;
            }
            self.window.pop_front();
            self.window_bytes -= len;
        }
    }

    /// Fills everything but `subscribers`, `drops` and `reconnects`.
    pub fn snapshot(&self) -> HubStats {
        let (mut fps, mut bitrate_bps) = (0.0, 0);
        if let (Some(&(first, first_len)), Some(&(last, _))) =
            (self.window.front(), self.window.back())
        {
            let span = last - first;
            if span > 0 {
                let n = (self.window.len() - 1) as f64;
                fps = n * 90_000.0 / span as f64;
                bitrate_bps = ((self.window_bytes - first_len) as u64 * 8 * 90_000) / span as u64;
            }
        }
        HubStats {
            frames: self.frames,
            bytes: self.bytes,
            slate_frames: self.slate_frames,
            fps,
            bitrate_bps,
            keyframe_interval_ms: self.keyframe_interval_ms,
            last_frame_wall_ms: self.last_frame_wall_ms,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use sources::Codec;

    use super::*;
    use crate::packetizer::tests::frame;

    #[test]
    fn rates_over_the_last_second_of_media_time() {
        let mut c = Counters::default();
        // 25 fps, 1000-byte frames (plus the 4-byte length prefix), keyframe every 50 frames.
        for i in 0..100 {
            c.on_frame(&frame(Codec::H264, i % 50 == 0, 1000, i * 3600));
        }
        let s = c.snapshot();
        assert_eq!(s.frames, 100);
        assert!((s.fps - 25.0).abs() < 0.01, "{}", s.fps);
        assert_eq!(s.bitrate_bps, 1004 * 8 * 25);
        assert_eq!(s.keyframe_interval_ms, Some(2000));
    }

    #[test]
    fn slate_resets_rates_and_is_counted_apart() {
        let mut c = Counters::default();
        for i in 0..10 {
            c.on_frame(&frame(Codec::H264, i == 0, 1000, i * 3600));
        }
        let mut slate = frame(Codec::H264, true, 500, 100_000);
        slate.is_slate = true;
        c.on_frame(&slate);
        let s = c.snapshot();
        assert_eq!(
            (s.frames, s.slate_frames, s.fps, s.bitrate_bps),
            (10, 1, 0.0, 0)
        );
    }
}
