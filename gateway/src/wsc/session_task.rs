//! The I/O edge of one WSC-RTP session: a task that feeds the sans-IO [`WscSession`] with WebSocket messages,
//! routed UDP datagrams, frames from its input (the hub or a DVR player, [`ViewerInputs`]), control commands,
//! stream state and time, and carries out what it asks.
//!
//! Back-pressure: a slow WebSocket or socket makes this task fall behind; its hub queue then fills and the hub
//! drops this viewer to the next keyframe. Nobody else waits. A DVR player waits on its own bounded channel.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use hub::Hub;
use publishers::viewer::{Command, ModeView, StartAt};
use publishers::wsc::messages::StreamStateName;
use publishers::wsc::{Input, Output, WscIdentity, WscSession};
use sources::IngestState;
use tracing::debug;

use super::forwarder::{self, Feed, Forwarder, Member, MemberState};
use super::udp::WscUdp;
use super::WscService;
use crate::error::AppError;
use crate::session_control::ControlEntry;
use crate::udp_gso::Datagram;
use crate::viewer_input::{Arrival, ViewerInputs};
use crate::viewers::SessionPermit;

/// How often the stream's ingest state is looked at.
const STATE_POLL: Duration = Duration::from_millis(500);
/// A client that doesn't read its WebSocket for this long is dropped: it would otherwise hold a session place
/// forever, since its idle timer can't run while a send waits.
const WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one message; false if the client is gone or stopped reading.
async fn send(ws: &mut futures::stream::SplitSink<WebSocket, Message>, msg: Message) -> bool {
    matches!(
        tokio::time::timeout(WS_SEND_TIMEOUT, ws.send(msg)).await,
        Ok(Ok(()))
    )
}

fn state_name(s: IngestState) -> StreamStateName {
    match s {
        IngestState::Running => StreamStateName::Running,
        IngestState::Starting | IngestState::Reconnecting => StreamStateName::Reconnecting,
        IngestState::Offline | IngestState::Error => StreamStateName::Offline,
    }
}

/// Frees the session's UDP routes however the task ends.
struct RouteGuard {
    svc: Arc<WscService>,
    token: [u8; 16],
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.svc.udp.unregister(&self.token);
    }
}

/// Outputs the task's queue keeps room for once drained: a delta frame's packets and a few messages.
const PENDING_KEPT: usize = 64;

/// Datagrams gathered before they are sent, at most.
const BATCH_MAX: usize = 64;

/// Datagrams gathered from the session's output, all to one address, so a frame's packets leave in one system
/// call. The buffer is reused from frame to frame.
#[derive(Default)]
struct OutgoingDatagrams {
    to: Option<SocketAddr>,
    datagrams: Vec<Datagram>,
}

impl OutgoingDatagrams {
    async fn push(&mut self, udp: &WscUdp, to: SocketAddr, datagram: Datagram) {
        // A few system calls' worth at most: a joining viewer's GOP-cache burst (a few thousand packets) would
        // otherwise grow this buffer for the rest of the session.
        if self.to != Some(to) || self.datagrams.len() == BATCH_MAX {
            self.flush(udp).await;
            self.to = Some(to);
        }
        self.datagrams.push(datagram);
    }

    async fn flush(&mut self, udp: &WscUdp) {
        if let Some(to) = self.to.take() {
            udp.send_batch(to, &self.datagrams).await;
        }
        self.datagrams.clear();
    }
}

/// How a session starts: where, and which protocol version the client asked for.
#[derive(Clone, Copy, Debug)]
pub struct WscStart {
    pub at: StartAt,
    pub version: u32,
    /// Opened with the DVR right (`access`): may leave live.
    pub dvr: bool,
}

/// Checks a command against the recordings and readies the input it needs; the error's code and words if not.
async fn admit(
    svc: &WscService,
    entry: &ControlEntry,
    inputs: &mut ViewerInputs,
    mode: &ModeView,
    cmd: &Command,
) -> Result<(), AppError> {
    entry.check(&svc.playback, cmd).await?;
    inputs.prepare(cmd, mode)?;
    Ok(())
}

/// The session's side of the forwarder: what it hands to the session, and when it takes the media back.
struct Turns {
    member: Arc<Member>,
    forwarder: Arc<Forwarder>,
}

impl Turns {
    /// Runs `f` on the session and moves what it asks for into `pending`, in one hold of the lock, so the
    /// forwarder never feeds the session between a change and the task's answer to it.
    fn turn<R>(
        &self,
        inputs: &mut ViewerInputs,
        pending: &mut VecDeque<Output>,
        f: impl FnOnce(&mut WscSession) -> R,
    ) -> R {
        let mut st = self.member.lock();
        let r = f(&mut st.session);
        Self::collect(&mut st, inputs, pending);
        r
    }

