//! Round trip through an independent depacketizer and decoder: real H.264/H.265 access units from GStreamer's
//! x264enc/x265enc → `Frame`s (Annex-B split here, parameter sets apart, length-prefixed NAL units) → the hub
//! (packetized once at MTU 500, so FU-A / FU fragmentation is exercised) → RTP headers from [`rtp_header`] →
//! GStreamer's rtph264depay / rtph265depay → libav decoder (the shared `testdata::decode` pipeline). At least 55 of
//! the 60 pictures must decode, at the encoded size.

use std::sync::Arc;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use hub::{rtp_header, Hub, HubOptions};
use sources::frame::{h264_nal_type, h265_nal_type, length_prefixed};
use sources::{Codec, Frame, FrameSink, ParameterSets};
use testdata::decode::{decode_rtp, DecodeCodec};

const FRAMES: usize = 60;
const MTU: usize = 500;

/// One encoded access unit: Annex-B bytes, presentation time, picture size from the caps.
struct EncodedAu {
    annex_b: Vec<u8>,
    pts_ns: u64,
    width: u32,
    height: u32,
}

fn encode(codec: Codec) -> Vec<EncodedAu> {
    gst::init().unwrap();
    let enc = match codec {
        Codec::H264 => {
            "x264enc key-int-max=15 tune=zerolatency ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au"
        }
        Codec::H265 => {
            "x265enc option-string=open-gop=0:repeat-headers=1 key-int-max=15 ! h265parse config-interval=-1 \
             ! video/x-h265,stream-format=byte-stream,alignment=au"
        }
    };
    let launch = format!(
        "videotestsrc num-buffers={FRAMES} ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! {enc} ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(20)) {
        let s = sample.caps().unwrap().structure(0).unwrap().to_owned();
        let buf = sample.buffer().unwrap();
        out.push(EncodedAu {
            annex_b: buf.map_readable().unwrap().to_vec(),
            pts_ns: buf.pts().map_or(0, |t| t.nseconds()),
            width: s.get::<i32>("width").unwrap() as u32,
            height: s.get::<i32>("height").unwrap() as u32,
        });
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// Splits Annex-B into NAL units (3- or 4-byte start codes; trailing zero bytes dropped).
fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).map_or(data.len(), |&next| next - 3);
            let mut nal = &data[s..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            nal
        })
        .filter(|nal| !nal.is_empty())
        .collect()
}

/// Builds frames the way the ingest does: parameter sets apart (one `Arc` per configuration), access unit
/// delimiters dropped, everything else length-prefixed.
fn frames(codec: Codec, aus: &[EncodedAu]) -> Vec<Frame> {
    let mut params: Option<Arc<ParameterSets>> = None;
    let mut out = Vec::new();
    for au in aus {
        let nals = split_annex_b(&au.annex_b);
        let (mut vps, mut sps, mut pps) = (None, None, None);
        let mut picture = Vec::new();
        let mut keyframe = false;
        for nal in nals {
            let copy = || Some(Bytes::copy_from_slice(nal));
            match codec {
                Codec::H264 => match h264_nal_type(nal) {
                    7 => sps = copy(),
                    8 => pps = copy(),
                    9 => {}
                    t => {
                        keyframe |= t == 5;
                        picture.push(nal);
                    }
                },
                Codec::H265 => match h265_nal_type(nal) {
                    32 => vps = copy(),
                    33 => sps = copy(),
                    34 => pps = copy(),
                    35 => {}
                    t => {
                        keyframe |= (16..=21).contains(&t);
                        picture.push(nal);
                    }
                },
            }
        }
        if let (Some(sps), Some(pps)) = (sps, pps) {
            let p = ParameterSets {
                codec,
                vps,
                sps,
                pps,
                width: au.width,
                height: au.height,
                rfc6381_codec: None,
            };
            if params.as_deref() != Some(&p) {
                params = Some(Arc::new(p));
            }
        }
        let params = params
            .clone()
            .expect("parameter sets before the first picture");
        let pts_90k = (au.pts_ns as i64) * 9 / 100_000;
        out.push(Frame {
            codec,
            data: length_prefixed(picture),
            pts_90k,
            wall_ms: pts_90k / 90,
            is_keyframe: keyframe,
            params,
            is_slate: false,
            starts_run: false,
        });
    }
    out
}

fn round_trip(codec: Codec) {
    let aus = encode(codec);
    assert_eq!(aus.len(), FRAMES, "{codec:?}: encoder output");
    let frames = frames(codec, &aus);
    assert!(frames[0].is_keyframe);
    assert_eq!(frames.iter().filter(|f| f.is_keyframe).count(), FRAMES / 15);

    let hub = Hub::new(
        "roundtrip",
        HubOptions {
            mtu: MTU,
            ..Default::default()
        },
    );
    let mut sub = hub.subscribe();
    hub.parameters_changed(frames[0].params.clone());
    for f in &frames {
        hub.push_frame(f.clone());
    }

    let mut packets = Vec::new();
    let mut seq = 0xfff0u16; // wraps during the test
    let mut fragments = 0;
    let mut received = 0;
    while let Some(hf) = sub.try_recv() {
        received += 1;
        for p in &hf.packets {
            assert!(p.payload.len() <= MTU);
            let fu = match codec {
                Codec::H264 => h264_nal_type(&p.payload) == 28,
                Codec::H265 => h265_nal_type(&p.payload) == 49,
            };
            fragments += usize::from(fu);
            let mut h = [0u8; 12];
            rtp_header(
                &mut h,
                96,
                p.marker,
                seq,
                hf.frame.pts_90k as u32,
                0x1234_5678,
            );
            seq = seq.wrapping_add(1);
            let mut pkt = h.to_vec();
            pkt.extend_from_slice(&p.payload);
            packets.push(pkt);
        }
    }
    assert_eq!(received, FRAMES);
    assert!(
        fragments > 20,
        "{codec:?}: the MTU forced fragmentation ({fragments})"
    );

    let dc = match codec {
        Codec::H264 => DecodeCodec::H264,
        Codec::H265 => DecodeCodec::H265,
    };
    let (decoded, w, h) = decode_rtp(dc, &packets).unwrap();
    eprintln!(
        "{codec:?}: decoded {decoded} of {FRAMES}, {} packets, {fragments} fragments",
        packets.len()
    );
    assert!(decoded >= 55, "{codec:?}: decoded {decoded} of {FRAMES}");
    assert_eq!((w, h), (320, 240), "{codec:?}");
}

#[test]
fn h264_round_trip_decodes() {
    round_trip(Codec::H264);
}

#[test]
fn h265_round_trip_decodes() {
    round_trip(Codec::H265);
}
