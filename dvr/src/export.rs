//! One MP4 for a time range of a stream's recording: the range's frames, read from its segments in order, from
//! the keyframe at or before the range's start (nothing before a keyframe decodes) to its end.
//!
//! Each segment is demuxed with GStreamer (`qtdemux` → parser → Annex B access units with parameter sets before
//! keyframes), its frames placed on the wall clock (`segment start + pts`), kept or skipped by time, and written
//! with fresh timestamps into one `mp4mux` file. Blocking: call from a blocking thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sources::Codec;

use crate::writer::annex_b_caps_and_parser;

/// One recorded segment file and the wall-clock instant of its first frame.
#[derive(Clone, Debug)]
pub struct ExportPart {
    pub path: PathBuf,
    pub start_ms: i64,
}

/// What was exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// The keyframe the file starts at (at or before the asked start).
    pub start_ms: i64,
    /// End of the last frame.
    pub end_ms: i64,
    pub frames: u64,
    pub bytes: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no recorded frame in that range")]
    Empty,
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A frame on its way out: Annex B bytes, wall-clock time, keyframe flag.
struct Picture {
    data: gst::Buffer,
    at_ms: i64,
    /// The same instant in nanoseconds, for the output timestamps.
    at_ns: i64,
    duration_ms: i64,
    key: bool,
}

/// The export file being fed, with fresh timestamps from its first frame.
struct Output<'a> {
    src: &'a gst_app::AppSrc,
    first_ms: Option<i64>,
    first_ns: i64,
    end_ms: i64,
    frames: u64,
}

impl Output<'_> {
    fn push(&mut self, p: Picture) -> Result<(), ExportError> {
        if self.first_ms.is_none() {
            self.first_ms = Some(p.at_ms);
            self.first_ns = p.at_ns;
        }
        let mut buf = p.data;
        {
            let b = buf.make_mut();
            let t = gst::ClockTime::from_nseconds((p.at_ns - self.first_ns).max(0) as u64);
            b.set_pts(t);
            b.set_dts(t);
        }
        self.src.push_buffer(buf).map_err(gst_err)?;
        self.end_ms = p.at_ms + p.duration_ms;
        self.frames += 1;
        Ok(())
    }
}

fn gst_err(e: impl std::fmt::Display) -> ExportError {
    ExportError::Gst(e.to_string())
}

fn launch(line: &str) -> Result<gst::Pipeline, ExportError> {
    gst::parse::launch(line)
        .map_err(gst_err)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| ExportError::Gst("not a pipeline".into()))
}

/// Writes the frames of `parts` (in order, all of `codec`) between `from_ms` and `to_ms` into `out`.
pub fn export(
    parts: &[ExportPart],
    codec: Codec,
    from_ms: i64,
    to_ms: i64,
    out: &Path,
) -> Result<Exported, ExportError> {
    gst::init().map_err(gst_err)?;
    let (caps, parse) = annex_b_caps_and_parser(codec);
    let writer = launch(&format!(
        "appsrc name=src format=time block=true caps=\"{caps}\" ! {parse} ! mp4mux ! filesink name=sink"
    ))?;
    writer
        .by_name("sink")
        .expect("named")
        .set_property("location", out.to_string_lossy().as_ref());
    let src = writer
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .expect("named");
    writer.set_state(gst::State::Playing).map_err(gst_err)?;

    let mut out_file = Output {
        src: &src,
        first_ms: None,
        first_ns: 0,
        end_ms: 0,
        frames: 0,
    };
    // The GOP so far, while still before `from_ms`.
    let mut lead: Vec<Picture> = Vec::new();
    'parts: for part in parts {
        for pic in read_pictures(part, parse, caps)? {
            if pic.at_ms >= to_ms {
                break 'parts;
            }
            let started = out_file.first_ms.is_some();
            if pic.at_ms < from_ms && !started {
                if pic.key {
                    lead.clear();
                }
                if pic.key || !lead.is_empty() {
                    lead.push(pic);
                }
                continue;
            }
            if !started {
                if lead.is_empty() && !pic.key {
                    // The range starts mid-GOP with no keyframe before it on record: start at the next one.
                    continue;
                }
                for l in lead.drain(..) {
                    out_file.push(l)?;
                }
            }
            out_file.push(pic)?;
        }
    }
    let Output {
        first_ms,
        end_ms,
        frames,
        ..
    } = out_file;
    let _ = src.end_of_stream();
    let bus = writer.bus().expect("a pipeline has a bus");
    let done = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = writer.set_state(gst::State::Null);
    match done.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => return Err(gst_err(e.error())),
        _ => return Err(ExportError::Gst("the muxer did not finish".into())),
    }
    let Some(start_ms) = first_ms else {
        let _ = std::fs::remove_file(out);
        return Err(ExportError::Empty);
    };
    Ok(Exported {
        start_ms,
        end_ms,
        frames,
        bytes: std::fs::metadata(out)?.len(),
    })
}

/// Every frame of one segment file, on the wall clock.
fn read_pictures(part: &ExportPart, parse: &str, caps: &str) -> Result<Vec<Picture>, ExportError> {
    let reader = launch(&format!(
        "filesrc name=src ! qtdemux ! {parse} config-interval=-1 ! {caps} ! appsink name=sink sync=false"
    ))?;
    reader
        .by_name("src")
        .expect("named")
        .set_property("location", part.path.to_string_lossy().as_ref());
    let sink = reader
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .expect("named");
    reader.set_state(gst::State::Playing).map_err(gst_err)?;
    let timeout = gst::ClockTime::from_nseconds(Duration::from_secs(10).as_nanos() as u64);
    let mut out = Vec::new();
    let mut base: Option<u64> = None;
    while let Some(sample) = sink.try_pull_sample(timeout) {
        let Some(buffer) = sample.buffer_owned() else {
            continue;
        };
        let Some(pts) = buffer.pts().map(|t| t.nseconds()) else {
            continue;
        };
        let base = *base.get_or_insert(pts);
        let offset_ns = pts.saturating_sub(base) as i64;
        out.push(Picture {
            at_ms: part.start_ms + offset_ns / 1_000_000,
            at_ns: part.start_ms * 1_000_000 + offset_ns,
            duration_ms: buffer.duration().map_or(0, |d| d.mseconds() as i64),
            key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: buffer,
        });
    }
    let _ = reader.set_state(gst::State::Null);
    Ok(out)
}
