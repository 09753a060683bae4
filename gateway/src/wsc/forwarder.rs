//! The one-pass forwarder of a stream's live UDP viewers (docs/decisions/0010-one-pass-forwarding.md): one task
//! per stream wakes once per hub frame and walks every WSC-RTP session that is live on a proved UDP path. For
//! each it feeds the session's own hub subscription into the session (its viewer core numbers the packets over
//! the hub's shared payloads, as before) and gathers the packets into one [`Batch`], which leaves in a few
//! `sendmmsg` calls of GSO messages. No session task wakes for a frame.
//!
//! Each session's [`WscSession`] sits in a [`Member`] behind a short, non-async lock that its task takes for
//! everything else (messages, datagrams, commands, timers); nobody holds it across an `.await`. A session's
//! media is sent by one party at a time: by the forwarder while it holds the session's subscription (the
//! session's *feed*), else by the task. The feed moves only when the previous sender has nothing in flight:
//! the task lends it at rest, after its own sends; it comes back to the task when the session needs more than
//! media sent (a message, an input switch, a retransmission, a path change), and the task then waits until the
//! forwarder's batch holding the session's last packets has left.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use hub::{Hub, Subscriber};
use parking_lot::{Mutex, MutexGuard};
use publishers::viewer::ModeName;
use publishers::wsc::{Input, Output, WscSession};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::udp::WscUdp;

/// Messages gathered before a `sendmmsg` goes out in the middle of a pass: the first viewers' packets leave while
/// the last ones' are still being numbered.
const FLUSH_MESSAGES: usize = 128;

/// A live subscription and the generation of the input request it answers.
pub struct Feed {
    pub generation: u64,
    pub sub: Subscriber,
}

/// One session, shared by its task and the forwarder.
pub struct Member {
    state: Mutex<MemberState>,
    /// Wakes the session's task: the feed came back, or the packets it waits for have left.
    wake: Notify,
}

pub struct MemberState {
    pub session: WscSession,
    /// Set while the forwarder feeds the session.
    feed: Option<Feed>,
    /// A feed the forwarder gave back: the session's queue holds something only its task carries out.
    returned: Option<Feed>,
    /// Packets of the session are in the forwarder's batch, not sent yet.
    in_flight: bool,
    /// The task waits for `in_flight` to clear.
    task_waits: bool,
    /// In the forwarder's list (joined, not yet dropped from the list).
    listed: bool,
}

/// Whether the forwarder may send a session's media: live, on a proved UDP path.
pub fn forwardable(session: &WscSession) -> bool {
    session.udp_peer().is_some() && session.mode().mode == ModeName::Live
}

impl MemberState {
    /// Whether the forwarder feeds the session now.
    pub fn is_fed(&self) -> bool {
        self.feed.is_some()
    }

    /// Ends the forwarder's part: the feed (lent or given back) returns to the caller.
    pub fn take_feed(&mut self) -> Option<Feed> {
        self.feed.take().or_else(|| self.returned.take())
    }

    /// The forwarder's step for this session in a pass: feed it what its subscription holds and move the
    /// media it asks for into `batch`. Stops at the first output that is not media and gives the feed back
    /// (true: the task must be told). Sans-IO: time is `now`, sending is the caller's.
    /// The queue is read through `cx`: once empty, the next frame the hub queues wakes `cx`'s task (the
    /// forwarder's), which holds no subscription of its own.
    pub fn forward(
        &mut self,
        now: Instant,
        batch: &mut Batch,
        max_segments: usize,
        cx: &mut Context<'_>,
    ) -> Step {
        let Some(feed) = &mut self.feed else {
            return Step::Left;
        };
        loop {
            let next = std::pin::pin!(feed.sub.recv()).poll(cx);
            let Poll::Ready(Some(frame)) = next else {
                // Empty (the waker is registered) or the hub closed (the session's task sees that itself).
                break;
            };
            let generation = feed.generation;
            self.session.handle(now, Input::Frame { generation, frame });
        }
        let mut packets = 0;
        loop {
            match self.session.peek_output() {
                Some(Output::Rtp { .. } | Output::RtpFrame { .. }) => {}
                Some(_) => break,
                None => {
                    // Polling the empty queue lets the session give back the room a GOP burst took.
                    let _ = self.session.poll_output();
                    break;
                }
            }
            match self.session.poll_output() {
                Some(Output::RtpFrame {
                    to,
                    frame,
                    payload_type,
                    ssrc,
                }) => {
                    batch.push_frame(to, &frame, payload_type, ssrc, max_segments);
                    packets += frame.len();
                }
                Some(Output::Rtp {
                    to,
                    header,
                    payload,
                }) => {
                    batch.push(to, header, payload, max_segments);
                    packets += 1;
                }
                _ => unreachable!("peeked"),
            }
        }
        if packets > 0 {
            self.in_flight = true;
        }
        if self.session.peek_output().is_some() {
            self.returned = self.feed.take();
            return Step::GaveBack { packets };
        }
        Step::Fed { packets }
    }
}

