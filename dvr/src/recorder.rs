//! The recorder of one stream: a hub subscriber that cuts the stream into MP4 segments.
//!
//! A tokio task takes the hub's frames, asks the [`Segmenter`] what to do with each, and hands frames and
//! open/close orders to a writer thread that owns the [`SegmentWriter`] (GStreamer calls block). What happens to
//! segments is reported as [`RecorderEvent`]s for the catalog.
//!
//! Nothing is lost silently and no viewer waits: if the writer falls behind by [`MAX_QUEUED_FRAMES`], or the hub
//! drops frames for this subscriber, the segment is closed at its last frame and the next one opens at the next
//! keyframe; the catalog sees the gap.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hub::{Hub, HubFrame};
use sources::{Codec, Frame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::segmenter::{CloseReason, Closed, Segmenter, SegmenterOptions, Step};
use crate::writer::SegmentWriter;

/// Frames the writer may be behind before the recorder closes the segment and waits for a keyframe.
pub const MAX_QUEUED_FRAMES: usize = 250;
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

/// A running recorder.
pub struct RecorderHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RecorderHandle {
    /// Starts recording `hub`'s stream.
    pub fn spawn(
        hub: Hub,
        opts: RecorderOptions,
        events: mpsc::UnboundedSender<RecorderEvent>,
    ) -> RecorderHandle {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(hub, opts, events, stop.clone()));
        RecorderHandle { stop, task }
    }

    /// Stops recording: the open segment is finalized before this returns.
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
) {
    let (tx, rx) = mpsc::unbounded_channel::<Command>();
    let queued = Arc::new(AtomicUsize::new(0));
    // Set by the writer thread when a segment failed (disk full, say), so the segmenter starts a new one at the
    // next keyframe instead of feeding a segment nobody writes.
    let failed = Arc::new(AtomicBool::new(false));
    let writer = {
        let (events, queued, failed, fragment_ms) = (
            events.clone(),
            queued.clone(),
            failed.clone(),
            opts.fragment_ms,
        );
        std::thread::Builder::new()
            .name(format!("dvr-{}", hub.stream_id()))
            .spawn(move || write_loop(rx, events, queued, failed, fragment_ms))
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
    if let Err(e) = std::fs::create_dir_all(&opts.dir) {
        warn!(dir = %opts.dir.display(), error = %e, "cannot create the recording directory");
    }
    let mut segmenter = Segmenter::new(opts.segmenter);
    let mut sub = hub.subscribe();
    let mut hub_drops = sub.dropped();
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => break,
            f = sub.recv() => match f { Some(f) => f, None => break },
        };
        let lost = sub.dropped() != hub_drops
            || queued.load(Ordering::Acquire) >= MAX_QUEUED_FRAMES
            || failed.swap(false, Ordering::AcqRel);
        hub_drops = sub.dropped();
        if lost {
            debug!(stream = %hub.stream_id(), queued = queued.load(Ordering::Acquire), hub_drops, "recorder lost frames");
            if let Some(c) = segmenter.dropped() {
                let _ = tx.send(Command::Close(c));
            }
        }
        match segmenter.push(&frame.frame) {
            Step::Skip { closed } => {
                if let Some(c) = closed {
                    debug!(stream = %hub.stream_id(), reason = ?c.reason, "segment closed");
                    let _ = tx.send(Command::Close(c));
                }
            }
            Step::Append => {
                queued.fetch_add(1, Ordering::AcqRel);
                let _ = tx.send(Command::Frame(frame));
            }
            Step::Open { closed, start_ms } => {
                if let Some(c) = closed {
                    debug!(stream = %hub.stream_id(), reason = ?c.reason, "segment closed");
                    let _ = tx.send(Command::Close(c));
                }
                queued.fetch_add(1, Ordering::AcqRel);
                let _ = tx.send(Command::Open {
                    path: opts.dir.join(format!("{start_ms}.mp4")),
                    first: frame,
                    start_ms,
                });
            }
        }
    }
    if let Some(c) = segmenter.stop() {
        let _ = tx.send(Command::Close(c));
    }
    drop(tx);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
}

/// The writer thread: carries out commands until the channel closes.
fn write_loop(
    mut rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RecorderEvent>,
    queued: Arc<AtomicUsize>,
    failed: Arc<AtomicBool>,
    fragment_ms: u32,
) {
    let mut current: Option<SegmentWriter> = None;
    let fail = |w: &SegmentWriter, error: String| {
        failed.store(true, Ordering::Release);
        RecorderEvent::Failed {
            path: w.path().to_owned(),
            error,
        }
    };
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Command::Open {
                path,
                first,
                start_ms,
            } => {
                queued.fetch_sub(1, Ordering::AcqRel);
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
                queued.fetch_sub(1, Ordering::AcqRel);
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
