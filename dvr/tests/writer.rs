//! The segment writer with real GStreamer: test-pattern frames (H.264 and H.265) go into an MP4 that ffprobe
//! reads frame by frame with the right duration and size, and the file is readable while still being written.

use std::path::Path;
use std::time::{Duration, Instant};

use dvr::writer::SegmentWriter;
use sources::input::TestPatternOptions;
use sources::testpattern::capture_frames;
use sources::Codec;
use testdata::probe::ffprobe;

/// (frames, width, duration in seconds) as ffprobe reads `file`, or None if it can't.
fn probe(file: &Path) -> Option<(u64, u32, f64)> {
    ffprobe(file, None).map(|p| (p.frames, p.width, p.duration_secs))
}

fn record(codec: Codec) {
    let opts = TestPatternOptions {
        codec,
        width: 320,
        height: 240,
        fps: 25,
        gop: 25,
        bitrate_kbps: 500,
    };
    let frames = capture_frames(&opts, 75).expect("test pattern frames");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("segment.mp4");
    let mut w = SegmentWriter::create(&path, codec, frames[0].pts_90k, 500).unwrap();
    for f in &frames {
        w.write(f).unwrap();
    }
    // Fragmented while written: before the end, what was written so far already plays.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((n, _, _)) = probe(&path) {
            if n >= 50 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the unfinished file never showed 50 frames"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let bytes = w.finish(Duration::from_secs(10)).unwrap();
    assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
    let (n, width, duration) = probe(&path).expect("ffprobe reads the finished file");
    assert_eq!((n, width), (75, 320));
    assert!((duration - 3.0).abs() <= 0.05, "duration {duration}");
}

#[test]
fn h264_segment_plays_while_written_and_after() {
    record(Codec::H264);
}

#[test]
fn h265_segment_plays_while_written_and_after() {
    record(Codec::H265);
}

#[test]
fn a_segment_cut_short_by_a_crash_is_recovered_to_its_last_fragment() {
    let opts = TestPatternOptions {
        codec: Codec::H264,
        width: 320,
        height: 240,
        fps: 25,
        gop: 25,
        bitrate_kbps: 500,
    };
    let frames = capture_frames(&opts, 100).expect("test pattern frames");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    let mut w = SegmentWriter::create(&path, Codec::H264, frames[0].pts_90k, 500).unwrap();
    // At the camera's pace, as a live stream arrives.
    for f in &frames {
        w.write(f).unwrap();
        std::thread::sleep(Duration::from_millis(40));
    }
    // What a kill -9 leaves: the file as it is on disk now, plus half of a box that was being written.
    std::thread::sleep(Duration::from_millis(100));
    let crashed = dir.path().join("crashed.mp4");
    std::fs::copy(&path, &crashed).unwrap();
    drop(w);
    let mut bytes = std::fs::read(&crashed).unwrap();
    bytes.extend_from_slice(&[0, 0, 0x40, 0, b'm', b'o', b'o', b'f', 1, 2, 3]);
    std::fs::write(&crashed, &bytes).unwrap();

    let info = dvr::recover::recover(&crashed).expect("recovers");
    // 4 s were written with 500 ms fragments. mp4mux writes a fragment's moof one fragment late, so the crash loses
    // the fragment in the muxer and the one whose moof was pending: about a second.
    assert!(info.frames >= 100 - 28 && info.frames <= 100, "{info:?}");
    assert_eq!(info.duration_ms, info.frames as i64 * 40, "{info:?}");
    assert_eq!((info.width, info.height), (320, 240));
    assert!(info.bytes < bytes.len() as u64, "the torn box is cut off");
    let (n, _, _) = probe(&crashed).expect("ffprobe reads the recovered file");
    assert_eq!(n, info.frames);
    // A file with no complete header is refused, not "recovered".
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, &bytes[..40]).unwrap();
    assert!(dvr::recover::recover(&empty).is_err());
}
