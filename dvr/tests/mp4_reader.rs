//! The MP4 sample reader on real segments written by `SegmentWriter` (GStreamer's mp4mux), H.264 and H.265, 3 s
//! with a keyframe every second and 500 ms fragments: every sample comes back as the frame that was written, byte
//! for byte, at its time and with its sync flag; a file still being written is indexed up to its last complete
//! fragment and `refresh` adds exactly what was completed since, through to finalization; the standard
//! moof-before-mdat order reads the same; what is read decodes; and a cut or corrupted real file is an error or
//! an index that stays inside the file.

mod common;

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{frames, FRAMES};
use dvr::mp4::{Mp4Error, SampleIndex};
use dvr::writer::SegmentWriter;
use gstreamer as gst;
use gstreamer::prelude::*;
use sources::{Codec, Frame, ParameterSets};
use testdata::decode::{decode_annex_b, DecodeCodec};

fn same_params(a: &ParameterSets, b: &ParameterSets) -> bool {
    (a.codec, &a.vps, &a.sps, &a.pps, a.width, a.height)
        == (b.codec, &b.vps, &b.sps, &b.pps, b.width, b.height)
}

/// Every indexed sample is the frame written at its place: data, sync flag, time, in-band parameter sets.
fn assert_samples_are_frames<R: std::io::Read + std::io::Seek>(
    index: &SampleIndex,
    r: &mut R,
    frames: &[Frame],
) {
    assert!(index.samples.len() <= frames.len());
    assert!(
        same_params(&index.params, &frames[0].params),
        "{:?}",
        index.params
    );
    for (i, frame) in frames.iter().enumerate().take(index.samples.len()) {
        let s = index
            .read_sample(r, i)
            .unwrap_or_else(|e| panic!("sample {i}: {e}"));
        // Not assert_eq: a failure would print kilobytes of picture.
        assert!(
            s.data == frame.data,
            "sample {i}: {} bytes read, {} written",
            s.data.len(),
            frame.data.len()
        );
        assert_eq!(
            index.samples[i].is_sync, frame.is_keyframe,
            "sample {i} sync flag"
        );
        assert_eq!(
            index.pts_90k(i),
            frame.pts_90k - frames[0].pts_90k,
            "sample {i} time"
        );
        match (&s.params, frame.is_keyframe) {
            (Some(p), true) => assert!(same_params(p, &frame.params), "sample {i} in-band params"),
            (None, false) => {}
            (p, key) => panic!("sample {i}: keyframe {key}, in-band params {p:?}"),
        }
    }
}

fn write_segment(codec: Codec, dir: &Path) -> PathBuf {
    let frames = frames(codec);
    let path = dir.join(format!("{}.mp4", codec.name()));
    let mut w = SegmentWriter::create(&path, codec, frames[0].pts_90k, 500).unwrap();
    for f in frames.iter() {
        w.write(f).unwrap();
    }
    w.finish(Duration::from_secs(10)).unwrap();
    path
}

/// Polls `f` until it returns `Some`, for at most 10 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Samples indexed from the file at `path` now, if it has a moov yet.
fn indexed(path: &Path) -> Option<usize> {
    SampleIndex::read(&mut File::open(path).ok()?)
        .ok()
        .map(|i| i.samples.len())
}

fn annex_b(params: &ParameterSets, data: &[u8], with_params: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if with_params {
        for nal in params.nals() {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
    for nal in sources::frame::NalIter::new(bytes::Bytes::copy_from_slice(data)) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&nal);
    }
    out
}

