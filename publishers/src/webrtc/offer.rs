//! Reading a viewer's SDP offer: which payload type will carry the stream, and what the answer says about it.
//!
//! The hub packetizes once for every viewer (H.264 as RFC 6184 packetization-mode 1, H.265 as RFC 7798), so a
//! viewer can only take the stream if its offer has a payload type for exactly that: the camera's codec, for
//! H.264 the camera's profile (RFC 6184 §8.2.2: the profile must match; the level may differ when the offer
//! allows level asymmetry, as browsers do) and packetization-mode 1. Nothing is transcoded here.

use std::io::Cursor;

use rtc_sdp::SessionDescription;
use sources::{Codec, ParameterSets};

use super::h264_profile::ProfileLevelId;

/// The payload type chosen for the viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChosenCodec {
    /// The `mid` of the video section it was found in.
    pub mid: Option<String>,
    /// Payload type, as the offer numbered it.
    pub payload_type: u8,
    /// `video/H264` or `video/H265`.
    pub mime_type: &'static str,
    /// The offer's `a=fmtp` value for that payload type (what a WebRTC stack matches its own codec list against).
    pub offer_fmtp: String,
    /// The answer's `a=fmtp` value: what this stream really is.
    pub answer_fmtp: String,
}

/// Why an offer can't be answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    #[error("the offer is not valid SDP: {0}")]
    Malformed(String),
    #[error("the offer has no video section that can receive")]
    NoVideo,
    #[error("no codec in the offer can carry this stream: the stream sends {stream}; the offer accepts {offered}")]
    NoCommonCodec { stream: String, offered: String },
}

/// Picks the payload type for a stream with these parameters, from the first video section of `offer` that can
/// receive.
pub fn choose_codec(offer: &str, params: &ParameterSets) -> Result<ChosenCodec, OfferError> {
    let sdp = SessionDescription::unmarshal(&mut Cursor::new(offer.as_bytes()))
        .map_err(|e| OfferError::Malformed(e.to_string()))?;
    let video = sdp
        .media_descriptions
        .iter()
        .find(|m| {
            m.media_name.media == "video"
                && m.media_name.port.value != 0
                && !m.has_attribute("sendonly")
                && !m.has_attribute("inactive")
        })
        .ok_or(OfferError::NoVideo)?;
    let mid = video.attribute("mid").flatten().map(str::to_owned);
    let mut codecs: Vec<_> = video.codecs().into_values().collect();
    // The offer's own order is its preference; HashMap order is not. Keep it stable for messages and choice.
    let order: Vec<u8> = video
        .media_name
        .formats
        .iter()
        .filter_map(|f| f.parse().ok())
        .collect();
    codecs.sort_by_key(|c| {
        order
            .iter()
            .position(|p| *p == c.payload_type)
            .unwrap_or(usize::MAX)
    });

    let found = match params.codec {
        Codec::H264 => {
            let want = params
                .profile_level_id()
                .and_then(|id| ProfileLevelId::parse(&id));
            codecs.iter().find(|c| {
                c.name.eq_ignore_ascii_case("H264")
                    && fmtp_param(&c.fmtp, "packetization-mode") == Some("1")
                    && match (want, fmtp_param(&c.fmtp, "profile-level-id")) {
                        (Some(want), Some(id)) => {
                            ProfileLevelId::parse(id).is_some_and(|o| o.profile == want.profile)
                        }
                        // RFC 6184: no profile-level-id means Baseline level 1 (42000a).
                        (Some(want), None) => {
                            want.profile == super::h264_profile::Profile::Baseline
                        }
                        (None, _) => false,
                    }
            })
        }
        Codec::H265 => codecs.iter().find(|c| c.name.eq_ignore_ascii_case("H265")),
    };
    let Some(c) = found else {
        return Err(OfferError::NoCommonCodec {
            stream: describe_stream(params),
            offered: describe_offer(&codecs),
        });
    };
    let (mime_type, answer_fmtp) = match params.codec {
        Codec::H264 => (
            "video/H264",
            format!(
                "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={}",
                params.profile_level_id().unwrap_or_default()
            ),
        ),
        Codec::H265 => ("video/H265", c.fmtp.clone()),
    };
    Ok(ChosenCodec {
        mid,
        payload_type: c.payload_type,
        mime_type,
        offer_fmtp: c.fmtp.clone(),
        answer_fmtp,
    })
}

