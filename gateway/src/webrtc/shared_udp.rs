//! One UDP port for every WebRTC session: a socket per local address (a wildcard bind address becomes one per
//! non-loopback interface, so each socket's address is a usable host candidate and replies leave from the address
//! the viewer sent to), all on the same port, and one receive loop per socket that hands each datagram to its
//! session's bounded inbox.
//!
//! Routing (RFC 8445 §7.2 and the ufrag/pwd of RFC 8839): a STUN binding request goes to the session whose local
//! ufrag starts its USERNAME (`local:remote`), and its address, if new, then belongs to that session; any other
//! datagram goes to the session its (local, remote) address pair belongs to, or nowhere. The session's ICE agent still checks the request's MESSAGE-INTEGRITY; a forged request can at
//! most point an unused address at a session, and each session keeps few addresses ([`MAX_ADDRS_PER_SESSION`]).
//! DTLS and SRTP never route by content, only by address.
//!
//! The gateway's own STUN transactions (the binding requests that learn the port's server-reflexive addresses,
//! [`super::reflexive`]) leave from these sockets too, and their answers are taken out before routing.
//!
//! Sending: a session hands over everything one turn of its connection produced (a frame's SRTP packets, say);
//! each run of equal-size datagrams to one address leaves in one `sendmsg` with UDP generic segmentation offload
//! (through `quinn-udp`, which falls back to one datagram per call where the kernel refuses GSO).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use std::cell::RefCell;

use bytes::BytesMut;
use parking_lot::Mutex;
use quinn_udp::{Transmit, UdpSocketState};
use rtc::shared::{TaggedBytesMut, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::shared_tcp::{self, SharedTcp};
use crate::udp_gso::next_run_by;

/// Datagrams queued for one session before more are dropped (the session's task takes them at once).
const INBOX: usize = 256;
/// Remote addresses one session may own: a browser checks from a handful of candidates.
const MAX_ADDRS_PER_SESSION: usize = 16;
/// Kernel buffers asked for the shared sockets: every viewer's media leaves through them.
const SOCKET_BUFFER: usize = 4 << 20;

/// One datagram for a session.
pub struct Datagram {
    pub at: Instant,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Came in a frame of an ICE-TCP connection ([`super::shared_tcp`]), not over UDP.
    pub tcp: bool,
    pub data: BytesMut,
}

/// Where a datagram came from: over TCP or not, the local and the remote address.
type PathKey = (bool, SocketAddr, SocketAddr);

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Route>,
    by_addr: HashMap<PathKey, String>,
}

struct Route {
    inbox: mpsc::Sender<Datagram>,
    addrs: Vec<PathKey>,
}

/// One shared socket.
struct Shared {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    gso: UdpSocketState,
}

/// One STUN transaction of the gateway's own: the server asked, and where its answer goes.
type Asked = (SocketAddr, oneshot::Sender<Vec<u8>>);

/// The shared sockets and the routing table.
pub struct SharedUdp {
    sockets: Vec<Shared>,
    routes: Mutex<Routes>,
    /// The gateway's own STUN transactions waiting for an answer, by transaction id: the server asked, and where
    /// its answer goes.
    asked: Mutex<HashMap<[u8; 12], Asked>>,
    /// Each socket's address as a STUN server saw it, where it differs (a NAT): (local, seen).
    reflexive: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    /// The ICE-TCP listeners on the same addresses and port, when turned on.
    tcp: OnceLock<Arc<SharedTcp>>,
}

thread_local! {
    /// The run being sent, gathered into one buffer; one per runtime thread rather than one per session.
    static RUN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The datagrams from the start of `out` that go in one GSO send: same socket, same viewer, over UDP
/// ([`next_run_by`]).
fn next_run(out: &[TaggedBytesMut], max_segments: usize) -> (usize, usize) {
    let key = |m: &TaggedBytesMut| {
        (m.transport.transport_protocol == TransportProtocol::UDP)
            .then_some((m.transport.peer_addr, m.transport.local_addr))
    };
    let first = out.first().and_then(key);
    next_run_by(out.len(), max_segments, |i| {
        let m = &out[i];
        (first.is_some() && key(m) == first).then_some(m.message.len())
    })
}

/// A session's place in the routing table; dropping it removes the session's ufrag and addresses.
pub struct Registration {
    shared: Arc<SharedUdp>,
    ufrag: String,
    pub inbox: mpsc::Receiver<Datagram>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut routes = self.shared.routes.lock();
        if let Some(route) = routes.by_ufrag.remove(&self.ufrag) {
            for a in route.addrs {
                routes.by_addr.remove(&a);
            }
        }
    }
}

