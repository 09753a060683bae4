//! Writes the seed files of the `mp4_sample_reader` fuzz target (fuzz/corpus/mp4_sample_reader): real segments
//! from `SegmentWriter`, H.264 and H.265, tiny (64×64, 9 frames, a keyframe every 3, 80 ms fragments), each
//! finalized and as a copy taken while it was written. Each seed starts with the fuzz target's two "earlier copy
//! ends here" bytes (half way).
//!
//! `cargo run -p dvr --example mp4_fuzz_seeds -- fuzz/corpus/mp4_sample_reader`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dvr::mp4::SampleIndex;
use dvr::writer::SegmentWriter;
use sources::input::TestPatternOptions;
use sources::testpattern::capture_frames;
use sources::Codec;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: mp4_fuzz_seeds OUT_DIR")?,
    );
    std::fs::create_dir_all(&out)?;
    let tmp = tempfile::tempdir()?;
    for codec in [Codec::H264, Codec::H265] {
        let opts = TestPatternOptions {
            codec,
            width: 64,
            height: 64,
            fps: 25,
            gop: 3,
            bitrate_kbps: 50,
        };
        let frames = capture_frames(&opts, 9)?;
        let path = tmp.path().join("segment.mp4");
        let mut w = SegmentWriter::create(&path, codec, frames[0].pts_90k, 80)?;
        for f in &frames[..7] {
            w.write(f)?;
        }
        // Polled, not slept: the muxer writes on its own thread.
        let deadline = Instant::now() + Duration::from_secs(10);
        let growing = loop {
            let bytes = std::fs::read(&path)?;
            if SampleIndex::read(&mut std::io::Cursor::new(&bytes))
                .is_ok_and(|i| !i.samples.is_empty())
            {
                break bytes;
            }
            if Instant::now() > deadline {
                bail!(
                    "no fragment of the {} segment on disk after 10 s",
                    codec.name()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for f in &frames[7..] {
            w.write(f)?;
        }
        w.finish(Duration::from_secs(10))?;
        let finalized = std::fs::read(&path)?;
        for (name, bytes) in [("growing", growing), ("finalized", finalized)] {
            let mut seed = vec![0x80, 0x00];
            seed.extend_from_slice(&bytes);
            let file = out.join(format!("seed-{}-{name}.mp4", codec.name()));
            std::fs::write(&file, &seed)?;
            println!("{} ({} bytes)", file.display(), seed.len());
        }
    }
    Ok(())
}
