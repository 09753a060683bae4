//! Sans-IO RTP packetizer: one access unit in, RTP payloads out, built once per frame and shared by every viewer.
//!
//! H.264 follows RFC 6184 (packetization-mode=1): a NAL unit that fits the MTU travels alone (single NAL unit
//! packet, §5.6), a larger one is split into FU-A fragments (§5.8) whose FU indicator keeps the NAL's F and NRI
//! bits. H.265 follows RFC 7798: single NAL unit packets (§4.4.1) and FUs of type 49 (§4.4.3) with the 2-byte
//! payload header (F, LayerId and TID kept) and a 1-byte FU header. Parameter sets are sent before every keyframe,
//! and the marker bit is set on the last packet of the access unit (RFC 6184 §5.1, RFC 7798 §4.1).

use bytes::{BufMut, Bytes, BytesMut};
use sources::{Codec, Frame};

/// The smallest MTU honoured; anything lower is raised to it so each fragment still carries some payload.
pub const MIN_MTU: usize = 64;

/// One RTP payload and its marker bit; the 12-byte header is written per viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPayload {
    pub payload: Bytes,
    pub marker: bool,
}

const H264_FU_A: u8 = 28;
const H265_FU: u8 = 49;

/// Packetizes one frame; `mtu` is the largest RTP payload (not counting the RTP header).
pub fn packetize(frame: &Frame, mtu: usize) -> Vec<RtpPayload> {
    let mtu = mtu.max(MIN_MTU);
    let mut out = Vec::new();
    if frame.is_keyframe {
        for nal in frame.params.nals() {
            push_nal(&mut out, frame.codec, nal.clone(), mtu);
        }
    }
    for nal in frame.nals() {
        push_nal(&mut out, frame.codec, nal, mtu);
    }
    if let Some(last) = out.last_mut() {
        last.marker = true;
    }
    out
}