fn finalized(codec: Codec) {
    let frames = frames(codec);
    let dir = tempfile::tempdir().unwrap();
    let path = write_segment(codec, dir.path());
    let mut file = File::open(&path).unwrap();
    let index = SampleIndex::read(&mut file).unwrap();
    assert!(index.is_finalized());
    assert_eq!((index.codec, index.samples.len()), (codec, FRAMES));
    assert!(index.timescale > 0);
    assert_samples_are_frames(&index, &mut file, frames);
    assert_eq!(index.end_90k(), FRAMES as i64 * 3600, "75 frames of 40 ms");
    // Random access: frame 60's time seeks back to the keyframe at 50; keyframes-only playback steps 0, 25, 50.
    let t60 = index.samples[60].pts();
    assert_eq!(index.sync_at_or_before(t60), Some(50));
    assert_eq!(index.sync_at_or_before(index.samples[49].pts()), Some(25));
    assert_eq!(index.sync_at_or_before(-1), Some(0));
    assert_eq!(
        (index.next_sync(1), index.next_sync(26), index.next_sync(51)),
        (Some(25), Some(50), None)
    );

    // What is read decodes: from the keyframe at 25, the parameter sets prepended once, as the player does.
    let aus: Vec<Vec<u8>> = (25..40)
        .map(|i| {
            annex_b(
                &index.params,
                &index.read_sample(&mut file, i).unwrap().data,
                i == 25,
            )
        })
        .collect();
    let codec = if codec == Codec::H264 {
        DecodeCodec::H264
    } else {
        DecodeCodec::H265
    };
    assert_eq!(
        decode_annex_b(codec, &aus).unwrap(),
        (15, 320, 240),
        "every picture decodes"
    );

    // Cut anywhere: an error (the moov is at the end), never a panic.
    let bytes = std::fs::read(&path).unwrap();
    for cut in (0..bytes.len()).step_by(997) {
        assert!(SampleIndex::read(&mut Cursor::new(&bytes[..cut])).is_err());
    }
    corrupt_keeps_the_index_inside_the_file(
        &bytes,
        index
            .samples
            .last()
            .map_or(0, |s| s.offset + u64::from(s.size)) as usize,
    );
}

/// Overwrites bytes in the tables region (from `tables_from` on) with pseudo-random values many times; each
/// result may index or fail, but an index never lists a sample outside the file, a sample read never returns more
/// than its bytes can hold, and the sync lookups answer sync samples. (The fuzz target `mp4_sample_reader` in
/// fuzz/ goes further from the same kind of file.)
fn corrupt_keeps_the_index_inside_the_file(bytes: &[u8], tables_from: usize) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let span = bytes.len() - tables_from;
    let mut indexed = 0;
    for _ in 0..400 {
        let mut b = bytes.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = tables_from + (next() as usize) % span;
            b[at] = match next() % 4 {
                0 => 0,
                1 => 0xff,
                _ => next() as u8,
            };
        }
        let mut r = Cursor::new(&b);
        let Ok(index) = SampleIndex::read(&mut r) else {
            continue;
        };
        indexed += 1;
        for (i, s) in index.samples.iter().enumerate() {
            assert!(
                s.offset + u64::from(s.size) <= b.len() as u64,
                "sample {i} past the end"
            );
            if let Ok(sample) = index.read_sample(&mut r, i) {
                // NAL lengths become 4-byte prefixes: at most four times the bytes of 1-byte ones.
                assert!(sample.data.len() <= 4 * s.size as usize, "sample {i}");
            }
        }
        for t in [i64::MIN, 0, i64::MAX] {
            if let Some(i) = index.sync_at_or_before(t) {
                assert!(index.samples[i].is_sync, "sample {i} is no sync sample");
            }
        }
    }
    // Most single-byte changes land in sample payloads or fields the reader does not need.
    assert!(indexed > 0, "no corrupted copy indexed at all");
}

#[test]
fn finalized_h264_segment_reads_back_frame_for_frame() {
    finalized(Codec::H264);
}

#[test]
fn finalized_h265_segment_reads_back_frame_for_frame() {
    finalized(Codec::H265);
}