/// The concrete addresses to bind for `ips`: a wildcard becomes every non-loopback, non-link-local interface
/// address of its family (or stays the wildcard when there is none).
pub fn expand(ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let push = |ip: IpAddr, out: &mut Vec<IpAddr>| {
        if !out.contains(&ip) {
            out.push(ip);
        }
    };
    for &ip in ips {
        if !ip.is_unspecified() {
            push(ip, &mut out);
            continue;
        }
        let before = out.len();
        if let Ok(ifaces) = rtc::shared::ifaces::ifaces() {
            for i in ifaces {
                let Some(a) = i.addr else { continue };
                let a = a.ip();
                let link_local = match a {
                    IpAddr::V4(v4) => v4.is_link_local(),
                    IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
                };
                if a.is_ipv4() == ip.is_ipv4()
                    && !a.is_loopback()
                    && !a.is_unspecified()
                    && !link_local
                {
                    push(a, &mut out);
                }
            }
        }
        if out.len() == before {
            push(ip, &mut out);
        }
    }
    out
}

impl SharedUdp {
    /// Binds `port` (0: the first socket picks a free one, the others take the same) on every address of `ips`,
    /// with `ice_tcp` a TCP listener on each of those addresses and the same port too, and starts the receive
    /// loops.
    pub fn bind(ips: &[IpAddr], port: u16, ice_tcp: bool) -> io::Result<Arc<SharedUdp>> {
        // A free UDP port may be a taken TCP one: with port 0, pick again.
        let mut tries = if port == 0 { 20 } else { 1 };
        let (sockets, listeners) = loop {
            let sockets = bind_all(ips, port)?;
            if !ice_tcp {
                break (sockets, Vec::new());
            }
            let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local).collect();
            match shared_tcp::bind(&addrs) {
                Ok(listeners) => break (sockets, listeners),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
                Err(e) => return Err(e),
            }
        };
        let shared = Arc::new(SharedUdp {
            sockets,
            routes: Mutex::new(Routes::default()),
            asked: Mutex::new(HashMap::new()),
            reflexive: Mutex::new(Vec::new()),
            tcp: OnceLock::new(),
        });
        if ice_tcp {
            let _ = shared
                .tcp
                .set(SharedTcp::start(listeners, Arc::downgrade(&shared)));
        }
        for s in &shared.sockets {
            tokio::spawn(receive(Arc::downgrade(&shared), s.socket.clone(), s.local));
        }
        Ok(shared)
    }

    /// Whether the port also takes ICE-TCP connections (passive TCP candidates at the same addresses).
    pub fn ice_tcp(&self) -> bool {
        self.tcp.get().is_some()
    }

    /// The addresses the sockets are bound to: the session's host candidates.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|s| s.local).collect()
    }

    /// Sends one datagram of the gateway's own from the socket bound to `local`.
    pub async fn send_from(
        &self,
        local: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        let s = self
            .socket_at(local)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no shared socket there"))?;
        s.socket.send_to(data, to).await.map(|_| ())
    }

    /// The shared socket bound to `local`.
    fn socket_at(&self, local: SocketAddr) -> Option<&Shared> {
        self.sockets.iter().find(|s| s.local == local)
    }

    /// The answer to the STUN transaction `id` asked of `server`, once it arrives from there on any of the
    /// sockets; dropping the receiver gives the transaction up.
    pub fn expect_answer(&self, id: [u8; 12], server: SocketAddr) -> oneshot::Receiver<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        let mut asked = self.asked.lock();
        asked.retain(|_, (_, waiting)| !waiting.is_closed());
        asked.insert(id, (server, tx));
        rx
    }

    /// The sockets' server-reflexive addresses known so far: (local, as seen from outside).
    pub fn reflexive(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.reflexive.lock().clone()
    }

    pub fn set_reflexive(&self, seen: Vec<(SocketAddr, SocketAddr)>) {
        *self.reflexive.lock() = seen;
    }

    /// The shared port.
    pub fn port(&self) -> u16 {
        self.local_addrs().first().map_or(0, SocketAddr::port)
    }

    /// Routes datagrams for `ufrag` (the session's local ICE username fragment) to the returned inbox.
    pub fn register(self: &Arc<Self>, ufrag: &str) -> Registration {
        let (tx, rx) = mpsc::channel(INBOX);
        self.routes.lock().by_ufrag.insert(
            ufrag.to_owned(),
            Route {
                inbox: tx,
                addrs: Vec::new(),
            },
        );
        Registration {
            shared: self.clone(),
            ufrag: ufrag.to_owned(),
            inbox: rx,
        }
    }

    /// Sends `out` in order, each datagram from the shared socket its `local_addr` names, a run per system call,
    /// waiting while a socket's buffer is full. An error on a run other than "full" (an ICMP unreachable reported
    /// late) is the viewer's, not the socket's: that run is skipped (the connection's consent checks notice a
    /// viewer that went away) and the rest sent.
    pub async fn send(&self, out: &[TaggedBytesMut]) {
        let mut rest = out;
        while let Some(first) = rest.first() {
            if first.transport.transport_protocol == TransportProtocol::TCP {
                if let Some(tcp) = self.tcp.get() {
                    let t = &first.transport;
                    tcp.send(t.local_addr, t.peer_addr, &first.message);
                }
                rest = &rest[1..];
                continue;
            }
            let Some(s) = self.socket_at(first.transport.local_addr) else {
                rest = &rest[1..];
                continue;
            };
            let max_segments = s.gso.max_gso_segments();
            let (n, segment) = next_run(rest, max_segments);
            let to = first.transport.peer_addr;
            let sent = s
                .socket
                .async_io(tokio::io::Interest::WRITABLE, || {
                    RUN.with_borrow_mut(|run| {
                        let contents: &[u8] = if n == 1 {
                            &rest[0].message
                        } else {
                            run.clear();
                            for m in &rest[..n] {
                                run.extend_from_slice(&m.message);
                            }
                            run
                        };
                        let transmit = Transmit {
                            destination: to,
                            ecn: None,
                            contents,
                            segment_size: (n > 1).then_some(segment),
                            src_ip: None,
                        };
                        s.gso.try_send((&*s.socket).into(), &transmit)
                    })
                })
                .await;
            match sent {
                // The kernel refused GSO and the state has turned it off: send the same run again, one by one.
                Err(_) if n > 1 && s.gso.max_gso_segments() < max_segments => continue,
                _ => rest = &rest[n..],
            }
        }
    }

    /// Hands `d` to its session (or to the gateway's own STUN question it answers); false if nobody takes it.
    pub fn route(&self, d: Datagram) -> bool {
        if let Some(id) = stun_answer_id(&d.data) {
            let mut asked = self.asked.lock();
            if asked.get(&id).is_some_and(|(server, _)| *server == d.peer) {
                if let Some((_, waiting)) = asked.remove(&id) {
                    let _ = waiting.send(d.data.to_vec());
                }
                return true;
            }
        }
        let mut routes = self.routes.lock();
        let routes = &mut *routes;
        let key = (d.tcp, d.local, d.peer);
        // A binding request names its session: it goes there even from an address another session owns (a
        // client may check two sessions from one socket). Everything else follows the address.
        let ufrag = match stun_request_ufrag(&d.data) {
            Some(u) => {
                let Some(route) = routes.by_ufrag.get_mut(u) else {
                    return false;
                };
                if !routes.by_addr.contains_key(&key) && route.addrs.len() < MAX_ADDRS_PER_SESSION {
                    route.addrs.push(key);
                    routes.by_addr.insert(key, u.to_owned());
                }
                u.to_owned()
            }
            None => match routes.by_addr.get(&key) {
                Some(u) => u.clone(),
                None => return false,
            },
        };
        match routes.by_ufrag.get(&ufrag) {
            // A session that does not keep up loses datagrams, as a full socket buffer would make it.
            Some(route) => {
                let _ = route.inbox.try_send(d);
                true
            }
            None => false,
        }
    }
}