fn push_nal(out: &mut Vec<RtpPayload>, codec: Codec, nal: Bytes, mtu: usize) {
    let header_len = match codec {
        Codec::H264 => 1,
        Codec::H265 => 2,
    };
    if nal.len() <= header_len {
        // A NAL unit without payload is malformed; forwarding it would only confuse decoders.
        return;
    }
    if nal.len() <= mtu {
        out.push(RtpPayload {
            payload: nal,
            marker: false,
        });
        return;
    }
    // FU prefix: indicator (H.264, 1 byte) or payload header (H.265, 2 bytes), then the FU header.
    let (prefix, nal_type): (&[u8], u8) = match codec {
        Codec::H264 => (&[(nal[0] & 0xe0) | H264_FU_A], nal[0] & 0x1f),
        Codec::H265 => (
            &[(nal[0] & 0x81) | (H265_FU << 1), nal[1]],
            (nal[0] >> 1) & 0x3f,
        ),
    };
    let body = nal.slice(header_len..);
    let chunk = mtu - prefix.len() - 1;
    let count = body.len().div_ceil(chunk);
    for (i, start) in (0..body.len()).step_by(chunk).enumerate() {
        let end = (start + chunk).min(body.len());
        let mut fu_header = nal_type;
        if i == 0 {
            fu_header |= 0x80;
        }
        if i + 1 == count {
            fu_header |= 0x40;
        }
        let mut p = BytesMut::with_capacity(prefix.len() + 1 + end - start);
        p.put_slice(prefix);
        p.put_u8(fu_header);
        p.put_slice(&body[start..end]);
        out.push(RtpPayload {
            payload: p.freeze(),
            marker: false,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use sources::frame::length_prefixed;
    use sources::ParameterSets;

    use super::*;

    pub(crate) fn params(codec: Codec) -> Arc<ParameterSets> {
        Arc::new(match codec {
            Codec::H264 => ParameterSets {
                codec,
                vps: None,
                sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f, 0xaa]),
                pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
                width: 320,
                height: 240,
                rfc6381_codec: None,
            },
            Codec::H265 => ParameterSets {
                codec,
                vps: Some(Bytes::from_static(&[0x40, 0x01, 0x0c])),
                sps: Bytes::from_static(&[0x42, 0x01, 0x01]),
                pps: Bytes::from_static(&[0x44, 0x01, 0xc1]),
                width: 320,
                height: 240,
                rfc6381_codec: None,
            },
        })
    }

    /// A frame with one picture NAL of `size` bytes (header included).
    pub(crate) fn frame(codec: Codec, keyframe: bool, size: usize, pts_90k: i64) -> Frame {
        let mut nal = vec![0u8; size];
        match codec {
            Codec::H264 => nal[0] = if keyframe { 0x65 } else { 0x41 },
            Codec::H265 => {
                nal[0] = if keyframe { 19 << 1 } else { 1 << 1 };
                nal[1] = 0x01;
            }
        }
        for (i, b) in nal.iter_mut().enumerate().skip(2) {
            *b = i as u8;
        }
        Frame {
            codec,
            data: length_prefixed([&nal[..]]),
            pts_90k,
            wall_ms: pts_90k / 90,
            is_keyframe: keyframe,
            params: params(codec),
            is_slate: false,
        }
    }

    /// Reassembles NAL units from payloads (an independent reading of the RFCs' rules).
    fn depacketize(codec: Codec, payloads: &[RtpPayload]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        for p in payloads {
            let b = &p.payload[..];
            match codec {
                Codec::H264 if b[0] & 0x1f == H264_FU_A => {
                    let (start, end) = (b[1] & 0x80 != 0, b[1] & 0x40 != 0);
                    if start {
                        cur = Some(vec![(b[0] & 0xe0) | (b[1] & 0x1f)]);
                    }
                    cur.as_mut().unwrap().extend_from_slice(&b[2..]);
                    if end {
                        nals.push(cur.take().unwrap());
                    }
                }
                Codec::H265 if (b[0] >> 1) & 0x3f == H265_FU => {
                    let (start, end) = (b[2] & 0x80 != 0, b[2] & 0x40 != 0);
                    if start {
                        cur = Some(vec![(b[0] & 0x81) | ((b[2] & 0x3f) << 1), b[1]]);
                    }
                    cur.as_mut().unwrap().extend_from_slice(&b[3..]);
                    if end {
                        nals.push(cur.take().unwrap());
                    }
                }
                _ => nals.push(b.to_vec()),
            }
        }
        assert!(cur.is_none(), "unterminated fragment");
        nals
    }

    #[test]
    fn small_nal_is_a_zero_copy_single_packet() {
        let f = frame(Codec::H264, false, 100, 0);
        let p = packetize(&f, 1200);
        assert_eq!(p.len(), 1);
        assert!(p[0].marker);
        assert_eq!(p[0].payload, f.nals().next().unwrap());
        assert_eq!(
            p[0].payload.as_ptr(),
            f.data[4..].as_ptr(),
            "single NAL payload shares the frame's bytes"
        );
    }

    #[test]
    fn h264_fu_a_round_trip_and_header_bits() {
        let f = frame(Codec::H264, true, 5000, 0);
        let p = packetize(&f, 1200);
        // SPS, PPS, then FU-A fragments.
        assert_eq!(p[0].payload, f.params.sps);
        assert_eq!(p[1].payload, f.params.pps);
        let fus = &p[2..];
        assert_eq!(fus.len(), 5);
        assert!(p.iter().all(|x| x.payload.len() <= 1200));
        assert!(p.iter().rev().skip(1).all(|x| !x.marker) && p.last().unwrap().marker);
        assert_eq!(fus[0].payload[0], 0x60 | 28, "FU indicator keeps NRI=3");
        assert_eq!(fus[0].payload[1], 0x80 | 5, "start bit and IDR type");
        assert_eq!(fus[4].payload[1], 0x40 | 5, "end bit");
        assert_eq!(fus[2].payload[1], 5, "middle fragment has neither bit");
        let nals = depacketize(Codec::H264, &p);
        assert_eq!(nals[2], f.nals().next().unwrap().to_vec());
    }

    #[test]
    fn h265_fu_round_trip_and_payload_header() {
        let f = frame(Codec::H265, true, 3000, 0);
        let p = packetize(&f, 1000);
        assert_eq!(p.len(), 3 + 4, "VPS, SPS, PPS, then 4 fragments");
        let fu = &p[3].payload;
        assert_eq!((fu[0] >> 1) & 0x3f, 49);
        assert_eq!(fu[1], 0x01, "TID kept");
        assert_eq!(fu[2], 0x80 | 19, "start bit and IDR_W_RADL type");
        assert!(p.iter().all(|x| x.payload.len() <= 1000));
        let nals = depacketize(Codec::H265, &p);
        assert_eq!(nals.len(), 4);
        assert_eq!(nals[3], f.nals().next().unwrap().to_vec());
    }

    #[test]
    fn parameter_sets_only_before_keyframes() {
        let p = packetize(&frame(Codec::H264, false, 3000, 0), 1200);
        assert!(p
            .iter()
            .all(|x| x.payload[0] & 0x1f != 7 && x.payload[0] & 0x1f != 8));
    }

    #[test]
    fn nonsense_does_not_panic() {
        let mut f = frame(Codec::H264, true, 2, 0);
        assert!(!packetize(&f, 0).is_empty(), "tiny MTU is clamped");
        f.data = length_prefixed([&[][..], &[0x41][..]]);
        f.is_keyframe = false;
        assert!(
            packetize(&f, 1200).is_empty(),
            "empty and header-only NALs are skipped"
        );
        f.data = Bytes::from_static(&[0, 0, 0, 200, 1]);
        assert!(packetize(&f, 1200).is_empty(), "truncated length prefix");
        let big = frame(Codec::H265, false, 10_000, 0);
        assert!(packetize(&big, 1)
            .iter()
            .all(|x| x.payload.len() <= MIN_MTU));
    }
}
