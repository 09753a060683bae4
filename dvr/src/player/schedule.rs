//! Which recorded segment a player reads, decided from the catalog's rows alone (sans-IO): where to open for an
//! instant, and where to go when a segment ends — the next one, across a gap said out loud, or nowhere.

use std::path::PathBuf;

use sources::Codec;

use crate::ranges::ADJACENT_MS;

/// A catalog row as the player needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRef {
    pub id: i64,
    pub start_ms: i64,
    /// `None` while the segment is being written.
    pub end_ms: Option<i64>,
    pub path: PathBuf,
    pub codec: Codec,
}

impl SegmentRef {
    pub fn is_writing(&self) -> bool {
        self.end_ms.is_none()
    }

    /// Whether `t_ms` is inside the segment (a segment being written holds everything after its start).
    pub fn holds(&self, t_ms: i64) -> bool {
        t_ms >= self.start_ms && self.end_ms.is_none_or(|e| t_ms < e)
    }
}

/// Where the player goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Play `segments[index]`; `gap` is the unrecorded span jumped over to get there, if any.
    Play {
        index: usize,
        gap: Option<(i64, i64)>,
    },
    /// Nothing is recorded from there on.
    End,
}

/// Where to start playing for instant `t_ms`, given the segments that end after it (sorted by start).
pub fn open_at(segments: &[SegmentRef], t_ms: i64) -> Step {
    match segments
        .iter()
        .position(|s| s.end_ms.is_none_or(|e| e > t_ms))
    {
        None => Step::End,
        Some(index) => {
            let s = &segments[index];
            let gap = (t_ms < s.start_ms).then_some((t_ms, s.start_ms));
            Step::Play { index, gap }
        }
    }
}

/// Where to go after `current` ended, given the segments that start at or after its start (sorted by start).
/// Segments that touch (within [`ADJACENT_MS`]) play on without a gap.
pub fn after(current: &SegmentRef, segments: &[SegmentRef]) -> Step {
    let end = current.end_ms.unwrap_or(current.start_ms);
    match segments.iter().position(|s| {
        s.id != current.id && s.start_ms >= current.start_ms && s.end_ms.is_none_or(|e| e > end)
    }) {
        None => Step::End,
        Some(index) => {
            let next = &segments[index];
            let gap = (next.start_ms > end + ADJACENT_MS).then_some((end, next.start_ms));
            Step::Play { index, gap }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: i64, start_ms: i64, end_ms: Option<i64>) -> SegmentRef {
        SegmentRef {
            id,
            start_ms,
            end_ms,
            path: PathBuf::from(format!("{start_ms}.mp4")),
            codec: Codec::H264,
        }
    }

    #[test]
    fn opens_in_the_segment_holding_the_instant_or_after_the_gap() {
        let segs = [
            seg(1, 0, Some(60_000)),
            seg(2, 60_000, Some(120_000)),
            seg(3, 200_000, None),
        ];
        assert_eq!(
            open_at(&segs, 59_999),
            Step::Play {
                index: 0,
                gap: None
            }
        );
        assert_eq!(
            open_at(&segs, 60_000),
            Step::Play {
                index: 1,
                gap: None
            }
        );
        assert_eq!(
            open_at(&segs, 150_000),
            Step::Play {
                index: 2,
                gap: Some((150_000, 200_000))
            }
        );
        assert_eq!(
            open_at(&segs, 9_000_000),
            Step::Play {
                index: 2,
                gap: None
            },
            "being written"
        );
        assert_eq!(open_at(&segs[..2], 130_000), Step::End);
        assert!(segs[2].holds(9_000_000) && !segs[0].holds(60_000));
    }

    #[test]
    fn goes_on_across_touching_segments_and_says_when_it_jumps() {
        let a = seg(1, 0, Some(60_000));
        let b = seg(2, 60_020, Some(120_000));
        let c = seg(3, 180_000, None);
        let segs = [a.clone(), b.clone(), c.clone()];
        assert_eq!(
            after(&a, &segs),
            Step::Play {
                index: 1,
                gap: None
            },
            "20 ms apart is touching"
        );
        assert_eq!(
            after(&b, &segs),
            Step::Play {
                index: 2,
                gap: Some((120_000, 180_000))
            }
        );
        assert_eq!(after(&c, &segs), Step::End);
        assert_eq!(after(&a, std::slice::from_ref(&a)), Step::End);
    }
}
