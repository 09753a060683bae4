//! The DVR player: plays a stream's recorded segments from any instant, one player per DVR viewer.
//!
//! A player is a thread (`reader`) that reads the recorder's own MP4 files at sample level ([`crate::mp4`]:
//! sample tables first, then each sample's bytes, never a whole file), turns samples into hub frames (packetized
//! once, like live ones) and hands them, with [`PlayerEvent`]s in order between them, to a bounded channel. The
//! viewer core paces them by their timestamps and the playback speed; when it stops taking frames (paused, or
//! far enough ahead), the channel fills and the thread waits. [`schedule`] decides, from catalog rows only, which
//! segment comes next; the catalog itself (SQLite) is the gateway's, reached through [`SegmentCatalog`].
//!
//! Commands are "latest wins": a seek supersedes one the thread has not started yet. Every item carries the
//! generation of the seek that produced it, so the viewer drops what an older seek still had queued.

mod reader;
pub mod schedule;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use hub::HubFrame;
use sources::Codec;
use tokio::sync::mpsc;

pub use schedule::SegmentRef;

/// Frames (and events) a player reads ahead of its viewer, at most.
pub const READ_AHEAD: usize = 8;

/// The gateway's catalog, as a player needs it. Called from the player's own thread: it may block.
pub trait SegmentCatalog: Send + Sync + 'static {
    /// Segments of `stream` that end after `from_ms` (or are being written), sorted by start, at most `limit`.
    fn segments_from(
        &self,
        stream: &str,
        from_ms: i64,
        limit: usize,
    ) -> Result<Vec<SegmentRef>, String>;
}

/// What a player says beside its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlayerEvent {
    /// Playback starts at this keyframe instant (at or before the one asked for).
    Opened { shown_ms: i64 },
    /// Nothing is recorded in `[from_ms, to_ms)`: the next frame is at `to_ms`.
    Gap { from_ms: i64, to_ms: i64 },
    /// A segment could not be played (deleted, corrupt, truncated, another codec); playback goes on after it.
    SegmentSkipped { at_ms: i64, reason: String },
    /// Everything recorded so far has been read; the segment being written may grow.
    LiveEdge,
    /// Nothing more is recorded.
    End,
    /// The catalog could not be read.
    Failed(String),
}

/// One item from a player.
#[derive(Debug)]
pub enum PlayerItem {
    Frame {
        generation: u64,
        frame: Arc<HubFrame>,
    },
    Event {
        generation: u64,
        event: PlayerEvent,
    },
}

impl PlayerItem {
    fn generation(&self) -> u64 {
        match self {
            PlayerItem::Frame { generation, .. } | PlayerItem::Event { generation, .. } => {
                *generation
            }
        }
    }
}

/// What a player is told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seek {
    pub generation: u64,
    pub from_ms: i64,
    /// Send sync samples only (fast playback).
    pub keyframes_only: bool,
}

/// How a player reads.
#[derive(Clone, Debug)]
pub struct PlayerOptions {
    pub stream_id: String,
    /// Segments in another codec are skipped (a WebRTC viewer negotiated one codec).
    pub codec: Option<Codec>,
    /// RTP payload size of the packetizer, as the live hub's.
    pub mtu: usize,
    /// How often the end of a segment being written is looked at again.
    pub poll_interval: Duration,
}

/// The viewer's side of a player. Dropping it stops the thread.
pub struct Player {
    control: Arc<Control>,
    items: mpsc::Receiver<PlayerItem>,
    /// The latest seek's first item, taken from the channel by [`Player::seek`] while it discarded older ones.
    first: Option<PlayerItem>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The latest command, and the wake-up of a thread that waits for one.
struct Control {
    pending: Mutex<Option<Seek>>,
    wake: Condvar,
    closed: AtomicBool,
}

impl Control {
    fn take(&self) -> Option<Seek> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Waits up to `timeout` (forever: `None`) for a command; `None` on timeout or when closed.
    fn wait(&self, timeout: Option<Duration>) -> Option<Seek> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            if let Some(s) = pending.take() {
                return Some(s);
            }
            match timeout {
                None => pending = self.wake.wait(pending).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let (p, r) = self
                        .wake
                        .wait_timeout(pending, t)
                        .unwrap_or_else(|p| p.into_inner());
                    pending = p;
                    if r.timed_out() {
                        return pending.take();
                    }
                }
            }
        }
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether a command is waiting (left for [`Control::take`]) or the player was dropped: what the thread is
    /// doing is superseded.
    fn superseded(&self) -> bool {
        self.closed()
            || self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    }

    /// Waits up to `timeout` for a command or the drop, without taking the command; [`Control::superseded`].
    fn wait_superseded(&self, timeout: Duration) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (pending, _) = self
            .wake
            .wait_timeout_while(pending, timeout, |p| p.is_none() && !self.closed())
            .unwrap_or_else(|p| p.into_inner());
        pending.is_some() || self.closed()
    }
}

impl Player {
    /// Starts a player thread; it reads nothing until [`Player::seek`].
    pub fn spawn(catalog: Arc<dyn SegmentCatalog>, opts: PlayerOptions) -> std::io::Result<Player> {
        let control = Arc::new(Control {
            pending: Mutex::new(None),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let (tx, items) = mpsc::channel(READ_AHEAD);
        let thread = std::thread::Builder::new()
            .name(format!("dvr-player-{}", opts.stream_id))
            .spawn({
                let control = control.clone();
                move || reader::run(catalog, opts, control, tx)
            })?;
        Ok(Player {
            control,
            items,
            first: None,
            thread: Some(thread),
        })
    }

    /// Plays from the keyframe at or before `seek.from_ms`. Items already queued from an older seek (another
    /// generation) are discarded here, which also frees the thread if it was waiting for room.
    pub fn seek(&mut self, seek: Seek) {
        *self
            .control
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(seek);
        self.control.wake.notify_one();
        // The thread may take the seek and queue its first items while this runs: discarding stops there, and
        // keeps that item for `recv`. The thread sends nothing older after it.
        self.first = None;
        while let Ok(item) = self.items.try_recv() {
            if item.generation() == seek.generation {
                self.first = Some(item);
                break;
            }
        }
    }

    /// The next item; `None` once the thread has ended. Cancel-safe.
    pub async fn recv(&mut self) -> Option<PlayerItem> {
        if let Some(item) = self.first.take() {
            return Some(item);
        }
        self.items.recv().await
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        {
            // Under the lock the thread checks `closed` with before it waits, or the wake-up could come between
            // its check and its wait and be lost (the thread would wait for a command forever).
            let _pending = self
                .control
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.control.closed.store(true, Ordering::Release);
        }
        self.control.wake.notify_one();
        // Closing the channel frees a thread blocked on a full one; it then sees `closed` and ends. It is not
        // joined: a read in progress may take a moment, and nobody needs to wait for it.
        self.items.close();
        drop(self.thread.take());
    }
}
