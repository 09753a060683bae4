//! Hub benchmark: cost per frame of packetize-once + fan-out to 0, 1, 100 and 1000 subscribers, for a 4 Mbps,
//! 30 fps H.264 frame mix (a ~60 KB keyframe every 30 frames, ~14 KB P-frames), MTU 1200.
//!
//! Run with `cargo bench -p hub --bench fanout`; prints a markdown table. Under `cargo test` (no `--bench`
//! argument) it runs a few frames only, so it can't rot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hub::{Hub, HubOptions, Subscriber};
use sources::frame::length_prefixed;
use sources::{Codec, Frame, FrameSink, ParameterSets};

fn frames(n: usize) -> Vec<Frame> {
    let params = Arc::new(ParameterSets {
        codec: Codec::H264,
        vps: None,
        sps: Bytes::from_static(&[0x67, 0x64, 0x00, 0x28, 0xac]),
        pps: Bytes::from_static(&[0x68, 0xee, 0x3c, 0x80]),
        width: 1920,
        height: 1080,
        rfc6381_codec: None,
    });
    (0..n)
        .map(|i| {
            let key = i % 30 == 0;
            let mut nal = vec![0x5au8; if key { 60_000 } else { 14_000 }];
            nal[0] = if key { 0x65 } else { 0x41 };
            Frame {
                codec: Codec::H264,
                data: length_prefixed([&nal[..]]),
                pts_90k: i as i64 * 3000,
                wall_ms: i as i64 * 33,
                is_keyframe: key,
                params: params.clone(),
                is_slate: false,
            }
        })
        .collect()
}

struct Row {
    subscribers: usize,
    ns_per_frame: f64,
    packets_per_frame: f64,
}

fn run(subscribers: usize, input: &[Frame]) -> Row {
    let hub = Hub::new("bench", HubOptions::default());
    let mut subs: Vec<Subscriber> = (0..subscribers).map(|_| hub.subscribe()).collect();
    let mut spent = Duration::ZERO;
    let mut packets = 0usize;
    for f in input {
        let f = f.clone();
        let t = Instant::now();
        hub.push_frame(f);
        spent += t.elapsed();
        // Consumers drain outside the timed section: the figure is the hub's cost, not the viewers'.
        for s in &mut subs {
            while let Some(hf) = s.try_recv() {
                packets = hf.packets.len();
            }
        }
    }
    assert_eq!(hub.stats().drops, 0);
    if subscribers == 0 {
        packets = hub::packetize(input.last().expect("frames"), 1200).len();
    }
    Row {
        subscribers,
        ns_per_frame: spent.as_nanos() as f64 / input.len() as f64,
        packets_per_frame: packets as f64,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let input = frames(if full { 900 } else { 30 });
    let avg_packets = input
        .iter()
        .map(|f| hub::packetize(f, 1200).len())
        .sum::<usize>() as f64
        / input.len() as f64;
    println!(
        "| subscribers | ns/frame | ns/frame/subscriber | packets/frame (avg {avg_packets:.1}) |"
    );
    println!("|---:|---:|---:|---:|");
    for n in [0, 1, 100, 1000] {
        let r = run(n, &input);
        let per_sub = if r.subscribers == 0 {
            "—".to_owned()
        } else {
            format!("{:.0}", r.ns_per_frame / r.subscribers as f64)
        };
        println!(
            "| {} | {:.0} | {} | {:.0} |",
            r.subscribers, r.ns_per_frame, per_sub, r.packets_per_frame
        );
    }
}
