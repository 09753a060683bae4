//! Test helpers: a sink that records what an ingest delivers, and decoding of delivered frames with GStreamer.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sources::{Frame, FrameSink, IngestState, IngestStatus, ParameterSets};

#[derive(Default)]
pub struct Recorded {
    pub frames: Vec<Frame>,
    pub params: Vec<Arc<ParameterSets>>,
    pub statuses: Vec<IngestStatus>,
}

/// A `FrameSink` that keeps everything.
#[derive(Default, Clone)]
pub struct RecordingSink(pub Arc<Mutex<Recorded>>);

impl FrameSink for RecordingSink {
    fn push_frame(&self, frame: Frame) {
        self.0.lock().frames.push(frame);
    }
    fn parameters_changed(&self, params: Arc<ParameterSets>) {
        self.0.lock().params.push(params);
    }
    fn status_changed(&self, status: &IngestStatus) {
        self.0.lock().statuses.push(status.clone());
    }
}

impl RecordingSink {
    pub fn state(&self) -> IngestState {
        self.0
            .lock()
            .statuses
            .last()
            .map_or(IngestState::Starting, |s| s.state)
    }

    pub fn status(&self) -> IngestStatus {
        self.0.lock().statuses.last().cloned().unwrap_or_default()
    }

    /// Waits until `pred` holds, polling every 50 ms; panics with `what` after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Recorded) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.0.lock()) {
                return;
            }
            if Instant::now() > deadline {
                let r = self.0.lock();
                panic!(
                    "timed out waiting for {what}: {} frames, statuses {:?}",
                    r.frames.len(),
                    r.statuses
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Decodes frames with GStreamer (parameter sets written before every keyframe, as a player would get them) and
/// returns (decoded pictures, width, height).
pub fn decode(frames: &[Frame]) -> (usize, u32, u32) {
    let codec = frames[0].codec;
    let aus: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut au = Vec::new();
            if f.is_keyframe {
                for p in f.params.nals() {
                    au.extend_from_slice(&[0, 0, 0, 1]);
                    au.extend_from_slice(p);
                }
            }
            for nal in f.nals() {
                au.extend_from_slice(&[0, 0, 0, 1]);
                au.extend_from_slice(&nal);
            }
            au
        })
        .collect();
    testdata::decode::decode_annex_b(
        match codec {
            sources::Codec::H264 => testdata::decode::DecodeCodec::H264,
            sources::Codec::H265 => testdata::decode::DecodeCodec::H265,
        },
        &aus,
    )
    .expect("decode pipeline")
}
