//! WSC-RTP viewers for fan-out runs: for each sink socket, a WebSocket session whose UDP media is proven to go
//! to that socket, as the protocol says (docs/WSC-RTP-PROTOCOL.md). The WebSockets stay open while the returned
//! [`Sessions`] lives; dropping it ends every session.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures::StreamExt;
use publishers::wsc::datagram::{build_proof, parse_ack, token_from_hex, ProofKind};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::sinks::{Keepalive, Sinks};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open sessions; their WebSockets are read (and so kept alive) by one task each.
pub struct Sessions {
    tasks: Vec<tokio::task::JoinHandle<()>>,
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
    let url = format!("{}/streams/{id}/wsc-rtp", base.replace("http://", "ws://"));
    let mut tasks = Vec::with_capacity(sinks.len());
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
        tokio::task::spawn_blocking(move || prove(&socket, &token, server))
            .await?
            .with_context(|| format!("session {i}: proving the UDP address"))?;
        sinks.set_keepalive(i, Keepalive { token, server });
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = ws.next().await {}
        }));
    }
    Ok(Sessions { tasks })
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

/// Sends the proof every 500 ms until the ack (proofs are rate-limited per source address, and every receiver here
/// shares 127.0.0.1), reading past media that may already arrive.
fn prove(socket: &std::net::UdpSocket, token: &[u8; 16], server: SocketAddr) -> anyhow::Result<()> {
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        socket.send_to(&build_proof(ProofKind::Proof, token), server)?;
        let wait = Instant::now() + Duration::from_millis(500);
        while Instant::now() < wait {
            match socket.recv(&mut buf) {
                Ok(n) if parse_ack(&buf[..n]).is_some() => {
                    socket.set_read_timeout(None)?;
                    return Ok(());
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    bail!("no ack within 30 s")
}
