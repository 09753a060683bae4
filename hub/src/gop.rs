//! Sans-IO GOP cache: the frames since the last keyframe, so a new subscriber starts with a decodable picture at
//! once instead of waiting for the camera's next keyframe (up to several seconds on cameras with long GOPs).
//! DESIGN.md, "The spine": "A new viewer (or a return to live) starts from the GOP cache".
//!
//! Invariant: the cache is empty or starts with a keyframe, and every frame in it carries that keyframe's
//! parameter sets. It is bounded by frames and bytes; a GOP that outgrows either bound is dropped whole and the
//! cache stays empty until the next keyframe, since a GOP without its keyframe is undecodable. Slate pictures are
//! cached like camera frames, so a viewer joining during an outage sees the slate.

use std::sync::Arc;

use sources::ParameterSets;

use crate::hub::HubFrame;

#[derive(Debug)]
pub(crate) struct GopCache {
    frames: Vec<Arc<HubFrame>>,
    /// Sum of `Frame::data` lengths of `frames`.
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
}

impl GopCache {
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        GopCache {
            frames: Vec::new(),
            bytes: 0,
            max_frames,
            max_bytes,
        }
    }

    /// Adds a frame in decode order.
    pub fn push(&mut self, f: &Arc<HubFrame>) {
        if self.max_frames == 0 {
            return;
        }
        if f.frame.is_keyframe {
            self.clear();
        } else {
            match self.frames.first() {
                // No keyframe to decode it from.
                None => return,
                // The camera changed its configuration without a keyframe: nothing cached decodes any more.
                Some(k) if !same_params(&k.frame.params, &f.frame.params) => {
                    self.clear();
                    return;
                }
                Some(_) => {}
            }
        }
        self.bytes += f.frame.data.len();
        self.frames.push(f.clone());
        if self.frames.len() > self.max_frames || self.bytes > self.max_bytes {
            self.clear();
        }
        self.check_invariants();
    }

    /// The decoder configuration changed: the cached frames were encoded with the old one.
    pub fn parameters_changed(&mut self) {
        self.clear();
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// The cached frames, starting with a keyframe (or empty).
    pub fn frames(&self) -> &[Arc<HubFrame>] {
        &self.frames
    }

    fn check_invariants(&self) {
        debug_assert!(self.frames.first().is_none_or(|f| f.frame.is_keyframe));
        debug_assert!(self.frames.len() <= self.max_frames && self.bytes <= self.max_bytes);
        debug_assert_eq!(
            self.bytes,
            self.frames
                .iter()
                .map(|f| f.frame.data.len())
                .sum::<usize>()
        );
    }
}

fn same_params(a: &Arc<ParameterSets>, b: &Arc<ParameterSets>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sources::Codec;

    use super::*;
    use crate::packetizer::tests::{frame, params};

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
    fn zero_frames_turns_the_cache_off() {
        let mut g = GopCache::new(0, 1 << 20);
        g.push(&hf(true, 10));
        g.push(&hf(false, 10));
        assert!(g.frames().is_empty());
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
        g.push(&hf(true, 10));
        assert_eq!(g.frames().len(), 1, "the next keyframe starts a new GOP");

        let mut g = GopCache::new(100, 30);
        g.push(&hf(true, 10));
        g.push(&hf(false, 10));
        assert_eq!(g.frames().len(), 2);
        g.push(&hf(false, 10));
        assert!(g.frames().is_empty(), "byte bound");
        g.push(&hf(true, 100));
        assert!(
            g.frames().is_empty(),
            "a keyframe alone over the byte bound"
        );
    }

    #[test]
    fn slate_pictures_are_cached() {
        let mut g = GopCache::new(100, 1 << 20);
        let mut slate = frame(Codec::H264, true, 10, 0);
        slate.is_slate = true;
        g.push(&Arc::new(HubFrame {
            frame: slate,
            packets: Vec::new(),
            index: 0,
        }));
        assert_eq!(g.frames().len(), 1);
        assert!(g.frames()[0].frame.is_slate);
    }

    #[test]
    fn parameter_change_clears() {
        let mut g = GopCache::new(100, 1 << 20);
        g.push(&hf(true, 10));
        g.push(&hf(false, 10));
        g.parameters_changed();
        assert!(g.frames().is_empty());
        g.push(&hf(false, 10));
        assert!(g.frames().is_empty(), "waits for a keyframe");

        // Equal parameter sets in another Arc are the same configuration.
        g.push(&hf(true, 10));
        g.push(&hf(false, 10));
        assert_eq!(g.frames().len(), 2);

        // A P-frame with other parameter sets and no announcement: the cached GOP no longer decodes.
        let mut other = frame(Codec::H264, false, 10, 0);
        let mut p = (*params(Codec::H264)).clone();
        p.sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x28]);
        other.params = Arc::new(p);
        g.push(&Arc::new(HubFrame {
            frame: other,
            packets: Vec::new(),
            index: 0,
        }));
        assert!(g.frames().is_empty());
    }
}
