//! An hour of recording without recording for an hour, for the live-rewind scenario: a short test-pattern clip is
//! encoded once, then written again and again, with advancing timestamps, through the recorder's own
//! [`SegmentWriter`] into consecutive segment files named as the recorder names them
//! (`<recordings>/<stream>/<start_ms>.mp4`), ending a little before now. The gateway started on that directory
//! indexes them at start-up like files a crash left behind.
//!
//! Every keyframe carries an SEI stamp ([`testdata::stamp`]) holding its own wall-clock instant, so a viewer can
//! tell which recorded keyframe reached it (and a live one, unstamped, from any recorded one): a seek is timed to
//! the very keyframe it must start from, not to whatever keyframe happened to arrive first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use dvr::writer::SegmentWriter;
use sources::input::TestPatternOptions;
use sources::testpattern::capture_frames;
use sources::{Codec, Frame};
use testdata::stamp;

/// Frames per second of the recording.
pub const FPS: u32 = 25;
/// Frames between keyframes (2 s).
pub const GOP: u32 = 50;
/// The recorder's fragment length (the gateway's `FRAGMENT_MS`).
const FRAGMENT_MS: u32 = 500;
/// Bytes the muxer may be behind the frames pushed into it: [`SegmentWriter`] gives a segment up past 8 MiB, and
/// a file written as fast as memory allows would get there.
const MAX_BEHIND: u64 = 2 << 20;

/// What to write.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub segments: usize,
    pub segment_secs: u32,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// What was written.
pub struct Recorded {
    pub start_ms: i64,
    pub end_ms: i64,
    /// The wall-clock instant of every keyframe, ascending; each keyframe's stamp holds its own.
    pub keyframes: Vec<i64>,
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    /// Encoding the clip, then writing every segment.
    pub encode: Duration,
    pub write: Duration,
    pub plan: Plan,
}

impl Recorded {
    /// Whether a keyframe stamped `stamp` is where a seek to `at_ms` must start: the last keyframe at or before
    /// it or, for an instant within [`dvr::ranges::ADJACENT_MS`] of the next one, that one (the catalog takes each
    /// segment's end from the demuxer, and an instant in a hole between segments plays from the next).
    pub fn starts_seek(&self, at_ms: i64, stamp: Option<u64>) -> bool {
        let Some(stamp) = stamp.map(|s| s as i64) else {
            return false;
        };
        let i = self.keyframes.partition_point(|&k| k <= at_ms);
        let before = i.checked_sub(1).map(|i| self.keyframes[i]);
        let next = self.keyframes.get(i).copied();
        before == Some(stamp)
            || next.is_some_and(|n| n == stamp && n - at_ms <= dvr::ranges::ADJACENT_MS)
    }

    /// Bit rate of the recording, over its whole length.
    pub fn bits_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / ((self.end_ms - self.start_ms) as f64 / 1e3)
    }

    /// One line for table notes.
    pub fn describe(&self) -> String {
        let p = self.plan;
        format!(
            "recording: {} × {} s segments ({}x{}, {FPS} fps, GOP {} s, {:.2} Mbit/s), {:.0} MB, encoded in {:.1} s and \
             written in {:.1} s before the gateway started",
            p.segments,
            p.segment_secs,
            p.width,
            p.height,
            GOP / FPS,
            self.bits_per_second() / 1e6,
            self.bytes as f64 / 1e6,
            self.encode.as_secs_f64(),
            self.write.as_secs_f64()
        )
    }
}

/// Writes `plan` into `recordings/<stream>/` under `data_dir`, the last segment ending at `end_ms`. Blocks (run it
/// off the async runtime).
pub fn write(data_dir: &Path, stream: &str, plan: Plan, end_ms: i64) -> anyhow::Result<Recorded> {
    let started = Instant::now();
    let clip = clip(plan)?;
    let encode = started.elapsed();
    let dir = data_dir.join("recordings").join(stream);
    std::fs::create_dir_all(&dir)?;
    let frames_per_segment = (plan.segment_secs * FPS) as usize;
    let frame_ms = 1000 / FPS as i64;
    let segment_ms = frames_per_segment as i64 * frame_ms;
    let start_ms = end_ms - plan.segments as i64 * segment_ms;
    let mut recorded = Recorded {
        start_ms,
        end_ms,
        keyframes: Vec::new(),
        files: Vec::new(),
        bytes: 0,
        encode,
        write: Duration::ZERO,
        plan,
    };
    let started = Instant::now();
    for s in 0..plan.segments {
        let seg_start = start_ms + s as i64 * segment_ms;
        let path = dir.join(format!("{seg_start}.mp4"));
        let mut w = SegmentWriter::create(&path, Codec::H264, 0, FRAGMENT_MS)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut pushed = 0u64;
        for j in 0..frames_per_segment {
            // Every segment starts at the clip's first frame, a keyframe, as the recorder starts each at one.
            let mut f = clip[j % clip.len()].clone();
            f.pts_90k = j as i64 * (90_000 / FPS as i64);
            f.wall_ms = seg_start + j as i64 * frame_ms;
            if f.is_keyframe {
                f.data = stamped(f.wall_ms, &f.data);
                recorded.keyframes.push(f.wall_ms);
            }
            pushed += f.data.len() as u64;
            w.write(&f)
                .with_context(|| format!("writing {}", path.display()))?;
            wait_for_muxer(&path, pushed)?;
        }
        recorded.bytes += w
            .finish(Duration::from_secs(30))
            .with_context(|| format!("finishing {}", path.display()))?;
        recorded.files.push(path);
    }
    recorded.write = started.elapsed();
    Ok(recorded)
}

/// The clip every segment repeats: whole GOPs of the test pattern, from a keyframe to just before another, so it
/// loops without breaking the decoding chain.
fn clip(plan: Plan) -> anyhow::Result<Vec<Frame>> {
    let opts = TestPatternOptions {
        codec: Codec::H264,
        width: plan.width,
        height: plan.height,
        fps: FPS,
        gop: GOP,
        bitrate_kbps: plan.bitrate_kbps,
    };
    // Five GOPs: the encoder's rate control settles after the first.
    let frames = capture_frames(&opts, 5 * GOP + 1).context("encoding the clip")?;
    let keys: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].is_keyframe)
        .collect();
    let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
        bail!("the test pattern gave no keyframe");
    };
    if last == first {
        bail!(
            "the test pattern gave one keyframe in {} frames",
            frames.len()
        );
    }
    Ok(frames[first..last].to_vec())
}

/// `data` (length-prefixed NAL units) with an SEI NAL stamping `wall_ms` in front.
fn stamped(wall_ms: i64, data: &Bytes) -> Bytes {
    // `sei_nal` writes a start code; a frame holds length-prefixed NAL units.
    let sei = &stamp::sei_nal(wall_ms as u64)[4..];
    let mut out = Vec::with_capacity(4 + sei.len() + data.len());
    out.extend_from_slice(&(sei.len() as u32).to_be_bytes());
    out.extend_from_slice(sei);
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// Waits until the file holds all but [`MAX_BEHIND`] of the `pushed` bytes: the writer has no other back-pressure,
/// and the file grows fragment by fragment as the muxer goes.
fn wait_for_muxer(path: &Path, pushed: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(path).map_or(0, |m| m.len()) + MAX_BEHIND < pushed {
        if Instant::now() > deadline {
            bail!("{} stopped growing", path.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
