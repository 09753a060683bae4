//! Many datagrams in one system call (`sendmmsg(2)`): a frame's packets to one viewer leave together instead of
//! one `sendto` each. The kernel's per-packet work stays; the per-call cost (entry, socket lookup, the async
//! runtime's readiness dance) is paid once per frame rather than once per packet.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use socket2::SockAddr;

/// Datagrams handed to the kernel per call, at most (`UIO_MAXIOV`).
const MAX_PER_CALL: usize = 1024;

/// Sends as many of `batch` as the socket takes without blocking, in order; returns how many went out. An error
/// means the first datagram could not be sent (`WouldBlock` when the socket buffer is full).
pub fn send_batch(socket: &impl AsRawFd, batch: &[(SocketAddr, Bytes)]) -> io::Result<usize> {
    let batch = &batch[..batch.len().min(MAX_PER_CALL)];
    let addrs: Vec<SockAddr> = batch.iter().map(|(to, _)| SockAddr::from(*to)).collect();
    let mut iovs: Vec<libc::iovec> = batch
        .iter()
        .map(|(_, data)| libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = addrs
        .iter()
        .zip(iovs.iter_mut())
        .map(|(addr, iov)| {
            // SAFETY: an all-zero msghdr is a valid empty header; the fields set point into `addrs` and `iovs`,
            // which outlive the call below.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = addr.as_ptr() as *mut libc::c_void;
            h.msg_namelen = addr.len();
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: `msgs` holds `msgs.len()` valid headers whose buffers and addresses live until the call returns.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reaches_each_receiver_in_order() {
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let batch = vec![
            (to_a, Bytes::from_static(b"one")),
            (to_b, Bytes::from_static(b"two")),
            (to_a, Bytes::from_static(b"three")),
        ];
        assert_eq!(send_batch(&sender, &batch).unwrap(), 3);
        let mut buf = [0u8; 16];
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
    }
}
