//! A viewer on the WSC-RTP WebSocket transport, for the soak: it asks for media inside the WebSocket (so no UDP
//! handshake is needed; WSC-RTP-PROTOCOL.md, `use_websocket`), counts the binary messages and bytes that arrive,
//! pings so the session is never idle, and gives its session id to the caller, which moves it with the REST
//! calls (`POST /sessions/{id}/seek`, `.../live`). Dropping it closes the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

pub struct WsViewer {
    pub session_id: String,
    bytes: Arc<AtomicU64>,
    ended: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsViewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pings at this interval keep the session under its idle timeout (30 s).
const PING_EVERY: Duration = Duration::from_secs(5);

impl WsViewer {
    /// Opens a version 2 session on `stream` with media inside the WebSocket.
    pub async fn open(base: &str, stream: &str) -> anyhow::Result<WsViewer> {
        let url = format!(
            "{}/streams/{stream}/wsc-rtp?version=2",
            base.replace("http://", "ws://")
        );
        let (mut ws, init) = crate::dvr_wsc::connect(&url).await?;
        let session_id = init["session_id"]
            .as_str()
            .context("init without a session id")?
            .to_owned();
        ws.send(Message::Text(r#"{"type":"use_websocket"}"#.into()))
            .await?;
        let bytes = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicU64::new(0));
        let (counted, end) = (bytes.clone(), ended.clone());
        let task = tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_EVERY);
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(Message::Binary(b))) => {
                            counted.fetch_add(b.len() as u64, Ordering::Relaxed);
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                    _ = ping.tick() => {
                        if ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
            end.store(1, Ordering::Relaxed);
        });
        Ok(WsViewer {
            session_id,
            bytes,
            ended,
            task,
        })
    }

    /// Media bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// True once the server closed the session.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed) != 0
    }
}
