//! The DVR player against real segment files (written by `SegmentWriter`, GStreamer's mp4mux) and an in-memory
//! catalog the tests change while it plays, as the recorder (rows added, the segment being written finalized) and
//! retention (rows and files deleted) do: what a viewer receives after a seek, across touching segments and gaps,
//! past files that are gone or damaged, at the live edge of a segment still being written, after a newer seek,
//! when it stops taking items, and when it goes away.
//!
//! Segments are 3 s of 25 fps test pattern (320x240, a keyframe every 25 frames: at 0, 1 and 2 s), so frame `n`
//! of a segment starting at `start` has `wall_ms` `start + 40 n`. Every wait is on a condition (items received,
//! catalog calls, the catalog's `Arc` count) with a generous timeout; the only fixed waits show that something
//! does *not* happen any more, or give a thread time to get further (the test holds whether it did or not).

mod common;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{frames, FRAMES};
use dvr::mp4::SampleIndex;
use dvr::player::{
    Player, PlayerEvent, PlayerItem, PlayerOptions, Seek, SegmentCatalog, SegmentRef, READ_AHEAD,
};
use dvr::writer::SegmentWriter;
use hub::HubFrame;
use sources::Codec;

const STREAM: &str = "cam";
/// Wall clock of the first segment of every test.
const T0: i64 = 1_790_000_000_000;
const FRAME_MS: i64 = 40;
const SEGMENT_MS: i64 = FRAMES as i64 * FRAME_MS;
/// Every wait for a condition gives up after this.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How long a count must stay the same to count as stopped.
const QUIET: Duration = Duration::from_millis(500);

// ---- Frames and segment files ----

/// A finalized segment of all the frames of `codec`, muxed once; every segment file of a test is a copy.
fn segment_bytes(codec: Codec) -> &'static [u8] {
    static H264: OnceLock<Vec<u8>> = OnceLock::new();
    static H265: OnceLock<Vec<u8>> = OnceLock::new();
    let cell = if codec == Codec::H264 { &H264 } else { &H265 };
    cell.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment.mp4");
        let mut w = open_writer(&path, codec);
        for f in frames(codec) {
            w.write(f).unwrap();
        }
        w.finish(TIMEOUT).unwrap();
        std::fs::read(&path).unwrap()
    })
}

/// Writes a finalized segment of `codec` at `dir/name`.
fn segment_file(dir: &Path, name: &str, codec: Codec) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, segment_bytes(codec)).unwrap();
    path
}

/// A segment being written, 500 ms fragments, as the recorder makes them.
fn open_writer(path: &Path, codec: Codec) -> SegmentWriter {
    SegmentWriter::create(path, codec, frames(codec)[0].pts_90k, 500).unwrap()
}

fn write(w: &mut SegmentWriter, codec: Codec, range: Range<usize>) {
    for f in &frames(codec)[range] {
        w.write(f).unwrap();
    }
}

/// Writes the first 2 s of a segment being written at `path` and waits until the muxer has put on disk all it
/// will before more frames come; returns how many samples that is. (It holds back the fragment it is in, and
/// writes a fragment's `moof` one fragment late: not all 50.)
async fn writing_two_seconds(w: &mut SegmentWriter, path: &Path) -> usize {
    write(w, Codec::H264, 0..50);
    wait_until("two fragments on disk", || {
        indexed(path).is_some_and(|n| n >= 24)
    })
    .await;
    let n = settled("the muxer", || indexed(path).unwrap_or(0)).await;
    assert!((24..50).contains(&n), "{n} samples on disk");
    n
}

/// Samples indexed from the file at `path` now; `None` before it has a `moov`.
fn indexed(path: &Path) -> Option<usize> {
    SampleIndex::read(&mut std::fs::File::open(path).ok()?)
        .ok()
        .map(|i| i.samples.len())
}

// ---- The catalog ----

/// The catalog as the tests change it: rows of one stream, and how often the player asked.
struct Catalog {
    rows: Mutex<Vec<SegmentRef>>,
    calls: AtomicUsize,
}

