//! ICE-TCP (RFC 6544) on the shared WebRTC port, for viewers whose network lets no UDP through: a TCP listener on
//! each shared socket's address and port, announced as a passive host candidate beside the UDP one. A viewer's
//! agent connects (an active candidate) and speaks RFC 4571 framing: each datagram it would have sent over UDP,
//! behind a two-byte length. Frames are routed exactly as UDP datagrams are ([`SharedUdp`]): the first binding
//! request names the session by its ufrag, and the connection's address pair belongs to that session from then
//! on. A connection whose first frame names no session, or that sends no whole frame within
//! [`FIRST_FRAME_WITHIN`], is closed; at most [`MAX_CONNECTIONS`] are open at once.
//!
//! Sending: a session's datagrams tagged TCP go, framed, into the connection's bounded outbox; a viewer that reads
//! too slowly loses what no longer fits, as it would over UDP, and its connection's repair (NACK, PLI) takes over.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use rtc::shared::tcp_framing::{frame_packet, TcpFrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::shared_udp::{Datagram, SharedUdp};

/// TCP connections open at once on the shared port, all addresses together.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a new connection has to name a session with a binding request.
pub const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(10);
/// Framed datagrams queued for one connection before more are dropped.
const OUTBOX: usize = 1024;

/// A connection's outbox of framed datagrams.
type Outbox = mpsc::Sender<Vec<u8>>;

/// The listeners' connections, by (local, peer) address pair: where a session's TCP datagrams go.
pub struct SharedTcp {
    conns: Mutex<HashMap<(SocketAddr, SocketAddr), Outbox>>,
    slots: Arc<Semaphore>,
    /// Stops the listeners (and frees their port) when the WebRTC service goes.
    stop: CancellationToken,
}

impl Drop for SharedTcp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SharedTcp {
    /// Starts accepting on `listeners` (bound already, each on a shared UDP socket's address); frames go to `udp`'s
    /// routing.
    pub fn start(listeners: Vec<TcpListener>, udp: Weak<SharedUdp>) -> Arc<SharedTcp> {
        let tcp = Arc::new(SharedTcp {
            conns: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            stop: CancellationToken::new(),
        });
        for l in listeners {
            let stop = tcp.stop.clone();
            let accepting = accept(l, Arc::downgrade(&tcp), udp.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = accepting => {}
                }
            });
        }
        tcp
    }

    /// Queues one datagram, framed, on the connection between `local` and `peer`; dropped if there is none or
    /// its outbox is full.
    pub fn send(&self, local: SocketAddr, peer: SocketAddr, datagram: &[u8]) {
        if let Some(outbox) = self.conns.lock().get(&(local, peer)) {
            let _ = outbox.try_send(frame_packet(datagram));
        }
    }
}

async fn accept(listener: TcpListener, tcp: Weak<SharedTcp>, udp: Weak<SharedUdp>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                warn!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(shared) = tcp.upgrade() else {
            return;
        };
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            debug!(%peer, "ICE-TCP connection refused: too many open");
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let (tx, rx) = mpsc::channel(OUTBOX);
        shared.conns.lock().insert((local, peer), tx);
        let (tcp, udp) = (tcp.clone(), udp.clone());
        tokio::spawn(async move {
            serve(stream, local, peer, rx, &udp).await;
            if let Some(shared) = tcp.upgrade() {
                shared.conns.lock().remove(&(local, peer));
            }
            drop(slot);
        });
    }
}

/// Reads frames into the routing and writes the outbox, until either side ends or the first frame names no
/// session in time.
async fn serve(
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    mut outbox: mpsc::Receiver<Vec<u8>>,
    udp: &Weak<SharedUdp>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let write = async move {
        while let Some(frame) = outbox.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let read = async {
        let mut decoder = TcpFrameDecoder::new();
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + FIRST_FRAME_WITHIN;
        let mut named = false;
        loop {
            let n = if named {
                reader.read(&mut buf).await
            } else {
                match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => return,
                }
            };
            match n {
                Ok(0) | Err(_) => return,
                Ok(n) => decoder.extend_from_slice(&buf[..n]),
            }
            while let Some(frame) = decoder.next_packet() {
                let Some(udp) = udp.upgrade() else {
                    return;
                };
                let routed = udp.route(Datagram {
                    at: Instant::now(),
                    local,
                    peer,
                    tcp: true,
                    data: BytesMut::from(&frame[..]),
                });
                if !routed && !named {
                    // An ICE client's first frame is a binding request naming a session that exists: its
                    // ufrag is registered before the answer leaves. Anything else is not one.
                    return;
                }
                named = true;
            }
        }
    };
    tokio::select! {
        () = write => {}
        () = read => {}
    }
    debug!(%local, %peer, "ICE-TCP connection ended");
}

/// Binds a TCP listener on each of `addrs` (the shared UDP sockets' addresses and port).
pub fn bind(addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|&a| {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(a),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            if a.is_ipv6() {
                s.set_only_v6(true)?;
            }
            s.set_reuse_address(true)?;
            s.set_nonblocking(true)?;
            s.bind(&a.into())?;
            s.listen(128)?;
            TcpListener::from_std(s.into())
        })
        .collect()
}
