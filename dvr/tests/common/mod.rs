//! Test support shared by the dvr integration tests: the frames segments are written from.

use std::sync::OnceLock;

use sources::input::TestPatternOptions;
use sources::testpattern::capture_frames;
use sources::{Codec, Frame};

/// Frames in [`frames`]: 3 s at 25 fps.
pub const FRAMES: usize = 75;

/// 3 s of 25 fps test pattern with keyframes at frames 0, 25 and 50; encoded once per codec for all tests.
pub fn frames(codec: Codec) -> &'static [Frame] {
    static H264: OnceLock<Vec<Frame>> = OnceLock::new();
    static H265: OnceLock<Vec<Frame>> = OnceLock::new();
    let cell = if codec == Codec::H264 { &H264 } else { &H265 };
    cell.get_or_init(|| {
        let opts = TestPatternOptions {
            codec,
            width: 320,
            height: 240,
            fps: 25,
            gop: 25,
            bitrate_kbps: 500,
        };
        let f = capture_frames(&opts, FRAMES as u32).expect("test pattern frames");
        assert_eq!(f.len(), FRAMES);
        let keys: Vec<usize> = (0..FRAMES).filter(|&i| f[i].is_keyframe).collect();
        assert_eq!(keys, vec![0, 25, 50], "the encoder's keyframes");
        f
    })
}
