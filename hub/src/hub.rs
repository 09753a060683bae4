//! The per-stream hub: receives frames from the ingest, packetizes each once, keeps the GOP cache, and fans
//! `Arc<HubFrame>` out to every subscriber through its own bounded queue (DESIGN.md, "The spine").
//!
//! Fan-out never waits: a subscriber that falls behind is marked lagging and skips frames until the next
//! keyframe, where it resyncs, so its decoder never sees a picture whose references were dropped. The source, the
//! recorder and other viewers are unaffected. The lock is held only for the synchronous fan-out, never across an
//! `.await`; packetizing happens before it is taken.
//!
//! "Behind" is measured in time, not frames: a subscriber lags once the oldest frame it has not taken was queued
//! more than [`HubOptions::max_lag`] ago, in the stream's own time (its frames' `pts_90k`, which advances with
//! real time through outages), so the hub needs no clock. A frame count would mean seconds of lag at 25 fps and
//! a fraction of one at 120, and the same count that bounds lag would cut a long GOP's join burst short. The
//! queue's length is bounded too, only as a backstop; it always has room for the whole GOP cache, which a new
//! subscriber gets at once whatever the GOP's length (within the cache's own frame and byte bounds).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use sources::{Frame, FrameSink, IngestStatus, ParameterSets};
use tokio::sync::mpsc;
use tracing::debug;

use crate::gop::GopCache;
use crate::packetizer::{packetize, RtpPayload, DEFAULT_MTU};
use crate::stats::{Counters, HubStats};

/// One frame as the hub hands it out: the access unit (for recorders) and its RTP payloads (for publishers).
#[derive(Debug)]
pub struct HubFrame {
    pub frame: Frame,
    /// The frame's RTP payloads in order, parameter sets first on keyframes, marker on the last.
    pub packets: Vec<RtpPayload>,
    /// Position in this hub's frame sequence, starting at 0 (slate pictures included). A subscriber sees gaps
    /// where it dropped frames.
    pub index: u64,
}

/// Sizes and limits of a hub.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Largest RTP payload in bytes (not counting the 12-byte RTP header); default 1200.
    pub mtu: usize,
    /// Frames a subscriber's queue holds beyond the GOP cache's `gop_max_frames` (a backstop: lag is bounded by
    /// `max_lag`); default 256.
    pub queue_frames: usize,
    /// How long, in stream time, a frame may wait in a subscriber's queue before the subscriber counts as lagging
    /// and skips to the next keyframe; default 2 s. The join burst counts from the moment of subscribing.
    pub max_lag: Duration,
    /// Largest GOP kept for new subscribers, in frames; default 600. 0 turns the cache off: a new subscriber
    /// then waits for the camera's next keyframe, as with a server that has no GOP cache.
    pub gop_max_frames: usize,
    /// Largest GOP kept for new subscribers, in bytes of access unit data; default 32 MiB.
    pub gop_max_bytes: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            mtu: DEFAULT_MTU,
            queue_frames: 256,
            max_lag: Duration::from_secs(2),
            gop_max_frames: 600,
            gop_max_bytes: 32 << 20,
        }
    }
}

fn ticks_90k(d: Duration) -> i64 {
    (d.as_micros() * 9 / 100).min(i64::MAX as u128) as i64
}

/// A frame in a subscriber's queue and when it was put there (stream time).
struct Queued {
    frame: Arc<HubFrame>,
    at_90k: i64,
}

/// The hub's side of one subscriber.
struct Slot {
    id: u64,
    tx: mpsc::Sender<Queued>,
    /// It fell behind; it gets nothing until the next keyframe it has room for.
    lagging: bool,
    dropped: Arc<AtomicU64>,
    /// Frames the subscriber has taken out of its queue (it counts, the hub reads).
    taken: Arc<AtomicU64>,
    /// Frames put into its queue.
    queued: u64,
    /// When each frame still in the queue was put there (stream time, 90 kHz), oldest first.
    queued_at: VecDeque<i64>,
    /// Its lag bound in 90 kHz ticks.
    max_lag_90k: i64,
}

