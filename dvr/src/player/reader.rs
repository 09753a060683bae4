//! The player's thread: opens segments where [`schedule`](super::schedule) says, reads their samples one by one
//! with [`SampleIndex`], and hands frames and events to the viewer through the bounded channel. Every blocking
//! call of a player (file reads, catalog queries) happens here.
//!
//! The segment being written is read up to its last complete fragment; at the end of what is there the player
//! says [`PlayerEvent::LiveEdge`] once and looks again every `poll_interval`. A segment the recorder has just
//! opened has no `moov` until its first fragment is written: that is the live edge too, not a damaged file. When the recorder finalizes that
//! segment (the file is rewritten as a normal MP4) the index is read anew and playback goes on after the last
//! sample sent.

use std::fs::File;
use std::sync::Arc;

use hub::{packetize, HubFrame};
use sources::{Frame, ParameterSets};
use tokio::sync::mpsc;
use tracing::debug;

use super::schedule::{after, open_at, SegmentRef, Step};
use super::{Control, PlayerEvent, PlayerItem, PlayerOptions, Seek, SegmentCatalog};
use crate::mp4::{Mp4Error, SampleIndex};

/// Catalog rows asked for at once.
const ROWS: usize = 4;

/// The segment being played.
struct Playing {
    generation: u64,
    keyframes_only: bool,
    segment: SegmentRef,
    file: File,
    index: SampleIndex,
    /// The next sample to consider (in keyframes-only playback, the next sync sample from here).
    cursor: usize,
    /// Nothing more to play: said `End` (or failed) already.
    done: bool,
    /// Presentation time (90 kHz, from the segment's first sample) of the last sample sent.
    last_pts: Option<i64>,
    at_edge: bool,
}

/// Why a segment can't be played (yet).
struct Unplayable {
    reason: String,
    /// The file has no complete `moov`: not an MP4, or a segment whose first fragment is still being written.
    no_moov: bool,
}

impl Unplayable {
    fn new(reason: String) -> Unplayable {
        Unplayable {
            reason,
            no_moov: false,
        }
    }
}

/// A segment to play, and the unrecorded span `(from_ms, to_ms)` jumped over to reach it.
type Picked = (SegmentRef, Option<(i64, i64)>);

enum Flow {
    Go,
    /// Nothing to read for now (the live edge of a segment being written).
    Wait,
    /// The channel is closed: the viewer is gone.
    Stop,
}

struct Reader {
    catalog: Arc<dyn SegmentCatalog>,
    opts: PlayerOptions,
    control: Arc<Control>,
    tx: mpsc::Sender<PlayerItem>,
    frames: u64,
}

pub(super) fn run(
    catalog: Arc<dyn SegmentCatalog>,
    opts: PlayerOptions,
    control: Arc<Control>,
    tx: mpsc::Sender<PlayerItem>,
) {
    let mut r = Reader {
        catalog,
        opts,
        control,
        tx,
        frames: 0,
    };
    let mut playing: Option<Playing> = None;
    loop {
        if r.control.closed() {
            return;
        }
        let command = match &playing {
            Some(_) => r.control.take(),
            None => match r.control.wait(None) {
                Some(s) => Some(s),
                None => return,
            },
        };
        if let Some(seek) = command {
            playing = match r.open(seek) {
                Ok(p) => p,
                Err(()) => return,
            };
            continue;
        }
        let Some(p) = playing.as_mut() else { continue };
        match r.step(p) {
            Ok(Flow::Go) => {}
            Ok(Flow::Wait) => {
                if let Some(seek) = r.control.wait(Some(r.opts.poll_interval)) {
                    playing = match r.open(seek) {
                        Ok(p) => p,
                        Err(()) => return,
                    };
                }
            }
            Ok(Flow::Stop) | Err(()) => return,
        }
        if playing.as_ref().is_some_and(|p| p.done) {
            // Ended and said so: wait for the next command.
            playing = None;
        }
    }
}

impl Reader {
    fn send(&self, item: PlayerItem) -> Result<(), ()> {
        self.tx.blocking_send(item).map_err(|_| ())
    }

    fn event(&self, generation: u64, event: PlayerEvent) -> Result<(), ()> {
        debug!(stream = %self.opts.stream_id, generation, ?event, "DVR player");
        self.send(PlayerItem::Event { generation, event })
    }

    fn rows(&self, from_ms: i64) -> Result<Vec<SegmentRef>, String> {
        self.catalog
            .segments_from(&self.opts.stream_id, from_ms, ROWS)
    }

