//! The per-stream hub: receives frames from the ingest, packetizes each once, keeps the GOP cache, and fans
//! `Arc<HubFrame>` out to every subscriber through its own bounded queue.
//!
//! Fan-out never waits: a subscriber whose queue is full is marked lagging and skips frames until the next
//! keyframe, where it resyncs, so its decoder never sees a picture whose references were dropped. The source, the
//! recorder and other viewers are unaffected. The lock is held only for the synchronous fan-out, never across an
//! `.await`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sources::{Frame, FrameSink, IngestStatus, ParameterSets};
use tokio::sync::mpsc;

use crate::gop::GopCache;
use crate::packetizer::{packetize, RtpPayload};
use crate::stats::{Counters, HubStats};

/// One frame as the hub hands it out: the access unit (for recorders) and its RTP payloads (for publishers).
#[derive(Debug)]
pub struct HubFrame {
    pub frame: Frame,
    pub packets: Vec<RtpPayload>,
    /// Position in this hub's frame sequence, starting at 0.
    pub index: u64,
}

/// Sizes and limits of a hub.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Largest RTP payload.
    pub mtu: usize,
    /// Frames queued per subscriber before it counts as lagging.
    pub queue_frames: usize,
    pub gop_max_frames: usize,
    pub gop_max_bytes: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            mtu: 1200,
            queue_frames: 256,
            gop_max_frames: 600,
            gop_max_bytes: 32 << 20,
        }
    }
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<HubFrame>>,
    lagging: bool,
    dropped: Arc<AtomicU64>,
}

impl Slot {
    /// Offers a frame; a full queue makes the subscriber skip to the next keyframe. Returns false if it is gone.
    fn offer(&mut self, f: &Arc<HubFrame>) -> bool {
        if self.lagging && !f.frame.is_keyframe {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        match self.tx.try_send(f.clone()) {
            Ok(()) => {
                self.lagging = false;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagging = true;
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

struct State {
    slots: Vec<Slot>,
    next_id: u64,
    gop: GopCache,
    params: Option<Arc<ParameterSets>>,
    /// Parameters of the last camera (not slate) frame: what the stream's view reports.
    camera_params: Option<Arc<ParameterSets>>,
    status: IngestStatus,
    counters: Counters,
    next_index: u64,
    departed_drops: u64,
    closed: bool,
}

struct Shared {
    stream_id: String,
    opts: HubOptions,
    state: Mutex<State>,
}

/// The hub of one stream. Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    pub fn new(stream_id: impl Into<String>, opts: HubOptions) -> Hub {
        let gop = GopCache::new(opts.gop_max_frames, opts.gop_max_bytes);
        Hub {
            shared: Arc::new(Shared {
                stream_id: stream_id.into(),
                opts,
                state: Mutex::new(State {
                    slots: Vec::new(),
                    next_id: 0,
                    gop,
                    params: None,
                    camera_params: None,
                    status: IngestStatus::default(),
                    counters: Counters::default(),
                    next_index: 0,
                    departed_drops: 0,
                    closed: false,
                }),
            }),
        }
    }

    pub fn stream_id(&self) -> &str {
        &self.shared.stream_id
    }

    /// A new subscriber; it first receives the GOP cache (starting at a keyframe), then live frames.
    /// On a closed hub the subscriber ends at once.
    pub fn subscribe(&self) -> Subscriber {
        let (tx, rx) = mpsc::channel(self.shared.opts.queue_frames.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut st = self.shared.state.lock();
        let id = st.next_id;
        st.next_id += 1;
        if !st.closed {
            let mut slot = Slot {
                id,
                tx,
                lagging: false,
                dropped: dropped.clone(),
            };
            for f in st.gop.frames() {
                slot.offer(f);
            }
            st.slots.push(slot);
        }
        Subscriber {
            rx,
            id,
            dropped,
            hub: Arc::downgrade(&self.shared),
        }
    }

    /// Ends every subscriber (their `recv` returns `None` once drained) and ignores later frames.
    pub fn close(&self) {
        let mut st = self.shared.state.lock();
        st.closed = true;
        let departed: u64 = st
            .slots
            .iter()
            .map(|s| s.dropped.load(Ordering::Relaxed))
            .sum();
        st.departed_drops += departed;
        st.slots.clear();
        st.gop.clear();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed
    }

    /// The current decoder configuration.
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

    pub fn subscriber_count(&self) -> usize {
        self.shared.state.lock().slots.len()
    }

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
        // Packetizing is the costly part: do it before taking the lock.
        let packets = packetize(&frame, self.shared.opts.mtu);
        let mut st = self.shared.state.lock();
        if st.closed {
            return;
        }
        let f = Arc::new(HubFrame {
            frame,
            packets,
            index: st.next_index,
        });
        st.next_index += 1;
        st.counters.on_frame(&f.frame);
        if !f.frame.is_slate && st.camera_params.as_ref() != Some(&f.frame.params) {
            st.camera_params = Some(f.frame.params.clone());
        }
        st.gop.push(&f);
        let mut gone = Vec::new();
        for (i, slot) in st.slots.iter_mut().enumerate() {
            if !slot.offer(&f) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            let slot = st.slots.swap_remove(i);
            st.departed_drops += slot.dropped.load(Ordering::Relaxed);
        }
    }

    fn parameters_changed(&self, params: Arc<ParameterSets>) {
        let mut st = self.shared.state.lock();
        // The cached GOP was encoded with the old parameters.
        st.gop.clear();
        st.params = Some(params);
    }

    fn status_changed(&self, status: &IngestStatus) {
        self.shared.state.lock().status = status.clone();
    }
}

/// A subscription to a hub. Dropping it unsubscribes.
pub struct Subscriber {
    rx: mpsc::Receiver<Arc<HubFrame>>,
    id: u64,
    dropped: Arc<AtomicU64>,
    hub: std::sync::Weak<Shared>,
}

impl Subscriber {
    /// The next frame; `None` once the hub is closed and the queue drained.
    pub async fn recv(&mut self) -> Option<Arc<HubFrame>> {
        self.rx.recv().await
    }

    /// The next queued frame, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<HubFrame>> {
        self.rx.try_recv().ok()
    }

    /// Frames this subscriber missed because it fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(shared) = self.hub.upgrade() {
            let mut st = shared.state.lock();
            if let Some(i) = st.slots.iter().position(|s| s.id == self.id) {
                let slot = st.slots.swap_remove(i);
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
        assert!(h.stats().drops > 80);
    }

    #[test]
    fn lagging_subscriber_resyncs_at_a_keyframe() {
        let h = hub(4);
        let mut s = h.subscribe();
        push(&h, 0, 7, 10); // 0..3 queued, 4..6 dropped
        assert_eq!(drain(&mut s), vec![0, 1, 2, 3]);
        push(&h, 7, 5, 10); // 7..9 skipped while lagging, 10 is a keyframe
        assert_eq!(drain(&mut s), vec![10, 11]);
        assert_eq!(s.dropped(), 6);
    }

    #[test]
    fn drop_unsubscribes_and_close_ends_receivers() {
        let h = hub(16);
        for _ in 0..100 {
            drop(h.subscribe());
        }
        assert_eq!(h.subscriber_count(), 0);
        let mut s = h.subscribe();
        push(&h, 0, 1, 10);
        h.close();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(s.recv().await.map(|f| f.index), Some(0));
            assert!(s.recv().await.is_none());
        });
        assert!(h.subscribe().try_recv().is_none());
        assert_eq!(h.subscriber_count(), 0);
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
