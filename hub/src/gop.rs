//! Sans-IO GOP cache: the frames since the last keyframe, so a new subscriber starts with a decodable picture at
//! once instead of waiting for the camera's next keyframe (up to several seconds on cameras with long GOPs).
//!
//! Bounded by frames and bytes. A GOP that outgrows either bound is dropped whole: handing out a GOP without its
//! keyframe would give a new viewer undecodable frames.

use std::sync::Arc;

use crate::hub::HubFrame;

#[derive(Debug)]
pub(crate) struct GopCache {
    frames: Vec<Arc<HubFrame>>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

impl GopCache {
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        GopCache {
            frames: Vec::new(),
            bytes: 0,
            max_frames: max_frames.max(1),
            max_bytes,
        }
    }

    pub fn push(&mut self, f: &Arc<HubFrame>) {
        if f.frame.is_keyframe {
            self.clear();
        } else if self.frames.is_empty() {
            return;
        }
        self.bytes += f.frame.data.len();
        self.frames.push(f.clone());
        if self.frames.len() > self.max_frames || self.bytes > self.max_bytes {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// The cached frames, starting with a keyframe (or empty).
    pub fn frames(&self) -> &[Arc<HubFrame>] {
        &self.frames
    }
}

#[cfg(test)]
mod tests {
    use sources::Codec;

    use super::*;
    use crate::packetizer::tests::frame;

    fn hf(keyframe: bool, size: usize) -> Arc<HubFrame> {
        Arc::new(HubFrame {
            frame: frame(Codec::H264, keyframe, size, 0),
            packets: Vec::new(),
            index: 0,
        })
    }

    #[test]
    fn starts_at_a_keyframe_and_restarts_at_the_next() {
        let mut g = GopCache::new(100, 1 << 20);
        g.push(&hf(false, 10));
        assert!(g.frames().is_empty(), "nothing before the first keyframe");
        g.push(&hf(true, 10));
        g.push(&hf(false, 10));
        assert_eq!(g.frames().len(), 2);
        g.push(&hf(true, 10));
        assert_eq!(g.frames().len(), 1);
        assert!(g.frames()[0].frame.is_keyframe);
    }

    #[test]
    fn oversized_gop_is_dropped_whole_until_the_next_keyframe() {
        let mut g = GopCache::new(3, 1 << 20);
        g.push(&hf(true, 10));
        for _ in 0..3 {
            g.push(&hf(false, 10));
        }
        assert!(g.frames().is_empty());
        g.push(&hf(false, 10));
        assert!(g.frames().is_empty(), "no keyframe-less GOP");
        let mut g = GopCache::new(100, 30);
        g.push(&hf(true, 10));
        g.push(&hf(false, 10));
        assert_eq!(g.frames().len(), 2);
        g.push(&hf(false, 10));
        assert!(g.frames().is_empty(), "byte bound");
    }
}
