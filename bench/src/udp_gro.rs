//! Receiving with UDP GRO (`UDP_GRO`): the kernel hands a GSO send to the socket as one buffer, with the segment
//! size in a control message, instead of cutting it into datagrams first. On loopback a receiver's kernel work
//! runs on the sender's core, inside the sender's `sendmmsg`; a GRO receiver takes each GSO message with one
//! queueing instead of one per datagram, so the sender's figures carry less of what, on a real network, other
//! machines pay.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// `UDP_GRO` from `linux/udp.h` (not in the libc crate).
const UDP_GRO: libc::c_int = 104;

/// Asks the kernel to deliver GSO sends to `s` whole.
pub fn enable(s: &UdpSocket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads one buffer without blocking: its length, and the segment size when it holds several datagrams.
pub fn recv(s: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, Option<usize>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for one cmsg holding an int, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the fields set point at live buffers of the lengths given.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: a valid socket and msghdr.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut segment = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc macros made for it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                segment = usize::try_from(size).ok().filter(|&s| s > 0);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, segment))
}

/// The datagrams in a buffer [`recv`] filled: `segment`-sized pieces, the last one possibly shorter.
pub fn datagrams(buf: &[u8], segment: Option<usize>) -> impl Iterator<Item = &[u8]> {
    buf.chunks(segment.unwrap_or(buf.len()).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gso_send_arrives_whole_and_splits_back() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Every send from `tx` is cut into 100-byte datagrams (`UDP_SEGMENT`, linux/udp.h).
        let segment: libc::c_int = 100;
        // SAFETY: a valid socket and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                tx.as_raw_fd(),
                libc::SOL_UDP,
                103,
                &segment as *const libc::c_int as *const libc::c_void,
                4,
            )
        };
        assert_eq!(rc, 0);
        // Three 100-byte datagrams and a 40-byte one in one GSO send.
        let payload: Vec<u8> = (0..340u32).map(|i| (i / 100) as u8).collect();
        tx.send_to(&payload, rx.local_addr().unwrap()).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, segment) = loop {
            match recv(&rx, &mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        let got: Vec<&[u8]> = datagrams(&buf[..n], segment).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got.iter().map(|d| d.len()).collect::<Vec<_>>(),
            [100, 100, 100, 40]
        );
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, d)| d.iter().all(|&b| b == i as u8)));
    }

    #[test]
    fn a_plain_datagram_is_one() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(&[7u8; 30], rx.local_addr().unwrap()).unwrap();
        let mut buf = vec![0u8; 2048];
        let (n, segment) = loop {
            match recv(&rx, &mut buf) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(datagrams(&buf[..n], segment).count(), 1);
        assert_eq!(n, 30);
    }
}
