//! The recorder as a hub subscriber with real GStreamer: a test-pattern stream pushed through a hub is cut into
//! MP4 segments at keyframes after the segment length; every file plays with ffprobe; spans are contiguous across
//! rotations, frames add up, a pause in the camera's timeline shows as a gap, and slate is not recorded. Behind a
//! hung disk the writer queue stays within its byte bound and the loss is a counted gap, never a broken file.

use std::path::Path;
use std::time::Duration;

use dvr::recorder::{RecorderEvent, RecorderHandle, RecorderOptions};
use dvr::segmenter::{CloseReason, SegmenterOptions};
use hub::{Hub, HubOptions};
use sources::input::TestPatternOptions;
use sources::testpattern::capture_frames;
use sources::{Codec, Frame, FrameSink};
use testdata::probe::ffprobe;
use tokio::sync::mpsc;

const T0: i64 = 1_790_000_000_000;

fn ffprobe_frames(file: &Path) -> u64 {
    ffprobe(file, None).map_or(0, |p| p.frames)
}

/// 25 fps test-pattern frames with a keyframe every second, on a wall clock starting at `T0`.
fn frames(count: u32) -> Vec<Frame> {
    let opts = TestPatternOptions {
        codec: Codec::H264,
        width: 320,
        height: 240,
        fps: 25,
        gop: 25,
        bitrate_kbps: 400,
    };
    let mut frames = capture_frames(&opts, count).unwrap();
    // The encoder's timestamps start at an offset; the camera clock here starts at T0.
    let first = frames[0].pts_90k;
    for f in &mut frames {
        f.wall_ms = T0 + (f.pts_90k - first) / 90;
    }
    frames
}

async fn push(hub: &Hub, frames: impl IntoIterator<Item = Frame>) {
    for f in frames {
        hub.push_frame(f);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

fn closed(events: &[RecorderEvent]) -> Vec<(std::path::PathBuf, i64, i64, u64, CloseReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::Closed {
                path,
                start_ms,
                end_ms,
                frames,
                reason,
                ..
            } => Some((path.clone(), *start_ms, *end_ms, *frames, *reason)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_into_playable_contiguous_segments_and_shows_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::new("cam", HubOptions::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = RecorderHandle::spawn(
        hub.clone(),
        RecorderOptions {
            dir: dir.path().join("cam"),
            segmenter: SegmenterOptions {
                segment_ms: 2_000,
                max_gap_ms: 2_000,
            },
            fragment_ms: 500,
            max_queued_bytes: dvr::recorder::DEFAULT_MAX_QUEUED_BYTES,
        },
        tx,
    );
    let all = frames(250);
    // 0–6 s recorded, then the camera's timeline jumps 4 s (frames 150–249 shifted), then a slate picture.
    push(&hub, all[..150].iter().cloned()).await;
    push(
        &hub,
        all[150..].iter().cloned().map(|mut f| {
            f.pts_90k += 4 * 90_000;
            f.wall_ms += 4_000;
            f
        }),
    )
    .await;
    let mut slate = all[249].clone();
    slate.is_slate = true;
    slate.pts_90k += 5 * 90_000;
    hub.push_frame(slate);
    tokio::time::sleep(Duration::from_millis(300)).await;
    recorder.stop().await;

    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, RecorderEvent::Failed { .. })),
        "{events:?}"
    );
    let segs = closed(&events);
    let reasons: Vec<CloseReason> = segs.iter().map(|s| s.4).collect();
    assert_eq!(
        reasons,
        vec![
            CloseReason::Rotation,
            CloseReason::Rotation,
            CloseReason::Gap,
            CloseReason::Rotation,
            CloseReason::Slate
        ],
        "{segs:?}"
    );
    // Contiguous through rotations, a gap where the timeline jumped.
    assert_eq!((segs[0].1, segs[0].2), (T0, T0 + 2_000));
    assert_eq!(segs[1].1, segs[0].2);
    assert_eq!(segs[2].1, segs[1].2);
    assert_eq!(segs[2].2, T0 + 6_000, "ends after its last frame");
    assert_eq!(segs[3].1, T0 + 10_000, "the gap: 4 s");
    assert_eq!(segs[4].2, T0 + 14_000);
    // Every frame is in a file, and every file plays with exactly its frames.
    assert_eq!(segs.iter().map(|s| s.3).sum::<u64>(), 250);
    for (path, start, end, n, _) in &segs {
        assert_eq!(ffprobe_frames(path), *n, "{}", path.display());
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("{start}.mp4"),
            "named by start time"
        );
        assert_eq!(
            (end - start) / 40,
            *n as i64,
            "{} ms for {n} frames",
            end - start
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("cam")).unwrap().count(),
        5,
        "no other file"
    );
}