    /// Drains the session's outputs into `pending`. Media, a new input or a path other than live UDP take the
    /// feed back from the forwarder: the task carries them out itself, in order.
    fn collect(st: &mut MemberState, inputs: &mut ViewerInputs, pending: &mut VecDeque<Output>) {
        let before = pending.len();
        while let Some(o) = st.session.poll_output() {
            pending.push_back(o);
        }
        let own = pending.iter().skip(before).any(|o| {
            matches!(
                o,
                Output::Rtp { .. } | Output::RtpFrame { .. } | Output::Input(_)
            )
        });
        let given_back = !st.is_fed();
        if given_back || own || !forwarder::forwardable(&st.session) {
            if let Some(feed) = st.take_feed() {
                inputs.take_back_live(feed.generation, feed.sub);
            }
        }
    }

    /// At rest (nothing of the task's in flight): lends the live subscription to the forwarder when the session
    /// is live on a proved UDP path. True if something is left for the task (outputs the forwarder left).
    fn rest(&self, inputs: &mut ViewerInputs, pending: &mut VecDeque<Output>) -> bool {
        let mut st = self.member.lock();
        Self::collect(&mut st, inputs, pending);
        if !pending.is_empty() {
            return true;
        }
        if !st.is_fed() && forwarder::forwardable(&st.session) {
            if let Some((generation, sub)) = inputs.lend_live() {
                self.forwarder
                    .join(&self.member, &mut st, Feed { generation, sub });
            }
        }
        false
    }
}

/// Takes the session out of the forwarder however the task ends.
struct LeaveGuard(Arc<Member>);

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        self.0.lock().take_feed();
    }
}

