//! Sans-IO RTP packetizer: one access unit in, RTP payloads out, built once per frame and shared by every viewer.
//!
//! H.264 follows RFC 6184 (packetization-mode=1): a NAL unit that fits the MTU travels alone (single NAL unit
//! packet, §5.6), a larger one is split into FU-A fragments (§5.8) whose FU indicator keeps the NAL's F and NRI
//! bits. H.265 follows RFC 7798: single NAL unit packets (§4.4.1) and FUs of type 49 (§4.4.3) with the 2-byte
//! payload header (F, LayerId and TID kept) and a 1-byte FU header. Parameter sets are sent before every keyframe,
//! and the marker bit is set on the last packet of the access unit only (RFC 6184 §5.1, RFC 7798 §4.1).
//!
//! Single NAL unit payloads are zero-copy slices of `Frame::data`; the fragments of one NAL unit share a single
//! allocation. Aggregation packets (STAP-A, AP) are not produced: they save little at camera frame sizes.

use bytes::{BufMut, Bytes, BytesMut};
use sources::{Codec, Frame};

/// The smallest MTU honoured; anything lower is raised to it so each fragment still carries some payload.
pub const MIN_MTU: usize = 64;

/// The default largest RTP payload: leaves room for IP/UDP/RTP headers and a TURN or VPN wrapper in a 1500-byte
/// Ethernet MTU.
pub const DEFAULT_MTU: usize = 1200;

/// One RTP payload and its marker bit; the 12-byte header is written per viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPayload {
    pub payload: Bytes,
    pub marker: bool,
}

/// RFC 6184 §5.8 FU-A NAL unit type.
const H264_FU_A: u8 = 28;
/// RFC 7798 §4.4.3 FU payload header type.
const H265_FU: u8 = 49;

/// Whether RTP can carry this NAL unit: RFC 6184 §5.2 takes H.264 types 24–31 for its aggregation and fragment
/// packets and leaves type 0 out (both unspecified in H.264 itself), RFC 7798 §4.4 takes H.265 types 48–50 and
/// leaves 51–63 out. A camera's private NAL units of those types, sent as they are, would be read by every viewer
/// as a STAP-A, FU-A, AP or FU and break the picture, so they are dropped.
fn rtp_can_carry(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => (1..=23).contains(&(nal[0] & 0x1f)),
        Codec::H265 => (nal[0] >> 1) & 0x3f <= 47,
    }
}