/// Replaces the `a=fmtp:<pt>` line of `sdp` with `fmtp` (adding it after `a=rtpmap:<pt>` if absent), so the
/// answer states the stream's real parameters while the WebRTC stack keeps the offer's for its own matching.
pub fn rewrite_fmtp(sdp: &str, payload_type: u8, fmtp: &str) -> String {
    let fmtp_prefix = format!("a=fmtp:{payload_type} ");
    let rtpmap_prefix = format!("a=rtpmap:{payload_type} ");
    let has_fmtp = sdp.lines().any(|l| l.starts_with(&fmtp_prefix));
    let mut out = String::with_capacity(sdp.len() + fmtp.len());
    for line in sdp.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\r', '\n']);
        if bare.starts_with(&fmtp_prefix) {
            out.push_str(&fmtp_prefix);
            out.push_str(fmtp);
            out.push_str("\r\n");
            continue;
        }
        out.push_str(line);
        if !has_fmtp && bare.starts_with(&rtpmap_prefix) {
            if !line.ends_with('\n') {
                out.push_str("\r\n");
            }
            out.push_str(&fmtp_prefix);
            out.push_str(fmtp);
            out.push_str("\r\n");
        }
    }
    out
}

/// One `key=value` of an fmtp line.
fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then_some(v.trim())
    })
}

fn describe_stream(params: &ParameterSets) -> String {
    match params.codec {
        Codec::H264 => {
            let id = params
                .profile_level_id()
                .unwrap_or_else(|| "unknown".into());
            let profile = ProfileLevelId::parse(&id)
                .map_or_else(|| "unknown profile".to_owned(), |p| p.profile.to_string());
            format!("H.264 {profile} (profile-level-id {id}, packetization-mode 1)")
        }
        Codec::H265 => "H.265".to_owned(),
    }
}

