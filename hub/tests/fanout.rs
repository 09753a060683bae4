//! Fan-out behaviour through the public API only: order, GOP start for late subscribers, isolation of a slow
//! subscriber, keyframe resync, close and unsubscribe, slate during outages, media-time rates.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hub::{Hub, HubFrame, HubOptions, Subscriber};
use sources::frame::length_prefixed;
use sources::{Codec, Frame, FrameSink, ParameterSets};

fn params(width: u32) -> Arc<ParameterSets> {
    Arc::new(ParameterSets {
        codec: Codec::H264,
        vps: None,
        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1f, 0xaa]),
        pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
        width,
        height: 240,
        rfc6381_codec: None,
    })
}

/// Frame `i` of a 30 fps H.264 stream with a keyframe every `gop` frames: IDR (type 5) or non-IDR (type 1) slice
/// of `size` bytes.
fn frame(i: i64, gop: i64, size: usize) -> Frame {
    let key = i % gop == 0;
    let mut nal = vec![0x5au8; size];
    nal[0] = if key { 0x65 } else { 0x41 };
    Frame {
        codec: Codec::H264,
        data: length_prefixed([&nal[..]]),
        pts_90k: i * 3000,
        wall_ms: 1_700_000_000_000 + i * 100 / 3,
        is_keyframe: key,
        params: params(320),
        is_slate: false,
        starts_run: false,
    }
}

fn hub(queue_frames: usize) -> Hub {
    Hub::new(
        "cam",
        HubOptions {
            queue_frames,
            ..Default::default()
        },
    )
}

fn push(h: &Hub, range: std::ops::Range<i64>, gop: i64) {
    for i in range {
        h.push_frame(frame(i, gop, 300));
    }
}

fn drain(s: &mut Subscriber) -> Vec<Arc<HubFrame>> {
    std::iter::from_fn(|| s.try_recv()).collect()
}

fn indexes(frames: &[Arc<HubFrame>]) -> Vec<u64> {
    frames.iter().map(|f| f.index).collect()
}

#[test]
fn every_subscriber_gets_every_frame_in_order_packetized_once() {
    let h = hub(64);
    let mut subs: Vec<_> = (0..3).map(|_| h.subscribe()).collect();
    push(&h, 0..40, 15);
    let got: Vec<_> = subs.iter_mut().map(drain).collect();
    for g in &got {
        assert_eq!(indexes(g), (0..40).collect::<Vec<_>>());
    }
    for ((a, b), c) in got[0].iter().zip(&got[1]).zip(&got[2]) {
        assert!(Arc::ptr_eq(a, b) && Arc::ptr_eq(a, c), "one shared frame");
    }
    assert_eq!(h.stats().subscribers, 3);
    assert_eq!(h.stats().drops, 0);
}

#[tokio::test]
async fn late_subscriber_starts_at_a_keyframe_with_parameter_sets() {
    let h = hub(256);
    push(&h, 0..37, 15);
    let mut s = h.subscribe();
    let first = s.recv().await.unwrap();
    assert!(first.frame.is_keyframe);
    assert_eq!(first.index, 30, "the last keyframe, not the next one");
    assert_eq!(first.packets[0].payload, first.frame.params.sps);
    assert_eq!(first.packets[1].payload, first.frame.params.pps);
    assert_eq!(indexes(&drain(&mut s)), (31..37).collect::<Vec<_>>());
    push(&h, 37..39, 15);
    assert_eq!(s.recv().await.unwrap().index, 37, "then live frames");
}

