//! RTSP camera input via retina: DESCRIBE → SETUP (first H.264/H.265 video stream) → PLAY, then access units.
//!
//! retina depacketizes (RFC 6184 / RFC 7798) and hands out 4-byte length-prefixed NAL units with parameter sets
//! kept out of band (`FrameFormat::MP4`), which is exactly this crate's frame model. Parameter sets come from the
//! SDP's `sprop-parameter-sets` when present and from in-band SPS/PPS otherwise; retina flags the frame that
//! changed them, and the new set is read back from the stream (a camera reconfigured to a new resolution shows up
//! here). The URL given to retina never carries credentials; they go in `SessionOptions::creds`.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{self, Demuxed, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParameters, VideoParametersCodec};
use url::Url;

use crate::frame::{is_parameter_or_delimiter, Codec, NalIter, ParameterSets};
use crate::input::{Credentials, Transport};
use crate::session::RawFrame;

/// Why an RTSP input failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("RTSP: {message}")]
    Retina {
        message: String,
        status: Option<u16>,
    },
    #[error("camera offers no H.264 or H.265 video stream (offers: {0})")]
    NoVideo(String),
    #[error("camera stream ended")]
    Ended,
    #[error("camera sent no usable parameter sets (SPS/PPS)")]
    NoParameters,
    #[error("camera timestamps jumped {0} s forward")]
    TimestampJump(i64),
}

/// A forward step of the camera's RTP clock beyond this ends the session (the reconnect re-anchors wall-clock
/// time). Backward steps are taken: the stream timeline keeps `pts_90k` monotonic (`timeline.rs`).
const MAX_FORWARD_JUMP_90K: i64 = 10 * 90_000;

impl From<retina::Error> for RtspError {
    fn from(e: retina::Error) -> Self {
        RtspError::Retina {
            message: e.to_string(),
            status: e.status_code(),
        }
    }
}

impl RtspError {
    /// The server refused the requested transport (RTSP 461): some cameras serve TCP only.
    pub fn is_unsupported_transport(&self) -> bool {
        matches!(
            self,
            RtspError::Retina {
                status: Some(461),
                ..
            }
        )
    }
}

/// An RTSP session in the PLAY state.
pub struct RtspSession {
    demuxed: Demuxed,
    stream_index: usize,
    codec: Codec,
    params: Option<Arc<ParameterSets>>,
    first_timestamp: Option<i64>,
    last_timestamp: Option<i64>,
}

