//! SDP media descriptions for a stream (RFC 8866), with the RTP payload formats' fmtp parameters: H.264
//! `profile-level-id`, `packetization-mode=1` and `sprop-parameter-sets` (RFC 6184 §8.1), H.265 `sprop-vps`,
//! `sprop-sps`, `sprop-pps` (RFC 7798 §7.1).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sources::{Codec, ParameterSets};

/// The `a=rtpmap` / `a=fmtp` pair for a payload type.
pub fn rtpmap_fmtp(params: &ParameterSets, payload_type: u8) -> (String, String) {
    let b64 = |b: &[u8]| STANDARD.encode(b);
    match params.codec {
        Codec::H264 => (
            format!("a=rtpmap:{payload_type} H264/90000"),
            format!(
                "a=fmtp:{payload_type} packetization-mode=1;profile-level-id={};sprop-parameter-sets={},{}",
                params.profile_level_id().unwrap_or_else(|| "42e01f".into()),
                b64(&params.sps),
                b64(&params.pps)
            ),
        ),
        Codec::H265 => (
            format!("a=rtpmap:{payload_type} H265/90000"),
            format!(
                "a=fmtp:{payload_type} sprop-vps={};sprop-sps={};sprop-pps={}",
                b64(params.vps.as_deref().unwrap_or_default()),
                b64(&params.sps),
                b64(&params.pps)
            ),
        ),
    }
}

/// A receive-only session description for one video stream whose media goes to an address agreed elsewhere
/// (port 0), as WSC-RTP sends it.
pub fn session_description(
    session_id: u64,
    stream_name: &str,
    params: &ParameterSets,
    payload_type: u8,
    ssrc: u32,
) -> String {
    let (rtpmap, fmtp) = rtpmap_fmtp(params, payload_type);
    // Session names come from validated stream ids, but never let a line break into the SDP.
    let name: String = stream_name.chars().filter(|c| !c.is_control()).collect();
    format!(
        "v=0\r\no=- {session_id} 1 IN IP4 0.0.0.0\r\ns={name}\r\nt=0 0\r\nm=video 0 RTP/AVP {payload_type}\r\n\
         c=IN IP4 0.0.0.0\r\n{rtpmap}\r\n{fmtp}\r\na=ssrc:{ssrc} cname:wsc-rtp\r\na=recvonly\r\n"
    )
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn h264_fmtp_carries_profile_and_parameter_sets() {
        let p = ParameterSets {
            codec: Codec::H264,
            vps: None,
            sps: Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f]),
            pps: Bytes::from_static(&[0x68, 0xee]),
            width: 1280,
            height: 720,
            rfc6381_codec: None,
        };
        let sdp = session_description(42, "porch\r\nx", &p, 96, 7);
        assert!(sdp.contains("a=rtpmap:96 H264/90000\r\n"));
        assert!(sdp.contains("profile-level-id=64001f;sprop-parameter-sets=Z2QAHw==,aO4="));
        assert!(sdp.contains("s=porchx\r\n"));
        assert!(sdp.starts_with("v=0\r\no=- 42 1"));
    }

    #[test]
    fn h265_fmtp_carries_vps_sps_pps() {
        let p = ParameterSets {
            codec: Codec::H265,
            vps: Some(Bytes::from_static(&[0x40, 0x01])),
            sps: Bytes::from_static(&[0x42, 0x01]),
            pps: Bytes::from_static(&[0x44, 0x01]),
            width: 1,
            height: 1,
            rfc6381_codec: None,
        };
        let (rtpmap, fmtp) = rtpmap_fmtp(&p, 97);
        assert_eq!(rtpmap, "a=rtpmap:97 H265/90000");
        assert_eq!(
            fmtp,
            "a=fmtp:97 sprop-vps=QAE=;sprop-sps=QgE=;sprop-pps=RAE="
        );
    }
}