/// A segment read while written: a copy taken mid-write indexes only whole fragments; `refresh` on the live file
/// adds what the muxer completes, and after `finish` takes the finalized moov.
fn while_written(codec: Codec) {
    let frames = frames(codec);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    let mut w = SegmentWriter::create(&path, codec, frames[0].pts_90k, 500).unwrap();
    for f in &frames[..50] {
        w.write(f).unwrap();
    }
    // The first fragment (in the moov) and at least one moof: 24 samples or more.
    wait_for("two fragments on disk", || {
        indexed(&path).filter(|&n| n >= 24)
    });
    let copy = dir.path().join("copy.mp4");
    std::fs::copy(&path, &copy).unwrap();
    let mut snapshot = File::open(&copy).unwrap();
    let mut index = SampleIndex::read(&mut snapshot).unwrap();
    let n = index.samples.len();
    assert!(
        (24..50).contains(&n),
        "{n} samples: the muxer holds back the last fragment"
    );
    assert!(!index.is_finalized());
    assert_samples_are_frames(&index, &mut snapshot, frames);
    assert_eq!(
        index.refresh(&mut snapshot).unwrap(),
        0,
        "a copy does not grow"
    );

    let mut live = File::open(&path).unwrap();
    let mut index = SampleIndex::read(&mut live).unwrap();
    let before = index.samples.len();
    for f in &frames[50..] {
        w.write(f).unwrap();
    }
    let added = wait_for("a fragment after the first read", || {
        Some(index.refresh(&mut live).unwrap()).filter(|&a| a > 0)
    });
    assert_eq!(index.samples.len(), before + added);
    assert!(
        index.samples.len() < FRAMES,
        "the last fragment waits for the end"
    );
    assert_samples_are_frames(&index, &mut live, frames);

    w.finish(Duration::from_secs(10)).unwrap();
    let before = index.samples.len();
    assert_eq!(
        index.refresh(&mut live).unwrap(),
        FRAMES - before,
        "finalized: the rest"
    );
    assert!(index.is_finalized());
    assert_samples_are_frames(&index, &mut live, frames);
    assert_eq!(index.refresh(&mut live).unwrap(), 0);
}

#[test]
fn h264_segment_is_read_while_written() {
    while_written(Codec::H264);
}

#[test]
fn h265_segment_is_read_while_written() {
    while_written(Codec::H265);
}

/// (offset, size, type) of the top-level boxes, walked independently of the reader.
fn top_level(bytes: &[u8]) -> Vec<(usize, usize, [u8; 4])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        if size < 8 || pos + size > bytes.len() {
            break;
        }
        out.push((pos, size, bytes[pos + 4..pos + 8].try_into().unwrap()));
        pos += size;
    }
    out
}

/// Samples a moof lists: the `trun` sample counts, found by their type.
fn moof_samples(moof: &[u8]) -> usize {
    let mut n = 0;
    for at in 4..moof.len().saturating_sub(12) {
        if &moof[at..at + 4] == b"trun" {
            n += u32::from_be_bytes(moof[at + 8..at + 12].try_into().unwrap()) as usize;
        }
    }
    n
}

