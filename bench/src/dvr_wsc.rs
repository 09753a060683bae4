//! A WSC-RTP viewer for the live-rewind scenario: one session (WebSocket and a UDP socket proved with
//! its token, WSC-RTP-PROTOCOL.md) whose controls (`seek`, `live`, ...) the scenario sends as messages, and
//! whose complete keyframes it hears about with their arrival time and stamp ([`KeyframeWatch`]). A task per
//! viewer reads both sockets, proves the address, sends keepalives and counts the RTP bytes received; dropping
//! the viewer ends the session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use publishers::wsc::client::{ClientPath, Step};
use publishers::wsc::datagram::{is_control, token_from_hex};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::keyframe_watch::{parse_rtp, KeyframeWatch};
use crate::sinks::set_rcvbuf;

/// What a viewer heard, in order.
#[derive(Debug)]
pub enum Heard {
    /// A complete keyframe, when it arrived and its stamp (recorded keyframes only).
    Keyframe { at: Instant, stamp: Option<u64> },
    /// The gateway refused a control message (`error`).
    Refused(String),
    /// The session ended (`bye`, or the WebSocket closed).
    Ended(String),
}

pub struct WscViewer {
    pub session_id: String,
    commands: mpsc::UnboundedSender<String>,
    heard: mpsc::UnboundedReceiver<Heard>,
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WscViewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Proofs are repeated this often until acknowledged, as the protocol asks.
const PROOF_EVERY: Duration = Duration::from_millis(500);
/// Under the session's `keepalive_interval_ms` (5 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(4);

/// A WSC-RTP session's WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to a session URL and waits (10 s at most) for its `init` message.
pub async fn connect(url: &str) -> anyhow::Result<(Ws, Value)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .with_context(|| format!("connecting {url}"))?;
    let init = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => break serde_json::from_str::<Value>(&t)?,
            Ok(Some(Ok(_))) => continue,
            other => bail!("no init: {other:?}"),
        }
    };
    Ok((ws, init))
}

impl WscViewer {
    /// Opens a session on `stream`, live or (with `start_ms`) in the recording. Returns once `init`
    /// arrived; media follows when the UDP proof is acknowledged.
    pub async fn open(
        base: &str,
        stream: &str,
        start_ms: Option<i64>,
    ) -> anyhow::Result<WscViewer> {
        let mut url = format!(
            "{}/streams/{stream}/wsc-rtp?version=3",
            base.replace("http://", "ws://")
        );
        if let Some(t) = start_ms {
            url.push_str(&format!("&start_ms={t}"));
        }
        let (mut ws, init) = connect(&url).await?;
        let token = token_from_hex(init["token"].as_str().unwrap_or_default())
            .ok_or_else(|| anyhow!("init without a token: {init}"))?;
        let session_id = init["session_id"]
            .as_str()
            .context("init without a session id")?
            .to_owned();
        let server = SocketAddr::from((
            [127, 0, 0, 1],
            init["udp_port"].as_u64().unwrap_or(0) as u16,
        ));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        // A seek's first keyframe comes with the player's read-ahead right behind it.
        set_rcvbuf(&udp, 8 << 20);
        udp.set_nonblocking(true)?;
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let (commands, mut to_send) = mpsc::unbounded_channel::<String>();
        let (tell, heard) = mpsc::unbounded_channel();
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let task = tokio::spawn(async move {
            let mut watch = KeyframeWatch::default();
            let mut path = ClientPath::new(token);
            let mut tick = tokio::time::interval(PROOF_EVERY);
            let mut last_keepalive = Instant::now();
            let mut buf = vec![0u8; 2048];
            let ended = loop {
                tokio::select! {
                    r = udp.recv_from(&mut buf) => {
                        let Ok((n, from)) = r else { break "the UDP socket failed".to_owned() };
                        let d = &buf[..n];
                        if from != server {
                            continue;
                        }
                        if is_control(d) {
                            if let Some(Step::Reply(proof)) = path.on_answer(d) {
                                let _ = udp.send_to(&proof, server).await;
                            }
                        } else if let Some((seq, marker, payload)) = parse_rtp(d) {
                            let at = Instant::now();
                            counted.fetch_add(n as u64, Ordering::Relaxed);
                            if let Some(stamp) = watch.push(seq, marker, payload) {
                                let _ = tell.send(Heard::Keyframe { at, stamp });
                            }
                        }
                    }
                    m = ws.next() => match m {
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t).unwrap_or_default();
                            match v["type"].as_str() {
                                Some("error") => { let _ = tell.send(Heard::Refused(t.to_string())); }
                                Some("bye") => break t.to_string(),
                                _ => {}
                            }
                        }
                        Some(Ok(_)) => {}
                        other => break format!("the WebSocket ended: {other:?}"),
                    },
                    Some(text) = to_send.recv() => {
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            break "the WebSocket failed".to_owned();
                        }
                    }
                    _ = tick.tick() => {
                        let datagram = if !path.is_proved() {
                            path.proof()
                        } else if last_keepalive.elapsed() >= KEEPALIVE_EVERY {
                            last_keepalive = Instant::now();
                            path.keepalive()
                        } else {
                            continue;
                        };
                        let _ = udp.send_to(&datagram, server).await;
                    }
                }
            };
            let _ = tell.send(Heard::Ended(ended));
        });
        Ok(WscViewer {
            session_id,
            commands,
            heard,
            bytes,
            task,
        })
    }

    /// Sends a control message; returns the instant just before it left.
    pub fn send(&self, msg: Value) -> Instant {
        let at = Instant::now();
        let _ = self.commands.send(msg.to_string());
        at
    }

    /// Waits for the first complete keyframe arriving after `since` whose stamp `wanted` accepts; returns when it
    /// arrived.
    pub async fn keyframe(
        &mut self,
        since: Instant,
        wanted: impl Fn(Option<u64>) -> bool,
        within: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.heard.recv()).await {
                Ok(Some(Heard::Keyframe { at, stamp })) if at >= since && wanted(stamp) => {
                    return Ok(at)
                }
                Ok(Some(Heard::Keyframe { .. })) => {}
                Ok(Some(Heard::Refused(why))) => bail!("refused: {why}"),
                Ok(Some(Heard::Ended(why))) => bail!("session ended: {why}"),
                Ok(None) => bail!("session task gone"),
                Err(_) => bail!("no such keyframe within {within:?}"),
            }
        }
    }

    /// RTP bytes received so far (headers included).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
