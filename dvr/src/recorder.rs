//! The recorder of one stream: a hub subscriber that cuts the stream into MP4 segments.
//!
//! A tokio task takes the hub's frames, asks the [`Segmenter`] what to do with each, and hands frames and
//! open/close orders to a writer thread that owns the [`SegmentWriter`] (GStreamer calls block). What happens to
//! segments is reported as [`RecorderEvent`]s for the catalog.
//!
//! Nothing is lost silently and no viewer waits. The queue to the writer thread is bounded by bytes
//! ([`RecorderOptions::max_queued_bytes`]): when the writer is that far behind (a hung or very slow disk), the open
//! segment is closed at its last queued frame, frames are dropped (counted in [`RecorderStats`], logged, and
//! reported as one [`RecorderEvent::Dropped`] gap once the queue has room again), and the next segment opens at a
//! keyframe. A file is never written with a hole in it: the catalog simply has no segment for the gap. The same
//! close-and-resume happens when the hub drops frames for this subscriber.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hub::{Hub, HubFrame};
use sources::{Codec, Frame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::segmenter::{CloseReason, Closed, Segmenter, SegmenterOptions, Step};
use crate::writer::SegmentWriter;

/// How long the recorder's hub queue may hold a frame before frames are dropped (a counted gap).
const RECORDER_MAX_LAG: Duration = Duration::from_secs(10);

/// Default bound of the writer queue: about 20 s of a 12 Mbit/s camera. Memory, not disk, is what it protects.
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 32 * 1024 * 1024;
/// What a queued command costs besides its frame's bytes (the command, the `Arc`, the channel slot).
const COMMAND_OVERHEAD_BYTES: u64 = 128;
/// Longest wait for the muxer to finalize a segment.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Recorder settings.
#[derive(Clone, Debug)]
pub struct RecorderOptions {
    /// Directory of this stream's segments (created if missing); files are named `<start_ms>.mp4`.
    pub dir: PathBuf,
    pub segmenter: SegmenterOptions,
    /// MP4 fragment length while a segment is written: the most a crash can lose.
    pub fragment_ms: u32,
    /// Bytes of frames the writer thread may be behind; past it frames are dropped as a gap.
    pub max_queued_bytes: u64,
}

/// Counters of one recorder, readable while it runs ([`RecorderHandle::stats`]).
#[derive(Debug, Default)]
pub struct RecorderStats {
    queued_bytes: AtomicU64,
    peak_queued_bytes: AtomicU64,
    dropped_frames: AtomicU64,
    gaps: AtomicU64,
}

/// A snapshot of [`RecorderStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderCounters {
    /// Bytes handed to the writer thread and not yet written.
    pub queued_bytes: u64,
    /// The most that was ever queued.
    pub peak_queued_bytes: u64,
    /// Frames dropped because the writer queue was full.
    pub dropped_frames: u64,
    /// Runs of such drops.
    pub gaps: u64,
}

impl RecorderStats {
    fn add_queued(&self, n: u64) {
        let now = self.queued_bytes.fetch_add(n, Ordering::AcqRel) + n;
        self.peak_queued_bytes.fetch_max(now, Ordering::AcqRel);
    }

    fn sub_queued(&self, n: u64) {
        self.queued_bytes.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn snapshot(&self) -> RecorderCounters {
        RecorderCounters {
            queued_bytes: self.queued_bytes.load(Ordering::Acquire),
            peak_queued_bytes: self.peak_queued_bytes.load(Ordering::Acquire),
            dropped_frames: self.dropped_frames.load(Ordering::Acquire),
            gaps: self.gaps.load(Ordering::Acquire),
        }
    }
}

/// What happened to a segment.
#[derive(Clone, Debug, PartialEq)]
pub enum RecorderEvent {
    /// A segment file was created and is being written.
    Opened {
        path: PathBuf,
        start_ms: i64,
        codec: Codec,
        width: u32,
        height: u32,
    },
    /// A segment was finalized: a normal MP4 of `bytes` bytes spanning `[start_ms, end_ms)`.
    Closed {
        path: PathBuf,
        start_ms: i64,
        end_ms: i64,
        frames: u64,
        bytes: u64,
        reason: CloseReason,
    },
    /// Writing failed (disk full, say); the segment's file is left as it is (up to its last complete fragment it
    /// is readable: see `recover`), and recording resumes at the next keyframe.
    Failed { path: PathBuf, error: String },
    /// The writer queue was full from `from_ms` to `to_ms` (frame instants): `frames` frames were not recorded.
    /// Sent when the queue has room again (or recording stops); no segment covers the gap.
    Dropped {
        from_ms: i64,
        to_ms: i64,
        frames: u64,
    },
}

enum Command {
    Open {
        path: PathBuf,
        first: Arc<HubFrame>,
        start_ms: i64,
    },
    Frame(Arc<HubFrame>),
    Close(Closed),
}

impl Command {
    /// What this command counts against [`RecorderOptions::max_queued_bytes`] until the writer has carried it out.
    fn cost(&self) -> u64 {
        COMMAND_OVERHEAD_BYTES
            + match self {
                Command::Open { first, .. } => first.frame.data.len() as u64,
                Command::Frame(f) => f.frame.data.len() as u64,
                Command::Close(_) => 0,
            }
    }
}

/// The recorder side of the writer queue: every command is counted in bytes until the writer took it.
struct Queue {
    tx: mpsc::UnboundedSender<Command>,
    stats: Arc<RecorderStats>,
}

impl Queue {
    fn send(&self, cmd: Command) {
        let cost = cmd.cost();
        self.stats.add_queued(cost);
        if self.tx.send(cmd).is_err() {
            self.stats.sub_queued(cost);
        }
    }
}

/// A run of frames dropped because the writer queue was full.
struct DropRun {
    from_ms: i64,
    to_ms: i64,
    frames: u64,
}

/// A running recorder.
pub struct RecorderHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
    stats: Arc<RecorderStats>,
}

