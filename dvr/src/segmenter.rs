//! When recording segments open and close, decided frame by frame.
//!
//! A segment starts at a keyframe and holds the frames that decode from it on. It closes:
//! - at the first keyframe once it is `segment_ms` long (rotation: the next segment opens on that keyframe at the
//!   same instant, so the two are contiguous);
//! - when the camera's timeline jumps (a pause longer than `max_gap_ms`, or a step backwards): a gap;
//! - at an offline slate picture (never recorded);
//! - when codec, size or parameter sets change (a new segment opens on the keyframe that carries them);
//! - when the recorder had to drop frames, or stops.
//!
//! After a close that is not a rotation, frames are skipped until the next keyframe. Times are wall-clock epoch
//! milliseconds: a segment starts at its first keyframe's `wall_ms`, and a frame inside it sits at
//! `start_ms + (pts − first pts) / 90`, on the camera's clock, so positions in the file map back to real instants
//! and a segment is never stretched over a gap.

use std::sync::Arc;

use sources::{Frame, ParameterSets};

/// Segmenting settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmenterOptions {
    /// Rotate at the first keyframe once a segment is this long.
    pub segment_ms: i64,
    /// A pause between consecutive frames longer than this closes the segment.
    pub max_gap_ms: i64,
}

impl Default for SegmenterOptions {
    fn default() -> Self {
        SegmenterOptions {
            segment_ms: 60_000,
            max_gap_ms: 2_000,
        }
    }
}

/// Why a segment closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Rotation,
    Gap,
    Slate,
    FormatChanged,
    Dropped,
    Stopped,
}

/// A closed segment's wall-clock span `[start_ms, end_ms)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub start_ms: i64,
    pub end_ms: i64,
    pub frames: u64,
    pub reason: CloseReason,
}

/// What to do with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not recorded: a slate picture, or no keyframe since the last close. `closed` is the segment this frame
    /// ended, if any.
    Skip { closed: Option<Closed> },
    /// Write the frame to the open segment.
    Append,
    /// Finish the segment `closed` (if any), open a new one starting at `start_ms`, and write the frame first.
    Open {
        closed: Option<Closed>,
        start_ms: i64,
    },
}

#[derive(Debug)]
struct OpenSegment {
    start_ms: i64,
    start_pts: i64,
    last_pts: i64,
    /// The last frame interval seen, in 90 kHz ticks: the last frame's duration when the segment closes.
    frame_ticks: i64,
    frames: u64,
    params: Arc<ParameterSets>,
}

impl OpenSegment {
    fn at(&self, pts: i64) -> i64 {
        self.start_ms + (pts - self.start_pts) / 90
    }

    fn close(self, reason: CloseReason) -> Closed {
        Closed {
            start_ms: self.start_ms,
            end_ms: self.at(self.last_pts + self.frame_ticks),
            frames: self.frames,
            reason,
        }
    }
}

/// Frame interval assumed until two frames have been seen (25 fps).
const DEFAULT_FRAME_TICKS: i64 = 3_600;

/// The segmenting state of one recorded stream.
#[derive(Debug)]
pub struct Segmenter {
    opts: SegmenterOptions,
    open: Option<OpenSegment>,
}

