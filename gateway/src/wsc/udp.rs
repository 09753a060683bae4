//! The one UDP socket shared by every WSC-RTP session: it receives proofs, keep-alives and RTCP and routes each
//! datagram to its session — by the token inside a proof, or by the source address a session has proved — and
//! sessions send their media from it, so a NAT that maps per destination lets the media back in.
//!
//! Routing tables sit behind a short-held mutex; nothing awaits while holding it. Session inboxes are bounded and
//! a full one drops the datagram (UDP may lose it anyway) instead of slowing the socket for everyone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use publishers::wsc::datagram::{is_control, parse_proof};
use publishers::wsc::ProofRateLimiter;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::warn;

use super::batch::Batch;
use crate::udp_gso::Datagram;

/// Datagrams queued per session before further ones are dropped.
pub const INBOX_DATAGRAMS: usize = 64;
/// Receive and send buffer asked of the kernel for the shared socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// Control datagrams processed per second and source address (WSC-RTP-PROTOCOL.md §3.1). A client sends one
/// keep-alive each 5 s and a few proofs at start, so only a flood reaches it.
const PROOFS_PER_SECOND: u32 = 20;

pub type Inbox = mpsc::Receiver<(SocketAddr, Bytes)>;

#[derive(Default)]
struct Routes {
    by_token: HashMap<[u8; 16], mpsc::Sender<(SocketAddr, Bytes)>>,
    /// Proved address → token of the session that proved it.
    by_addr: HashMap<SocketAddr, [u8; 16]>,
    /// Token → its proved address, to clean `by_addr` up.
    addr_of: HashMap<[u8; 16], SocketAddr>,
}

/// The shared socket and its routing tables.
pub struct WscUdp {
    socket: Arc<UdpSocket>,
    gso: quinn_udp::UdpSocketState,
    /// The kernel refused a GSO message of [`WscUdp::send_many`].
    gso_broken: AtomicBool,
    routes: Mutex<Routes>,
}

impl WscUdp {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Arc<WscUdp>> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Every viewer's keep-alives and RTCP arrive here, and every viewer's media leaves from here: the default
        // buffers (about 200 KiB) overflow when a thousand viewers' datagrams meet in one scheduling gap, and a
        // dropped keep-alive ends a healthy session. The kernel caps these at net.core.[rw]mem_max.
        socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        socket.set_send_buffer_size(SOCKET_BUFFER)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let gso = crate::udp_gso::state(&socket)?;
        Ok(Arc::new(WscUdp {
            socket: Arc::new(socket),
            gso,
            gso_broken: AtomicBool::new(false),
            routes: Mutex::new(Routes::default()),
        }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Registers a session's token; its datagrams arrive in the returned inbox until [`WscUdp::unregister`].
    pub fn register(&self, token: [u8; 16]) -> Inbox {
        let (tx, rx) = mpsc::channel(INBOX_DATAGRAMS);
        self.routes.lock().by_token.insert(token, tx);
        rx
    }

    /// Routes datagrams from `addr` (RTCP) to the session that proved it; `None` when its consent ran out.
    pub fn set_peer(&self, token: [u8; 16], addr: Option<SocketAddr>) {
        let mut r = self.routes.lock();
        let old = match addr {
            Some(addr) => r.addr_of.insert(token, addr),
            None => r.addr_of.remove(&token),
        };
        if let Some(old) = old {
            r.by_addr.remove(&old);
        }
        if let Some(addr) = addr {
            r.by_addr.insert(addr, token);
        }
    }

    /// Forgets a session: no datagram reaches it any more, and its address is free.
    pub fn unregister(&self, token: &[u8; 16]) {
        let mut r = self.routes.lock();
        r.by_token.remove(token);
        if let Some(addr) = r.addr_of.remove(token) {
            r.by_addr.remove(&addr);
        }
    }

    /// Sessions registered (for leak checks).
    pub fn registered(&self) -> usize {
        self.routes.lock().by_token.len()
    }

    /// Sends `batch` to `to` in order, equal-size runs with one system call each (GSO), waiting while the
    /// socket's buffer is full.
    pub async fn send_batch(&self, to: SocketAddr, batch: &[Datagram]) {
        crate::udp_gso::send(&self.socket, &self.gso, to, batch).await;
    }

    /// Datagrams one GSO message may carry (1: GSO is off).
    pub fn max_gso_segments(&self) -> usize {
        if self.gso_broken.load(Ordering::Relaxed) {
            return 1;
        }
        self.gso.max_gso_segments()
    }

    /// Sends many viewers' datagrams (the one-pass forwarder's), a few hundred messages per system call,
    /// waiting while the socket's buffer is full.
    pub async fn send_many(&self, batch: &Batch) {
        super::mmsg::send(&self.socket, batch, &self.gso_broken).await;
    }

    /// Receives forever, routing each datagram. Ends only if the socket fails.
    pub async fn run(self: Arc<Self>) {
        let mut buf = vec![0u8; 2048];
        let mut limiter = ProofRateLimiter::new(PROOFS_PER_SECOND);
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                // On Linux an ICMP error from an earlier send surfaces here; it says nothing about this socket.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    warn!(error = %e, "WSC-RTP UDP socket failed");
                    return;
                }
            };
            let data = &buf[..n];
            let target = if is_control(data) {
                // Every source address is held to the limit, proved or not: a proved address is no more trusted
                // to flood than another (viewers behind one NAT each have their own port).
                if !limiter.allow(from, Instant::now()) {
                    continue;
                }
                let Some(proof) = parse_proof(data) else {
                    continue;
                };
                self.routes.lock().by_token.get(&proof.token).cloned()
            } else {
                let r = self.routes.lock();
                r.by_addr
                    .get(&from)
                    .and_then(|t| r.by_token.get(t))
                    .cloned()
            };
            if let Some(tx) = target {
                let _ = tx.try_send((from, Bytes::copy_from_slice(data)));
            }
        }
    }
}