impl RecorderHandle {
    /// Starts recording `hub`'s stream.
    pub fn spawn(
        hub: Hub,
        opts: RecorderOptions,
        events: mpsc::UnboundedSender<RecorderEvent>,
    ) -> RecorderHandle {
        let stop = CancellationToken::new();
        let stats = Arc::new(RecorderStats::default());
        let task = tokio::spawn(run(hub, opts, events, stop.clone(), stats.clone()));
        RecorderHandle { stop, task, stats }
    }

    /// The recorder's counters now.
    pub fn stats(&self) -> RecorderCounters {
        self.stats.snapshot()
    }

    /// Stops recording: the open segment is finalized before this returns (or, behind a disk that does not
    /// answer, after at most twice the finalize timeout).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    hub: Hub,
    opts: RecorderOptions,
    events: mpsc::UnboundedSender<RecorderEvent>,
    stop: CancellationToken,
    stats: Arc<RecorderStats>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<Command>();
    // Set by the writer thread when a segment failed (disk full, say), so the segmenter starts a new one at the
    // next keyframe instead of feeding a segment nobody writes.
    let failed = Arc::new(AtomicBool::new(false));
    let writer = {
        let (events, stats, failed, fragment_ms, dir) = (
            events.clone(),
            stats.clone(),
            failed.clone(),
            opts.fragment_ms,
            opts.dir.clone(),
        );
        std::thread::Builder::new()
            .name(format!("dvr-{}", hub.stream_id()))
            .spawn(move || write_loop(rx, events, stats, failed, fragment_ms, &dir))
    };
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            let _ = events.send(RecorderEvent::Failed {
                path: opts.dir.clone(),
                error: format!("starting the writer thread: {e}"),
            });
            return;
        }
    };
    let queue = Queue {
        tx,
        stats: stats.clone(),
    };
    let stream = hub.stream_id().to_owned();
    let mut segmenter = Segmenter::new(opts.segmenter);
    // A recorder waits out a stall (a slow disk is the writer queue's job) far longer than a viewer should.
    let mut sub = hub.subscribe_with_lag(RECORDER_MAX_LAG);
    let mut hub_drops = sub.dropped();
    let mut dropping: Option<DropRun> = None;
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            f = sub.recv() => match f { Some(f) => f, None => break },
        };
        let queued = stats.queued_bytes.load(Ordering::Acquire);
        // Full when this frame and the close it may cause would not fit; a run of drops lasts until the writer
        // has taken half the queue, so one slow write makes one gap, not one per small frame that happens to fit.
        let full = if dropping.is_some() {
            queued > opts.max_queued_bytes / 2
        } else {
            queued + 2 * COMMAND_OVERHEAD_BYTES + frame.frame.data.len() as u64
                > opts.max_queued_bytes
        };
        let lost = sub.dropped() != hub_drops || full || failed.swap(false, Ordering::AcqRel);
        hub_drops = sub.dropped();
        if lost {
            debug!(stream = %stream, queued, hub_drops, full, "recorder lost frames");
            if let Some(c) = segmenter.dropped() {
                queue.send(Command::Close(c));
            }
        }
        if full {
            stats.dropped_frames.fetch_add(1, Ordering::AcqRel);
            let at = frame.frame.wall_ms;
            match dropping.as_mut() {
                Some(run) => {
                    run.to_ms = at;
                    run.frames += 1;
                }
                None => {
                    stats.gaps.fetch_add(1, Ordering::AcqRel);
                    warn!(stream = %stream, queued_bytes = queued, max_queued_bytes = opts.max_queued_bytes,
                        "the segment writer is behind (slow or hung disk); dropping frames until it catches up");
                    dropping = Some(DropRun {
                        from_ms: at,
                        to_ms: at,
                        frames: 1,
                    });
                }
            }
            continue;
        }
        if let Some(run) = dropping.take() {
            end_drop_run(&stream, run, &events);
        }
        match segmenter.push(&frame.frame) {
            Step::Skip { closed } => {
                if let Some(c) = closed {
                    debug!(stream = %stream, reason = ?c.reason, "segment closed");
                    queue.send(Command::Close(c));
                }
            }
            Step::Append => queue.send(Command::Frame(frame)),
            Step::Open { closed, start_ms } => {
                if let Some(c) = closed {
                    debug!(stream = %stream, reason = ?c.reason, "segment closed");
                    queue.send(Command::Close(c));
                }
                queue.send(Command::Open {
                    path: opts.dir.join(format!("{start_ms}.mp4")),
                    first: frame,
                    start_ms,
                });
            }
        }
    }
    if let Some(run) = dropping.take() {
        end_drop_run(&stream, run, &events);
    }
    if let Some(c) = segmenter.stop() {
        queue.send(Command::Close(c));
    }
    drop(queue);
    // A writer stuck on a hung disk must not hold up whoever stops the recorder (a stream being deleted): after
    // the finalize timeout and some, the thread is left to end when the disk answers.
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout(FINISH_TIMEOUT * 2, joined)
        .await
        .is_err()
    {
        warn!(stream = %stream, "the segment writer did not stop (hung disk?); leaving its thread behind");
    }
}

