//! The "offline" slate: a still picture saying the camera is offline, encoded once per stream with GStreamer at
//! the stream's codec and size, so subscribers stay attached (and their decoders configured) while no input
//! delivers.
//!
//! Two IDR pictures are encoded and alternated: consecutive IDR access units must differ in `idr_pic_id`
//! (H.264 7.4.3), and sending only keyframes lets a viewer join at any slate frame.

use std::sync::Arc;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::frame::{Codec, ParameterSets};
use crate::gst_encoder::{self, GstInputError};
use crate::session::ParamTracker;

/// Slate pictures per second: enough to keep players and NAT bindings alive, cheap for every viewer.
pub const SLATE_FPS: u32 = 2;

/// An encoded slate.
#[derive(Clone, Debug)]
pub struct Slate {
    pub params: Arc<ParameterSets>,
    /// Length-prefixed IDR access units to alternate.
    pub pictures: Vec<Bytes>,
}

/// Encodes the slate. Blocking (about 100 ms): call it from `spawn_blocking` on an async runtime.
pub fn make_slate(codec: Codec, width: u32, height: u32) -> Result<Slate, GstInputError> {
    let (width, height) = (width.clamp(64, 3840) & !1, height.clamp(64, 2160) & !1);
    let font = (height / 14).max(10);
    let launch = format!(
        "videotestsrc is-live=false num-buffers=2 pattern=solid-color foreground-color=0xff202020 \
         ! video/x-raw,format=I420,width={width},height={height},framerate={SLATE_FPS}/1 \
         ! textoverlay text=\"Camera offline\" font-desc=\"Sans {font}\" valignment=center halignment=center \
         ! {} ! appsink name=sink sync=false",
        gst_encoder::encoder_fragment(codec, 1, 200)
    );
    let (pipeline, sink) = gst_encoder::build_pipeline(&launch)?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| GstInputError::Pipeline(e.to_string()))?;
    let mut tracker = ParamTracker::new(codec, width, height);
    let mut params = None;
    let mut pictures = Vec::new();
    let result = loop {
        match gst_encoder::pull_access_unit(&sink, codec, gst::ClockTime::from_seconds(10)) {
            Ok(Some(au)) => {
                if let Some(p) = tracker.update(&au.params) {
                    params = Some(p);
                }
                if au.is_keyframe {
                    pictures.push(au.data);
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(gst_encoder::bus_error(&pipeline).unwrap_or(e)),
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let params = params.ok_or(GstInputError::NoParameterSets)?;
    if pictures.is_empty() {
        return Err(GstInputError::Runtime(
            "slate encoder produced no keyframe".into(),
        ));
    }
    Ok(Slate { params, pictures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slate_in_both_codecs_at_the_stream_size() {
        for codec in [Codec::H264, Codec::H265] {
            let s = make_slate(codec, 320, 240).unwrap();
            assert_eq!(
                (s.params.width, s.params.height, s.params.codec),
                (320, 240, codec)
            );
            assert_eq!(s.pictures.len(), 2);
        }
    }
}
