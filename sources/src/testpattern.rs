//! The built-in test-pattern camera: GStreamer `videotestsrc` with a clock overlay, encoded with x264/x265.
//!
//! It is the demo camera (a newcomer sees video with no camera) and a test input. The pipeline runs on its own
//! thread because appsink pulls block; access units cross to the async side through a small bounded channel, so a
//! stalled consumer stalls the encoder rather than growing memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;

use crate::frame::Frame;
use crate::gst_encoder::{self, EncodedAu, GstInputError};
use crate::input::TestPatternOptions;
use crate::session::{ParamTracker, RawFrame};

const CHANNEL_FRAMES: usize = 8;

fn launch_line(o: &TestPatternOptions, live: bool, num_buffers: i32) -> String {
    format!(
        "videotestsrc is-live={live} num-buffers={num_buffers} pattern=smpte horizontal-speed=4 \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
         ! clockoverlay time-format=\"%H:%M:%S\" font-desc=\"Sans 20\" \
         ! {enc} ! appsink name=sink sync=false max-buffers={CHANNEL_FRAMES}",
        w = o.width,
        h = o.height,
        fps = o.fps,
        enc = gst_encoder::encoder_fragment(o.codec, o.gop, o.bitrate_kbps),
    )
}

/// A running test pattern. Dropping it stops the pipeline.
pub struct TestPatternSession {
    rx: mpsc::Receiver<Result<EncodedAu, GstInputError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    params: ParamTracker,
    first_pts_ns: Option<u64>,
}

impl TestPatternSession {
    /// Starts the pipeline. Frames arrive in real time (a live source).
    pub fn start(opts: &TestPatternOptions) -> Result<Self, GstInputError> {
        let (pipeline, sink) = gst_encoder::build_pipeline(&launch_line(opts, true, -1))?;
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let stop = Arc::new(AtomicBool::new(false));
        let codec = opts.codec;
        let thread_stop = stop.clone();
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| GstInputError::Pipeline(e.to_string()))?;
        let thread = std::thread::Builder::new()
            .name("testpattern".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    let item = match gst_encoder::pull_access_unit(
                        &sink,
                        codec,
                        gst::ClockTime::from_mseconds(200),
                    ) {
                        Ok(Some(au)) => Ok(au),
                        Ok(None) => Err(GstInputError::Runtime("test pattern ended".into())),
                        // A timeout is only an error when the bus says why.
                        Err(e) => match gst_encoder::bus_error(&pipeline) {
                            Some(bus) => Err(bus),
                            None if sink.is_eos() => Err(e),
                            None => continue,
                        },
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        break;
                    }
                }
                let _ = pipeline.set_state(gst::State::Null);
            })
            .map_err(|e| GstInputError::Init(e.to_string()))?;
        Ok(TestPatternSession {
            rx,
            stop,
            thread: Some(thread),
            params: ParamTracker::new(opts.codec, opts.width, opts.height),
            first_pts_ns: None,
        })
    }

    /// The next access unit. Frames before the first complete parameter sets are skipped.
    pub(crate) async fn next(&mut self) -> Result<RawFrame, GstInputError> {
        loop {
            let au = self
                .rx
                .recv()
                .await
                .ok_or_else(|| GstInputError::Runtime("test pattern stopped".into()))??;
            let Some(params) = self.params.update(&au.params) else {
                continue;
            };
            let pts_ns = au.pts_ns.unwrap_or(0);
            let first = *self.first_pts_ns.get_or_insert(pts_ns);
            return Ok(RawFrame {
                data: au.data,
                is_keyframe: au.is_keyframe,
                params,
                media_90k: (pts_ns.saturating_sub(first) as i64) * 9 / 100_000,
            });
        }
    }
}

impl Drop for TestPatternSession {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks a blocking_send so the thread sees the flag.
        self.rx.close();
        if let Some(t) = self.thread.take() {
            // The thread notices within one pull timeout; joining off the async runtime would block it, so detach.
            drop(t);
        }
    }
}

/// Encodes `count` frames of the test pattern as fast as possible (not live), for tests and benchmarks.
/// Timestamps start at zero; `wall_ms` is `pts` in milliseconds.
pub fn capture_frames(opts: &TestPatternOptions, count: u32) -> Result<Vec<Frame>, GstInputError> {
    let (pipeline, sink) = gst_encoder::build_pipeline(&launch_line(opts, false, count as i32))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| GstInputError::Pipeline(e.to_string()))?;
    let mut tracker = ParamTracker::new(opts.codec, opts.width, opts.height);
    let mut frames = Vec::new();
    let result = loop {
        match gst_encoder::pull_access_unit(&sink, opts.codec, gst::ClockTime::from_seconds(10)) {
            Ok(Some(au)) => {
                let Some(params) = tracker.update(&au.params) else {
                    continue;
                };
                let pts_90k = (au.pts_ns.unwrap_or(0) as i64) * 9 / 100_000;
                frames.push(Frame {
                    codec: opts.codec,
                    data: au.data,
                    pts_90k,
                    wall_ms: pts_90k / 90,
                    is_keyframe: au.is_keyframe,
                    params,
                    is_slate: false,
                    starts_run: false,
                });
            }
            Ok(None) => break Ok(frames),
            Err(e) => break Err(gst_encoder::bus_error(&pipeline).unwrap_or(e)),
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    #[test]
    fn captured_frames_start_with_keyframe_and_carry_params() {
        for codec in [Codec::H264, Codec::H265] {
            let opts = TestPatternOptions {
                codec,
                width: 320,
                height: 240,
                fps: 30,
                gop: 10,
                bitrate_kbps: 300,
            };
            let frames = capture_frames(&opts, 25).unwrap();
            assert!(frames.len() >= 24, "{codec:?}: {} frames", frames.len());
            assert!(frames[0].is_keyframe);
            assert_eq!(
                frames.iter().filter(|f| f.is_keyframe).count(),
                3,
                "{codec:?}"
            );
            let p = &frames[0].params;
            assert_eq!((p.width, p.height, p.codec), (320, 240, codec));
            assert_eq!(p.vps.is_some(), codec == Codec::H265);
            assert!(frames.windows(2).all(|w| w[1].pts_90k > w[0].pts_90k));
        }
    }
}