#[tokio::test]
async fn a_slow_subscriber_does_not_change_what_a_fast_one_receives() {
    let h = hub(256);
    // Never reads.
    let slow = h.subscribe();
    let mut fast = h.subscribe();
    let producer = {
        let h = h.clone();
        std::thread::spawn(move || {
            for i in 0..600 {
                h.push_frame(frame(i, 30, 1000));
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 600 {
        let f = tokio::time::timeout(Duration::from_secs(10), fast.recv())
            .await
            .expect("fast subscriber starved")
            .expect("hub open");
        got.push(f.index);
    }
    producer.join().unwrap();
    assert_eq!(got, (0..600).collect::<Vec<_>>());
    assert_eq!(fast.dropped(), 0);
    // 30 fps: the slow one kept the first 2 s (frames 0..=60) and then lagged.
    assert_eq!(slow.dropped(), 600 - 61, "the slow one kept its first 2 s");
    assert_eq!(h.stats().drops, 600 - 61);
}

#[test]
fn a_lagging_subscriber_resyncs_at_the_next_keyframe() {
    let h = hub(8);
    let mut s = h.subscribe();
    // 30 fps, not read: 0..=60 (2 s) queued, then 61..69 dropped (frame 0 waited over 2 s; 75 is the next
    // keyframe).
    push(&h, 0..70, 15);
    assert_eq!(s.dropped(), 9);
    // Read now: 0..=8 waited over 2 s, so the reader skips them and what depends on them, to keyframe 15.
    let got = drain(&mut s);
    assert_eq!(indexes(&got), (15..=60).collect::<Vec<_>>());
    assert!(
        got[0].frame.is_keyframe,
        "what is left starts at a keyframe"
    );
    assert_eq!(s.dropped(), 9 + 15);
    push(&h, 70..78, 15); // 70..74 skipped while lagging; 75 is a keyframe
    let got = drain(&mut s);
    assert_eq!(indexes(&got), vec![75, 76, 77]);
    assert!(got[0].frame.is_keyframe, "resync starts at a keyframe");
    assert_eq!(s.dropped(), 9 + 15 + 5);
    push(&h, 78..80, 15);
    assert_eq!(
        indexes(&drain(&mut s)),
        vec![78, 79],
        "then everything again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_a_waiting_recv() {
    let h = hub(16);
    let mut s = h.subscribe();
    let waiter = tokio::spawn(async move { s.recv().await.map(|f| f.index) });
    tokio::time::sleep(Duration::from_millis(20)).await;
    h.close();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("recv ended")
        .unwrap();
    assert_eq!(got, None);
    assert!(h.is_closed());
    let mut late = h.subscribe();
    assert!(
        late.recv().await.is_none(),
        "a subscriber of a closed hub ends at once"
    );
}

#[test]
fn dropping_subscribers_unsubscribes() {
    let h = hub(16);
    push(&h, 0..10, 15);
    for _ in 0..100 {
        let s = h.subscribe();
        assert_eq!(h.subscriber_count(), 1);
        drop(s);
    }
    assert_eq!(h.subscriber_count(), 0);
    // Concurrent subscribe/drop while frames flow.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let mut s = h.subscribe();
                    let _ = s.try_recv();
                }
            })
        })
        .collect();
    push(&h, 10..200, 15);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(h.subscriber_count(), 0);
    assert_eq!(h.stats().subscribers, 0);
}

#[test]
fn a_viewer_joining_during_an_outage_sees_the_slate() {
    let h = hub(64);
    h.parameters_changed(params(320));
    push(&h, 0..20, 15);
    // The camera is gone; the ingest switches to the slate.
    let slate_params = params(320);
    h.parameters_changed(slate_params.clone());
    let mut slate = frame(0, 1, 200);
    slate.is_slate = true;
    slate.params = slate_params;
    h.push_frame(slate);
    let mut s = h.subscribe();
    let got = drain(&mut s);
    assert_eq!(got.len(), 1);
    assert!(got[0].frame.is_slate && got[0].frame.is_keyframe);
    let stats = h.stats();
    assert_eq!((stats.frames, stats.slate_frames), (20, 1));
}

#[test]
fn rates_follow_media_time() {
    let h = hub(16);
    for i in 0..90 {
        h.push_frame(frame(i, 30, 1000));
    }
    let s = h.stats();
    assert!((s.fps - 30.0).abs() < 0.01, "{}", s.fps);
    assert_eq!(s.bitrate_bps, 1004 * 8 * 30);
    assert_eq!(s.keyframe_interval_ms, Some(1000));
    assert_eq!(s.frames, 90);
    assert_eq!(s.bytes, 90 * 1004);
    assert_eq!(s.last_frame_wall_ms, Some(1_700_000_000_000 + 89 * 100 / 3));
}