/// `H264 (Constrained Baseline, packetization-mode 1), VP8, ...`: each distinct codec once.
fn describe_offer(codecs: &[rtc_sdp::util::Codec]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for c in codecs {
        let name = c.name.to_ascii_uppercase();
        // Retransmission and repair formats are not codecs a viewer picks.
        if matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03") {
            continue;
        }
        let label = if name == "H264" {
            let profile = fmtp_param(&c.fmtp, "profile-level-id")
                .and_then(ProfileLevelId::parse)
                .map_or_else(|| "no profile".to_owned(), |p| p.profile.to_string());
            let mode = fmtp_param(&c.fmtp, "packetization-mode").unwrap_or("0");
            format!("H264 ({profile}, packetization-mode {mode})")
        } else {
            name
        };
        if !seen.contains(&label) {
            seen.push(label);
        }
    }
    if seen.is_empty() {
        "no video codec".to_owned()
    } else {
        seen.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// The video part of what headless Chromium offers for a recvonly transceiver.
    const CHROMIUM_OFFER: &str = "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 108 109 116 41\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack pli\r\n\
        a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
        a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\n\
        a=rtpmap:108 H264/90000\r\na=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:109 rtx/90000\r\na=fmtp:109 apt=108\r\n\
        a=rtpmap:116 H264/90000\r\na=fmtp:116 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n\
        a=rtpmap:41 H264/90000\r\na=fmtp:41 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=f4001f\r\n";

    fn h264(sps: &'static [u8]) -> ParameterSets {
        ParameterSets {
            codec: Codec::H264,
            vps: None,
            sps: Bytes::from_static(sps),
            pps: Bytes::from_static(&[0x68, 0xce]),
            width: 640,
            height: 360,
            rfc6381_codec: None,
        }
    }

    #[test]
    fn picks_the_payload_type_with_the_cameras_profile() {
        // x264 constrained-baseline at level 3.0 writes 42c01e: same profile as the offer's 42e01f.
        let chosen = choose_codec(CHROMIUM_OFFER, &h264(&[0x67, 0x42, 0xc0, 0x1e])).unwrap();
        assert_eq!(chosen.payload_type, 108);
        assert_eq!(chosen.mid.as_deref(), Some("0"));
        assert_eq!(chosen.mime_type, "video/H264");
        assert!(chosen.offer_fmtp.contains("profile-level-id=42e01f"));
        assert_eq!(
            chosen.answer_fmtp,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01e"
        );
        let main = choose_codec(CHROMIUM_OFFER, &h264(&[0x67, 0x4d, 0x40, 0x29])).unwrap();
        assert_eq!(main.payload_type, 116);
    }

    #[test]
    fn says_what_the_stream_has_and_what_the_offer_had() {
        let err = choose_codec(CHROMIUM_OFFER, &h264(&[0x67, 0x64, 0x00, 0x28])).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, OfferError::NoCommonCodec { .. }));
        assert!(
            text.contains("H.264 High (profile-level-id 640028"),
            "{text}"
        );
        assert!(
            text.contains("VP8, H264 (Baseline, packetization-mode 1), H264 (Constrained Baseline, packetization-mode 1), H264 (Main, packetization-mode 1), H264 (High 4:4:4 Predictive, packetization-mode 0)"),
            "{text}"
        );
        assert!(!text.contains("RTX"), "{text}");
        let h265 = ParameterSets {
            codec: Codec::H265,
            vps: Some(Bytes::from_static(&[0x40, 1])),
            ..h264(&[0x42, 1])
        };
        let text = choose_codec(CHROMIUM_OFFER, &h265).unwrap_err().to_string();
        assert!(
            text.contains("the stream sends H.265; the offer accepts VP8, H264"),
            "{text}"
        );
    }

    #[test]
    fn h265_when_offered() {
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 49 96\r\n\
            a=mid:v\r\na=rtpmap:49 H265/90000\r\na=fmtp:49 level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST\r\n\
            a=rtpmap:96 VP8/90000\r\n";
        let p = ParameterSets {
            codec: Codec::H265,
            vps: Some(Bytes::from_static(&[0x40, 1])),
            ..h264(&[0x42, 1])
        };
        let chosen = choose_codec(offer, &p).unwrap();
        assert_eq!((chosen.payload_type, chosen.mime_type), (49, "video/H265"));
        assert_eq!(
            chosen.answer_fmtp,
            "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"
        );
    }

    #[test]
    fn malformed_and_videoless_offers() {
        assert!(matches!(
            choose_codec("hello", &h264(&[0x67, 0x42, 0xc0, 0x1e])),
            Err(OfferError::Malformed(_))
        ));
        let audio_only =
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(
            choose_codec(audio_only, &h264(&[0x67, 0x42, 0xc0, 0x1e])),
            Err(OfferError::NoVideo)
        );
        let send_only = CHROMIUM_OFFER.replace("a=recvonly", "a=sendonly");
        assert_eq!(
            choose_codec(&send_only, &h264(&[0x67, 0x42, 0xc0, 0x1e])),
            Err(OfferError::NoVideo)
        );
    }

    #[test]
    fn rewrites_or_adds_the_fmtp_line() {
        let answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 108\r\na=rtpmap:108 H264/90000\r\n\
            a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\na=sendonly\r\n";
        let out = rewrite_fmtp(answer, 108, "packetization-mode=1;profile-level-id=42c01e");
        assert_eq!(
            out,
            "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 108\r\na=rtpmap:108 H264/90000\r\n\
             a=fmtp:108 packetization-mode=1;profile-level-id=42c01e\r\na=sendonly\r\n"
        );
        let no_fmtp = "m=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n";
        assert_eq!(
            rewrite_fmtp(no_fmtp, 96, "packetization-mode=1"),
            "m=video 9 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=sendonly\r\n"
        );
    }
}
