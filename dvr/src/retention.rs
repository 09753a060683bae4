//! Which recorded segments to delete: each stream's age and size limits, then the disk's free-space floor, oldest
//! first, reading no more of the catalog than it deletes (plus about one segment per stream). Only complete (or recovered) segments go; the one being written never does. The deleter that carries the
//! plan out (and the catalog rows with it) is at the edge.

use std::collections::{HashMap, HashSet};

/// A segment as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSegment {
    pub id: i64,
    pub stream: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub bytes: u64,
    /// Being written: never deleted.
    pub writing: bool,
}

/// A stream's limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_age_ms: Option<i64>,
    pub max_bytes: Option<u64>,
}

/// The recordings filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    pub free_bytes: u64,
    /// Keep at least this much free.
    pub floor_bytes: u64,
}

/// Why a segment is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Age,
    StreamBytes,
    DiskFloor,
}

/// Segment ids to delete, oldest first, each with its reason.
///
/// `usage` is each stream's bytes on disk, the segment being written included. `oldest_first(Some(stream))` walks
/// that stream's finished segments and `oldest_first(None)` every stream's, both ordered by `(end_ms, start_ms,
/// id)`; the plan stops each walk at the first segment it keeps, so a pass reads the segments it deletes plus about
/// one per stream, however long the recordings are (the edge pages them out of an index).
pub fn plan<I>(
    usage: &HashMap<String, u64>,
    limits: &HashMap<String, StreamLimits>,
    disk: Disk,
    now_ms: i64,
    mut oldest_first: impl FnMut(Option<&str>) -> I,
) -> Vec<(i64, Reason)>
where
    I: Iterator<Item = StoredSegment>,
{
    let mut doomed: Vec<(StoredSegment, Reason)> = Vec::new();
    let mut ids: HashSet<i64> = HashSet::new();
    let mut freed: u64 = 0;

    // Per stream: too old, then over the stream's byte budget (which counts the segment being written, kept).
    // Walking oldest first, the first segment that is neither ends the walk: every later one is newer, and the
    // total only shrinks.
    let mut streams: Vec<(&String, &StreamLimits)> = limits
        .iter()
        .filter(|(_, l)| l.max_age_ms.is_some() || l.max_bytes.is_some())
        .collect();
    streams.sort_by_key(|(stream, _)| *stream);
    for (stream, l) in streams {
        let mut total = usage.get(stream).copied().unwrap_or(0);
        for s in oldest_first(Some(stream)) {
            let reason = if l.max_age_ms.is_some_and(|age| s.end_ms < now_ms - age) {
                Reason::Age
            } else if l.max_bytes.is_some_and(|max| total > max) {
                Reason::StreamBytes
            } else {
                break;
            };
            total = total.saturating_sub(s.bytes);
            freed += s.bytes;
            ids.insert(s.id);
            doomed.push((s, reason));
        }
    }

    // The whole disk: the oldest remaining segments of any stream until the floor is met.
    if disk.free_bytes + freed < disk.floor_bytes {
        for s in oldest_first(None) {
            if disk.free_bytes + freed >= disk.floor_bytes {
                break;
            }
            if !ids.insert(s.id) {
                continue;
            }
            freed += s.bytes;
            doomed.push((s, Reason::DiskFloor));
        }
    }

    doomed.sort_by_key(|(s, _)| (s.end_ms, s.start_ms, s.id));
    doomed.into_iter().map(|(s, r)| (s.id, r)).collect()
}

