//! The media model every other crate speaks: one access unit (`Frame`) and the parameter sets that decode it.
//!
//! NAL units inside `Frame::data` are length-prefixed with 4-byte big-endian lengths (the form retina hands out,
//! and the one MP4 stores), never Annex-B start codes. Parameter sets travel beside the frame, not inside it.

use std::sync::Arc;

use bytes::Bytes;

/// Video codec of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    /// Lower-case name as used in the API and in SDP `rtpmap` (`H264`/`H265` there).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    /// The codec named by [`Codec::name`], if any.
    pub fn from_name(name: &str) -> Option<Codec> {
        [Codec::H264, Codec::H265]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// Decoder configuration for one stream: the codec, its parameter-set NAL units (without start codes or length
/// prefixes) and the picture size they describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParameterSets {
    pub codec: Codec,
    /// H.265 only.
    pub vps: Option<Bytes>,
    pub sps: Bytes,
    pub pps: Bytes,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codec string, such as `avc1.64001f`, when known.
    pub rfc6381_codec: Option<String>,
}

impl ParameterSets {
    /// The parameter-set NAL units in the order a decoder wants them (VPS, SPS, PPS).
    pub fn nals(&self) -> impl Iterator<Item = &Bytes> {
        self.vps.iter().chain([&self.sps, &self.pps])
    }

    /// H.264 `profile-level-id` (three bytes after the SPS NAL header, hex), used in SDP.
    pub fn profile_level_id(&self) -> Option<String> {
        match (self.codec, self.sps.get(1..4)) {
            (Codec::H264, Some(b)) => Some(format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2])),
            _ => None,
        }
    }
}

/// One access unit (one picture).
#[derive(Clone, Debug)]
pub struct Frame {
    pub codec: Codec,
    /// 4-byte length-prefixed NAL units; no parameter sets, no access unit delimiters.
    pub data: Bytes,
    /// Presentation time on the camera's 90 kHz RTP clock, extended to 64 bits and made monotonic per input run.
    pub pts_90k: i64,
    /// The same instant as wall-clock epoch milliseconds.
    pub wall_ms: i64,
    pub is_keyframe: bool,
    pub params: Arc<ParameterSets>,
    /// True for the GStreamer-made "offline" picture shown while no input delivers; never recorded.
    pub is_slate: bool,
    /// The first frame of a new run on the stream timeline: a new input session (reconnect, fail-over), the
    /// slate starting, each slate picture. Always a keyframe. An explicit discontinuity for viewers, whose
    /// timestamps then follow the wall clock instead of `pts_90k` deltas.
    pub starts_run: bool,
}

impl Frame {
    /// Iterates over the NAL units of `data` as zero-copy slices. Stops at the first truncated length prefix.
    pub fn nals(&self) -> NalIter {
        NalIter::new(self.data.clone())
    }
}

/// Iterator over 4-byte length-prefixed NAL units; see [`Frame::nals`].
pub struct NalIter {
    rest: Bytes,
}

impl NalIter {
    /// Iterates over the NAL units of a 4-byte length-prefixed buffer.
    pub fn new(data: Bytes) -> Self {
        NalIter { rest: data }
    }
}

impl Iterator for NalIter {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.rest.len() < 4 {
            return None;
        }
        let len =
            u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]) as usize;
        if self.rest.len() - 4 < len {
            self.rest.clear();
            return None;
        }
        let nal = self.rest.slice(4..4 + len);
        self.rest = self.rest.slice(4 + len..);
        Some(nal)
    }
}

/// H.264 NAL unit type (low 5 bits of the first header byte).
pub fn h264_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// H.265 NAL unit type (bits 1..7 of the first header byte).
pub fn h265_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// True for NAL units that the frame model keeps out of `Frame::data`: parameter sets and access unit delimiters.
pub fn is_parameter_or_delimiter(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => matches!(h264_nal_type(nal), 7..=9),
        Codec::H265 => matches!(h265_nal_type(nal), 32..=35),
    }
}

/// Builds a 4-byte length-prefixed buffer from NAL units.
pub fn length_prefixed<'a>(nals: impl IntoIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = Vec::new();
    for nal in nals {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names_round_trip() {
        for c in [Codec::H264, Codec::H265] {
            assert_eq!(Codec::from_name(c.name()), Some(c));
        }
        assert_eq!(Codec::from_name("vp8"), None);
    }

    #[test]
    fn nal_iter_splits_and_stops_on_truncation() {
        let data = length_prefixed([&[0x65u8, 1, 2][..], &[0x41u8][..]]);
        let mut truncated = data.to_vec();
        truncated.extend_from_slice(&[0, 0, 0, 9, 1]);
        let f = Frame {
            codec: Codec::H264,
            data: Bytes::from(truncated),
            pts_90k: 0,
            wall_ms: 0,
            is_keyframe: true,
            params: Arc::new(ParameterSets {
                codec: Codec::H264,
                vps: None,
                sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f]),
                pps: Bytes::from_static(&[0x68]),
                width: 1,
                height: 1,
                rfc6381_codec: None,
            }),
            is_slate: false,
            starts_run: false,
        };
        let nals: Vec<_> = f.nals().collect();
        assert_eq!(
            nals,
            vec![
                Bytes::from_static(&[0x65, 1, 2]),
                Bytes::from_static(&[0x41])
            ]
        );
        assert_eq!(f.params.profile_level_id().as_deref(), Some("42c01f"));
    }
}