impl Slot {
    /// Offers a frame at stream time `now_90k`; a subscriber too far behind skips to the next keyframe. Returns
    /// false if it is gone.
    fn offer(&mut self, stream_id: &str, f: &Arc<HubFrame>, now_90k: i64) -> bool {
        let waiting = self.queued - self.taken.load(Ordering::Acquire).min(self.queued);
        while self.queued_at.len() as u64 > waiting {
            self.queued_at.pop_front();
        }
        let behind = self
            .queued_at
            .front()
            .is_some_and(|&at| now_90k - at > self.max_lag_90k);
        if behind && !self.lagging {
            debug!(
                stream = stream_id,
                subscriber = self.id,
                index = f.index,
                "subscriber more than its lag bound behind; dropping until the next keyframe"
            );
            self.lagging = true;
        }
        if behind || (self.lagging && !f.frame.is_keyframe) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        match self.tx.try_send(Queued {
            frame: f.clone(),
            at_90k: now_90k,
        }) {
            Ok(()) => {
                self.queued += 1;
                self.queued_at.push_back(now_90k);
                if self.lagging {
                    debug!(
                        stream = stream_id,
                        subscriber = self.id,
                        index = f.index,
                        "subscriber resynced at a keyframe"
                    );
                    self.lagging = false;
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.lagging {
                    debug!(
                        stream = stream_id,
                        subscriber = self.id,
                        index = f.index,
                        "subscriber queue full; dropping until the next keyframe"
                    );
                    self.lagging = true;
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

struct State {
    /// In subscription order: fan-out order.
    slots: Vec<Slot>,
    next_id: u64,
    gop: GopCache,
    params: Option<Arc<ParameterSets>>,
    /// Parameters of the last camera (not slate) frame: what the stream's view reports.
    camera_params: Option<Arc<ParameterSets>>,
    status: IngestStatus,
    counters: Counters,
    next_index: u64,
    /// The stream time of the last frame pushed: the hub's clock.
    now_90k: i64,
    /// Drops of subscribers that have left.
    departed_drops: u64,
}

struct Shared {
    stream_id: String,
    opts: HubOptions,
    /// `State::now_90k`, readable without the lock: subscribers measure how long their frames waited against it.
    now_90k: Arc<AtomicI64>,
    /// Set once by [`Hub::close`]; subscribers read it without the lock.
    closed: Arc<AtomicBool>,
    state: Mutex<State>,
}

/// The hub of one stream. Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("stream_id", &self.shared.stream_id)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub for the stream `stream_id`, open, with no subscribers and an empty GOP cache.
    pub fn new(stream_id: impl Into<String>, opts: HubOptions) -> Hub {
        let gop = GopCache::new(opts.gop_max_frames, opts.gop_max_bytes);
        Hub {
            shared: Arc::new(Shared {
                stream_id: stream_id.into(),
                opts,
                now_90k: Arc::new(AtomicI64::new(0)),
                closed: Arc::new(AtomicBool::new(false)),
                state: Mutex::new(State {
                    slots: Vec::new(),
                    next_id: 0,
                    gop,
                    params: None,
                    camera_params: None,
                    status: IngestStatus::default(),
                    counters: Counters::default(),
                    next_index: 0,
                    now_90k: 0,
                    departed_drops: 0,
                }),
            }),
        }
    }

    /// The stream this hub carries.
    pub fn stream_id(&self) -> &str {
        &self.shared.stream_id
    }

    /// A new subscriber. It first receives the whole GOP cache at once (so its first frame is a keyframe and its
    /// last is the live edge), then live frames. On a closed hub the subscriber ends at once.
    pub fn subscribe(&self) -> Subscriber {
        self.subscribe_with_lag(self.shared.opts.max_lag)
    }

    /// [`Hub::subscribe`] with its own lag bound instead of [`HubOptions::max_lag`]: a recorder rides out a
    /// longer stall of its disk than a viewer should wait.
    pub fn subscribe_with_lag(&self, max_lag: Duration) -> Subscriber {
        let max_lag_90k = ticks_90k(max_lag);
        let opts = &self.shared.opts;
        // tokio allocates a channel's slots in small blocks as they fill, so room for a long GOP costs nothing
        // until a subscriber uses it.
        let (tx, rx) = mpsc::channel(opts.gop_max_frames + opts.queue_frames.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let taken = Arc::new(AtomicU64::new(0));
        let mut st = self.shared.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        // Checked under the lock: `close` sets the flag and empties the slots under it too.
        if !self.is_closed() {
            let mut slot = Slot {
                id,
                tx,
                lagging: false,
                dropped: dropped.clone(),
                taken: taken.clone(),
                queued: 0,
                queued_at: VecDeque::new(),
                max_lag_90k,
            };
            for f in st.gop.frames() {
                slot.offer(&self.shared.stream_id, f, st.now_90k);
            }
            st.slots.push(slot);
        }
        Subscriber {
            rx,
            id,
            dropped,
            taken,
            now_90k: self.shared.now_90k.clone(),
            max_lag_90k,
            skipping: false,
            closed: self.shared.closed.clone(),
            hub: Arc::downgrade(&self.shared),
        }
    }

    /// Ends every subscriber: from now on their `recv` and `try_recv` return `None`, even with frames still
    /// queued. Later frames are ignored and later subscribers end at once. Parameters and status stay readable.
    pub fn close(&self) {
        let mut st = self.shared.state.lock();
        self.shared.closed.store(true, Ordering::Release);
        let departed: u64 = st
            .slots
            .iter()
            .map(|s| s.dropped.load(Ordering::Relaxed))
            .sum();
        st.departed_drops += departed;
        st.slots.clear();
        st.gop.clear();
    }

    /// True once [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// The current decoder configuration (the slate's while it shows).
    pub fn params(&self) -> Option<Arc<ParameterSets>> {
        self.shared.state.lock().params.clone()
    }

    /// The decoder configuration of the camera's last frame (never the slate's); `None` until a camera delivers.
    pub fn camera_params(&self) -> Option<Arc<ParameterSets>> {
        self.shared.state.lock().camera_params.clone()
    }

    /// The ingest's latest status.
    pub fn status(&self) -> IngestStatus {
        self.shared.state.lock().status.clone()
    }

    /// Subscribers attached now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.state.lock().slots.len()
    }

    /// Counters and rates; see [`HubStats`] for what counts the camera and what the slate.
    pub fn stats(&self) -> HubStats {
        let st = self.shared.state.lock();
        let mut s = st.counters.snapshot();
        s.subscribers = st.slots.len();
        s.drops = st.departed_drops
            + st.slots
                .iter()
                .map(|s| s.dropped.load(Ordering::Relaxed))
                .sum::<u64>();
        s.reconnects = st.status.reconnects;
        s
    }
}

impl FrameSink for Hub {
    fn push_frame(&self, frame: Frame) {
        if self.is_closed() {
            return;
        }
        // Packetizing is the costly part: do it before taking the lock.
        let packets = packetize(&frame, self.shared.opts.mtu);
        let mut st = self.shared.state.lock();
        if self.is_closed() {
            return;
        }
        let f = Arc::new(HubFrame {
            frame,
            packets,
            index: st.next_index,
        });
        st.next_index += 1;
        // Stream time never runs backwards here, whatever a broken source stamps.
        st.now_90k = st.now_90k.max(f.frame.pts_90k);
        self.shared.now_90k.store(st.now_90k, Ordering::Release);
        st.counters.on_frame(&f.frame);
        if !f.frame.is_slate
            && !st
                .camera_params
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(p, &f.frame.params))
        {
            st.camera_params = Some(f.frame.params.clone());
        }
        st.gop.push(&f);
        let mut departed = 0;
        let now = st.now_90k;
        st.slots.retain_mut(|slot| {
            let alive = slot.offer(&self.shared.stream_id, &f, now);
            if !alive {
                departed += slot.dropped.load(Ordering::Relaxed);
            }
            alive
        });
        st.departed_drops += departed;
    }

    fn parameters_changed(&self, params: Arc<ParameterSets>) {
        let mut st = self.shared.state.lock();
        st.gop.parameters_changed();
        st.params = Some(params);
    }

    fn status_changed(&self, status: &IngestStatus) {
        self.shared.state.lock().status = status.clone();
    }
}

/// A subscription to a hub: a bounded queue of frames. Dropping it unsubscribes.
pub struct Subscriber {
    rx: mpsc::Receiver<Queued>,
    id: u64,
    dropped: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
    /// The hub's stream time, to tell how long a frame waited in the queue.
    now_90k: Arc<AtomicI64>,
    max_lag_90k: i64,
    /// A frame waited too long: frames are skipped up to the next keyframe that did not.
    skipping: bool,
    closed: Arc<AtomicBool>,
    /// Weak, so subscribers don't keep a hub alive: once every `Hub` handle is gone, they drain and end.
    hub: Weak<Shared>,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.id)
            .field("queued", &self.rx.len())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// What a subscriber made of one item of its queue.
enum Taken {
    Frame(Arc<HubFrame>),
    /// Waited longer than the lag bound (or depends on one that did): skipped.
    Skipped,
    End,
}

impl Subscriber {
    /// The next frame; `None` once the hub is closed (queued frames are discarded) or gone and drained. A frame
    /// that waited in the queue longer than the hub's lag bound is never handed out: the subscriber skips to the
    /// next keyframe that did not, so a consumer that stalled resumes near the live edge, not where it stopped.
    pub async fn recv(&mut self) -> Option<Arc<HubFrame>> {
        loop {
            let q = self.rx.recv().await;
            match self.take(q) {
                Taken::Frame(f) => return Some(f),
                Taken::Skipped => continue,
                Taken::End => return None,
            }
        }
    }

    /// The next queued frame, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<HubFrame>> {
        loop {
            let q = self.rx.try_recv().ok();
            match self.take(q) {
                Taken::Frame(f) => return Some(f),
                Taken::Skipped => continue,
                Taken::End => return None,
            }
        }
    }

    /// Frames this subscriber missed because it fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn take(&mut self, q: Option<Queued>) -> Taken {
        let Some(q) = q else { return Taken::End };
        self.taken.fetch_add(1, Ordering::Release);
        if self.closed.load(Ordering::Acquire) {
            return Taken::End;
        }
        let stale = self.now_90k.load(Ordering::Acquire) - q.at_90k > self.max_lag_90k;
        if stale || (self.skipping && !q.frame.frame.is_keyframe) {
            self.skipping = true;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Taken::Skipped;
        }
        self.skipping = false;
        Taken::Frame(q.frame)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(shared) = self.hub.upgrade() {
            let mut st = shared.state.lock();
            if let Some(i) = st.slots.iter().position(|s| s.id == self.id) {
                let slot = st.slots.remove(i);
                st.departed_drops += slot.dropped.load(Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sources::Codec;

    use super::*;
    use crate::packetizer::tests::frame;

    fn hub(queue: usize) -> Hub {
        Hub::new(
            "s",
            HubOptions {
                queue_frames: queue,
                ..Default::default()
            },
        )
    }

    /// Frames with a keyframe every `gop`.
    fn push(h: &Hub, from: i64, n: i64, gop: i64) {
        for i in from..from + n {
            h.push_frame(frame(Codec::H264, i % gop == 0, 200, i * 3600));
        }
    }

    fn drain(s: &mut Subscriber) -> Vec<u64> {
        std::iter::from_fn(|| s.try_recv())
            .map(|f| f.index)
            .collect()
    }

    #[test]
    fn late_subscriber_starts_at_the_cached_keyframe() {
        let h = hub(256);
        push(&h, 0, 13, 5);
        let mut s = h.subscribe();
        assert_eq!(drain(&mut s), vec![10, 11, 12]);
        push(&h, 13, 2, 5);
        assert_eq!(drain(&mut s), vec![13, 14]);
    }

    /// 25 fps: frame `i` is at `i * 3600` ticks, so 2 s of lag is 50 frames.
    const FPS: i64 = 25;

    #[test]
    fn slow_subscriber_does_not_change_what_a_fast_one_gets() {
        let h = hub(8);
        let mut fast = h.subscribe();
        let _slow = h.subscribe();
        let mut got = Vec::new();
        for i in 0..100 {
            push(&h, i, 1, 10);
            got.extend(drain(&mut fast));
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(fast.dropped(), 0);
        // The slow one held 2 s of frames, then dropped the rest.
        assert_eq!(h.stats().drops, 100 - 2 * FPS as u64 - 1);
    }

    #[test]
    fn lag_is_bounded_by_age_then_resyncs_at_a_keyframe() {
        let h = hub(256);
        let mut s = h.subscribe();
        // Not taken for 2 s: still within the bound, nothing dropped.
        push(&h, 0, 2 * FPS + 1, 30);
        assert_eq!(s.dropped(), 0);
        // One more frame and the oldest waiting frame is over 2 s old: dropped until a keyframe.
        push(&h, 2 * FPS + 1, 8, 30);
        assert_eq!(s.dropped(), 8);
        // Taken now: frames 0..=7 waited over 2 s, so the subscriber skips to keyframe 30; 8..=50 waited less.
        assert_eq!(drain(&mut s), (30..=2 * FPS as u64).collect::<Vec<_>>());
        assert_eq!(s.dropped(), 8 + 30);
        push(&h, 59, 4, 30); // 59 skipped by the hub, 60 is a keyframe
        assert_eq!(drain(&mut s), vec![60, 61, 62]);
        assert_eq!(s.dropped(), 8 + 30 + 1);
    }

    #[test]
    fn a_subscriber_that_keeps_up_is_never_cut_whatever_the_frame_count() {
        let h = hub(4);
        let mut s = h.subscribe();
        let mut got = 0;
        for i in 0..1000 {
            push(&h, i, 1, 250);
            // Takes in batches of 40 frames (1.6 s of stream), far more than the 4-frame backstop.
            if i % 40 == 39 {
                got += drain(&mut s).len();
            }
        }
        assert_eq!(got + drain(&mut s).len(), 1000);
        assert_eq!(s.dropped(), 0);
    }

    #[test]
    fn a_long_gop_join_gets_the_whole_cache_at_once_then_live() {
        // A 20 s GOP at 25 fps, joined 19.96 s after its keyframe: 499 cached frames.
        let h = hub(256);
        push(&h, 0, 499, 500);
        let mut s = h.subscribe();
        assert_eq!(drain(&mut s), (0..499).collect::<Vec<_>>());
        push(&h, 499, 3, 500);
        assert_eq!(drain(&mut s), vec![499, 500, 501]);
        assert_eq!(s.dropped(), 0);
    }

    #[test]
    fn a_join_burst_not_taken_within_the_bound_lags() {
        let h = hub(256);
        push(&h, 0, 100, 500);
        let s = h.subscribe();
        // The burst counts from the moment of subscribing: 2 s later it is still fine, then it is behind.
        push(&h, 100, 2 * FPS, 500);
        assert_eq!(s.dropped(), 0);
        push(&h, 100 + 2 * FPS, 1, 500);
        assert_eq!(s.dropped(), 1);
    }

    #[test]
    fn drop_unsubscribes_and_close_ends_receivers() {
        let h = hub(16);
        for _ in 0..100 {
            drop(h.subscribe());
        }
        assert_eq!(h.subscriber_count(), 0);
        let mut s = h.subscribe();
        let mut waiting = h.subscribe();
        push(&h, 0, 2, 10);
        assert_eq!(waiting.try_recv().map(|f| f.index), Some(0));
        assert_eq!(waiting.try_recv().map(|f| f.index), Some(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // One subscriber is parked in recv when the hub closes.
            let parked = tokio::spawn(async move { waiting.recv().await.map(|f| f.index) });
            tokio::task::yield_now().await;
            h.close();
            assert_eq!(parked.await.unwrap(), None);
            assert!(s.recv().await.is_none(), "queued frames are discarded");
        });
        assert!(s.try_recv().is_none());
        push(&h, 2, 1, 10);
        assert!(h.subscribe().try_recv().is_none());
        assert_eq!(h.subscriber_count(), 0);
        assert_eq!(h.stats().frames, 2, "frames after close are ignored");
    }

    #[test]
    fn dropping_every_hub_handle_ends_subscribers_after_the_queue() {
        let h = hub(16);
        let mut s = h.subscribe();
        push(&h, 0, 1, 10);
        drop(h);
        assert_eq!(s.try_recv().map(|f| f.index), Some(0));
        assert!(s.try_recv().is_none());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(s.recv()).is_none());
    }

    #[test]
    fn departed_subscribers_keep_their_drops_in_the_stats() {
        let h = hub(2);
        let s = h.subscribe();
        push(&h, 0, 2 * FPS + 4, 100);
        assert_eq!(s.dropped(), 3);
        drop(s);
        assert_eq!(h.stats().drops, 3);
        assert_eq!(h.stats().subscribers, 0);
    }

    #[test]
    fn status_and_reconnects() {
        let h = hub(2);
        let status = IngestStatus {
            state: sources::IngestState::Reconnecting,
            reconnects: 3,
            ..Default::default()
        };
        h.status_changed(&status);
        assert_eq!(h.status(), status);
        assert_eq!(h.stats().reconnects, 3);
    }

    #[test]
    fn camera_params_ignore_the_slate() {
        let h = hub(16);
        let mut slate = frame(Codec::H264, true, 100, 0);
        slate.is_slate = true;
        h.push_frame(slate);
        assert!(h.camera_params().is_none());
        push(&h, 1, 1, 1);
        assert_eq!(h.camera_params().unwrap().width, 320);
    }

    #[test]
    fn parameter_change_clears_the_gop_cache() {
        let h = hub(16);
        push(&h, 0, 3, 10);
        h.parameters_changed(crate::packetizer::tests::params(Codec::H264));
        let mut s = h.subscribe();
        assert!(drain(&mut s).is_empty());
        assert!(h.params().is_some());
    }
}
