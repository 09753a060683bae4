//! WSC-RTP test clients: a version 3 session's WebSocket and the UDP handshake from a real socket.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use gateway::Gateway;
use publishers::wsc::client::{ClientPath, Step};
use publishers::wsc::datagram::token_from_hex;
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn open(gw: &Gateway, id: &str) -> (Ws, Value) {
    let url = format!(
        "{}/streams/{id}/wsc-rtp?version=3",
        gw.base_url().replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let init = next_json(&mut ws).await;
    assert_eq!(init["type"], "init");
    (ws, init)
}

pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("message in time")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

pub fn token(init: &Value) -> [u8; 16] {
    token_from_hex(init["token"].as_str().unwrap()).unwrap()
}

pub fn server_udp(init: &Value) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], init["udp_port"].as_u64().unwrap() as u16))
}

/// Proves `udp` for the session (proof, challenge, proof echoing it); returns once accepted, with the path's
/// state for keep-alives.
pub async fn prove(udp: &UdpSocket, init: &Value) -> ClientPath {
    let mut path = ClientPath::new(token(init));
    let mut buf = [0u8; 2048];
    let mut send = path.proof();
    for _ in 0..10 {
        udp.send_to(&send, server_udp(init)).await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), udp.recv(&mut buf)).await
        {
            match path.on_answer(&buf[..n]) {
                Some(Step::Proved) => return path,
                Some(Step::Reply(proof)) => send = proof,
                _ => {}
            }
        }
    }
    panic!("not proved");
}

/// Receives RTP datagrams until `frames` access units (marker bits) arrived.
pub async fn recv_rtp(udp: &UdpSocket, frames: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    let mut markers = 0;
    while markers < frames {
        let n = tokio::time::timeout(Duration::from_secs(10), udp.recv(&mut buf))
            .await
            .expect("RTP in time")
            .unwrap();
        if buf[0] >> 6 != 2 {
            continue;
        }
        markers += usize::from(buf[1] & 0x80 != 0);
        out.push(buf[..n].to_vec());
    }
    out
}
