//! One MP4 segment on disk, written by GStreamer: `appsrc` (the stream's frames as Annex B access units, parameter
//! sets before each keyframe) → `h264parse`/`h265parse` → `mp4mux` in `first-moov-then-finalise` mode →
//! `filesink`. While written, the file is a fragmented MP4 (a fragment every `fragment_ms`, so a crash loses at
//! most about that much); after [`SegmentWriter::finish`] it is a normal MP4 that players and browsers read.
//!
//! Every call blocks (GStreamer pushes and the end-of-stream wait): run a writer on its own thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sources::{Codec, Frame, ParameterSets};

/// Why a segment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("GStreamer could not build the muxing pipeline: {0}")]
    Build(String),
    #[error("the muxing pipeline failed: {0}")]
    Pipeline(String),
    #[error("the muxer did not finish the file within {0:?}")]
    FinishTimeout(Duration),
    #[error("reading the finished file: {0}")]
    Io(#[from] std::io::Error),
}

/// A segment being written.
pub struct SegmentWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    path: PathBuf,
    codec: Codec,
    first_pts: i64,
    frames: u64,
}

/// Bytes the muxing pipeline may fall behind by (a few seconds of a high-bitrate camera) before the segment is
/// given up. Pushes never block: a pipeline that failed downstream (a full disk) would never drain a blocked one.
const MAX_QUEUED_BYTES: u64 = 8 * 1024 * 1024;

impl SegmentWriter {
    /// Creates `path` and starts a segment whose first frame has `first_pts`.
    pub fn create(
        path: &Path,
        codec: Codec,
        first_pts: i64,
        fragment_ms: u32,
    ) -> Result<Self, WriterError> {
        gst::init().map_err(|e| WriterError::Build(e.to_string()))?;
        let (caps, parse) = annex_b_caps_and_parser(codec);
        let launch = format!(
            "appsrc name=src format=time is-live=false block=false caps=\"{caps}\" \
             ! {parse} ! mp4mux fragment-duration={fragment_ms} fragment-mode=first-moov-then-finalise \
             ! filesink name=sink"
        );
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| WriterError::Build(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| WriterError::Build("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| WriterError::Build("no appsrc".into()))?;
        let sink = pipeline
            .by_name("sink")
            .ok_or_else(|| WriterError::Build("no filesink".into()))?;
        // A property, not part of the launch line: a path is never parsed as pipeline syntax.
        sink.set_property("location", path.to_string_lossy().as_ref());
        pipeline.set_state(gst::State::Playing).map_err(|e| {
            WriterError::Pipeline(format!("{e}; {}", bus_error(&pipeline).unwrap_or_default()))
        })?;
        Ok(SegmentWriter {
            pipeline,
            src,
            path: path.to_owned(),
            codec,
            first_pts,
            frames: 0,
        })
    }

    /// Appends one frame (of the codec the segment was created with). Fails once the pipeline has failed (a full
    /// disk, say) or fallen too far behind.
    pub fn write(&mut self, frame: &Frame) -> Result<(), WriterError> {
        if let Some(e) = bus_error(&self.pipeline) {
            return Err(WriterError::Pipeline(e));
        }
        if self.src.current_level_bytes() > MAX_QUEUED_BYTES {
            return Err(WriterError::Pipeline(format!(
                "the muxer fell more than {} MiB behind",
                MAX_QUEUED_BYTES >> 20
            )));
        }
        let mut data = Vec::with_capacity(frame.data.len() + 256);
        if frame.is_keyframe {
            append_parameter_sets(&mut data, &frame.params);
        }
        append_annex_b(&mut data, &frame.data);
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            let ns = ((frame.pts_90k - self.first_pts).max(0) as u64) * 100_000 / 9;
            b.set_pts(gst::ClockTime::from_nseconds(ns));
            b.set_dts(gst::ClockTime::from_nseconds(ns));
            if !frame.is_keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src.push_buffer(buffer).map_err(|flow| {
            WriterError::Pipeline(bus_error(&self.pipeline).unwrap_or_else(|| format!("{flow:?}")))
        })?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the segment: the muxer finalizes the file into a normal MP4. Returns its size in bytes.
    pub fn finish(self, timeout: Duration) -> Result<u64, WriterError> {
        let _ = self.src.end_of_stream();
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| WriterError::Pipeline("no bus".into()))?;
        let outcome = match bus.timed_pop_filtered(
            gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => Err(WriterError::Pipeline(e.error().to_string())),
                _ => Ok(()),
            },
            None => Err(WriterError::FinishTimeout(timeout)),
        };
        // Drop sets the pipeline to Null, which closes the file.
        let path = self.path.clone();
        drop(self);
        outcome?;
        Ok(std::fs::metadata(path)?.len())
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// GStreamer caps of Annex B access units of `codec`, and the parser element that reads them.
pub(crate) fn annex_b_caps_and_parser(codec: Codec) -> (&'static str, &'static str) {
    match codec {
        Codec::H264 => (
            "video/x-h264,stream-format=byte-stream,alignment=au",
            "h264parse",
        ),
        Codec::H265 => (
            "video/x-h265,stream-format=byte-stream,alignment=au",
            "h265parse",
        ),
    }
}

/// VPS (H.265), SPS and PPS as Annex B NAL units.
fn append_parameter_sets(out: &mut Vec<u8>, params: &Arc<ParameterSets>) {
    for nal in [
        params.vps.as_deref(),
        Some(&params.sps[..]),
        Some(&params.pps[..]),
    ]
    .into_iter()
    .flatten()
    {
        if !nal.is_empty() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
}

/// 4-byte length-prefixed NAL units (the frame format) as Annex B. A length running past the end stops the copy:
/// frames come from the depacketizer, which never writes one, but a file must not get garbage either way.
fn append_annex_b(out: &mut Vec<u8>, mut data: &[u8]) {
    while data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let Some(nal) = data.get(4..4 + len) else {
            return;
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        data = &data[4 + len..];
    }
}

fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(err.error().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixed_to_annex_b() {
        let mut out = Vec::new();
        append_annex_b(&mut out, &[0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
        assert_eq!(out, vec![0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x41]);
        let mut out = Vec::new();
        append_annex_b(&mut out, &[0, 0, 0, 9, 0x65]);
        assert!(out.is_empty(), "a length past the end copies nothing");
    }
}
