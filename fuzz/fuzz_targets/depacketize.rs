//! The reference client's depacketizer (`wsc-rtp-client`, RFC 6184 / RFC 7798) fed a sequence of arbitrary RTP
//! packets, with losses in between. Input: one byte of codec, then packets, each a length byte (0xff: a loss
//! instead) and that many bytes.
//!
//! Checks: nothing panics; every picture it hands out is Annex-B made of non-empty NAL units, flagged a keyframe
//! exactly when one of them is an IDR/IRAP slice; after a start or a loss the first picture is a keyframe; its
//! counters add up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsc_rtp_client::depacketize::{Codec, Depacketizer};

fuzz_target!(|data: &[u8]| {
    let Some((&codec, mut rest)) = data.split_first() else {
        return;
    };
    let codec = if codec & 1 == 0 {
        Codec::H264
    } else {
        Codec::H265
    };
    let mut d = Depacketizer::new(codec);
    let mut synced = false;
    let mut pictures = 0u64;
    let mut markers = 0u64;
    // Whether a packet of the picture being assembled holds a start code pattern: then a NAL unit may too, and
    // the output cannot be split back into NAL units to be checked.
    let mut start_code_inside = false;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0xff {
            d.loss();
            synced = false;
            rest = tail;
            continue;
        }
        let (packet, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        start_code_inside |= packet.windows(3).any(|w| w == [0, 0, 1]);
        let checkable = !start_code_inside;
        if packet.len() >= 12 && packet[0] >> 6 == 2 && packet[1] & 0x80 != 0 {
            markers += 1;
            start_code_inside = false;
        }
        let au = d.push(packet);
        let Some(au) = au else {
            continue;
        };
        pictures += 1;
        assert!(au.annex_b.starts_with(&[0, 0, 0, 1]), "{:02x?}", au.annex_b);
        if checkable {
            let nals = split_annex_b(&au.annex_b);
            assert!(
                nals.iter().all(|n| !n.is_empty()),
                "empty NAL unit in {:02x?}",
                au.annex_b
            );
            let idr = nals.iter().any(|n| match codec {
                Codec::H264 => n[0] & 0x1f == 5,
                Codec::H265 => (16..=21).contains(&((n[0] >> 1) & 0x3f)),
            });
            assert_eq!(au.is_keyframe, idr);
        }
        assert!(
            synced || au.is_keyframe,
            "a picture after a loss that is not a keyframe"
        );
        synced = true;
        assert_eq!(
            au.rtp_timestamp,
            u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
        );
    }
    assert_eq!(d.frames, pictures);
    assert_eq!(
        d.frames + d.dropped_frames,
        markers,
        "every marker ends a picture or a drop"
    );
});

/// The NAL units of the depacketizer's output, which puts a 4-byte start code before each one (none of the
/// picture's packets held a start code pattern).
fn split_annex_b(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 4;
    let mut i = 4;
    while i + 4 <= b.len() {
        if b[i..i + 4] == [0, 0, 0, 1] {
            out.push(&b[start..i]);
            start = i + 4;
            i += 4;
        } else {
            i += 1;
        }
    }
    out.push(&b[start..]);
    out
}
