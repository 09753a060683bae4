//! What an open input hands to the ingest loop: access units on the input's own media clock.

use std::sync::Arc;

use bytes::Bytes;

use crate::frame::ParameterSets;
use crate::gst_encoder::InBandParameters;

/// One access unit from an open input, before the ingest maps its time onto the stream's timeline.
#[derive(Clone, Debug)]
pub(crate) struct RawFrame {
    /// 4-byte length-prefixed picture NALs.
    pub data: Bytes,
    pub is_keyframe: bool,
    pub params: Arc<ParameterSets>,
    /// 90 kHz time since the input session started.
    pub media_90k: i64,
}

/// Keeps the current parameter sets of a GStreamer-made input up to date from in-band ones.
pub(crate) struct ParamTracker {
    codec: crate::Codec,
    width: u32,
    height: u32,
    current: Option<Arc<ParameterSets>>,
}

impl ParamTracker {
    pub fn new(codec: crate::Codec, width: u32, height: u32) -> Self {
        ParamTracker {
            codec,
            width,
            height,
            current: None,
        }
    }

    /// Folds in-band parameter sets into the current ones; returns the current set, if complete.
    pub fn update(&mut self, inband: &InBandParameters) -> Option<Arc<ParameterSets>> {
        if let (Some(sps), Some(pps)) = (&inband.sps, &inband.pps) {
            let vps = inband.vps.clone();
            if self.codec == crate::Codec::H264 || vps.is_some() {
                let next = ParameterSets {
                    codec: self.codec,
                    vps,
                    sps: sps.clone(),
                    pps: pps.clone(),
                    width: self.width,
                    height: self.height,
                    rfc6381_codec: None,
                };
                if self.current.as_deref() != Some(&next) {
                    self.current = Some(Arc::new(next));
                }
            }
        }
        self.current.clone()
    }
}
