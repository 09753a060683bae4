//! Which recorded segments to delete: each stream's age and size limits, then the disk's free-space floor, oldest
//! first. Only complete (or recovered) segments go; the one being written never does. The deleter that carries the
//! plan out (and the catalog rows with it) is at the edge.

use std::collections::HashMap;

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
pub fn plan(
    segments: &[StoredSegment],
    limits: &HashMap<String, StreamLimits>,
    disk: Disk,
    now_ms: i64,
) -> Vec<(i64, Reason)> {
    // Oldest first: the order of deletion and of the plan.
    let mut candidates: Vec<&StoredSegment> = segments.iter().filter(|s| !s.writing).collect();
    candidates.sort_by_key(|s| (s.end_ms, s.start_ms, s.id));
    let mut stream_bytes: HashMap<&str, u64> = HashMap::new();
    for s in segments {
        *stream_bytes.entry(s.stream.as_str()).or_default() += s.bytes;
    }
    let mut reasons: HashMap<i64, Reason> = HashMap::new();
    let mut freed: u64 = 0;

    // Per stream: too old, then over the stream's byte budget (which counts the segment being written, kept).
    for s in &candidates {
        let l = limits.get(&s.stream).copied().unwrap_or_default();
        let total = stream_bytes
            .get_mut(s.stream.as_str())
            .expect("counted above");
        let reason = if l.max_age_ms.is_some_and(|age| s.end_ms < now_ms - age) {
            Reason::Age
        } else if l.max_bytes.is_some_and(|max| *total > max) {
            Reason::StreamBytes
        } else {
            continue;
        };
        *total -= s.bytes;
        freed += s.bytes;
        reasons.insert(s.id, reason);
    }

    // The whole disk: the oldest remaining segments of any stream until the floor is met.
    for s in &candidates {
        if disk.free_bytes + freed >= disk.floor_bytes {
            break;
        }
        if reasons.contains_key(&s.id) {
            continue;
        }
        freed += s.bytes;
        reasons.insert(s.id, Reason::DiskFloor);
    }

    candidates
        .iter()
        .filter_map(|s| reasons.get(&s.id).map(|r| (s.id, *r)))
        .collect()
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
        let p = plan(&segs, &limits, roomy(), 10 * MIN);
        assert_eq!(p, (0..4).map(|id| (id, Reason::Age)).collect::<Vec<_>>());
        assert!(
            plan(&segs, &HashMap::new(), roomy(), 10 * MIN).is_empty(),
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
        let p = plan(&segs, &limits, roomy(), 6 * MIN);
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
        let p = plan(&segs, &HashMap::new(), disk, 3 * MIN);
        assert_eq!(p, vec![(1, Reason::DiskFloor), (2, Reason::DiskFloor)]);
        // Even deleting everything that may go can't meet the floor: all of it goes, the written one stays.
        let tiny = Disk {
            free_bytes: 0,
            floor_bytes: 1 << 40,
        };
        let p = plan(&segs, &HashMap::new(), tiny, 3 * MIN);
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
        let p = plan(&segs, &limits, disk, 4 * MIN + 1);
        assert_eq!(p, vec![(0, Reason::Age), (1, Reason::Age)]);
        // A moment earlier only id 0 is too old; the floor takes the next oldest.
        let p = plan(&segs, &limits, disk, 4 * MIN);
        assert_eq!(p, vec![(0, Reason::Age), (1, Reason::DiskFloor)]);
    }
}