    /// Asks the catalog for the segments from `from_ms` and lets `choose` pick one, saying `Gap`, `End` or
    /// `Failed` as it goes; `Ok(None)` when nothing is to be played (said already), `Err` when the viewer is gone.
    fn pick(
        &mut self,
        g: u64,
        from_ms: i64,
        choose: impl FnOnce(&[SegmentRef]) -> Step,
    ) -> Result<Option<Picked>, ()> {
        let rows = match self.rows(from_ms) {
            Ok(r) => r,
            Err(e) => {
                self.event(g, PlayerEvent::Failed(e))?;
                return Ok(None);
            }
        };
        match choose(&rows) {
            Step::End => {
                self.event(g, PlayerEvent::End)?;
                Ok(None)
            }
            Step::Play { index, gap } => {
                if let Some((from_ms, to_ms)) = gap {
                    self.event(g, PlayerEvent::Gap { from_ms, to_ms })?;
                }
                Ok(Some((rows[index].clone(), gap)))
            }
        }
    }

    /// Opens the recording for `seek`; `Ok(None)` when nothing is recorded from there (said as `End`).
    fn open(&mut self, seek: Seek) -> Result<Option<Playing>, ()> {
        let picked = self.pick(seek.generation, seek.from_ms, |rows| {
            open_at(rows, seek.from_ms)
        })?;
        let Some((segment, gap)) = picked else {
            return Ok(None);
        };
        let target = gap.map_or(seek.from_ms, |(_, to)| to);
        self.start_segment(seek, segment, target, true)
    }

    /// Starts `segment` at the keyframe at or before `t_ms`, moving on past segments that can't be played. A
    /// segment being written that has no `moov` yet (the recorder has just opened it; mp4mux writes the `moov`
    /// with the first fragment) is the live edge: said once, then looked at again every `poll_interval`.
    /// `Ok(None)` when there is nothing to play (said as `End` or `Failed`), or when a newer command (or the
    /// drop) supersedes this one: the caller goes back to the command loop.
    fn start_segment(
        &mut self,
        seek: Seek,
        mut segment: SegmentRef,
        mut t_ms: i64,
        announce: bool,
    ) -> Result<Option<Playing>, ()> {
        let g = seek.generation;
        let mut at_edge = false;
        loop {
            let reason = match self.load(&segment) {
                Ok((file, index)) => {
                    // Track time of the instant: the index counts from the first sample's presentation time.
                    let offset = (t_ms - segment.start_ms).max(0);
                    let first = index.samples.first().map_or(0, |s| s.pts());
                    let target = first + offset * i64::from(index.timescale) / 1000;
                    let cursor = index.sync_at_or_before(target).unwrap_or(0);
                    if announce {
                        let shown_ms = if index.samples.is_empty() {
                            t_ms.max(segment.start_ms)
                        } else {
                            segment.start_ms + index.pts_90k(cursor) / 90
                        };
                        self.event(g, PlayerEvent::Opened { shown_ms })?;
                    }
                    return Ok(Some(Playing {
                        generation: g,
                        keyframes_only: seek.keyframes_only,
                        segment,
                        file,
                        index,
                        cursor,
                        done: false,
                        last_pts: None,
                        at_edge: false,
                    }));
                }
                Err(e) if e.no_moov && segment.is_writing() => {
                    if !at_edge {
                        at_edge = true;
                        self.event(g, PlayerEvent::LiveEdge)?;
                    }
                    if self.control.wait_superseded(self.opts.poll_interval) {
                        return Ok(None);
                    }
                    match self.row_of(&segment) {
                        // Still being written (try again), or finalized meanwhile (then it must load).
                        Ok(Some(row)) => {
                            segment = row;
                            continue;
                        }
                        Ok(None) => "deleted while playing".to_owned(),
                        Err(e) => {
                            self.event(g, PlayerEvent::Failed(e))?;
                            return Ok(None);
                        }
                    }
                }
                Err(e) => e.reason,
            };
            self.event(
                g,
                PlayerEvent::SegmentSkipped {
                    at_ms: segment.start_ms,
                    reason,
                },
            )?;
            // A run of unplayable segments (hours recorded in a codec the session did not negotiate) is walked
            // one catalog query at a time: a newer seek must not wait for the end of it.
            if self.control.superseded() {
                return Ok(None);
            }
            match self.following(g, &segment)? {
                Some(s) => {
                    t_ms = s.start_ms;
                    segment = s;
                    at_edge = false;
                }
                None => return Ok(None),
            }
        }
    }

    /// The segment after `current` (saying `Gap` or `End` as needed).
    fn following(&mut self, g: u64, current: &SegmentRef) -> Result<Option<SegmentRef>, ()> {
        let from_ms = current.end_ms.unwrap_or(current.start_ms);
        Ok(self
            .pick(g, from_ms, |rows| after(current, rows))?
            .map(|(segment, _)| segment))
    }

    /// The catalog's row for `segment` now; `None` once it is gone.
    fn row_of(&self, segment: &SegmentRef) -> Result<Option<SegmentRef>, String> {
        self.rows(segment.start_ms)
            .map(|rows| rows.into_iter().find(|r| r.id == segment.id))
    }

