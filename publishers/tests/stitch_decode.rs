//! Stitching checked by a real decoder: two unrelated inputs (separate encoder runs, unrelated clocks, the second
//! joined mid-GOP) played through one viewer core — live first, then a seek into "recorded" frames paced by the
//! core — form one RTP stream that GStreamer's rtph264depay and avdec_h264 decode from end to end, with gap-free
//! sequence numbers and forward-moving timestamps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::{Hub, HubFrame, HubOptions};
use publishers::viewer::{Command, StartAt, ViewerCore, ViewerOptions, ViewerOutput};
use publishers::OutPacket;
use sources::input::TestPatternOptions;
use sources::{Codec, FrameSink};
use testdata::decode::{decode_rtp, DecodeCodec};

fn hub_frames(width: u32, height: u32, count: u32, pts_offset: i64) -> Vec<Arc<HubFrame>> {
    let opts = TestPatternOptions {
        codec: Codec::H264,
        width,
        height,
        fps: 25,
        gop: 10,
        bitrate_kbps: 500,
    };
    let hub = Hub::new("t", HubOptions::default());
    let mut sub = hub.subscribe();
    for mut f in sources::testpattern::capture_frames(&opts, count).unwrap() {
        f.pts_90k += pts_offset;
        hub.push_frame(f);
    }
    std::iter::from_fn(|| sub.try_recv()).collect()
}

#[test]
fn two_inputs_stitched_into_one_stream_decode() {
    let first = hub_frames(320, 240, 30, 0);
    // The second input starts 4 frames into its GOP: those can't be sent until its next keyframe.
    let second: Vec<_> = hub_frames(320, 240, 34, 50_000_000)
        .into_iter()
        .skip(4)
        .collect();
    let mut now = Instant::now();
    let mut core = ViewerCore::new(
        now,
        ViewerOptions::new(0xdead_beef, 96, 60_000),
        StartAt::Live,
    );
    core.set_ready(now);
    let mut packets: Vec<OutPacket> = Vec::new();
    let mut written = 0;
    let drain = |core: &mut ViewerCore, packets: &mut Vec<OutPacket>, written: &mut usize| {
        while let Some(o) = core.poll_output() {
            if let ViewerOutput::Frame(f) = o {
                for p in f.packets() {
                    *written += usize::from(p.marker);
                    packets.push(p);
                }
            }
        }
    };
    for f in &first {
        core.handle_frame(now, core.generation(), f.clone());
        drain(&mut core, &mut packets, &mut written);
        now += Duration::from_millis(40);
    }
    core.handle_command(now, Command::Seek { position_ms: 1_000 })
        .unwrap();
    for f in &second {
        while !core.wants_frames() {
            now += Duration::from_millis(10);
            core.handle_timeout(now);
            drain(&mut core, &mut packets, &mut written);
        }
        core.handle_frame(now, core.generation(), f.clone());
        drain(&mut core, &mut packets, &mut written);
    }
    for _ in 0..300 {
        now += Duration::from_millis(10);
        core.handle_timeout(now);
        drain(&mut core, &mut packets, &mut written);
    }
    assert_eq!(
        written,
        30 + 30 - 6,
        "frames up to the second input's next keyframe are held back"
    );
    let packets: Vec<bytes::Bytes> = packets
        .iter()
        .map(|p| p.to_bytes(96, 0xdead_beef))
        .collect();
    let seqs: Vec<u16> = packets
        .iter()
        .map(|p| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "no sequence gap"
    );
    let ts: Vec<u32> = packets
        .iter()
        .map(|p| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
        .collect();
    assert!(
        ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) < 90_000),
        "timestamps move forward, by less than a second"
    );
    let raw: Vec<Vec<u8>> = packets.iter().map(|p| p.to_vec()).collect();
    let (decoded, w, h) = decode_rtp(DecodeCodec::H264, &raw).unwrap();
    assert!(decoded >= written - 1, "decoded {decoded} of {written}");
    assert_eq!((w, h), (320, 240));
}