/// One UDP socket per address of `ips` (wildcards expanded), all on `port` (0: the first one's free port).
fn bind_all(ips: &[IpAddr], port: u16) -> io::Result<Vec<Shared>> {
    let mut sockets = Vec::new();
    let mut port = port;
    for ip in expand(ips) {
        let s = bind_one(SocketAddr::new(ip, port))?;
        let local = s.local_addr()?;
        port = local.port();
        let gso = crate::udp_gso::state(&s)?;
        sockets.push(Shared {
            socket: Arc::new(s),
            local,
            gso,
        });
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at its own maximum.
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

async fn receive(shared: std::sync::Weak<SharedUdp>, socket: Arc<UdpSocket>, local: SocketAddr) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP port unreachable from a viewer that went away surfaces here on some systems: not fatal.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                warn!(%local, error = %e, "WebRTC UDP receive failed; the socket is closed");
                return;
            }
        };
        let Some(shared) = shared.upgrade() else {
            debug!(%local, "WebRTC service gone; receive loop ends");
            return;
        };
        shared.route(Datagram {
            at: Instant::now(),
            local,
            peer,
            tcp: false,
            data: BytesMut::from(&buf[..n]),
        });
    }
}

/// The transaction id of a STUN binding answer (success or error class), if `b` is one.
fn stun_answer_id(b: &[u8]) -> Option<[u8; 12]> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    if b.len() < 20 || b[4..8] != MAGIC || !matches!(b[0..2], [0x01, 0x01] | [0x01, 0x11]) {
        return None;
    }
    b[8..20].try_into().ok()
}