/// What [`MemberState::forward`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The session's packets (maybe none) are in the batch; it stays in the pass.
    Fed { packets: usize },
    /// Its packets are in the batch and the rest of its queue is the task's: it left the pass.
    GaveBack { packets: usize },
    /// The task took the feed back since the last pass.
    Left,
}

impl Member {
    pub fn new(session: WscSession) -> Arc<Member> {
        Arc::new(Member {
            state: Mutex::new(MemberState {
                session,
                feed: None,
                returned: None,
                in_flight: false,
                task_waits: false,
                listed: false,
            }),
            wake: Notify::new(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock()
    }

    /// Resolves when the forwarder wakes the task (the feed came back, or the packets it waited for left).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Waits until no packet of this session is in the forwarder's batch. Called by the task before it sends
    /// media itself, after taking the feed back, so the viewer's packets never overtake each other.
    pub async fn wait_sent(&self) {
        loop {
            let woken = self.wake.notified();
            {
                let mut st = self.state.lock();
                if !st.in_flight {
                    return;
                }
                st.task_waits = true;
            }
            woken.await;
        }
    }

    /// After a batch holding this session's packets left.
    fn sent(&self) {
        let mut st = self.state.lock();
        st.in_flight = false;
        if std::mem::take(&mut st.task_waits) || st.returned.is_some() {
            self.wake.notify_one();
        }
    }
}

/// The forwarder of one stream, shared by its sessions' tasks; the forwarding task ends with the last of them.
pub struct Forwarder {
    inner: Arc<Inner>,
    stop: CancellationToken,
}

struct Inner {
    hub: Hub,
    udp: Arc<WscUdp>,
    joining: Mutex<Vec<Arc<Member>>>,
    poke: Notify,
    /// Datagrams sent by passes so far.
    sent: AtomicU64,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Forwarder {
    fn start(hub: Hub, udp: Arc<WscUdp>) -> Arc<Forwarder> {
        let inner = Arc::new(Inner {
            hub,
            udp,
            joining: Mutex::new(Vec::new()),
            poke: Notify::new(),
            sent: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(inner.clone().run(stop.clone()));
        Arc::new(Forwarder { inner, stop })
    }

    /// Hands `feed` to the forwarder: from now on it feeds the session and sends its media. The caller holds
    /// the member's lock (`st`) and has nothing of the session's in flight.
    pub fn join(&self, member: &Arc<Member>, st: &mut MemberState, feed: Feed) {
        st.feed = Some(feed);
        if !st.listed {
            st.listed = true;
            self.inner.joining.lock().push(member.clone());
        }
        // A new subscription starts with the GOP cache: send it now, not at the next frame.
        self.inner.poke.notify_one();
    }
}

impl Inner {
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut list: Vec<Arc<Member>> = Vec::new();
        let mut batch = Batch::default();
        let mut in_batch: Vec<Arc<Member>> = Vec::new();
        loop {
            // A pass leaves this task's waker in every member's queue: the next frame (or a join) wakes it.
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                () = self.poke.notified() => {}
                () = woken() => {}
            }
            if self.hub.is_closed() {
                break;
            }
            // The hub offers a frame to every subscriber in one section under its lock: once the lock is free, a
            // frame whose first queue woke this pass is in every member's queue.
            let _ = self.hub.subscriber_count();
            list.append(&mut self.joining.lock());
            // Reading hundreds of queues in one go must not be cut short by tokio's cooperative budget, which
            // would make the queues after the cut look empty until the next pass.
            tokio::task::unconstrained(self.pass(&mut list, &mut batch, &mut in_batch)).await;
        }
        // The hub closed (or nobody is left): the sessions' tasks see it on their own; wake them now.
        for m in list.iter().chain(self.joining.lock().iter()) {
            m.wake.notify_one();
        }
    }

    /// One walk over every member: feed, gather, send.
    async fn pass(
        &self,
        list: &mut Vec<Arc<Member>>,
        batch: &mut Batch,
        in_batch: &mut Vec<Arc<Member>>,
    ) {
        let now = Instant::now();
        let max_segments = self.udp.max_gso_segments();
        let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let mut i = 0;
        while i < list.len() {
            let m = &list[i];
            let step = {
                let mut st = m.lock();
                let mut cx = Context::from_waker(&waker);
                let step = st.forward(now, batch, max_segments, &mut cx);
                if !matches!(step, Step::Fed { .. }) {
                    st.listed = false;
                }
                step
            };
            match step {
                Step::Fed { packets } | Step::GaveBack { packets } if packets > 0 => {
                    in_batch.push(m.clone())
                }
                // Nothing of its own in flight: tell it now.
                Step::GaveBack { .. } => m.wake.notify_one(),
                _ => {}
            }
            if matches!(step, Step::Fed { .. }) {
                i += 1;
            } else {
                list.remove(i);
            }
            if batch.messages().len() >= FLUSH_MESSAGES {
                self.flush(batch, in_batch).await;
            }
        }
        self.flush(batch, in_batch).await;
    }

    async fn flush(&self, batch: &mut Batch, in_batch: &mut Vec<Arc<Member>>) {
        if !batch.is_empty() {
            self.udp.send_many(batch).await;
            self.sent
                .fetch_add(batch.datagrams() as u64, Ordering::Relaxed);
            batch.clear();
        }
        for m in in_batch.drain(..) {
            m.sent();
        }
    }
}

/// Pending once, then ready: resolves at the task's next wake-up, whoever wakes it.
async fn woken() {
    let mut first = true;
    std::future::poll_fn(|_| {
        if std::mem::take(&mut first) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

/// The forwarders of every stream, created with a stream's first WSC-RTP session: up to `per_stream` of them,
/// each a task of its own with its share of the stream's viewers, so a stream's pass runs on that many cores at
/// once (the runtime's workers take the woken forwarders in parallel). A session keeps its forwarder for life.
pub struct Forwarders {
    per_stream: usize,
    by_stream: Mutex<HashMap<String, Shards>>,
}

/// One stream's forwarders, and which one the next session joins.
#[derive(Default)]
struct Shards {
    forwarders: Vec<Weak<Forwarder>>,
    next: usize,
}

impl Forwarders {
    pub fn new(per_stream: usize) -> Forwarders {
        Forwarders {
            per_stream: per_stream.max(1),
            by_stream: Mutex::new(HashMap::new()),
        }
    }

    /// A forwarder of `hub`'s stream for a new session, in turn; started if that one runs no longer.
    pub fn get(&self, hub: &Hub, udp: &Arc<WscUdp>) -> Arc<Forwarder> {
        let mut map = self.by_stream.lock();
        map.retain(|_, s| s.forwarders.iter().any(|f| f.strong_count() > 0));
        let shards = map.entry(hub.stream_id().to_owned()).or_default();
        let i = shards.next % self.per_stream;
        shards.next = shards.next.wrapping_add(1);
        if let Some(f) = shards.forwarders.get(i).and_then(Weak::upgrade) {
            // A stream deleted and made again has a new hub; the old one is closed.
            if !f.inner.hub.is_closed() {
                return f;
            }
        }
        let f = Forwarder::start(hub.clone(), udp.clone());
        if i < shards.forwarders.len() {
            shards.forwarders[i] = Arc::downgrade(&f);
        } else {
            shards.forwarders.push(Arc::downgrade(&f));
        }
        f
    }

    /// Datagrams the forwarders of `stream` sent so far (0 when it has none).
    pub fn datagrams_sent(&self, stream: &str) -> u64 {
        let map = self.by_stream.lock();
        map.get(stream).map_or(0, |s| {
            s.forwarders
                .iter()
                .filter_map(Weak::upgrade)
                .map(|f| f.inner.sent.load(Ordering::Relaxed))
                .sum()
        })
    }

    /// Forwarders running for `stream`.
    #[cfg(test)]
    fn running(&self, stream: &str) -> usize {
        let map = self.by_stream.lock();
        map.get(stream).map_or(0, |s| {
            s.forwarders.iter().filter(|f| f.strong_count() > 0).count()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use hub::{Hub, HubOptions};
    use publishers::viewer::{Command, StartAt};
    use publishers::wsc::client::{ClientPath, Step as ClientStep};
    use publishers::wsc::{WscIdentity, WscOptions, LATEST_VERSION};
    use sources::{Codec, Frame, FrameSink, ParameterSets};

    use super::*;

    fn params(sps_tail: u8) -> Arc<ParameterSets> {
        Arc::new(ParameterSets {
            codec: Codec::H264,
            vps: None,
            sps: Bytes::from(vec![0x67, 0x42, 0xc0, sps_tail]),
            pps: Bytes::from_static(&[0x68, 0xce]),
            width: 320,
            height: 240,
            rfc6381_codec: None,
        })
    }

    /// A frame of `len` bytes of slice data: a 1200-byte MTU cuts it into fragments.
    fn push(hub: &Hub, i: i64, key: bool, len: usize, p: &Arc<ParameterSets>) {
        let mut nal = vec![if key { 0x65 } else { 0x41 }];
        nal.resize(len, 7);
        hub.push_frame(Frame {
            codec: Codec::H264,
            data: sources::frame::length_prefixed([&nal[..]]),
            pts_90k: i * 3000,
            wall_ms: 1_000 + i * 33,
            is_keyframe: key,
            params: p.clone(),
            is_slate: false,
            starts_run: false,
        });
    }

    /// A live session that proved `from`, its handshake's outputs drained.
    fn proved(t0: Instant, from: SocketAddr, seed: u8) -> WscSession {
        let token = [seed; 16];
        let id = WscIdentity {
            session_id: format!("{seed:032x}"),
            token,
            ssrc: u32::from(seed),
            initial_seq: 100 * u16::from(seed),
            stream_name: "cam".into(),
            version: LATEST_VERSION,
            nonce_seed: [seed; 32],
        };
        let mut s = WscSession::new(
            t0,
            id,
            WscOptions::default(),
            Some(params(0x1f)),
            None,
            StartAt::Live,
        );
        let mut client = ClientPath::new(token);
        let mut proof = client.proof().to_vec();
        for _ in 0..3 {
            s.handle(t0, Input::Datagram { from, data: &proof });
            while let Some(o) = s.poll_output() {
                if let Output::Datagram { data, .. } = o {
                    if let Some(ClientStep::Reply(p)) = client.on_answer(&data) {
                        proof = p.to_vec();
                    }
                }
            }
        }
        assert_eq!(s.udp_peer(), Some(from), "proved");
        s
    }

    fn member(s: WscSession, hub: &Hub) -> MemberState {
        let generation = s.generation();
        MemberState {
            session: s,
            feed: Some(Feed {
                generation,
                sub: hub.subscribe(),
            }),
            returned: None,
            in_flight: false,
            task_waits: false,
            listed: true,
        }
    }

    fn noop() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// (destination, sequence number) of every datagram in the batch.
    fn seqs(b: &Batch) -> Vec<(u16, u16)> {
        b.messages()
            .iter()
            .flat_map(|m| {
                (m.first..m.first + m.count).map(move |i| {
                    let (h, _) = b.datagram(i);
                    (m.to.port(), u16::from_be_bytes([h[2], h[3]]))
                })
            })
            .collect()
    }

    #[test]
    fn every_live_udp_viewers_copy_of_a_frame_goes_into_one_batch() {
        let t0 = Instant::now();
        let hub = Hub::new("cam", HubOptions::default());
        let p = params(0x1f);
        let mut a = member(proved(t0, addr(5001), 1), &hub);
        let mut b = member(proved(t0, addr(5002), 2), &hub);
        assert!(forwardable(&a.session) && forwardable(&b.session));
        // A keyframe of 3 fragments (after its SPS and PPS), then a delta frame of 2.
        push(&hub, 0, true, 3000, &p);
        push(&hub, 1, false, 2000, &p);
        let mut batch = Batch::default();
        let t = t0 + Duration::from_millis(40);
        assert_eq!(
            a.forward(t, &mut batch, 64, &mut noop()),
            Step::Fed { packets: 7 }
        );
        assert_eq!(
            b.forward(t, &mut batch, 64, &mut noop()),
            Step::Fed { packets: 7 }
        );
        assert!(a.in_flight && b.in_flight);
        let got = seqs(&batch);
        let want: Vec<(u16, u16)> = (0..7)
            .map(|i| (5001, 100 + i))
            .chain((0..7).map(|i| (5002, 200 + i)))
            .collect();
        assert_eq!(got, want);
        // Per viewer: SPS + PPS (the shorter PPS ends that run), the keyframe's fragments, the delta frame's.
        assert_eq!(batch.messages().len(), 6);
        // Nothing new: nothing gathered, the session stays in the pass.
        batch.clear();
        assert_eq!(
            a.forward(t, &mut batch, 64, &mut noop()),
            Step::Fed { packets: 0 }
        );
        assert!(batch.is_empty());
    }

    #[test]
    fn anything_but_media_gives_the_session_back_to_its_task_in_order() {
        let t0 = Instant::now();
        let hub = Hub::new("cam", HubOptions::default());
        let mut a = member(proved(t0, addr(5001), 1), &hub);
        push(&hub, 0, true, 100, &params(0x1f));
        let mut batch = Batch::default();
        assert_eq!(
            a.forward(t0, &mut batch, 64, &mut noop()),
            Step::Fed { packets: 3 }
        );
        // The camera changes its parameter sets: the client gets a new `sdp` before the keyframe's packets.
        push(&hub, 1, true, 100, &params(0x20));
        let step = a.forward(t0, &mut batch, 64, &mut noop());
        assert_eq!(step, Step::GaveBack { packets: 0 });
        assert!(!a.is_fed());
        assert!(
            matches!(a.session.peek_output(), Some(Output::WsText(t)) if t.contains("\"sdp\""))
        );
        let rest: Vec<Output> = std::iter::from_fn(|| a.session.poll_output()).collect();
        assert_eq!(rest.len(), 2, "sdp, then the frame: {rest:?}");
        assert!(
            matches!(&rest[1], Output::RtpFrame { frame, .. } if frame.len() == 3),
            "SPS, PPS, slice: {rest:?}"
        );
        let feed = a.take_feed().expect("given back");
        assert_eq!(feed.generation, a.session.generation());
        assert_eq!(a.forward(t0, &mut batch, 64, &mut noop()), Step::Left);
    }

    #[test]
    fn only_live_sessions_on_a_proved_udp_path_are_forwardable() {
        let t0 = Instant::now();
        let mut s = WscSession::new(
            t0,
            WscIdentity {
                session_id: format!("{:032x}", 9),
                token: [9; 16],
                ssrc: 9,
                initial_seq: 0,
                stream_name: "cam".into(),
                version: LATEST_VERSION,
                nonce_seed: [9; 32],
            },
            WscOptions::default(),
            None,
            None,
            StartAt::Live,
        );
        assert!(!forwardable(&s), "no proof yet");
        let mut s2 = proved(t0, addr(5003), 3);
        assert!(forwardable(&s2));
        s2.handle(t0, Input::Command(Command::Seek { position_ms: 500 }));
        assert!(!forwardable(&s2), "reading the recording");
        s2.handle(t0, Input::Command(Command::Live));
        assert!(forwardable(&s2), "live again");
        s.handle(t0 + Duration::from_secs(4), Input::Shutdown);
        assert!(!forwardable(&s));
    }

    #[tokio::test]
    async fn a_streams_sessions_are_dealt_to_its_forwarders_in_turn() {
        let udp = WscUdp::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let forwarders = Forwarders::new(2);
        let hub = Hub::new("cam", HubOptions::default());
        let got: Vec<Arc<Forwarder>> = (0..4).map(|_| forwarders.get(&hub, &udp)).collect();
        assert!(Arc::ptr_eq(&got[0], &got[2]) && Arc::ptr_eq(&got[1], &got[3]));
        assert!(!Arc::ptr_eq(&got[0], &got[1]));
        assert_eq!(forwarders.running("cam"), 2);
        let other = Hub::new("other", HubOptions::default());
        let _o = forwarders.get(&other, &udp);
        assert_eq!(forwarders.running("other"), 1, "per stream");
        drop(got);
        assert_eq!(
            forwarders.running("cam"),
            0,
            "they end with their last session"
        );
        // A stream made again has a new hub: its sessions get new forwarders.
        let kept = forwarders.get(&hub, &udp);
        hub.close();
        let again = Hub::new("cam", HubOptions::default());
        let fresh = [forwarders.get(&again, &udp), forwarders.get(&again, &udp)];
        assert!(fresh.iter().all(|f| !Arc::ptr_eq(f, &kept)));
    }
}