impl Catalog {
    fn new(rows: Vec<SegmentRef>) -> Arc<Catalog> {
        Arc::new(Catalog {
            rows: Mutex::new(rows),
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Retention: the row goes.
    fn remove(&self, id: i64) {
        self.rows.lock().unwrap().retain(|r| r.id != id);
    }

    /// The recorder closed the segment being written.
    fn finalize(&self, id: i64, end_ms: i64) {
        let mut rows = self.rows.lock().unwrap();
        let row = rows.iter_mut().find(|r| r.id == id).expect("the row");
        row.end_ms = Some(end_ms);
    }
}

/// What the gateway's SQLite query does: rows ending after `from_ms` or being written, by start, at most `limit`.
impl SegmentCatalog for Catalog {
    fn segments_from(
        &self,
        stream: &str,
        from_ms: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRef>, String> {
        assert_eq!(stream, STREAM);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut rows: Vec<SegmentRef> = self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.end_ms.is_none_or(|e| e > from_ms))
            .cloned()
            .collect();
        rows.sort_by_key(|r| (r.start_ms, r.id));
        rows.truncate(limit);
        Ok(rows)
    }
}

/// A complete 3 s H.264 segment's row.
fn row(id: i64, start_ms: i64, path: &Path) -> SegmentRef {
    SegmentRef {
        id,
        start_ms,
        end_ms: Some(start_ms + SEGMENT_MS),
        path: path.to_owned(),
        codec: Codec::H264,
    }
}

/// The row of a segment being written.
fn writing(id: i64, start_ms: i64, path: &Path, codec: Codec) -> SegmentRef {
    SegmentRef {
        end_ms: None,
        codec,
        ..row(id, start_ms, path)
    }
}

/// `count` touching rows from `T0` whose files do not exist.
fn missing_rows(dir: &Path, count: i64) -> Vec<SegmentRef> {
    (0..count)
        .map(|i| {
            row(
                i + 1,
                T0 + i * SEGMENT_MS,
                &dir.join(format!("gone-{i}.mp4")),
            )
        })
        .collect()
}

// ---- The player, as a viewer drives it ----

fn spawn(catalog: &Arc<Catalog>) -> Player {
    spawn_for(catalog, None)
}

fn spawn_for(catalog: &Arc<Catalog>, codec: Option<Codec>) -> Player {
    Player::spawn(
        catalog.clone(),
        PlayerOptions {
            stream_id: STREAM.into(),
            codec,
            mtu: 1200,
            poll_interval: Duration::from_millis(20),
        },
    )
    .unwrap()
}

fn seek(generation: u64, from_ms: i64) -> Seek {
    Seek {
        generation,
        from_ms,
        keyframes_only: false,
    }
}

/// An item as a viewer tells them apart: a frame by its instant and keyframe flag, or an event.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Frame { wall_ms: i64, key: bool },
    Event(PlayerEvent),
}

/// One item received, with the frame kept for closer checks.
#[derive(Debug)]
struct Got {
    generation: u64,
    seen: Seen,
    frame: Option<Arc<HubFrame>>,
}

impl Got {
    fn is_end(&self) -> bool {
        matches!(
            self.seen,
            Seen::Event(PlayerEvent::End | PlayerEvent::Failed(_))
        )
    }

    fn is_frame(&self) -> bool {
        self.frame.is_some()
    }
}

/// The next item, within [`TIMEOUT`]. Every frame is checked for what holds of all of them: packets, and one
/// timeline (`pts_90k` is `wall_ms` on the 90 kHz clock, as the frames here are whole milliseconds apart).
async fn next(player: &mut Player) -> Got {
    let item = tokio::time::timeout(TIMEOUT, player.recv())
        .await
        .expect("an item within the timeout")
        .expect("the player thread is running");
    match item {
        PlayerItem::Frame { generation, frame } => {
            let f = &frame.frame;
            assert!(!frame.packets.is_empty() && frame.packets.last().unwrap().marker);
            assert_eq!(f.pts_90k, f.wall_ms * 90, "frame at {}", f.wall_ms);
            assert!(!f.is_slate);
            Got {
                generation,
                seen: Seen::Frame {
                    wall_ms: f.wall_ms,
                    key: f.is_keyframe,
                },
                frame: Some(frame),
            }
        }
        PlayerItem::Event { generation, event } => Got {
            generation,
            seen: Seen::Event(event),
            frame: None,
        },
    }
}

/// Items until (and with) the first one `last` accepts.
async fn until(player: &mut Player, last: impl Fn(&Got) -> bool) -> Vec<Got> {
    let mut got = Vec::new();
    loop {
        let g = next(player).await;
        let done = last(&g);
        got.push(g);
        if done {
            return got;
        }
    }
}

/// Items until `End` (or `Failed`).
async fn until_end(player: &mut Player) -> Vec<Got> {
    until(player, Got::is_end).await
}

fn seen(got: &[Got]) -> Vec<Seen> {
    got.iter().map(|g| g.seen.clone()).collect()
}

fn event(e: PlayerEvent) -> Seen {
    Seen::Event(e)
}

/// The frames `range` of a segment starting at `start_ms`, as they should come out.
fn frames_at(start_ms: i64, range: Range<usize>) -> Vec<Seen> {
    range
        .map(|n| Seen::Frame {
            wall_ms: start_ms + n as i64 * FRAME_MS,
            key: n % 25 == 0,
        })
        .collect()
}

/// Every frame in `got` is, byte for byte, the frame written at its place in a segment starting at `start_ms`,
/// keyframes with the parameter sets written with them.
fn assert_frames_written(got: &[Got], start_ms: i64, codec: Codec) {
    for f in got.iter().filter_map(|g| g.frame.as_ref()) {
        let f = &f.frame;
        let n = ((f.wall_ms - start_ms) / FRAME_MS) as usize;
        let written = &frames(codec)[n];
        assert_eq!(f.codec, codec);
        // Not assert_eq: a failure would print kilobytes of picture.
        assert!(f.data == written.data, "frame {n}: other bytes");
        if f.is_keyframe {
            let (p, w) = (&f.params, &written.params);
            assert_eq!(
                (&p.vps, &p.sps, &p.pps, p.width, p.height),
                (&w.vps, &w.sps, &w.pps, w.width, w.height),
                "frame {n}: parameter sets"
            );
        }
    }
}

/// The frame numbers of the frames in `got` (of a segment starting at `start_ms`), in order.
fn frame_numbers(got: &[Got], start_ms: i64) -> Vec<i64> {
    got.iter()
        .filter_map(|g| match g.seen {
            Seen::Frame { wall_ms, .. } => Some((wall_ms - start_ms) / FRAME_MS),
            _ => None,
        })
        .collect()
}

/// The `SegmentSkipped` events, as (at_ms, reason).
fn skipped(got: &[Got]) -> Vec<(i64, String)> {
    got.iter()
        .filter_map(|g| match &g.seen {
            Seen::Event(PlayerEvent::SegmentSkipped { at_ms, reason }) => {
                Some((*at_ms, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Waits until `f` holds, for at most [`TIMEOUT`].
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `count` has not changed for [`QUIET`], and returns it.
async fn settled(what: &str, count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = count();
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= QUIET {
            return now;
        }
        assert!(Instant::now() < deadline, "{what} never stopped changing");
    }
}

/// Waits until the player's thread has ended: it held the catalog's only other `Arc`.
async fn wait_thread_ended(catalog: &Arc<Catalog>) {
    wait_until("the player thread to end", || {
        Arc::strong_count(catalog) == 1
    })
    .await;
}

// ---- Tests ----

/// A seek into the middle of a segment opens at the keyframe at or before the instant and plays from there.
async fn seek_into_the_middle(codec: Codec) {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", codec);
    let catalog = Catalog::new(vec![SegmentRef {
        codec,
        ..row(1, T0, &a)
    }]);
    let mut player = spawn(&catalog);
    // 1.5 s in: frame 37; the keyframe before it is frame 25, at 1 s.
    player.seek(seek(7, T0 + 1_500));
    let got = until_end(&mut player).await;
    assert!(got.iter().all(|g| g.generation == 7));
    let mut want = vec![event(PlayerEvent::Opened {
        shown_ms: T0 + 1_000,
    })];
    want.extend(frames_at(T0, 25..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);
    assert_frames_written(&got, T0, codec);

    // Exactly on a keyframe, and just before one.
    player.seek(seek(8, T0 + 2_000));
    let got = until_end(&mut player).await;
    assert_eq!(
        (got[0].generation, &got[0].seen, &got[1].seen),
        (
            8,
            &event(PlayerEvent::Opened {
                shown_ms: T0 + 2_000
            }),
            &frames_at(T0, 50..51)[0]
        )
    );
    player.seek(seek(9, T0 + 1_999));
    let got = until_end(&mut player).await;
    assert_eq!(
        got[0].seen,
        event(PlayerEvent::Opened {
            shown_ms: T0 + 1_000
        })
    );
    assert_eq!(got.len(), 1 + (FRAMES - 25) + 1);
}

#[tokio::test]
async fn a_seek_into_an_h264_segment_plays_from_the_keyframe_before_the_instant() {
    seek_into_the_middle(Codec::H264).await;
}

#[tokio::test]
async fn a_seek_into_an_h265_segment_plays_from_the_keyframe_before_the_instant() {
    seek_into_the_middle(Codec::H265).await;
}

#[tokio::test]
async fn plays_on_across_touching_segments_and_says_each_gap_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let b = segment_file(dir.path(), "b.mp4", Codec::H264);
    let c = segment_file(dir.path(), "c.mp4", Codec::H264);
    // A and B touch; C starts 4 s after B ends.
    let (b_start, c_start) = (T0 + SEGMENT_MS, T0 + 2 * SEGMENT_MS + 4_000);
    let catalog = Catalog::new(vec![
        row(1, T0, &a),
        row(2, b_start, &b),
        row(3, c_start, &c),
    ]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0 + 2_500));
    let got = until_end(&mut player).await;
    let mut want = vec![event(PlayerEvent::Opened {
        shown_ms: T0 + 2_000,
    })];
    want.extend(frames_at(T0, 50..FRAMES));
    want.extend(frames_at(b_start, 0..FRAMES));
    want.push(event(PlayerEvent::Gap {
        from_ms: b_start + SEGMENT_MS,
        to_ms: c_start,
    }));
    want.extend(frames_at(c_start, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);

    // A seek into the gap says it, then opens at the start of the next segment.
    player.seek(seek(2, c_start - 1_000));
    let got = until_end(&mut player).await;
    let mut want = vec![
        event(PlayerEvent::Gap {
            from_ms: c_start - 1_000,
            to_ms: c_start,
        }),
        event(PlayerEvent::Opened { shown_ms: c_start }),
    ];
    want.extend(frames_at(c_start, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);

    // After everything recorded: nothing to play.
    player.seek(seek(3, c_start + SEGMENT_MS));
    let got = until_end(&mut player).await;
    assert_eq!(seen(&got), vec![event(PlayerEvent::End)]);
}

#[tokio::test]
async fn keyframes_only_playback_sends_sync_samples_only() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let b = segment_file(dir.path(), "b.mp4", Codec::H264);
    let b_start = T0 + SEGMENT_MS;
    let catalog = Catalog::new(vec![row(1, T0, &a), row(2, b_start, &b)]);
    let mut player = spawn(&catalog);
    player.seek(Seek {
        keyframes_only: true,
        ..seek(1, T0 + 1_500)
    });
    let got = until_end(&mut player).await;
    let key = |start: i64, n: i64| Seen::Frame {
        wall_ms: start + n * 1_000,
        key: true,
    };
    assert_eq!(
        seen(&got),
        vec![
            event(PlayerEvent::Opened {
                shown_ms: T0 + 1_000
            }),
            key(T0, 1),
            key(T0, 2),
            key(b_start, 0),
            key(b_start, 1),
            key(b_start, 2),
            event(PlayerEvent::End),
        ]
    );
    assert_frames_written(&got[..3], T0, Codec::H264);
    assert_frames_written(&got[3..], b_start, Codec::H264);
}

#[tokio::test]
async fn segments_whose_files_are_gone_damaged_or_in_another_codec_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let garbage = d.join("garbage.mp4");
    std::fs::write(&garbage, b"not an mp4 at all, just some text ".repeat(30)).unwrap();
    let truncated = d.join("truncated.mp4");
    std::fs::write(&truncated, &segment_bytes(Codec::H264)[..300]).unwrap();
    let h265 = segment_file(d, "h265.mp4", Codec::H265);
    let good = segment_file(d, "good.mp4", Codec::H264);
    let start = |i: i64| T0 + i * SEGMENT_MS;
    let catalog = Catalog::new(vec![
        row(1, start(0), &d.join("deleted.mp4")),
        row(2, start(1), &garbage),
        row(3, start(2), &truncated),
        SegmentRef {
            codec: Codec::H265,
            ..row(4, start(3), &h265)
        },
        row(5, start(4), &good),
    ]);
    // The viewer negotiated H.264.
    let mut player = spawn_for(&catalog, Some(Codec::H264));
    player.seek(seek(1, T0 + 500));
    let got = until_end(&mut player).await;
    let skips = skipped(&got);
    let at: Vec<i64> = skips.iter().map(|s| s.0).collect();
    assert_eq!(at, vec![start(0), start(1), start(2), start(3)]);
    assert!(skips[0].1.contains("cannot open"), "{skips:?}");
    assert!(skips[1].1.contains("unreadable"), "{skips:?}");
    assert!(skips[2].1.contains("unreadable"), "{skips:?}");
    assert!(skips[3].1.contains("h265"), "{skips:?}");
    let mut want: Vec<Seen> = got[..4].iter().map(|g| g.seen.clone()).collect();
    want.push(event(PlayerEvent::Opened { shown_ms: start(4) }));
    want.extend(frames_at(start(4), 0..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);
    assert_frames_written(&got, start(4), Codec::H264);
}

#[tokio::test]
async fn a_segment_truncated_while_it_plays_is_skipped_from_the_first_sample_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let b = segment_file(dir.path(), "b.mp4", Codec::H264);
    let b_start = T0 + SEGMENT_MS;
    let catalog = Catalog::new(vec![row(1, T0, &a), row(2, b_start, &b)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    let mut got = until(&mut player, |g| g.is_frame()).await;
    // The player has indexed the file and read a few samples; now it is cut short under it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(300)
        .unwrap();
    got.extend(until_end(&mut player).await);
    let a_frames = got
        .iter()
        .filter(|g| matches!(g.seen, Seen::Frame { wall_ms, .. } if wall_ms < b_start))
        .count();
    assert!(
        (1..=READ_AHEAD + 2).contains(&a_frames),
        "{a_frames} frames of the truncated segment: read before the cut, no more"
    );
    let lost_at = T0 + a_frames as i64 * FRAME_MS;
    let mut want = vec![event(PlayerEvent::Opened { shown_ms: T0 })];
    want.extend(frames_at(T0, 0..a_frames));
    let skips = skipped(&got);
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert!(skips[0].1.contains("unreadable"), "{skips:?}");
    want.push(event(PlayerEvent::SegmentSkipped {
        at_ms: lost_at,
        reason: skips[0].1.clone(),
    }));
    want.extend(frames_at(b_start, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);
}

#[tokio::test]
async fn retention_while_a_segment_plays_lets_it_play_out_and_leaves_a_gap_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let b = segment_file(dir.path(), "b.mp4", Codec::H264);
    let c = segment_file(dir.path(), "c.mp4", Codec::H264);
    let (b_start, c_start) = (T0 + SEGMENT_MS, T0 + 2 * SEGMENT_MS);
    let catalog = Catalog::new(vec![
        row(1, T0, &a),
        row(2, b_start, &b),
        row(3, c_start, &c),
    ]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    let mut got = until(&mut player, |g| g.is_frame()).await;
    // Retention removes the oldest two, rows and files, while A plays. A's file stays readable through the open
    // handle, so A plays to its end; B is gone by the time A ends: a gap up to C.
    for (id, path) in [(1, &a), (2, &b)] {
        catalog.remove(id);
        std::fs::remove_file(path).unwrap();
    }
    got.extend(until_end(&mut player).await);
    let mut want = vec![event(PlayerEvent::Opened { shown_ms: T0 })];
    want.extend(frames_at(T0, 0..FRAMES));
    want.push(event(PlayerEvent::Gap {
        from_ms: b_start,
        to_ms: c_start,
    }));
    want.extend(frames_at(c_start, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);
}

#[tokio::test]
async fn the_segment_being_written_deleted_at_the_live_edge_is_skipped_where_playback_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    let mut w = open_writer(&path, Codec::H264);
    let on_disk = writing_two_seconds(&mut w, &path).await;
    let catalog = Catalog::new(vec![writing(1, T0, &path, Codec::H264)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    let mut got = until(&mut player, |g| g.seen == event(PlayerEvent::LiveEdge)).await;
    let shown = got.iter().filter(|g| g.is_frame()).count();
    assert_eq!(shown, on_disk);
    catalog.remove(1);
    got.extend(until_end(&mut player).await);
    let mut want = vec![event(PlayerEvent::Opened { shown_ms: T0 })];
    want.extend(frames_at(T0, 0..shown));
    want.push(event(PlayerEvent::LiveEdge));
    want.push(event(PlayerEvent::SegmentSkipped {
        at_ms: T0 + shown as i64 * FRAME_MS,
        reason: "deleted while playing".into(),
    }));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got), want);
    drop(w);
}

#[tokio::test]
async fn the_segment_being_written_plays_to_the_live_edge_then_on_as_written_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    let mut w = open_writer(&path, Codec::H264);
    let on_disk = writing_two_seconds(&mut w, &path).await;
    let catalog = Catalog::new(vec![writing(1, T0, &path, Codec::H264)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));

    // What is on disk, then the live edge: the muxer holds back the fragment it is in, so not all 50.
    let mut got = until(&mut player, |g| g.seen == event(PlayerEvent::LiveEdge)).await;
    let at_edge = got.iter().filter(|g| g.is_frame()).count();
    assert_eq!(at_edge, on_disk, "frames before the live edge");
    assert_eq!(
        got[0].seen,
        event(PlayerEvent::Opened { shown_ms: T0 }),
        "{:?}",
        got[0]
    );

    // More is written: what the muxer completes of it comes after the edge.
    write(&mut w, Codec::H264, 50..FRAMES);
    let after_edge = T0 + at_edge as i64 * FRAME_MS;
    got.extend(
        until(
            &mut player,
            |g| matches!(g.seen, Seen::Frame { wall_ms, .. } if wall_ms >= after_edge),
        )
        .await,
    );

    // The recorder closes the segment: the file is finalized, then the row gets its end.
    w.finish(TIMEOUT).unwrap();
    catalog.finalize(1, T0 + SEGMENT_MS);
    got.extend(until_end(&mut player).await);

    assert_eq!(
        frame_numbers(&got, T0),
        (0..FRAMES as i64).collect::<Vec<_>>(),
        "every frame once, in order"
    );
    assert_frames_written(&got, T0, Codec::H264);
    let events: Vec<&Seen> = got
        .iter()
        .filter(|g| !g.is_frame())
        .map(|g| &g.seen)
        .collect();
    assert_eq!(
        events.first(),
        Some(&&event(PlayerEvent::Opened { shown_ms: T0 }))
    );
    assert_eq!(events.last(), Some(&&event(PlayerEvent::End)));
    assert!(
        events[1..events.len() - 1]
            .iter()
            .all(|e| **e == event(PlayerEvent::LiveEdge)),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_seek_into_a_segment_opened_moments_ago_waits_at_the_live_edge_for_its_first_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.mp4");
    let mut w = open_writer(&path, Codec::H264);
    // Less than the first 500 ms fragment: mp4mux has written no moov yet.
    write(&mut w, Codec::H264, 0..5);
    let catalog = Catalog::new(vec![writing(1, T0, &path, Codec::H264)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0 + 100));
    let first = next(&mut player).await;
    assert_eq!(first.seen, event(PlayerEvent::LiveEdge));
    assert_eq!(indexed(&path), None, "the premise: no moov yet");

    write(&mut w, Codec::H264, 5..FRAMES);
    w.finish(TIMEOUT).unwrap();
    catalog.finalize(1, T0 + SEGMENT_MS);
    let got = until_end(&mut player).await;
    let mut want = vec![event(PlayerEvent::Opened { shown_ms: T0 })];
    want.extend(frames_at(T0, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    let got_seen: Vec<Seen> = seen(&got)
        .into_iter()
        .filter(|s| *s != event(PlayerEvent::LiveEdge))
        .collect();
    assert_eq!(got_seen, want);
}

#[tokio::test]
async fn playing_into_a_segment_opened_moments_ago_waits_at_the_live_edge_for_its_first_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let live = dir.path().join("live.mp4");
    let mut w = open_writer(&live, Codec::H264);
    write(&mut w, Codec::H264, 0..5);
    // The recorder rotated: A is complete, the new segment has its row before its first fragment is on disk.
    let b_start = T0 + SEGMENT_MS;
    let catalog = Catalog::new(vec![
        row(1, T0, &a),
        writing(2, b_start, &live, Codec::H264),
    ]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0 + 2_500));
    let mut got = until(&mut player, |g| {
        !matches!(g.seen, Seen::Frame { wall_ms, .. } if wall_ms < b_start)
            && !matches!(g.seen, Seen::Event(PlayerEvent::Opened { .. }))
    })
    .await;
    assert_eq!(
        got.last().unwrap().seen,
        event(PlayerEvent::LiveEdge),
        "at the end of A, the new segment is not skipped"
    );
    assert_eq!(indexed(&live), None, "the premise: no moov yet");

    write(&mut w, Codec::H264, 5..FRAMES);
    w.finish(TIMEOUT).unwrap();
    catalog.finalize(2, b_start + SEGMENT_MS);
    got.extend(until_end(&mut player).await);
    let mut want = vec![event(PlayerEvent::Opened {
        shown_ms: T0 + 2_000,
    })];
    want.extend(frames_at(T0, 50..FRAMES));
    want.extend(frames_at(b_start, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    let got_seen: Vec<Seen> = seen(&got)
        .into_iter()
        .filter(|s| *s != event(PlayerEvent::LiveEdge))
        .collect();
    assert_eq!(got_seen, want);
}

#[tokio::test]
async fn the_latest_seek_wins_and_nothing_older_arrives_after_its_first_item() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let b = segment_file(dir.path(), "b.mp4", Codec::H264);
    let b_start = T0 + SEGMENT_MS;
    let catalog = Catalog::new(vec![row(1, T0, &a), row(2, b_start, &b)]);
    let mut player = spawn(&catalog);
    for round in 0..3u64 {
        let (g1, g2) = (round * 2 + 1, round * 2 + 2);
        player.seek(seek(g1, T0));
        if round > 0 {
            // Let the first seek get going (and fill the channel) before the second.
            let first = next(&mut player).await;
            assert_eq!(first.generation, g1);
        }
        player.seek(seek(g2, b_start + 1_500));
        let got = until(&mut player, |g| g.generation == g2 && g.is_end()).await;
        let newest = got
            .iter()
            .position(|g| g.generation == g2)
            .expect("the second seek plays");
        assert!(
            newest <= 1,
            "round {round}: {newest} items of the first seek after the second: {:?}",
            seen(&got[..newest])
        );
        assert!(got[..newest].iter().all(|g| g.generation == g1));
        assert!(
            got[newest..].iter().all(|g| g.generation == g2),
            "round {round}"
        );
        let mut want = vec![event(PlayerEvent::Opened {
            shown_ms: b_start + 1_000,
        })];
        want.extend(frames_at(b_start, 25..FRAMES));
        want.push(event(PlayerEvent::End));
        assert_eq!(seen(&got[newest..]), want, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seek_never_discards_its_own_first_items() {
    // `seek` discards what older seeks queued while the thread may already be answering it: a thread that
    // answers before the discarding is done (it only takes being scheduled first) must not lose its `Opened`
    // and keyframe. Many seeks, each answered at once by an idle thread and read to its end, by a few viewers
    // at once to make that scheduling likelier.
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let catalog = Catalog::new(vec![row(1, T0, &a)]);
    let viewers: Vec<_> = (0..4)
        .map(|_| {
            let mut player = spawn(&catalog);
            tokio::spawn(async move {
                let mut want = vec![event(PlayerEvent::Opened {
                    shown_ms: T0 + 2_000,
                })];
                want.extend(frames_at(T0, 50..FRAMES));
                want.push(event(PlayerEvent::End));
                for generation in 1..=300 {
                    player.seek(seek(generation, T0 + 2_500));
                    let got = until_end(&mut player).await;
                    assert!(got.iter().all(|g| g.generation == generation));
                    assert_eq!(seen(&got), want, "seek {generation}");
                }
            })
        })
        .collect();
    for v in viewers {
        v.await.unwrap();
    }
}

#[tokio::test]
async fn a_seek_is_taken_between_unplayable_segments_and_discards_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let good = segment_file(dir.path(), "good.mp4", Codec::H264);
    // 40 segments whose files are gone (each one a catalog call and a `SegmentSkipped`), then a good one.
    let mut rows = missing_rows(dir.path(), 40);
    let good_start = T0 + 40 * SEGMENT_MS;
    rows.push(row(41, good_start, &good));
    let catalog = Catalog::new(rows);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    wait_until("the channel to fill", || catalog.calls() >= READ_AHEAD).await;
    settled("catalog calls", || catalog.calls()).await;

    player.seek(seek(2, good_start + 500));
    let got = until(&mut player, |g| g.generation == 2 && g.is_end()).await;
    let newest = got.iter().position(|g| g.generation == 2).unwrap();
    assert!(
        newest <= 1,
        "{newest} items of the first seek after the second: {:?}",
        seen(&got[..newest])
    );
    let mut want = vec![event(PlayerEvent::Opened {
        shown_ms: good_start,
    })];
    want.extend(frames_at(good_start, 0..FRAMES));
    want.push(event(PlayerEvent::End));
    assert_eq!(seen(&got[newest..]), want);
}

#[tokio::test]
async fn a_player_reads_ahead_at_most_the_channel_and_waits_for_the_viewer() {
    let dir = tempfile::tempdir().unwrap();
    // Every row's file is gone: each item is one `SegmentSkipped` after one catalog call, so the calls count the
    // items read.
    let catalog = Catalog::new(missing_rows(dir.path(), 40));
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    wait_until("the channel to fill", || catalog.calls() >= READ_AHEAD).await;
    let read = settled("catalog calls", || catalog.calls()).await;
    assert!(
        (READ_AHEAD..=READ_AHEAD + 1).contains(&read),
        "{read} catalog calls without the viewer taking anything"
    );
    // The viewer takes one item: the player reads exactly one more, and waits again.
    let first = next(&mut player).await;
    assert_eq!(skipped(std::slice::from_ref(&first))[0].0, T0);
    wait_until("one more read", || catalog.calls() > read).await;
    assert_eq!(settled("catalog calls", || catalog.calls()).await, read + 1);
    // Nothing was lost meanwhile: the items come in order.
    for i in 1..READ_AHEAD as i64 + 1 {
        let got = next(&mut player).await;
        assert_eq!(
            skipped(std::slice::from_ref(&got))[0].0,
            T0 + i * SEGMENT_MS
        );
    }
}

#[tokio::test]
async fn dropping_a_player_ends_its_thread_when_idle_at_the_end_or_at_the_live_edge() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);

    // Never told anything.
    let catalog = Catalog::new(vec![row(1, T0, &a)]);
    let player = spawn(&catalog);
    assert_eq!(
        Arc::strong_count(&catalog),
        2,
        "the thread holds the catalog"
    );
    drop(player);
    wait_thread_ended(&catalog).await;

    // After `End`, waiting for the next command.
    let catalog = Catalog::new(vec![row(1, T0, &a)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0 + 2_500));
    until_end(&mut player).await;
    drop(player);
    wait_thread_ended(&catalog).await;

    // At the live edge, polling the segment being written.
    let path = dir.path().join("live.mp4");
    let mut w = open_writer(&path, Codec::H264);
    writing_two_seconds(&mut w, &path).await;
    let catalog = Catalog::new(vec![writing(1, T0, &path, Codec::H264)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    until(&mut player, |g| g.seen == event(PlayerEvent::LiveEdge)).await;
    let polls = catalog.calls();
    wait_until("the player to poll", || catalog.calls() > polls).await;
    drop(player);
    wait_thread_ended(&catalog).await;
    drop(w);
}

#[tokio::test]
async fn dropping_a_player_blocked_on_a_full_channel_ends_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    // Blocked between segments (every file gone: the catalog calls show where it is).
    let catalog = Catalog::new(missing_rows(dir.path(), 40));
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    wait_until("the channel to fill", || catalog.calls() >= READ_AHEAD).await;
    settled("catalog calls", || catalog.calls()).await;
    drop(player);
    wait_thread_ended(&catalog).await;

    // Blocked in the middle of a segment, its frames unread.
    let a = segment_file(dir.path(), "a.mp4", Codec::H264);
    let catalog = Catalog::new(vec![row(1, T0, &a)]);
    let mut player = spawn(&catalog);
    player.seek(seek(1, T0));
    wait_until("the segment opened", || catalog.calls() == 1).await;
    // It reads 8 small samples in far less than this, then blocks; whether or not it got there, it must end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(player);
    wait_thread_ended(&catalog).await;
}
