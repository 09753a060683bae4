//! A UDP relay between one harness viewer and the server under test that makes the receiving side cheap: it
//! forwards everything both ways until the viewer has its first keyframe (ICE, DTLS, the first SRTP frame), then
//! keeps forwarding STUN, DTLS and RTCP (consent checks and receiver reports go on, so the server sees a live
//! viewer) but counts the server's SRTP media datagrams and drops them instead of handing them to the viewer to
//! decrypt. Without it a `webrtc`-crate viewer costs about as much CPU as the server's side of the connection,
//! and 200 of them on the harness's one core measured the harness rather than the server.
//!
//! Both SDPs are rewritten so the two peers only know the relay: the server's candidates become the relay's
//! viewer-facing address, the viewer's become its server-facing one (a controlling server such as Janus would
//! otherwise pair with the viewer directly).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub struct MediaRelay {
    /// The viewer talks to this address.
    viewer_side: Arc<UdpSocket>,
    /// The server talks to this address.
    server_side: Arc<UdpSocket>,
    media_only: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for MediaRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// SRTP media (RTP version 2, not an RTCP packet type; RFC 5761 and RFC 7983 demultiplexing).
fn is_rtp(b: &[u8]) -> bool {
    b.len() > 12 && (128..=191).contains(&b[0]) && !(192..=223).contains(&b[1])
}

/// `sdp` with every UDP candidate replaced by one host candidate at `at`.
pub fn candidates_at(sdp: &str, at: SocketAddr) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut written = false;
    for line in sdp.lines() {
        if line.starts_with("a=candidate:") {
            if !written && line.split_whitespace().nth(2) == Some("udp") {
                out.push_str(&format!(
                    "a=candidate:1 1 udp 2130706431 {} {} typ host\r\n",
                    at.ip(),
                    at.port()
                ));
                written = true;
            }
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The first UDP candidate address of `sdp` whose IP is `ip`, else the first UDP one.
pub fn server_candidate(sdp: &str, ip: IpAddr) -> Option<SocketAddr> {
    let all: Vec<SocketAddr> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(2).map(|p| p.eq_ignore_ascii_case("udp")) != Some(true) {
                return None;
            }
            Some(SocketAddr::new(
                f.get(4)?.parse().ok()?,
                f.get(5)?.parse().ok()?,
            ))
        })
        .collect();
    all.iter().find(|a| a.ip() == ip).or(all.first()).copied()
}

impl MediaRelay {
    /// Binds the relay's two sockets on `ip`.
    pub async fn bind(ip: IpAddr) -> anyhow::Result<MediaRelay> {
        Ok(MediaRelay {
            viewer_side: Arc::new(UdpSocket::bind((ip, 0)).await?),
            server_side: Arc::new(UdpSocket::bind((ip, 0)).await?),
            media_only: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
        })
    }

    /// Where the viewer must send (put it in the server's SDP the viewer reads).
    pub fn viewer_facing(&self) -> anyhow::Result<SocketAddr> {
        self.viewer_side.local_addr().context("relay address")
    }

    /// Where the server must send (put it in the viewer's SDP the server reads).
    pub fn server_facing(&self) -> anyhow::Result<SocketAddr> {
        self.server_side.local_addr().context("relay address")
    }

    /// Starts relaying to `server`; every SRTP media datagram from it adds one to `packets`.
    pub fn start(&mut self, server: SocketAddr, packets: Arc<AtomicU64>) {
        let (viewer_tx, viewer_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
        let (a, b) = (self.viewer_side.clone(), self.server_side.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = a.recv_from(&mut buf).await {
                if *viewer_tx.borrow() != Some(from) {
                    let _ = viewer_tx.send(Some(from));
                }
                let _ = b.send_to(&buf[..n], server).await;
            }
        }));
        let (a, b) = (self.viewer_side.clone(), self.server_side.clone());
        let media_only = self.media_only.clone();
        self.tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = b.recv_from(&mut buf).await {
                if from != server {
                    continue;
                }
                let d = &buf[..n];
                if is_rtp(d) {
                    packets.fetch_add(1, Ordering::Relaxed);
                    if media_only.load(Ordering::Relaxed) {
                        continue;
                    }
                }
                let to = *viewer_rx.borrow();
                if let Some(to) = to {
                    let _ = a.send_to(d, to).await;
                }
            }
        }));
    }

    /// From now on the server's media is counted, not delivered.
    pub fn count_only(&self) {
        self.media_only.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_candidates_and_finds_the_servers() {
        let sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.0.5 8189 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 127.0.0.1 8189 typ host\r\n\
                   a=end-of-candidates\r\n";
        assert_eq!(
            server_candidate(sdp, "127.0.0.1".parse().unwrap()),
            Some("127.0.0.1:8189".parse().unwrap())
        );
        let out = candidates_at(sdp, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(out.matches("a=candidate:").count(), 1);
        assert!(
            out.contains(" 127.0.0.1 5000 typ host\r\na=end-of-candidates"),
            "{out}"
        );
        assert!(is_rtp(&[0x80, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9]));
        assert!(
            !is_rtp(&[0x80, 200, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            "RTCP"
        );
        assert!(
            !is_rtp(&[0x00, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
            "STUN"
        );
    }
}