/// [`plan`] over segments in memory (the one being written among them): for tests and small catalogs.
pub fn plan_all(
    segments: &[StoredSegment],
    limits: &HashMap<String, StreamLimits>,
    disk: Disk,
    now_ms: i64,
) -> Vec<(i64, Reason)> {
    let mut usage: HashMap<String, u64> = HashMap::new();
    for s in segments {
        *usage.entry(s.stream.clone()).or_default() += s.bytes;
    }
    let mut finished: Vec<&StoredSegment> = segments.iter().filter(|s| !s.writing).collect();
    finished.sort_by_key(|s| (s.end_ms, s.start_ms, s.id));
    plan(&usage, limits, disk, now_ms, |stream| {
        finished
            .iter()
            .filter(move |s| stream.is_none_or(|x| s.stream == x))
            .map(|s| (*s).clone())
            .collect::<Vec<_>>()
            .into_iter()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn seg(id: i64, stream: &str, minute: i64, bytes: u64) -> StoredSegment {
        StoredSegment {
            id,
            stream: stream.into(),
            start_ms: minute * MIN,
            end_ms: (minute + 1) * MIN,
            bytes,
            writing: false,
        }
    }

    fn roomy() -> Disk {
        Disk {
            free_bytes: 1 << 40,
            floor_bytes: 1 << 30,
        }
    }

    #[test]
    fn deletes_what_is_older_than_the_streams_max_age() {
        let segs: Vec<_> = (0..10).map(|m| seg(m, "a", m, 100)).collect();
        let limits = HashMap::from([(
            "a".to_owned(),
            StreamLimits {
                max_age_ms: Some(5 * MIN),
                max_bytes: None,
            },
        )]);
        // Now is minute 10: segments ending before minute 5 go (ids 0..=3).
        let p = plan_all(&segs, &limits, roomy(), 10 * MIN);
        assert_eq!(p, (0..4).map(|id| (id, Reason::Age)).collect::<Vec<_>>());
        assert!(
            plan_all(&segs, &HashMap::new(), roomy(), 10 * MIN).is_empty(),
            "no limit, nothing goes"
        );
    }

    #[test]
    fn keeps_each_stream_under_its_bytes_counting_the_segment_being_written() {
        let mut segs: Vec<_> = (0..5).map(|m| seg(m, "a", m, 100)).collect();
        segs.push(StoredSegment {
            writing: true,
            ..seg(5, "a", 5, 100)
        });
        segs.extend((0..5).map(|m| seg(10 + m, "b", m, 100)));
        let limits = HashMap::from([(
            "a".to_owned(),
            StreamLimits {
                max_age_ms: None,
                max_bytes: Some(350),
            },
        )]);
        // "a" holds 600 bytes with the one being written: the three oldest go (600 → 300); "b" has no limit.
        let p = plan_all(&segs, &limits, roomy(), 6 * MIN);
        assert_eq!(
            p,
            vec![
                (0, Reason::StreamBytes),
                (1, Reason::StreamBytes),
                (2, Reason::StreamBytes)
            ]
        );
    }

    #[test]
    fn frees_the_disk_oldest_first_across_streams_never_the_one_being_written() {
        let segs = vec![
            seg(1, "a", 0, 500),
            seg(2, "b", 1, 500),
            seg(3, "a", 2, 500),
            StoredSegment {
                writing: true,
                ..seg(4, "b", 0, 5_000)
            },
        ];
        let disk = Disk {
            free_bytes: 200,
            floor_bytes: 1_000,
        };
        let p = plan_all(&segs, &HashMap::new(), disk, 3 * MIN);
        assert_eq!(p, vec![(1, Reason::DiskFloor), (2, Reason::DiskFloor)]);
        // Even deleting everything that may go can't meet the floor: all of it goes, the written one stays.
        let tiny = Disk {
            free_bytes: 0,
            floor_bytes: 1 << 40,
        };
        let p = plan_all(&segs, &HashMap::new(), tiny, 3 * MIN);
        assert_eq!(p.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn per_stream_deletions_count_towards_the_floor() {
        let segs: Vec<_> = (0..4).map(|m| seg(m, "a", m, 100)).collect();
        let limits = HashMap::from([(
            "a".to_owned(),
            StreamLimits {
                max_age_ms: Some(2 * MIN),
                max_bytes: None,
            },
        )]);
        let disk = Disk {
            free_bytes: 0,
            floor_bytes: 200,
        };
        // Age frees ids 0 and 1 (200 bytes): the floor is met without touching more.
        let p = plan_all(&segs, &limits, disk, 4 * MIN + 1);
        assert_eq!(p, vec![(0, Reason::Age), (1, Reason::Age)]);
        // A moment earlier only id 0 is too old; the floor takes the next oldest.
        let p = plan_all(&segs, &limits, disk, 4 * MIN);
        assert_eq!(p, vec![(0, Reason::Age), (1, Reason::DiskFloor)]);
    }

    #[test]
    fn reads_only_what_it_deletes_plus_one_per_walk() {
        // 10 000 segments of one stream, the 10 oldest too old; the disk has room.
        let segs: Vec<_> = (0..10_000).map(|m| seg(m, "a", m, 100)).collect();
        let limits = HashMap::from([(
            "a".to_owned(),
            StreamLimits {
                max_age_ms: Some((10_000 - 11) * MIN),
                max_bytes: None,
            },
        )]);
        let usage = HashMap::from([("a".to_owned(), 1_000_000)]);
        let read = std::cell::Cell::new(0);
        let p = plan(&usage, &limits, roomy(), 10_000 * MIN, |_| {
            segs.iter().cloned().inspect(|_| read.set(read.get() + 1))
        });
        assert_eq!(p.len(), 10);
        assert_eq!(read.get(), 11, "the ten deleted and the first kept");
    }
}
