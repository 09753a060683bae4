//! UDP datagrams with a forged source address, sent for real through a raw IPv4 socket (`IPPROTO_RAW`, which
//! needs root or CAP_NET_RAW), to show what a server does for an address that never asked for anything. On
//! loopback the kernel delivers them like any other datagram: the receiver sees the forged source.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

/// A raw socket that writes whole IPv4 packets, headers included.
pub struct ForgedUdp {
    socket: Socket,
}

impl ForgedUdp {
    /// Opens the raw socket; fails (permission denied) without root or CAP_NET_RAW.
    pub fn open() -> io::Result<ForgedUdp> {
        // IPPROTO_RAW implies IP_HDRINCL: the packet carries its own IP header, source address included.
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        Ok(ForgedUdp { socket })
    }

    /// Sends `payload` in a UDP datagram that claims to come from `from`.
    pub fn send(&self, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        let packet = ipv4_udp(from, to, payload);
        self.socket.send_to(&packet, &SocketAddr::V4(to).into())?;
        Ok(())
    }
}

/// An IPv4 header (no options) and a UDP header around `payload`. The UDP checksum is left 0 ("none", allowed
/// over IPv4); the kernel fills in the IP checksum and total length of a raw packet anyway, and both are set
/// here so the packet is right on its own.
fn ipv4_udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_verifies() {
        let p = ipv4_udp(
            "127.0.0.2:1000".parse().unwrap(),
            "127.0.0.1:2000".parse().unwrap(),
            b"abc",
        );
        assert_eq!(p.len(), 20 + 8 + 3);
        // Summing a header with its checksum in place gives all ones.
        assert_eq!(checksum(&p[..20]), 0);
        assert_eq!(&p[12..16], &[127, 0, 0, 2]);
        assert_eq!(u16::from_be_bytes([p[20], p[21]]), 1000);
    }

    /// The kernel really delivers the datagram with the forged source (run as root, as the test suite is).
    #[test]
    fn a_forged_datagram_arrives_with_the_forged_source() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = match receiver.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!(),
        };
        let forged: SocketAddrV4 = "127.0.0.77:4242".parse().unwrap();
        ForgedUdp::open()
            .expect("a raw socket (the tests run as root)")
            .send(forged, to, b"hello")
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], SocketAddr::V4(forged)));
    }
}