impl RtspSession {
    /// Connects and starts playing. Wrap in a timeout: a silent server keeps this waiting.
    pub async fn open(
        url: &Url,
        transport: Transport,
        creds: Option<&Credentials>,
    ) -> Result<Self, RtspError> {
        let options = SessionOptions::default()
            .creds(creds.map(|c| client::Credentials {
                username: c.username.clone(),
                password: c.password.clone(),
            }))
            .user_agent(concat!("camera-gateway/", env!("CARGO_PKG_VERSION")).to_owned());
        let mut session = client::Session::describe(url.clone(), options).await?;
        let (stream_index, codec) = session
            .streams()
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                (s.media() == "video")
                    .then(|| match s.encoding_name() {
                        "h264" => Some((i, Codec::H264)),
                        "h265" => Some((i, Codec::H265)),
                        _ => None,
                    })
                    .flatten()
            })
            .ok_or_else(|| {
                let offered: Vec<String> = session
                    .streams()
                    .iter()
                    .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                    .collect();
                RtspError::NoVideo(offered.join(", "))
            })?;
        let retina_transport = match transport {
            Transport::Tcp => client::Transport::Tcp(Default::default()),
            Transport::Udp => client::Transport::Udp(Default::default()),
        };
        session
            .setup(
                stream_index,
                SetupOptions::default()
                    .transport(retina_transport)
                    .frame_format(FrameFormat::MP4),
            )
            .await?;
        let params = match session.streams()[stream_index].parameters() {
            Some(ParametersRef::Video(v)) => convert_params(codec, v).map(Arc::new),
            _ => None,
        };
        // No timestamp enforcement in retina: it ends the session on any backward step, which some cameras make
        // (and gst-rtsp-server's shared media makes whenever another client joins). Forward jumps are checked
        // below.
        let play = client::PlayOptions::default();
        let demuxed = session.play(play).await?.demuxed()?;
        Ok(RtspSession {
            demuxed,
            stream_index,
            codec,
            params,
            first_timestamp: None,
            last_timestamp: None,
        })
    }

    /// The next video access unit. Frames before the first parameter sets are skipped (a decoder can't use them).
    pub(crate) async fn next(&mut self) -> Result<RawFrame, RtspError> {
        loop {
            let item = self.demuxed.next().await.ok_or(RtspError::Ended)??;
            let CodecItem::VideoFrame(frame) = item else {
                continue;
            };
            if frame.stream_id() != self.stream_index {
                continue;
            }
            if frame.has_new_parameters() || self.params.is_none() {
                if let Some(ParametersRef::Video(v)) =
                    self.demuxed.streams()[self.stream_index].parameters()
                {
                    let next = convert_params(self.codec, v).ok_or(RtspError::NoParameters)?;
                    if self.params.as_deref() != Some(&next) {
                        self.params = Some(Arc::new(next));
                    }
                }
            }
            let Some(params) = self.params.clone() else {
                continue;
            };
            let ts = frame.timestamp().timestamp();
            if let Some(last) = self.last_timestamp.replace(ts) {
                if ts - last > MAX_FORWARD_JUMP_90K {
                    return Err(RtspError::TimestampJump((ts - last) / 90_000));
                }
            }
            let first = *self.first_timestamp.get_or_insert(ts);
            let is_keyframe = frame.is_random_access_point();
            return Ok(RawFrame {
                data: strip_parameter_sets(self.codec, Bytes::from(frame.into_data())),
                is_keyframe,
                params,
                media_90k: ts - first,
            });
        }
    }
}

fn convert_params(codec: Codec, v: &VideoParameters) -> Option<ParameterSets> {
    let (width, height) = v.pixel_dimensions();
    let (vps, sps, pps) = match (codec, v.codec_params()) {
        (Codec::H264, VideoParametersCodec::H264 { sps, pps }) => (None, sps.clone(), pps.clone()),
        (Codec::H265, VideoParametersCodec::H265 { vps, sps, pps }) => {
            (Some(vps.clone()), sps.clone(), pps.clone())
        }
        _ => return None,
    };
    Some(ParameterSets {
        codec,
        vps,
        sps,
        pps,
        width,
        height,
        rfc6381_codec: Some(v.rfc6381_codec().to_owned()),
    })
}

/// Removes in-band parameter sets and delimiters some cameras leave inside access units; copies only if needed.
fn strip_parameter_sets(codec: Codec, data: Bytes) -> Bytes {
    let nals = || NalIter::new(data.clone());
    if !nals().any(|n| is_parameter_or_delimiter(codec, &n)) {
        return data;
    }
    let kept: Vec<Bytes> = nals()
        .filter(|n| !is_parameter_or_delimiter(codec, n))
        .collect();
    crate::frame::length_prefixed(kept.iter().map(|b| &b[..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::length_prefixed;

    #[test]
    fn strips_in_band_parameter_sets_only_when_present() {
        let clean = length_prefixed([&[0x65u8, 1][..]]);
        assert_eq!(
            strip_parameter_sets(Codec::H264, clean.clone()).as_ptr(),
            clean.as_ptr()
        );
        let dirty = length_prefixed([&[0x67u8, 1][..], &[0x68u8][..], &[0x65u8, 2][..]]);
        assert_eq!(
            strip_parameter_sets(Codec::H264, dirty),
            length_prefixed([&[0x65u8, 2][..]])
        );
    }
}
