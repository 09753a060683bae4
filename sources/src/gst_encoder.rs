//! Shared GStreamer plumbing for the inputs this crate makes itself (test pattern, offline slate): the encoder
//! fragment of a launch line, and turning an appsink's Annex-B access units into [`Frame`] parts.
//!
//! Both inputs ask the parser for `stream-format=byte-stream,alignment=au` with parameter sets before every
//! keyframe (`config-interval=-1`), so every keyframe carries the SPS/PPS(/VPS) that describe it.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::frame::{
    h264_nal_type, h265_nal_type, is_parameter_or_delimiter, length_prefixed, Codec,
};

/// Why a GStreamer-made input failed.
#[derive(Debug, thiserror::Error)]
pub enum GstInputError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("could not build pipeline: {0}")]
    Pipeline(String),
    #[error("pipeline error: {0}")]
    Runtime(String),
    #[error("encoder produced no parameter sets before its first keyframe")]
    NoParameterSets,
}

/// Initializes GStreamer once per process.
pub(crate) fn init() -> Result<(), GstInputError> {
    gst::init().map_err(|e| GstInputError::Init(e.to_string()))
}

/// Launch-line fragment from raw video (`format=I420` already in the caps) to byte-stream access units.
pub(crate) fn encoder_fragment(codec: Codec, gop: u32, bitrate_kbps: u32) -> String {
    match codec {
        // bframes=0: frames leave in presentation order, which keeps the pipeline's PTS monotonic for viewers.
        Codec::H264 => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={gop} bitrate={bitrate_kbps} \
             ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au,profile=constrained-baseline"
        ),
        // Without open-gop=0 and repeat-headers=1 every keyframe after the first is not a random-access point.
        Codec::H265 => format!(
            "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate={bitrate_kbps} \
             option-string=open-gop=0:repeat-headers=1:bframes=0 \
             ! h265parse config-interval=-1 ! video/x-h265,stream-format=byte-stream,alignment=au"
        ),
    }
}

/// The parameter sets found in one access unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InBandParameters {
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

/// One access unit from an appsink, split into its picture NALs and parameter sets.
pub(crate) struct EncodedAu {
    /// 4-byte length-prefixed, without parameter sets and delimiters.
    pub data: Bytes,
    pub params: InBandParameters,
    pub is_keyframe: bool,
    pub pts_ns: Option<u64>,
}

/// Splits an Annex-B buffer at its start codes (3 or 4 bytes), skipping empty NAL units.
pub(crate) fn split_annex_b(buf: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &s) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(buf.len(), |&next| next - 3);
        // Trailing zeros belong to the next 4-byte start code (or are trailing_zero_8bits).
        while end > s && buf[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            nals.push(&buf[s..end]);
        }
    }
    nals
}

/// Converts one Annex-B access unit into the frame model.
pub(crate) fn parse_access_unit(codec: Codec, annex_b: &[u8], pts_ns: Option<u64>) -> EncodedAu {
    let mut params = InBandParameters::default();
    let mut picture = Vec::new();
    let mut is_keyframe = false;
    for nal in split_annex_b(annex_b) {
        match codec {
            Codec::H264 => match h264_nal_type(nal) {
                7 => params.sps = Some(Bytes::copy_from_slice(nal)),
                8 => params.pps = Some(Bytes::copy_from_slice(nal)),
                5 => is_keyframe = true,
                _ => {}
            },
            Codec::H265 => match h265_nal_type(nal) {
                32 => params.vps = Some(Bytes::copy_from_slice(nal)),
                33 => params.sps = Some(Bytes::copy_from_slice(nal)),
                34 => params.pps = Some(Bytes::copy_from_slice(nal)),
                16..=21 => is_keyframe = true,
                _ => {}
            },
        }
        if !is_parameter_or_delimiter(codec, nal) {
            picture.push(nal);
        }
    }
    EncodedAu {
        data: length_prefixed(picture),
        params,
        is_keyframe,
        pts_ns,
    }
}

/// Pulls the next access unit from `sink`, waiting at most `timeout`. `Ok(None)` at end of stream.
pub(crate) fn pull_access_unit(
    sink: &gstreamer_app::AppSink,
    codec: Codec,
    timeout: gst::ClockTime,
) -> Result<Option<EncodedAu>, GstInputError> {
    match sink.try_pull_sample(timeout) {
        Some(sample) => {
            let buffer = sample
                .buffer()
                .ok_or_else(|| GstInputError::Runtime("sample without buffer".into()))?;
            let map = buffer
                .map_readable()
                .map_err(|_| GstInputError::Runtime("unreadable buffer".into()))?;
            Ok(Some(parse_access_unit(
                codec,
                &map,
                buffer.pts().map(|t| t.nseconds()),
            )))
        }
        None if sink.is_eos() => Ok(None),
        None => Err(GstInputError::Runtime(
            "encoder produced nothing in time".into(),
        )),
    }
}

/// Parses a launch line into a pipeline and returns it with the appsink named `sink`.
pub(crate) fn build_pipeline(
    launch: &str,
) -> Result<(gst::Pipeline, gstreamer_app::AppSink), GstInputError> {
    init()?;
    let pipeline = gst::parse::launch(launch)
        .map_err(|e| GstInputError::Pipeline(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| GstInputError::Pipeline("not a pipeline".into()))?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gstreamer_app::AppSink>().ok())
        .ok_or_else(|| GstInputError::Pipeline("no appsink named sink".into()))?;
    Ok((pipeline, sink))
}

/// Turns the first error message on the bus, if any, into an error.
pub(crate) fn bus_error(pipeline: &gst::Pipeline) -> Option<GstInputError> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(err) = msg.view() {
            return Some(GstInputError::Runtime(err.error().to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let buf = [
            0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3, 4,
        ];
        let nals = split_annex_b(&buf);
        assert_eq!(
            nals,
            vec![&[0x67, 1][..], &[0x68, 2][..], &[0x65, 3, 4][..]]
        );
    }

    #[test]
    fn access_unit_keeps_params_apart() {
        let buf = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3,
        ];
        let au = parse_access_unit(Codec::H264, &buf, Some(5));
        assert!(au.is_keyframe);
        assert_eq!(au.params.sps.as_deref(), Some(&[0x67, 1][..]));
        assert_eq!(au.params.pps.as_deref(), Some(&[0x68, 2][..]));
        assert_eq!(&au.data[..], &[0, 0, 0, 2, 0x65, 3]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for buf in [
            &[][..],
            &[0, 0, 1][..],
            &[0, 0, 0, 0, 0][..],
            &[1, 2, 3][..],
        ] {
            let au = parse_access_unit(Codec::H265, buf, None);
            assert!(!au.is_keyframe);
        }
    }
}
