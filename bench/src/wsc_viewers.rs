//! WSC-RTP viewers for fan-out runs: for each sink socket, a WebSocket session whose UDP media is proven to go
//! to that socket, as the protocol says (docs/WSC-RTP-PROTOCOL.md). The WebSockets stay open while the returned
//! [`Sessions`] lives; dropping it ends every session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use publishers::wsc::client::{ClientPath, Step};
use publishers::wsc::datagram::token_from_hex;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::sinks::{Keepalive, Sinks};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open sessions; their WebSockets are read (and so kept alive) by one task each.
pub struct Sessions {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    moved_to_websocket: Arc<AtomicUsize>,
}

impl Sessions {
    /// Sessions whose media left UDP for the WebSocket (consent lost): a run with any measured the wrong path.
    pub fn moved_to_websocket(&self) -> usize {
        self.moved_to_websocket.load(Ordering::Relaxed)
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens one session per sink socket on stream `id`.
pub async fn open(base: &str, id: &str, sinks: &mut Sinks) -> anyhow::Result<Sessions> {
    let url = format!(
        "{}/streams/{id}/wsc-rtp?version={}",
        base.replace("http://", "ws://"),
        publishers::wsc::UDP_VERSION
    );
    let mut tasks = Vec::with_capacity(sinks.len());
    let moved_to_websocket = Arc::new(AtomicUsize::new(0));
    for i in sinks.join_order() {
        // Opening 1000 sessions takes longer than a session lives without keepalives (proofs are rate-limited):
        // keep the ones already open alive meanwhile.
        sinks.send_due_keepalives();
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("session {i}: connecting"))?;
        let init = next_json(&mut ws).await?;
        let token = token_from_hex(init["token"].as_str().unwrap_or_default())
            .ok_or_else(|| anyhow!("init without a token: {init}"))?;
        let port = init["udp_port"].as_u64().unwrap_or_default() as u16;
        let server = SocketAddr::from(([127, 0, 0, 1], port));
        let socket = sinks.socket(i).try_clone()?;
        let path = tokio::task::spawn_blocking(move || prove(&socket, token, server))
            .await?
            .with_context(|| format!("session {i}: proving the UDP address"))?;
        sinks.set_keepalive(i, Keepalive { path, server });
        let moved = moved_to_websocket.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    if t.contains(r#""type":"transport""#) && t.contains(r#""mode":"websocket""#) {
                        moved.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    Ok(Sessions {
        tasks,
        moved_to_websocket,
    })
}

async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(&t)?),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => bail!("WebSocket ended before init: {other:?}"),
            Err(_) => bail!("no init within 10 s"),
        }
    }
}

/// Runs the UDP handshake (proof, challenge, proof echoing it) from `socket`, repeating the proof every 500 ms
/// until it is accepted, and reading past media that may already arrive.
fn prove(
    socket: &std::net::UdpSocket,
    token: [u8; 16],
    server: SocketAddr,
) -> anyhow::Result<ClientPath> {
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut path = ClientPath::new(token);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        socket.send_to(&path.proof(), server)?;
        let wait = Instant::now() + Duration::from_millis(500);
        while Instant::now() < wait {
            let Ok(n) = socket.recv(&mut buf) else { break };
            match path.on_answer(&buf[..n]) {
                Some(Step::Proved) => {
                    socket.set_read_timeout(None)?;
                    return Ok(path);
                }
                Some(Step::Reply(proof)) => {
                    socket.send_to(&proof, server)?;
                }
                Some(Step::ConsentRenewed) | None => {}
            }
        }
    }
    bail!("not proved within 30 s")
}