/// A hung disk: the first segment's path is a FIFO nobody reads, so the writer thread blocks opening it (as on a
/// dead NFS mount). The recorder keeps taking the hub's frames; its queue must stay within the byte bound, the
/// overflow must be dropped as a counted gap, and once the "disk" answers again recording resumes at a keyframe
/// with files that play whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_disk_bounds_the_writer_queue_and_leaves_a_counted_gap() {
    const MAX_QUEUED: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cam = dir.path().join("cam");
    std::fs::create_dir_all(&cam).unwrap();
    let fifo = cam.join(format!("{T0}.mp4"));
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let hub = Hub::new("cam", HubOptions::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = RecorderHandle::spawn(
        hub.clone(),
        RecorderOptions {
            dir: cam.clone(),
            segmenter: SegmenterOptions {
                segment_ms: 2_000,
                max_gap_ms: 2_000,
            },
            fragment_ms: 500,
            max_queued_bytes: MAX_QUEUED,
        },
        tx,
    );
    let all = frames(500);
    let hung_bytes: usize = all[..250].iter().map(|f| f.data.len()).sum();
    assert!(
        hung_bytes as u64 > 4 * MAX_QUEUED,
        "the hung part must overflow the queue several times ({hung_bytes} bytes)"
    );
    // 10 s of camera while the writer thread is stuck opening the FIFO.
    push(&hub, all[..250].iter().cloned()).await;
    let hung = recorder.stats();
    assert!(
        hung.peak_queued_bytes <= MAX_QUEUED,
        "queue grew past its bound: {hung:?}"
    );
    assert!(hung.dropped_frames > 100, "{hung:?}");
    assert_eq!(hung.gaps, 1, "{hung:?}");

    // The disk answers again: a reader drains the FIFO, the writer thread moves on and empties the queue.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(fifo).unwrap();
            std::io::copy(&mut f, &mut std::io::sink()).unwrap()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while recorder.stats().queued_bytes > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    push(&hub, all[250..].iter().cloned()).await;
    recorder.stop().await;
    reader.join().unwrap();

    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let gaps: Vec<(i64, i64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::Dropped {
                from_ms,
                to_ms,
                frames,
            } => Some((*from_ms, *to_ms, *frames)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps.len(), 1, "{events:?}");
    let (from, to, dropped) = gaps[0];
    assert_eq!(dropped, recorder_dropped(&events, hung.dropped_frames));
    assert!(from < to && to < T0 + 10_000, "{gaps:?}");
    // After the gap: segments on ordinary files, each playing with exactly the frames it reports, none of them
    // reaching into the gap.
    let after: Vec<_> = closed(&events)
        .into_iter()
        .filter(|s| s.0 != fifo)
        .collect();
    assert!(after.len() >= 3, "{events:?}");
    for (path, start, _, n, _) in &after {
        assert!(*start > to, "a segment covers the gap: {start} <= {to}");
        assert_eq!(ffprobe_frames(path), *n, "{}", path.display());
    }
    assert!(
        after.iter().map(|s| s.3).sum::<u64>() >= 225,
        "recording resumed at the first keyframe after the drain"
    );
}

/// The frames the recorder counted as dropped equal what its `Dropped` event reports.
fn recorder_dropped(events: &[RecorderEvent], counted: u64) -> u64 {
    let reported: u64 = events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::Dropped { frames, .. } => Some(*frames),
            _ => None,
        })
        .sum();
    assert_eq!(reported, counted);
    reported
}