    fn load(&self, segment: &SegmentRef) -> Result<(File, SampleIndex), Unplayable> {
        if self.opts.codec.is_some_and(|c| c != segment.codec) {
            return Err(Unplayable::new(format!(
                "recorded in {}, which this session did not negotiate",
                segment.codec.name()
            )));
        }
        let mut file = File::open(&segment.path)
            .map_err(|e| Unplayable::new(format!("cannot open the file: {e}")))?;
        let index = SampleIndex::read(&mut file).map_err(|e| Unplayable {
            no_moov: matches!(e, Mp4Error::NoMoov),
            reason: format!("unreadable MP4: {e}"),
        })?;
        Ok((file, index))
    }

    /// Sends the next sample, or moves to what comes after the segment.
    fn step(&mut self, p: &mut Playing) -> Result<Flow, ()> {
        let len = p.index.samples.len();
        let candidate = if p.keyframes_only {
            p.index.next_sync(p.cursor)
        } else {
            Some(p.cursor)
        };
        let Some(i) = candidate.filter(|&i| i < len) else {
            return self.segment_end(p);
        };
        let sample = match p.index.read_sample(&mut p.file, i) {
            Ok(s) => s,
            Err(e) => {
                // Truncated or corrupt from here: skip the rest of the segment.
                let at_ms = p.segment.start_ms + p.index.pts_90k(i) / 90;
                self.event(
                    p.generation,
                    PlayerEvent::SegmentSkipped {
                        at_ms,
                        reason: format!("sample {i} unreadable: {e}"),
                    },
                )?;
                p.cursor = len;
                p.segment.end_ms.get_or_insert(at_ms);
                return Ok(Flow::Go);
            }
        };
        p.at_edge = false;
        let pts = p.index.pts_90k(i);
        p.last_pts = Some(pts);
        p.cursor = i + 1;
        let params: Arc<ParameterSets> = sample
            .params
            .map_or_else(|| p.index.params.clone(), Arc::new);
        let frame = Frame {
            codec: p.index.codec,
            data: sample.data,
            pts_90k: p.segment.start_ms * 90 + pts,
            wall_ms: p.segment.start_ms + pts / 90,
            is_keyframe: p.index.samples[i].is_sync,
            params,
            is_slate: false,
            starts_run: false,
        };
        let packets = packetize(&frame, self.opts.mtu);
        self.frames += 1;
        let frame = Arc::new(HubFrame {
            frame,
            packets,
            index: self.frames,
        });
        match self.send(PlayerItem::Frame {
            generation: p.generation,
            frame,
        }) {
            Ok(()) => Ok(Flow::Go),
            Err(()) => Ok(Flow::Stop),
        }
    }

    /// At the end of the samples indexed: wait for more (being written), reopen (just finalized), or go on.
    fn segment_end(&mut self, p: &mut Playing) -> Result<Flow, ()> {
        if p.segment.is_writing() {
            if p.index.refresh(&mut p.file).unwrap_or(0) > 0 {
                return Ok(Flow::Go);
            }
            match self.row_of(&p.segment) {
                Ok(Some(row)) if row.is_writing() => {
                    if !p.at_edge {
                        p.at_edge = true;
                        self.event(p.generation, PlayerEvent::LiveEdge)?;
                    }
                    return Ok(Flow::Wait);
                }
                Ok(Some(row)) => {
                    // Finalized since: the file was rewritten; find our place in its new index.
                    p.segment = row;
                    match self.load(&p.segment) {
                        Ok((file, index)) => {
                            p.cursor = match p.last_pts {
                                None => 0,
                                Some(last) => (0..index.samples.len())
                                    .find(|&i| index.pts_90k(i) > last)
                                    .unwrap_or(index.samples.len()),
                            };
                            p.file = file;
                            p.index = index;
                            return Ok(Flow::Go);
                        }
                        Err(e) => {
                            self.event(
                                p.generation,
                                PlayerEvent::SegmentSkipped {
                                    at_ms: p.segment.start_ms,
                                    reason: e.reason,
                                },
                            )?;
                        }
                    }
                }
                Ok(None) => {
                    // Everything indexed has been played: the segment ends, and is skipped, there.
                    let stopped = p.segment.start_ms + p.index.end_90k() / 90;
                    self.event(
                        p.generation,
                        PlayerEvent::SegmentSkipped {
                            at_ms: stopped,
                            reason: "deleted while playing".into(),
                        },
                    )?;
                    p.segment.end_ms = Some(stopped);
                }
                Err(e) => {
                    self.event(p.generation, PlayerEvent::Failed(e))?;
                    p.done = true;
                    return Ok(Flow::Go);
                }
            }
        }
        let seek = Seek {
            generation: p.generation,
            from_ms: 0,
            keyframes_only: p.keyframes_only,
        };
        let current = p.segment.clone();
        match self.following(p.generation, &current)? {
            Some(next) => {
                let start = next.start_ms;
                match self.start_segment(seek, next, start, false)? {
                    Some(n) => *p = n,
                    None => p.done = true,
                }
            }
            None => p.done = true,
        }
        Ok(Flow::Go)
    }
}