/// Runs one session until it ends; `_permit` holds its place in the session count until then.
pub async fn run(
    socket: WebSocket,
    svc: Arc<WscService>,
    hub: Hub,
    start: WscStart,
    _permit: SessionPermit,
) {
    let identity = WscIdentity {
        session_id: format!("{:032x}", rand::random::<u128>()),
        token: rand::random(),
        ssrc: rand::random(),
        initial_seq: rand::random(),
        stream_name: hub.stream_id().to_owned(),
        version: start.version,
        nonce_seed: rand::random(),
    };
    let session_id = identity.session_id.clone();
    let token = identity.token;
    let mut inbox = svc.udp.register(token);
    let _routes = RouteGuard {
        svc: svc.clone(),
        token,
    };
    let mut inputs = ViewerInputs::new(hub.clone(), svc.playback.clone(), None);
    let status = hub.status();
    let mut state = state_name(status.state);
    let params = hub.camera_params().or_else(|| hub.params());
    let session = WscSession::new(
        Instant::now(),
        identity,
        svc.options.clone(),
        params,
        Some(state),
        start.at,
    );
    let mut control = svc
        .controls
        .register(&session_id, &hub, None, start.dvr, session.mode());
    let turns = Turns {
        member: Member::new(session),
        forwarder: svc.forwarders.get(&hub, &svc.udp),
    };
    let _leave = LeaveGuard(turns.member.clone());
    let (mut ws_tx, mut ws_rx) = socket.split();
    let mut state_poll = tokio::time::interval(STATE_POLL);
    debug!(stream = %hub.stream_id(), "WSC-RTP session started");
    let mut datagrams = OutgoingDatagrams::default();
    let mut pending = VecDeque::new();
    loop {
        turns.turn(&mut inputs, &mut pending, |_| ());
        // Media the forwarder may still hold for this session must leave first.
        let mut waited = false;
        while let Some(out) = pending.pop_front() {
            // Datagrams gather until something else is due, which must not overtake them.
            if !matches!(
                out,
                Output::Rtp { .. } | Output::RtpFrame { .. } | Output::Datagram { .. }
            ) {
                datagrams.flush(&svc.udp).await;
            }
            let ok = match out {
                Output::Rtp {
                    to,
                    header,
                    payload,
                } => {
                    if !waited {
                        turns.member.wait_sent().await;
                        waited = true;
                    }
                    let datagram = Datagram {
                        header: Some(header),
                        body: payload,
                    };
                    datagrams.push(&svc.udp, to, datagram).await;
                    true
                }
                Output::RtpFrame {
                    to,
                    frame,
                    payload_type,
                    ssrc,
                } => {
                    if !waited {
                        turns.member.wait_sent().await;
                        waited = true;
                    }
                    for p in frame.packets() {
                        let datagram = Datagram {
                            header: Some(p.header(payload_type, ssrc)),
                            body: p.payload,
                        };
                        datagrams.push(&svc.udp, to, datagram).await;
                    }
                    true
                }
                Output::Datagram { to, data } => {
                    let datagram = Datagram {
                        header: None,
                        body: data,
                    };
                    datagrams.push(&svc.udp, to, datagram).await;
                    true
                }
                Output::WsText(t) => send(&mut ws_tx, Message::Text(t.into())).await,
                Output::WsBinary(b) => send(&mut ws_tx, Message::Binary(b)).await,
                Output::UdpPeer(addr) => {
                    svc.udp.set_peer(token, addr);
                    true
                }
                Output::Input(req) => {
                    if let Some(event) = inputs.apply(req) {
                        let generation = req.generation;
                        turns.turn(&mut inputs, &mut pending, |s| {
                            s.handle(Instant::now(), Input::PlayerEvent { generation, event })
                        });
                    }
                    true
                }
                Output::Control(cmd) => {
                    let entry = control.entry.clone();
                    let mode = turns.member.lock().session.mode();
                    let input = match admit(&svc, &entry, &mut inputs, &mode, &cmd).await {
                        Ok(()) => Input::Command(cmd),
                        Err(e) => Input::CommandRefused {
                            code: e.status_and_code().1,
                            message: e.to_string(),
                        },
                    };
                    turns.turn(&mut inputs, &mut pending, |s| {
                        s.handle(Instant::now(), input)
                    });
                    true
                }
                Output::Close { code } => {
                    let _ = ws_tx
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: "".into(),
                        })))
                        .await;
                    false
                }
            };
            if !ok {
                debug!(stream = %hub.stream_id(), "WSC-RTP session ended");
                return;
            }
        }
        datagrams.flush(&svc.udp).await;
        // A joining viewer's GOP burst passes through here once; don't keep its room for the session's life.
        pending.shrink_to(PENDING_KEPT);
        if turns.rest(&mut inputs, &mut pending) {
            continue;
        }
        let now = Instant::now();
        let (closed, mode, wake, wants_frames) = {
            let st = turns.member.lock();
            let s = &st.session;
            (
                s.is_closed(),
                s.mode(),
                s.poll_timeout(now),
                s.wants_frames(),
            )
        };
        if closed {
            return;
        }
        control.entry.publish(mode);
        let wake = wake.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            msg = ws_rx.next() => match msg {
                Some(Ok(Message::Text(t))) => turns.turn(&mut inputs, &mut pending, |s| {
                    s.handle(Instant::now(), Input::WsText(t.as_str()))
                }),
                Some(Ok(Message::Binary(b))) => turns.turn(&mut inputs, &mut pending, |s| {
                    s.handle(Instant::now(), Input::WsBinary(&b))
                }),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // The client closed or the connection broke: end without another word.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    debug!(stream = %hub.stream_id(), "WSC-RTP client left");
                    return;
                }
            },
            d = inbox.recv() => if let Some((from, data)) = d {
                turns.turn(&mut inputs, &mut pending, |s| {
                    s.handle(Instant::now(), Input::Datagram { from, data: &data })
                });
            },
            a = inputs.next(wants_frames) => {
                let input = match a {
                    Arrival::Frame { generation, frame } => Input::Frame { generation, frame },
                    Arrival::Event { generation, event } => Input::PlayerEvent { generation, event },
                    Arrival::StreamClosed if svc.budget.closing() => Input::Shutdown,
                    Arrival::StreamClosed => Input::StreamDeleted,
                };
                turns.turn(&mut inputs, &mut pending, |s| s.handle(Instant::now(), input));
            },
            Some(msg) = control.commands.recv() => {
                let mode = turns.member.lock().session.mode();
                let result = inputs.prepare(&msg.cmd, &mode).map(|()| {
                    turns.turn(&mut inputs, &mut pending, |s| {
                        s.handle(Instant::now(), Input::Command(msg.cmd));
                        s.mode()
                    })
                });
                let _ = msg.reply.send(result);
            },
            _ = state_poll.tick() => {
                let closing = hub.is_closed();
                let now_state = state_name(hub.status().state);
                let changed = now_state != state;
                state = now_state;
                turns.turn(&mut inputs, &mut pending, |s| {
                    if closing {
                        // Reading the recording, or fed by the forwarder, the session holds no hub
                        // subscription to see it close.
                        let input = if svc.budget.closing() { Input::Shutdown } else { Input::StreamDeleted };
                        s.handle(Instant::now(), input);
                    }
                    if changed {
                        s.handle(Instant::now(), Input::StreamState(now_state));
                    }
                });
            },
            () = tokio::time::sleep_until(wake) => {
                turns.turn(&mut inputs, &mut pending, |s| s.handle_timeout(Instant::now()));
            },
            () = turns.member.woken() => {
                if hub.is_closed() {
                    let input = if svc.budget.closing() { Input::Shutdown } else { Input::StreamDeleted };
                    turns.turn(&mut inputs, &mut pending, |s| s.handle(Instant::now(), input));
                }
            },
        }
    }
}