impl Segmenter {
    pub fn new(opts: SegmenterOptions) -> Segmenter {
        Segmenter { opts, open: None }
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Decides what happens to `frame`.
    pub fn push(&mut self, frame: &Frame) -> Step {
        if frame.is_slate {
            return Step::Skip {
                closed: self.close(CloseReason::Slate),
            };
        }
        let Some(seg) = self.open.as_mut() else {
            return self.open_at(frame, None);
        };
        let delta = frame.pts_90k - seg.last_pts;
        let reason = if delta <= 0 || delta > self.opts.max_gap_ms * 90 {
            Some(CloseReason::Gap)
        } else if !same_format(&seg.params, &frame.params) {
            Some(CloseReason::FormatChanged)
        } else if frame.is_keyframe && frame.pts_90k - seg.start_pts >= self.opts.segment_ms * 90 {
            Some(CloseReason::Rotation)
        } else {
            None
        };
        match reason {
            None => {
                seg.frame_ticks = delta;
                seg.last_pts = frame.pts_90k;
                seg.frames += 1;
                Step::Append
            }
            Some(CloseReason::Rotation) => {
                // Contiguous: the old segment ends where the new one starts, at this keyframe.
                let seg = self.open.take().expect("checked above");
                let start_ms = seg.at(frame.pts_90k);
                let closed = Closed {
                    start_ms: seg.start_ms,
                    end_ms: start_ms,
                    frames: seg.frames,
                    reason: CloseReason::Rotation,
                };
                self.open = Some(OpenSegment {
                    start_ms,
                    start_pts: frame.pts_90k,
                    last_pts: frame.pts_90k,
                    frame_ticks: seg.frame_ticks,
                    frames: 1,
                    params: frame.params.clone(),
                });
                Step::Open {
                    closed: Some(closed),
                    start_ms,
                }
            }
            Some(reason) => {
                let closed = self.close(reason);
                self.open_at(frame, closed)
            }
        }
    }

    /// The recorder lost frames: the open segment ends at its last frame; the next one starts at a keyframe.
    pub fn dropped(&mut self) -> Option<Closed> {
        self.close(CloseReason::Dropped)
    }

    /// Recording stops.
    pub fn stop(&mut self) -> Option<Closed> {
        self.close(CloseReason::Stopped)
    }

    fn close(&mut self, reason: CloseReason) -> Option<Closed> {
        self.open.take().map(|s| s.close(reason))
    }

    /// Opens a segment on `frame` if it is a keyframe, else skips it.
    fn open_at(&mut self, frame: &Frame, closed: Option<Closed>) -> Step {
        if !frame.is_keyframe {
            return Step::Skip { closed };
        }
        self.open = Some(OpenSegment {
            start_ms: frame.wall_ms,
            start_pts: frame.pts_90k,
            last_pts: frame.pts_90k,
            frame_ticks: DEFAULT_FRAME_TICKS,
            frames: 1,
            params: frame.params.clone(),
        });
        Step::Open {
            closed,
            start_ms: frame.wall_ms,
        }
    }
}

/// Same codec, size and parameter sets: frames can go on in the same file.
fn same_format(a: &Arc<ParameterSets>, b: &Arc<ParameterSets>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sources::Codec;

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn params(width: u32) -> Arc<ParameterSets> {
        Arc::new(ParameterSets {
            codec: Codec::H264,
            vps: None,
            sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
            pps: Bytes::from_static(&[0x68, 0xce]),
            width,
            height: 240,
            rfc6381_codec: None,
        })
    }

    /// Frame `n` of a 25 fps stream with a keyframe every `gop` frames.
    fn frame(n: i64, gop: i64, p: &Arc<ParameterSets>) -> Frame {
        Frame {
            codec: Codec::H264,
            data: Bytes::new(),
            pts_90k: n * 3_600,
            wall_ms: T0 + n * 40,
            is_keyframe: n % gop == 0,
            params: p.clone(),
            is_slate: false,
            starts_run: false,
        }
    }

    fn opts(segment_ms: i64) -> SegmenterOptions {
        SegmenterOptions {
            segment_ms,
            max_gap_ms: 2_000,
        }
    }

    /// Runs frames through, returning the closed segments and the opened start times.
    fn run(s: &mut Segmenter, frames: impl IntoIterator<Item = Frame>) -> (Vec<Closed>, Vec<i64>) {
        let (mut closed, mut opened) = (Vec::new(), Vec::new());
        for f in frames {
            match s.push(&f) {
                Step::Skip { closed: c } => closed.extend(c),
                Step::Append => {}
                Step::Open {
                    closed: c,
                    start_ms,
                } => {
                    closed.extend(c);
                    opened.push(start_ms);
                }
            }
        }
        (closed, opened)
    }

    #[test]
    fn rotates_at_the_first_keyframe_after_the_length_contiguously() {
        let p = params(320);
        let mut s = Segmenter::new(opts(2_000));
        // 5 s at 25 fps, a keyframe every 30 frames (1.2 s): rotations at 2.4 s and 4.8 s.
        let (closed, opened) = run(&mut s, (0..125).map(|n| frame(n, 30, &p)));
        assert_eq!(opened, vec![T0, T0 + 2_400, T0 + 4_800]);
        assert_eq!(closed.len(), 2);
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms, closed[0].frames),
            (T0, T0 + 2_400, 60)
        );
        assert_eq!(closed[1].start_ms, closed[0].end_ms, "contiguous");
        assert!(closed.iter().all(|c| c.reason == CloseReason::Rotation));
        let last = s.stop().unwrap();
        assert_eq!(
            (last.start_ms, last.end_ms, last.frames),
            (T0 + 4_800, T0 + 5_000, 5)
        );
    }

    #[test]
    fn waits_for_a_keyframe_and_closes_at_a_gap() {
        let p = params(320);
        let mut s = Segmenter::new(opts(60_000));
        // Starts mid-GOP: frames 1..9 are skipped, 10 opens.
        let (closed, opened) = run(&mut s, (1..20).map(|n| frame(n, 10, &p)));
        assert!(closed.is_empty());
        assert_eq!(opened, vec![T0 + 400]);
        // The camera stalls 5 s (no reconnect): the segment ends after its last frame, the next delta frames are
        // skipped, and the next keyframe opens a new segment at its own time.
        let (closed, opened) = run(&mut s, (145..170).map(|n| frame(n, 10, &p)));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].reason, CloseReason::Gap);
        assert_eq!(
            (closed[0].start_ms, closed[0].end_ms),
            (T0 + 400, T0 + 20 * 40)
        );
        assert_eq!(opened, vec![T0 + 150 * 40]);
    }

    #[test]
    fn slate_format_change_and_drops_close_the_segment() {
        let p = params(320);
        let mut s = Segmenter::new(opts(60_000));
        run(&mut s, (0..10).map(|n| frame(n, 5, &p)));
        let mut slate = frame(10, 5, &p);
        slate.is_slate = true;
        let Step::Skip { closed: Some(c) } = s.push(&slate) else {
            panic!("a slate closes the segment")
        };
        assert_eq!((c.reason, c.end_ms), (CloseReason::Slate, T0 + 400));
        assert_eq!(
            s.push(&slate),
            Step::Skip { closed: None },
            "and is never recorded"
        );

        run(&mut s, (15..20).map(|n| frame(n, 5, &p)));
        // A new size arrives on a keyframe: close, and open on that very keyframe.
        let bigger = params(640);
        let Step::Open {
            closed: Some(c),
            start_ms,
        } = s.push(&frame(20, 5, &bigger))
        else {
            panic!("a format change reopens")
        };
        assert_eq!(
            (c.reason, c.end_ms, start_ms),
            (CloseReason::FormatChanged, T0 + 800, T0 + 800)
        );

        let c = s.dropped().unwrap();
        assert_eq!((c.reason, c.frames), (CloseReason::Dropped, 1));
        assert!(!s.is_open());
        assert_eq!(s.push(&frame(21, 5, &bigger)), Step::Skip { closed: None });
        assert!(matches!(
            s.push(&frame(25, 5, &bigger)),
            Step::Open { closed: None, .. }
        ));
    }

    #[test]
    fn a_timeline_going_backwards_is_a_gap() {
        let p = params(320);
        let mut s = Segmenter::new(opts(60_000));
        run(&mut s, (0..5).map(|n| frame(n, 5, &p)));
        let Step::Skip { closed: Some(c) } = s.push(&frame(2, 5, &p)) else {
            panic!("closed")
        };
        assert_eq!(c.reason, CloseReason::Gap);
    }
}
