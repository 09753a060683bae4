//! Packetize, then depacketize: the hub's packetizer (RFC 6184 / RFC 7798, FU fragmentation at the MTU) and the
//! reference client's depacketizer must give back every access unit as it went in. Input: codec and MTU, then
//! frames (keyframe flag and NAL units, with any header byte and any size up to a few kB).
//!
//! Checks: every packet fits the MTU and only the last carries the marker; the depacketizer rebuilds each frame
//! as Annex-B: the parameter sets before a keyframe, then the frame's NAL units that RTP can carry, in order,
//! byte for byte (from the first picture with an IDR/IRAP slice on, as a real client starts).
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use hub::packetize;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use sources::frame::length_prefixed;
use sources::{Codec, Frame, ParameterSets};
use wsc_rtp_client::depacketize::{Codec as ClientCodec, Depacketizer};

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn params(codec: Codec) -> Arc<ParameterSets> {
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

/// NAL unit types RTP can carry as themselves: RFC 6184 §5.2 and RFC 7798 §4.4 take the others for their own
/// packet structures (aggregation, fragmentation) or leave them undefined.
fn carried(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => nal.first().is_some_and(|b| (1..=23).contains(&(b & 0x1f))),
        Codec::H265 => nal.len() >= 2 && (nal[0] >> 1) & 0x3f <= 47,
    }
}

fn is_idr(codec: Codec, nal: &[u8]) -> bool {
    match codec {
        Codec::H264 => nal[0] & 0x1f == 5,
        Codec::H265 => (16..=21).contains(&((nal[0] >> 1) & 0x3f)),
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let codec = if u.arbitrary()? {
        Codec::H265
    } else {
        Codec::H264
    };
    let mtu = usize::from(u.int_in_range(0..=1500u16)?);
    let params = params(codec);
    let mut client = Depacketizer::new(match codec {
        Codec::H264 => ClientCodec::H264,
        Codec::H265 => ClientCodec::H265,
    });
    let mut seq = 0u16;
    let mut synced = false;
    for n in 0..u.int_in_range(1..=8)? {
        let is_keyframe: bool = u.arbitrary()?;
        let mut nals: Vec<Vec<u8>> = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            let len = usize::from(u.int_in_range(0..=4000u16)?);
            let head = u.bytes(len.min(16))?.to_vec();
            // The rest is a counting pattern: cheap for the fuzzer, and a misplaced fragment shows.
            let nal: Vec<u8> = head
                .into_iter()
                .chain((16..len).map(|i| (i * 7) as u8))
                .collect();
            nals.push(nal);
        }
        let frame = Frame {
            codec,
            data: length_prefixed(nals.iter().map(Vec::as_slice)),
            pts_90k: i64::from(n) * 3000,
            wall_ms: i64::from(n) * 33,
            is_keyframe,
            params: params.clone(),
            is_slate: false,
            starts_run: false,
        };
        let payloads = packetize(&frame, mtu);
        let mut expected: Vec<&[u8]> = Vec::new();
        if is_keyframe {
            expected.extend(params.nals().map(|b| &b[..]));
        }
        expected.extend(nals.iter().map(Vec::as_slice).filter(|n| carried(codec, n)));
        if expected.is_empty() {
            assert!(
                payloads.is_empty(),
                "packets for a frame with nothing to carry"
            );
            continue;
        }
        let limit = mtu.max(hub::packetizer::MIN_MTU);
        let mut picture = None;
        for (i, p) in payloads.iter().enumerate() {
            assert!(
                p.payload.len() <= limit,
                "{} bytes over an MTU of {limit}",
                p.payload.len()
            );
            assert_eq!(
                p.marker,
                i + 1 == payloads.len(),
                "marker on packet {i} of {}",
                payloads.len()
            );
            let mut packet = vec![0u8; 12];
            hub::rtp_header(
                (&mut packet[..12]).try_into().unwrap(),
                96,
                p.marker,
                seq,
                n * 3000,
                7,
            );
            seq = seq.wrapping_add(1);
            packet.extend_from_slice(&p.payload);
            let au = client.push(&packet);
            assert!(au.is_none() || p.marker, "a picture before the marker");
            picture = picture.or(au);
        }
        synced |= expected.iter().any(|n| is_idr(codec, n));
        if !synced {
            assert!(picture.is_none(), "a picture before the first keyframe");
            continue;
        }
        let picture = picture.expect("the frame came back");
        let annex_b: Vec<u8> = expected
            .iter()
            .flat_map(|n| [&[0, 0, 0, 1][..], n])
            .flatten()
            .copied()
            .collect();
        assert!(picture.annex_b == annex_b, "frame {n} came back different");
        assert_eq!(
            picture.is_keyframe,
            expected.iter().any(|n| is_idr(codec, n))
        );
        assert_eq!(picture.rtp_timestamp, n * 3000);
    }
    Ok(())
}
