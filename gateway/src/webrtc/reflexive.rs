//! Server-reflexive addresses of the shared WebRTC port (RFC 8445 §5.1.1.2, RFC 8489 binding): with `stun:`
//! servers configured, the gateway asks them from each shared socket how its address looks from outside, and
//! every answer written afterwards carries that address as a `srflx` candidate beside the host one
//! (`publishers::webrtc::candidates::announce_reflexive`). Sessions keep the one port: a NAT's mapping of the
//! shared socket is the same for every viewer (for the common endpoint-independent NATs; behind one that maps per
//! destination, only TURN helps, and TURN servers keep the per-session sockets, whose agents gather relays).
//!
//! The question is asked at start and again every [`REFRESH`], from every IPv4 or IPv6 socket of the servers'
//! family, [`TRIES`] times at most per server; the first answer per socket counts.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rtc::stun::message::{Getter, Message, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc::stun::xoraddr::XorMappedAddress;
use tracing::{info, warn};

use super::shared_udp::SharedUdp;

/// How often the addresses are asked again (a NAT may map the port anew after a restart or a lease change).
const REFRESH: Duration = Duration::from_secs(300);
/// Binding requests per server and socket before the next server is asked.
const TRIES: u32 = 3;
/// How long one request waits for its answer.
const ANSWER_WITHIN: Duration = Duration::from_millis(700);
/// The STUN port when a URL names none (RFC 8489 §18.5).
const STUN_PORT: u16 = 3478;

/// Whether `urls` need each session's own sockets: a TURN server (a relay is allocated per session) or STUN over
/// TLS. Plain `stun:` servers are asked from the shared port instead.
pub fn needs_own_sockets(urls: &[String]) -> bool {
    urls.iter().any(|u| !u.starts_with("stun:"))
}

/// Host and port of each `stun:` URL (`stun:host`, `stun:host:port`, `stun:[v6]:port`, any `?query` ignored).
pub fn stun_servers(urls: &[String]) -> Vec<(String, u16)> {
    urls.iter()
        .filter_map(|u| u.strip_prefix("stun:"))
        .filter_map(|rest| {
            let rest = rest.split('?').next().unwrap_or_default();
            let (host, port) = match rest.strip_prefix('[') {
                Some(v6) => {
                    let (host, after) = v6.split_once(']')?;
                    (host, after.strip_prefix(':'))
                }
                None => match rest.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (rest, None),
                },
            };
            let port = match port {
                Some(p) => p.parse().ok()?,
                None => STUN_PORT,
            };
            (!host.is_empty()).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// A binding request: its transaction id and its bytes.
fn binding_request() -> Option<([u8; 12], Vec<u8>)> {
    let mut m = Message::new();
    let id = TransactionId::new();
    m.build(&[Box::new(BINDING_REQUEST), Box::new(id)]).ok()?;
    Some((id.0, m.raw))
}

/// The XOR-MAPPED-ADDRESS of a binding success answer.
fn mapped_address(answer: &[u8]) -> Option<SocketAddr> {
    let mut m = Message::new();
    m.unmarshal_binary(answer).ok()?;
    if m.typ != BINDING_SUCCESS {
        return None;
    }
    let mut seen = XorMappedAddress::default();
    seen.get_from(&m).ok()?;
    Some(SocketAddr::new(seen.ip, seen.port))
}

/// Asks the servers now and every [`REFRESH`] for as long as the shared sockets exist.
pub async fn keep_asking(shared: Weak<SharedUdp>, servers: Vec<(String, u16)>) {
    loop {
        let Some(udp) = shared.upgrade() else {
            return;
        };
        let seen = ask(&udp, &servers).await;
        udp.set_reflexive(seen);
        drop(udp);
        tokio::time::sleep(REFRESH).await;
    }
}

/// Each socket's address as the first server that answers saw it; sockets nobody answered for are left out.
async fn ask(udp: &Arc<SharedUdp>, servers: &[(String, u16)]) -> Vec<(SocketAddr, SocketAddr)> {
    let mut resolved: Vec<SocketAddr> = Vec::new();
    for (host, port) in servers {
        match tokio::net::lookup_host((host.as_str(), *port)).await {
            Ok(addrs) => resolved.extend(addrs),
            Err(e) => warn!(server = %host, error = %e, "STUN server name does not resolve"),
        }
    }
    let mut seen = Vec::new();
    for local in udp.local_addrs() {
        let answer = 'servers: {
            for server in resolved.iter().filter(|s| s.is_ipv4() == local.is_ipv4()) {
                for _ in 0..TRIES {
                    if let Some(at) = ask_once(udp, local, *server).await {
                        break 'servers Some((*server, at));
                    }
                }
            }
            None
        };
        match answer {
            Some((server, at)) => {
                if at != local {
                    info!(%local, public = %at, %server, "WebRTC port seen from outside at another address; announced as a server-reflexive candidate");
                }
                seen.push((local, at));
            }
            None if !resolved.is_empty() => {
                warn!(%local, "no STUN server answered for this WebRTC socket; only host candidates are announced")
            }
            None => {}
        }
    }
    seen
}

async fn ask_once(udp: &SharedUdp, local: SocketAddr, server: SocketAddr) -> Option<SocketAddr> {
    let (id, request) = binding_request()?;
    let answer = udp.expect_answer(id, server);
    udp.send_from(local, server, &request).await.ok()?;
    let bytes = tokio::time::timeout(ANSWER_WITHIN, answer)
        .await
        .ok()?
        .ok()?;
    mapped_address(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_urls_give_host_and_port() {
        let urls: Vec<String> = [
            "stun:stun.example.org",
            "stun:198.51.100.2:19302",
            "stun:[2001:db8::1]:3479",
            "stun:[2001:db8::2]",
            "stun:host.example:3480?transport=udp",
            "turn:turn.example.org:3478",
            "stun:",
            "stun:bad:port",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            stun_servers(&urls),
            vec![
                ("stun.example.org".to_owned(), 3478),
                ("198.51.100.2".to_owned(), 19302),
                ("2001:db8::1".to_owned(), 3479),
                ("2001:db8::2".to_owned(), 3478),
                ("host.example".to_owned(), 3480),
            ]
        );
        assert!(needs_own_sockets(&urls));
        assert!(!needs_own_sockets(&urls[..5]));
        assert!(!needs_own_sockets(&[]));
    }

    #[test]
    fn a_binding_answer_gives_the_mapped_address() {
        let (id, request) = binding_request().unwrap();
        assert_eq!(&request[0..2], &[0x00, 0x01]);
        let mut answer = Message::new();
        let seen = XorMappedAddress {
            ip: "203.0.113.7".parse().unwrap(),
            port: 40123,
        };
        answer
            .build(&[
                Box::new(BINDING_SUCCESS),
                Box::new(TransactionId(id)),
                Box::new(seen),
            ])
            .unwrap();
        assert_eq!(
            mapped_address(&answer.raw),
            Some("203.0.113.7:40123".parse().unwrap())
        );
        assert_eq!(mapped_address(&request), None, "a request is no answer");
        assert_eq!(mapped_address(&[0u8; 7]), None);
    }
}