/// Packetizes one frame; `mtu` is the largest RTP payload (not counting the RTP header), raised to [`MIN_MTU`].
///
/// Empty NAL units (and, for H.265, ones shorter than the 2-byte header) and NAL unit types RTP has no single-NAL
/// packet for are skipped; a truncated length prefix
/// ends the frame's NAL units, as in [`Frame::nals`]. A frame with nothing to send gives an empty vector.
pub fn packetize(frame: &Frame, mtu: usize) -> Vec<RtpPayload> {
    let mtu = mtu.max(MIN_MTU);
    let params = if frame.is_keyframe { 3 } else { 0 };
    let mut out = Vec::with_capacity(params + 1 + frame.data.len() / (mtu - 3));
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
    if nal.len() < header_len {
        // Malformed; forwarding it would only confuse decoders. Header-only NAL units (end of sequence or stream)
        // are valid and travel as single NAL unit packets.
        return;
    }
    if !rtp_can_carry(codec, &nal) {
        return;
    }
    if nal.len() <= mtu {
        out.push(RtpPayload {
            payload: nal,
            marker: false,
        });
        return;
    }
    // FU prefix: indicator (H.264, 1 byte) or payload header (H.265, 2 bytes), then the 1-byte FU header.
    let (prefix, nal_type): (&[u8], u8) = match codec {
        // F and NRI from the NAL header, type 28.
        Codec::H264 => (&[(nal[0] & 0xe0) | H264_FU_A], nal[0] & 0x1f),
        // F and the LayerId high bit from the first byte, type 49; LayerId low bits and TID unchanged.
        Codec::H265 => (
            &[(nal[0] & 0x81) | (H265_FU << 1), nal[1]],
            (nal[0] >> 1) & 0x3f,
        ),
    };
    let body = &nal[header_len..];
    let chunk = mtu - prefix.len() - 1;
    let count = body.len().div_ceil(chunk);
    // One allocation for every fragment of this NAL unit; each payload is a slice of it.
    let mut buf = BytesMut::with_capacity(body.len() + count * (prefix.len() + 1));
    for (i, piece) in body.chunks(chunk).enumerate() {
        let mut fu_header = nal_type;
        if i == 0 {
            fu_header |= 0x80;
        }
        if i + 1 == count {
            fu_header |= 0x40;
        }
        buf.put_slice(prefix);
        buf.put_u8(fu_header);
        buf.put_slice(piece);
        out.push(RtpPayload {
            payload: buf.split().freeze(),
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

    /// A picture NAL unit of `size` bytes (header included): IDR / non-IDR slice (H.264) or IDR_W_RADL / TRAIL_R
    /// (H.265), with a counting pattern as payload.
    pub(crate) fn picture_nal(codec: Codec, keyframe: bool, size: usize) -> Vec<u8> {
        let mut nal: Vec<u8> = (0..size).map(|i| i as u8).collect();
        match codec {
            Codec::H264 => nal[0] = if keyframe { 0x65 } else { 0x41 },
            Codec::H265 => {
                nal[0] = if keyframe { 19 << 1 } else { 1 << 1 };
                nal[1] = 0x01;
            }
        }
        nal
    }

    /// A frame of the given NAL units.
    pub(crate) fn frame_of(codec: Codec, keyframe: bool, nals: &[&[u8]], pts_90k: i64) -> Frame {
        Frame {
            codec,
            data: length_prefixed(nals.iter().copied()),
            pts_90k,
            wall_ms: pts_90k / 90,
            is_keyframe: keyframe,
            params: params(codec),
            is_slate: false,
            starts_run: false,
        }
    }

    /// A frame with one picture NAL of `size` bytes (header included).
    pub(crate) fn frame(codec: Codec, keyframe: bool, size: usize, pts_90k: i64) -> Frame {
        frame_of(
            codec,
            keyframe,
            &[&picture_nal(codec, keyframe, size)],
            pts_90k,
        )
    }

    /// Reassembles NAL units from payloads (an independent reading of the RFCs' rules), checking fragment order.
    fn depacketize(codec: Codec, payloads: &[RtpPayload]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        for p in payloads {
            let b = &p.payload[..];
            let (fu, hdr_len) = match codec {
                Codec::H264 => (b[0] & 0x1f == H264_FU_A, 1),
                Codec::H265 => ((b[0] >> 1) & 0x3f == H265_FU, 2),
            };
            if !fu {
                assert!(cur.is_none(), "single NAL inside a fragmented one");
                nals.push(b.to_vec());
                continue;
            }
            let fu_header = b[hdr_len];
            let (start, end, ty) = (
                fu_header & 0x80 != 0,
                fu_header & 0x40 != 0,
                fu_header & 0x3f,
            );
            assert!(!(start && end), "S and E in one fragment");
            if start {
                assert!(cur.is_none(), "start inside a fragmented NAL");
                cur = Some(match codec {
                    Codec::H264 => vec![(b[0] & 0xe0) | (ty & 0x1f)],
                    Codec::H265 => vec![(b[0] & 0x81) | (ty << 1), b[1]],
                });
            }
            cur.as_mut()
                .expect("fragment without start")
                .extend_from_slice(&b[hdr_len + 1..]);
            if end {
                nals.push(cur.take().unwrap());
            }
        }
        assert!(cur.is_none(), "unterminated fragment");
        nals
    }

    fn check_marker(p: &[RtpPayload]) {
        let markers: Vec<usize> = (0..p.len()).filter(|&i| p[i].marker).collect();
        assert_eq!(markers, vec![p.len() - 1], "marker on the last packet only");
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
    fn nal_of_exactly_the_mtu_is_not_fragmented() {
        for codec in [Codec::H264, Codec::H265] {
            let p = packetize(&frame(codec, false, 500, 0), 500);
            assert_eq!(p.len(), 1, "{codec:?}");
            let p = packetize(&frame(codec, false, 501, 0), 500);
            assert_eq!(p.len(), 2, "{codec:?}");
        }
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
        check_marker(&p);
        assert_eq!(fus[0].payload[0], 0x60 | 28, "FU indicator keeps NRI=3");
        assert_eq!(fus[0].payload[1], 0x80 | 5, "start bit and IDR type");
        assert_eq!(fus[4].payload[1], 0x40 | 5, "end bit");
        assert_eq!(fus[2].payload[1], 5, "middle fragment has neither bit");
        let nals = depacketize(Codec::H264, &p);
        assert_eq!(nals[2], f.nals().next().unwrap().to_vec());
    }

    #[test]
    fn h264_fu_indicator_keeps_f_and_nri() {
        // F=1 (forbidden_zero_bit flagged by a lossy hop), NRI=2, type 1.
        let mut nal = picture_nal(Codec::H264, false, 300);
        nal[0] = 0x80 | 0x40 | 1;
        let f = frame_of(Codec::H264, false, &[&nal], 0);
        let p = packetize(&f, MIN_MTU);
        assert!(p.len() > 2);
        for x in &p {
            assert_eq!(x.payload[0], 0x80 | 0x40 | 28);
            assert_eq!(x.payload[1] & 0x1f, 1);
            assert_eq!(x.payload[1] & 0x20, 0, "reserved bit clear");
        }
        assert_eq!(depacketize(Codec::H264, &p), vec![nal]);
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
        assert_eq!(p[4].payload[2], 19, "middle fragment");
        assert_eq!(p[6].payload[2], 0x40 | 19, "end bit");
        assert!(p.iter().all(|x| x.payload.len() <= 1000));
        check_marker(&p);
        let nals = depacketize(Codec::H265, &p);
        assert_eq!(nals.len(), 4);
        assert_eq!(nals[3], f.nals().next().unwrap().to_vec());
    }

    #[test]
    fn h265_payload_header_keeps_f_layer_id_and_tid() {
        // F=1, type 1, LayerId = 0b100101 (high bit in byte 0, low five bits in byte 1), TID = 3.
        let mut nal = picture_nal(Codec::H265, false, 300);
        nal[0] = 0x80 | (1 << 1) | 1;
        nal[1] = (0b00101 << 3) | 3;
        let f = frame_of(Codec::H265, false, &[&nal], 0);
        let p = packetize(&f, MIN_MTU);
        assert!(p.len() > 2);
        for x in &p {
            assert_eq!(x.payload[0], 0x80 | (49 << 1) | 1);
            assert_eq!(x.payload[1], nal[1]);
            assert_eq!(x.payload[2] & 0x3f, 1);
        }
        assert_eq!(depacketize(Codec::H265, &p), vec![nal]);
    }

    #[test]
    fn every_payload_fits_and_reassembles_for_many_sizes_and_mtus() {
        for codec in [Codec::H264, Codec::H265] {
            for mtu in [0, 63, 64, 65, 100, 500, 1200, 1500] {
                for keyframe in [false, true] {
                    let sizes = [2, 3, 63, 64, 65, 66, 127, 128, 129, 1199, 1200, 1201, 4097];
                    let nals: Vec<Vec<u8>> = sizes
                        .iter()
                        .map(|&s| picture_nal(codec, keyframe, s))
                        .collect();
                    let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
                    let f = frame_of(codec, keyframe, &refs, 0);
                    let p = packetize(&f, mtu);
                    let limit = mtu.max(MIN_MTU);
                    assert!(
                        p.iter().all(|x| x.payload.len() <= limit),
                        "{codec:?} {mtu}"
                    );
                    check_marker(&p);
                    let mut want: Vec<Vec<u8>> = Vec::new();
                    if keyframe {
                        want.extend(f.params.nals().map(|n| n.to_vec()));
                    }
                    want.extend(nals);
                    assert_eq!(depacketize(codec, &p), want, "{codec:?} {mtu}");
                }
            }
        }
    }

    #[test]
    fn parameter_sets_only_before_keyframes() {
        let is_param = |codec: Codec, b: &[u8]| match codec {
            Codec::H264 => matches!(b[0] & 0x1f, 7 | 8),
            Codec::H265 => matches!((b[0] >> 1) & 0x3f, 32..=34),
        };
        for codec in [Codec::H264, Codec::H265] {
            let p = packetize(&frame(codec, false, 3000, 0), 1200);
            assert!(p.iter().all(|x| !is_param(codec, &x.payload)), "{codec:?}");
            let p = packetize(&frame(codec, true, 3000, 0), 1200);
            let n = if codec == Codec::H265 { 3 } else { 2 };
            assert!(
                p[..n].iter().all(|x| is_param(codec, &x.payload)),
                "{codec:?}"
            );
            assert!(
                p[n..].iter().all(|x| !is_param(codec, &x.payload)),
                "{codec:?}"
            );
            if codec == Codec::H265 {
                let f = frame(codec, true, 10, 0);
                let order: Vec<_> = packetize(&f, 1200)
                    .iter()
                    .take(3)
                    .map(|x| x.payload.clone())
                    .collect();
                assert_eq!(
                    order,
                    f.params.nals().cloned().collect::<Vec<_>>(),
                    "VPS, SPS, PPS"
                );
            }
        }
    }

    #[test]
    fn header_only_nal_units_are_kept() {
        // H.264 end of sequence (type 10) and H.265 EOS_NUT (type 36) carry no payload and are valid.
        let f = frame_of(Codec::H264, false, &[&[0x0a]], 0);
        assert_eq!(packetize(&f, 1200)[0].payload[..], [0x0a]);
        let f = frame_of(Codec::H265, false, &[&[36 << 1, 0x01]], 0);
        assert_eq!(packetize(&f, 1200)[0].payload[..], [36 << 1, 0x01]);
    }

    /// Found by the `packetize_round_trip` fuzz target: a NAL unit of type 28 went out as a single NAL unit packet,
    /// which the viewer read as an FU-A.
    #[test]
    fn nal_types_rtp_cannot_carry_are_dropped() {
        for (codec, header) in [
            (Codec::H264, &[0x00, 0xaa][..]),
            (Codec::H264, &[0x18, 0xaa]),
            (Codec::H264, &[0x7c, 0xaa]),
            (Codec::H264, &[0x1f, 0xaa]),
            (Codec::H265, &[48 << 1, 0x01, 0xaa]),
            (Codec::H265, &[49 << 1, 0x01, 0xaa]),
            (Codec::H265, &[63 << 1, 0x01, 0xaa]),
        ] {
            let f = frame_of(codec, false, &[header, &picture_nal(codec, false, 3000)], 0);
            let p = packetize(&f, 1200);
            assert_eq!(p.len(), 3, "{header:02x?}: the picture's three FUs only");
            assert_eq!(
                depacketize(codec, &p),
                vec![picture_nal(codec, false, 3000)]
            );
        }
        // The last carried types of each codec still go.
        let f = frame_of(Codec::H264, false, &[&[0x17, 1], &[0x01, 1]], 0);
        assert_eq!(packetize(&f, 1200).len(), 2);
        let f = frame_of(Codec::H265, false, &[&[47 << 1, 1, 1], &[0, 1, 1]], 0);
        assert_eq!(packetize(&f, 1200).len(), 2);
    }

    #[test]
    fn nonsense_does_not_panic() {
        let mut f = frame(Codec::H264, true, 2, 0);
        assert!(!packetize(&f, 0).is_empty(), "tiny MTU is clamped");
        f.data = length_prefixed([&[][..]]);
        f.is_keyframe = false;
        assert!(packetize(&f, 1200).is_empty(), "empty NALs are skipped");
        f.data = Bytes::new();
        assert!(packetize(&f, 1200).is_empty(), "empty frame");
        f.data = Bytes::from_static(&[0, 0, 0, 200, 1]);
        assert!(packetize(&f, 1200).is_empty(), "truncated length prefix");
        let f = frame_of(Codec::H265, false, &[&[2]], 0);
        assert!(
            packetize(&f, 1200).is_empty(),
            "H.265 NAL shorter than its header"
        );
        let big = frame(Codec::H265, false, 10_000, 0);
        assert!(packetize(&big, 1)
            .iter()
            .all(|x| x.payload.len() <= MIN_MTU));
        let f = frame(Codec::H264, false, 10_000, 0);
        assert!(!packetize(&f, usize::MAX).is_empty(), "huge MTU");
    }
}
