//! Hub benchmark: cost per frame of packetize-once + fan-out to 0, 1, 100 and 1000 subscribers, for a 4 Mbps,
//! 30 fps H.264 frame mix (a ~60 KB keyframe every 30 frames, ~14 KB P-frames), MTU 1200. Plain `std` timing.
//!
//! Run with `cargo bench -p hub --bench fanout`; prints a markdown table. The timed section is `Hub::push_frame`
//! (packetize, GOP cache, counters, one `try_send` per subscriber); subscribers drain with `try_recv` outside it,
//! so no queue fills; each row is the median of 5 runs. Under `cargo test --all-targets` (no `--bench` argument) it runs a few frames only, so it
//! can't rot.

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
            // Sizes vary a little, as an encoder's do.
            let size = if key {
                60_000
            } else {
                13_000 + (i * 397) % 2_000
            };
            let mut nal = vec![0x5au8; size];
            nal[0] = if key { 0x65 } else { 0x41 };
            Frame {
                codec: Codec::H264,
                data: length_prefixed([&nal[..]]),
                pts_90k: i as i64 * 3000,
                wall_ms: i as i64 * 100 / 3,
                is_keyframe: key,
                params: params.clone(),
                is_slate: false,
                starts_run: false,
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
        for (i, s) in subs.iter_mut().enumerate() {
            while let Some(hf) = s.try_recv() {
                if i == 0 {
                    packets += hf.packets.len();
                }
            }
        }
    }
    assert_eq!(hub.stats().drops, 0, "a queue filled");
    if subscribers == 0 {
        packets = input.iter().map(|f| hub::packetize(f, 1200).len()).sum();
    }
    Row {
        subscribers,
        ns_per_frame: spent.as_nanos() as f64 / input.len() as f64,
        packets_per_frame: packets as f64 / input.len() as f64,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let input = frames(if full { 900 } else { 30 });
    let bytes: usize = input.iter().map(|f| f.data.len()).sum();
    println!(
        "{} frames, {:.2} Mbit/s at 30 fps, MTU 1200\n",
        input.len(),
        bytes as f64 * 8.0 * 30.0 / input.len() as f64 / 1e6
    );
    // Warm-up: page in the allocator and the code.
    run(10, &input);
    println!(
        "| subscribers | ns/frame | ns/frame/subscriber | marginal ns/subscriber | packets/frame |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let mut base = None;
    for n in [0, 1, 100, 1000] {
        // The median of several runs, against noisy neighbours.
        let mut runs: Vec<Row> = (0..if full { 5 } else { 1 })
            .map(|_| run(n, &input))
            .collect();
        runs.sort_by(|a, b| a.ns_per_frame.total_cmp(&b.ns_per_frame));
        let r = runs.swap_remove(runs.len() / 2);
        let (per_sub, marginal) = if r.subscribers == 0 {
            base = Some(r.ns_per_frame);
            ("—".to_owned(), "—".to_owned())
        } else {
            (
                format!("{:.0}", r.ns_per_frame / r.subscribers as f64),
                format!(
                    "{:.0}",
                    (r.ns_per_frame - base.unwrap_or(0.0)) / r.subscribers as f64
                ),
            )
        };
        println!(
            "| {} | {:.0} | {} | {} | {:.1} |",
            r.subscribers, r.ns_per_frame, per_sub, marginal, r.packets_per_frame
        );
    }
}