fn end_drop_run(stream: &str, run: DropRun, events: &mpsc::UnboundedSender<RecorderEvent>) {
    info!(stream = %stream, frames = run.frames, from_ms = run.from_ms, to_ms = run.to_ms,
        "the segment writer caught up; frames in between were not recorded");
    let _ = events.send(RecorderEvent::Dropped {
        from_ms: run.from_ms,
        to_ms: run.to_ms,
        frames: run.frames,
    });
}

/// The writer thread: carries out commands until the channel closes.
fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RecorderEvent>,
    stats: Arc<RecorderStats>,
    failed: Arc<AtomicBool>,
    fragment_ms: u32,
    dir: &std::path::Path,
) {
    // Here, not in the recorder's task: a file-system call may block for as long as the disk does.
    if let Err(e) = std::fs::create_dir_all(dir) {
        warn!(dir = %dir.display(), error = %e, "cannot create the recording directory");
    }
    let mut current: Option<SegmentWriter> = None;
    let fail = |w: &SegmentWriter, error: String| {
        failed.store(true, Ordering::Release);
        RecorderEvent::Failed {
            path: w.path().to_owned(),
            error,
        }
    };
    while let Some(cmd) = rx.blocking_recv() {
        // Counted out when taken: the bound is on what waits, and a command being carried out no longer does.
        stats.sub_queued(cmd.cost());
        match cmd {
            Command::Open {
                path,
                first,
                start_ms,
            } => {
                // A segment still open here was closed by a failed write; nothing more to finish.
                current = None;
                let f: &Frame = &first.frame;
                match SegmentWriter::create(&path, f.codec, f.pts_90k, fragment_ms) {
                    Ok(mut w) => {
                        let _ = events.send(RecorderEvent::Opened {
                            path: path.clone(),
                            start_ms,
                            codec: f.codec,
                            width: f.params.width,
                            height: f.params.height,
                        });
                        match w.write(f) {
                            Ok(()) => current = Some(w),
                            Err(e) => {
                                let _ = events.send(fail(&w, e.to_string()));
                            }
                        }
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Release);
                        let _ = events.send(RecorderEvent::Failed {
                            path,
                            error: e.to_string(),
                        });
                    }
                }
            }
            Command::Frame(frame) => {
                if let Some(w) = current.as_mut() {
                    if let Err(e) = w.write(&frame.frame) {
                        let _ = events.send(fail(w, e.to_string()));
                        current = None;
                    }
                }
            }
            Command::Close(closed) => {
                let Some(w) = current.take() else { continue };
                let path = w.path().to_owned();
                let frames = w.frames();
                let event = match w.finish(FINISH_TIMEOUT) {
                    Ok(bytes) => RecorderEvent::Closed {
                        path,
                        start_ms: closed.start_ms,
                        end_ms: closed.end_ms,
                        frames,
                        bytes,
                        reason: closed.reason,
                    },
                    Err(e) => RecorderEvent::Failed {
                        path,
                        error: e.to_string(),
                    },
                };
                let _ = events.send(event);
            }
        }
    }
}