/// The local ufrag of a STUN binding request's USERNAME (`local:remote`, RFC 8445 §7.2.2), if `b` is one.
pub fn stun_request_ufrag(b: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USERNAME: u16 = 0x0006;
    if b.len() < 20 || b[0..2] != BINDING_REQUEST || b[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let attrs = b.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let typ = u16::from_be_bytes([attrs[at], attrs[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[at + 2], attrs[at + 3]]));
        let value = attrs.get(at + 4..at + 4 + alen)?;
        if typ == USERNAME {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to 4 bytes.
        at += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, then USERNAME padded.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn reads_the_local_ufrag_of_a_binding_request() {
        assert_eq!(
            stun_request_ufrag(&binding_request(b"srv1:abc")),
            Some("srv1")
        );
        assert_eq!(stun_request_ufrag(&binding_request(b"x:y")), Some("x"));
    }

    #[test]
    fn ignores_everything_else() {
        let mut response = binding_request(b"srv1:abc");
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(stun_request_ufrag(&response), None, "a binding response");
        assert_eq!(stun_request_ufrag(&binding_request(b":abc")), None);
        let mut truncated = binding_request(b"srv1:abc");
        truncated.truncate(30);
        assert_eq!(stun_request_ufrag(&truncated), None);
        // DTLS and SRTP.
        assert_eq!(
            stun_request_ufrag(&[
                22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]),
            None
        );
        assert_eq!(stun_request_ufrag(&[0x80; 40]), None);
    }

    #[tokio::test]
    async fn routes_by_ufrag_then_by_address() {
        let shared = SharedUdp::bind(&[IpAddr::from([127, 0, 0, 1])], 0, false).unwrap();
        let server = shared.local_addrs()[0];
        let mut a = shared.register("ufragA");
        let mut b = shared.register("ufragB");
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Not a binding request from an unknown address: dropped.
        client.send_to(&[0x80; 40], server).await.unwrap();
        client
            .send_to(&binding_request(b"ufragB:c"), server)
            .await
            .unwrap();
        let got = b.inbox.recv().await.unwrap();
        assert_eq!(got.peer, client.local_addr().unwrap());
        assert!(stun_request_ufrag(&got.data).is_some());
        // Now the address belongs to B: media follows it.
        client.send_to(&[0x80; 40], server).await.unwrap();
        assert_eq!(b.inbox.recv().await.unwrap().data[..], [0x80; 40]);
        assert!(
            a.inbox.try_recv().is_err(),
            "the dropped datagram never reached A"
        );
        // A binding request for A from B's address still reaches A; the address stays B's.
        client
            .send_to(&binding_request(b"ufragA:c"), server)
            .await
            .unwrap();
        assert!(stun_request_ufrag(&a.inbox.recv().await.unwrap().data).is_some());
        client.send_to(&[0x81; 40], server).await.unwrap();
        assert_eq!(b.inbox.recv().await.unwrap().data[..], [0x81; 40]);
        // Unregistering B forgets its addresses.
        drop(b);
        assert!(shared.routes.lock().by_addr.is_empty());
        client
            .send_to(&binding_request(b"ufragA:c"), server)
            .await
            .unwrap();
        assert_eq!(
            a.inbox.recv().await.unwrap().peer,
            client.local_addr().unwrap()
        );
    }

    #[tokio::test]
    async fn an_answer_to_our_own_stun_question_comes_only_from_the_server_asked() {
        let shared = SharedUdp::bind(&[IpAddr::from([127, 0, 0, 1])], 0, false).unwrap();
        let port = shared.local_addrs()[0];
        let stun = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let id = [7u8; 12];
        let mut answer = vec![0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        answer.extend_from_slice(&id);
        let mut waiting = shared.expect_answer(id, stun.local_addr().unwrap());
        // The same transaction id from anyone else is no answer (it is sent first, and told apart by its body).
        let mut forged = answer.clone();
        forged[3] = 4;
        forged.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
        other.send_to(&forged, port).await.unwrap();
        stun.send_to(&answer, port).await.unwrap();
        assert_eq!((&mut waiting).await.unwrap(), answer);
        assert!(shared.asked.lock().is_empty());
    }
}
