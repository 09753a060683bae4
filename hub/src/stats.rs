//! Sans-IO stream counters: totals, and fps / bitrate / keyframe interval over the last second of media time.
//!
//! Rates are computed from frame timestamps (`pts_90k`), not the clock, so they describe the camera and are
//! deterministic in tests. They count camera frames only: slate pictures are counted apart (`slate_frames`) and
//! reset the rates to zero, since while the slate shows the camera delivers nothing.

use std::collections::VecDeque;

use sources::Frame;

/// The rate window: one second of media time.
const WINDOW_90K: i64 = 90_000;
/// Caps the window for streams with absurd frame rates or timestamps that don't advance.
const MAX_WINDOW_FRAMES: usize = 1024;

/// A snapshot of a stream's counters. Every field but `slate_frames`, `subscribers` and `drops` describes the
/// camera: slate pictures are not counted in `frames`, `bytes`, the rates or `last_frame_wall_ms`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HubStats {
    /// Camera frames received since the hub started.
    pub frames: u64,
    /// Camera bytes (length-prefixed access unit data) received.
    pub bytes: u64,
    /// Slate pictures pushed while no input delivered.
    pub slate_frames: u64,
    /// Camera frames per second over the last second of media time; 0 while the slate shows.
    pub fps: f64,
    /// Camera bits per second over the last second of media time; 0 while the slate shows.
    pub bitrate_bps: u64,
    /// Media time between the camera's last two keyframes of one input run.
    pub keyframe_interval_ms: Option<u64>,
    /// Subscribers attached now.
    pub subscribers: usize,
    /// Frames not delivered to lagging subscribers, including subscribers that have left.
    pub drops: u64,
    /// Input sessions that ended and were replaced (from the ingest's status).
    pub reconnects: u64,
    /// Wall-clock time (epoch ms) of the camera's last frame.
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
        if f.is_slate {
            self.slate_frames += 1;
            self.window.clear();
            self.window_bytes = 0;
            self.last_keyframe_pts = None;
            return;
        }
        self.frames += 1;
        self.bytes += f.data.len() as u64;
        self.last_frame_wall_ms = Some(f.wall_ms);
        // A timestamp going back (a new input run, another input) starts the rates over, so the window never
        // spans two timelines and never grows past one second of media.
        if self.window.back().is_some_and(|&(pts, _)| f.pts_90k < pts) {
            self.window.clear();
            self.window_bytes = 0;
            self.last_keyframe_pts = None;
        }
        if f.is_keyframe {
            if let Some(prev) = self.last_keyframe_pts {
                self.keyframe_interval_ms = Some(((f.pts_90k - prev) / 90) as u64);
            }
            self.last_keyframe_pts = Some(f.pts_90k);
        }
        if self.window.len() == MAX_WINDOW_FRAMES {
            let (_, len) = self.window.pop_front().expect("full window");
            self.window_bytes -= len;
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
        assert_eq!(
            s.last_frame_wall_ms,
            Some(9 * 3600 / 90),
            "the camera's last frame"
        );
    }

    #[test]
    fn timestamps_going_back_start_the_window_over() {
        let mut c = Counters::default();
        // A long first run, then a new input whose clock starts near zero.
        for i in 0..50 {
            c.on_frame(&frame(
                Codec::H264,
                i % 25 == 0,
                1000,
                1_000_000_000 + i * 3600,
            ));
        }
        for i in 0..30 {
            c.on_frame(&frame(Codec::H264, i % 25 == 0, 1000, i * 3000));
        }
        let s = c.snapshot();
        assert!((s.fps - 30.0).abs() < 0.01, "{}", s.fps);
        assert_eq!(
            s.keyframe_interval_ms,
            Some(833),
            "measured within the new run"
        );
        assert!(c.window.len() <= 31);
    }

    #[test]
    fn window_is_bounded_when_timestamps_stand_still() {
        let mut c = Counters::default();
        for _ in 0..5000 {
            c.on_frame(&frame(Codec::H264, false, 10, 0));
        }
        assert_eq!(c.window.len(), MAX_WINDOW_FRAMES);
        let s = c.snapshot();
        assert_eq!((s.frames, s.fps, s.bitrate_bps), (5000, 0.0, 0));
    }
}