/// Cuts `bytes` (a fragmented file) inside and at the end of every box after the moov: the index holds exactly
/// the samples of the fragments complete by then (a moof and its mdat, in either order), and an index grown from
/// one cut to the next by `refresh` equals one read afresh. Returns the samples of all complete fragments.
fn check_cuts(bytes: &[u8], frames: &[Frame]) -> usize {
    let boxes = top_level(bytes);
    let moov = boxes.iter().position(|b| &b.2 == b"moov").expect("a moov");
    let data_first = boxes[moov + 1..]
        .iter()
        .find(|b| &b.2 == b"moof" || &b.2 == b"mdat")
        .map(|b| &b.2)
        == Some(b"mdat");
    let mut previous_cut = boxes[moov].0 + boxes[moov].1;
    let mut grown = SampleIndex::read(&mut Cursor::new(&bytes[..previous_cut])).unwrap();
    let (mut complete, mut pending, mut fragments) = (grown.samples.len(), 0, 0);
    for &(pos, size, kind) in &boxes[moov + 1..] {
        if &kind == b"moof" {
            pending += moof_samples(&bytes[pos..pos + size]);
        }
        for cut in [pos + size / 2, pos + size] {
            let completing = if data_first { b"moof" } else { b"mdat" };
            if cut == pos + size && &kind == completing && pending > 0 {
                (complete, pending, fragments) = (complete + pending, 0, fragments + 1);
            }
            let mut r = Cursor::new(bytes[..cut].to_vec());
            let index = SampleIndex::read(&mut r).unwrap();
            assert_eq!(
                index.samples.len(),
                complete,
                "cut at {cut} ({})",
                String::from_utf8_lossy(&kind)
            );
            assert_samples_are_frames(&index, &mut r, frames);
            let before = grown.samples.len();
            assert_eq!(
                grown.refresh(&mut r).unwrap(),
                complete - before,
                "grown from {previous_cut} to {cut}"
            );
            assert_eq!(grown.samples, index.samples);
            previous_cut = cut;
        }
    }
    assert!(fragments >= 3, "{fragments} fragments");
    complete
}

#[test]
fn a_fragmented_file_cut_anywhere_indexes_its_complete_fragments() {
    for codec in [Codec::H264, Codec::H265] {
        let frames = frames(codec);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.mp4");
        let mut w = SegmentWriter::create(&path, codec, frames[0].pts_90k, 500).unwrap();
        for f in frames.iter() {
            w.write(f).unwrap();
        }
        wait_for("four fragments on disk", || {
            indexed(&path).filter(|&n| n >= 48)
        });
        let bytes = std::fs::read(&path).unwrap();
        drop(w);
        let listed = check_cuts(&bytes, frames);
        assert!(listed >= 48, "{listed}");
        for cut in (0..bytes.len()).step_by(997) {
            match SampleIndex::read(&mut Cursor::new(&bytes[..cut])) {
                Ok(index) => assert!(index.samples.len() <= listed),
                Err(Mp4Error::NoMoov) => {}
                Err(e) => panic!("cut at {cut}: {e}"),
            }
        }
        let moov_end = top_level(&bytes)
            .iter()
            .find(|b| &b.2 == b"moov")
            .map(|b| b.0)
            .unwrap();
        corrupt_keeps_the_index_inside_the_file(&bytes, moov_end);
    }
}

#[test]
fn the_usual_moof_then_mdat_order_reads_the_same() {
    let frames = frames(Codec::H264);
    let dir = tempfile::tempdir().unwrap();
    let source = write_segment(Codec::H264, dir.path());
    // mp4mux's default fragment mode: moov first, then moof + mdat, data offsets relative to the moof.
    let target = dir.path().join("moof-first.mp4");
    gst::init().unwrap();
    let pipeline = gst::parse::launch("filesrc name=src ! qtdemux ! h264parse ! mp4mux fragment-duration=500 ! filesink name=sink")
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline
        .by_name("src")
        .unwrap()
        .set_property("location", source.to_str().unwrap());
    pipeline
        .by_name("sink")
        .unwrap()
        .set_property("location", target.to_str().unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(20),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(msg.map(|m| m.type_()), Some(gst::MessageType::Eos)),
        "remux finished"
    );

    let bytes = std::fs::read(&target).unwrap();
    let order: Vec<[u8; 4]> = top_level(&bytes)
        .iter()
        .map(|b| b.2)
        .filter(|k| k == b"moof" || k == b"mdat")
        .take(2)
        .collect();
    assert_eq!(order, vec![*b"moof", *b"mdat"]);
    let mut r = Cursor::new(&bytes);
    let index = SampleIndex::read(&mut r).unwrap();
    assert_eq!(index.samples.len(), FRAMES);
    assert_samples_are_frames(&index, &mut r, frames);
    assert_eq!(check_cuts(&bytes, frames), FRAMES);
}
