//! What is recorded, over the catalog's segments: contiguous ranges (adjacent segments merged, gaps left visible)
//! and the segment that holds an instant, found by binary search over segments sorted by start.

/// A recorded segment's span `[start_ms, end_ms)` and its catalog id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A contiguous recorded range and the segments behind it, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub start_ms: i64,
    pub end_ms: i64,
    pub segments: Vec<i64>,
}

/// Segments closer than this are one range: rotation makes them touch exactly; the tolerance absorbs rounding of
/// the camera clock to milliseconds, not real gaps.
pub const ADJACENT_MS: i64 = 50;

/// Merges `spans` (any order) into ranges, clipped to `[from_ms, to_ms)`; spans outside it are left out.
pub fn recorded_ranges(spans: &[Span], from_ms: i64, to_ms: i64) -> Vec<Range> {
    let mut sorted: Vec<Span> = spans
        .iter()
        .copied()
        .filter(|s| s.end_ms > from_ms && s.start_ms < to_ms && s.end_ms > s.start_ms)
        .collect();
    sorted.sort_by_key(|s| (s.start_ms, s.end_ms));
    let mut out: Vec<Range> = Vec::new();
    for s in sorted {
        match out.last_mut() {
            Some(r) if s.start_ms <= r.end_ms + ADJACENT_MS => {
                r.end_ms = r.end_ms.max(s.end_ms);
                r.segments.push(s.id);
            }
            _ => out.push(Range {
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                segments: vec![s.id],
            }),
        }
    }
    for r in &mut out {
        r.start_ms = r.start_ms.max(from_ms);
        r.end_ms = r.end_ms.min(to_ms);
    }
    out
}

/// The segment holding instant `t_ms`, from spans sorted by `start_ms` (as the catalog returns them); if `t_ms`
/// falls in a gap, the first segment after it, so a player can go on from there. `None` past the end.
pub fn segment_at(sorted: &[Span], t_ms: i64) -> Option<&Span> {
    // First span that ends after t: the one holding t, or the next one when t is in a gap.
    let i = sorted.partition_point(|s| s.end_ms <= t_ms);
    sorted.get(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: i64, start_ms: i64, end_ms: i64) -> Span {
        Span {
            id,
            start_ms,
            end_ms,
        }
    }

    #[test]
    fn merges_touching_segments_and_keeps_gaps() {
        let spans = [
            span(3, 120_000, 180_000),
            span(1, 0, 60_000),
            span(2, 60_010, 120_000),
            span(4, 190_000, 200_000),
        ];
        let ranges = recorded_ranges(&spans, i64::MIN, i64::MAX);
        assert_eq!(
            ranges,
            vec![
                Range {
                    start_ms: 0,
                    end_ms: 180_000,
                    segments: vec![1, 2, 3]
                },
                Range {
                    start_ms: 190_000,
                    end_ms: 200_000,
                    segments: vec![4]
                },
            ]
        );
        let clipped = recorded_ranges(&spans, 30_000, 195_000);
        assert_eq!((clipped[0].start_ms, clipped[0].end_ms), (30_000, 180_000));
        assert_eq!(clipped[1].end_ms, 195_000);
        assert!(recorded_ranges(&spans, 181_000, 189_000).is_empty());
    }

    #[test]
    fn finds_the_segment_holding_an_instant() {
        let spans = [
            span(1, 0, 60_000),
            span(2, 60_000, 120_000),
            span(3, 130_000, 140_000),
        ];
        assert_eq!(segment_at(&spans, 0).unwrap().id, 1);
        assert_eq!(segment_at(&spans, 59_999).unwrap().id, 1);
        assert_eq!(
            segment_at(&spans, 60_000).unwrap().id,
            2,
            "end is exclusive"
        );
        assert_eq!(
            segment_at(&spans, 125_000).unwrap().id,
            3,
            "in a gap: the next one"
        );
        assert_eq!(segment_at(&spans, 140_000), None);
        assert_eq!(segment_at(&[], 5), None);
    }
}
