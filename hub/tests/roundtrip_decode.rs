//! Round trip through an independent depacketizer: real H.264/H.265 from GStreamer's encoders → the hub's
//! packetizer (small MTU, so FU-A / FU fragmentation is exercised) → RTP headers → GStreamer's rtph264depay /
//! rtph265depay → libav decoder. Every picture must decode at the right size.

use hub::{packetize, rtp_header};
use sources::input::TestPatternOptions;
use sources::Codec;
use testdata::decode::{decode_rtp, DecodeCodec};

fn round_trip(codec: Codec) {
    let opts = TestPatternOptions {
        codec,
        width: 320,
        height: 240,
        fps: 30,
        gop: 15,
        bitrate_kbps: 800,
    };
    let frames = sources::testpattern::capture_frames(&opts, 60).unwrap();
    let mut packets = Vec::new();
    let mut seq = 0u16;
    let mut fragmented = 0;
    for f in &frames {
        let payloads = packetize(f, 500);
        fragmented += payloads.iter().filter(|p| p.payload.len() == 500).count();
        for p in payloads {
            let mut h = [0u8; 12];
            rtp_header(&mut h, 96, p.marker, seq, f.pts_90k as u32, 0x1234_5678);
            seq = seq.wrapping_add(1);
            let mut pkt = h.to_vec();
            pkt.extend_from_slice(&p.payload);
            packets.push(pkt);
        }
    }
    assert!(fragmented > 10, "the MTU forced fragmentation");
    let dc = match codec {
        Codec::H264 => DecodeCodec::H264,
        Codec::H265 => DecodeCodec::H265,
    };
    let (decoded, w, h) = decode_rtp(dc, &packets).unwrap();
    assert!(
        decoded >= frames.len() - 1,
        "{codec:?}: decoded {decoded} of {}",
        frames.len()
    );
    assert_eq!((w, h), (320, 240));
}

#[test]
fn h264_round_trip_decodes() {
    round_trip(Codec::H264);
}

#[test]
fn h265_round_trip_decodes() {
    round_trip(Codec::H265);
}
