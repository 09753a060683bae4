//! A viewer's datagrams with UDP generic segmentation offload (GSO, `UDP_SEGMENT`), for both media edges (WSC-RTP's
//! socket and WebRTC's shared port): a run of equal-size
//! datagrams to one address (a frame's RTP packets: equal fragments, the last one shorter) goes to the kernel as
//! one buffer in one `sendmsg`, and the kernel cuts it into datagrams after routing and allocating once. Routing,
//! socket lookup and buffer accounting per packet were most of the gateway's fan-out cost; GSO pays them once per
//! run. `quinn-udp` does the `sendmsg` with the segment-size control message and notices a kernel or device that
//! refuses GSO, after which every datagram goes alone.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use quinn_udp::{Transmit, UdpSocketState};
use tokio::net::UdpSocket;

/// Bytes per GSO send, at most (a UDP datagram's limit, less IP and UDP headers).
pub const MAX_RUN_BYTES: usize = 65_000;

/// One datagram: an optional header, then the body, sent back to back.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub header: Option<[u8; 12]>,
    pub body: Bytes,
}

impl Datagram {
    fn len(&self) -> usize {
        self.header.map_or(0, |h| h.len()) + self.body.len()
    }
}

/// How many datagrams from the start of `batch` go in one GSO send, and their segment size: the first one's size,
/// then every following one of the same size, ending after the first shorter one (the kernel allows a short last
/// segment), at most `max_segments` and [`MAX_RUN_BYTES`].
pub fn next_run(batch: &[Datagram], max_segments: usize) -> (usize, usize) {
    next_run_by(batch.len(), max_segments, |i| Some(batch[i].len()))
}

/// [`next_run`] over any `count` datagrams: `len(i)` is datagram `i`'s size, or `None` if it may not share a
/// send with the first one (another destination).
pub fn next_run_by(
    count: usize,
    max_segments: usize,
    len: impl Fn(usize) -> Option<usize>,
) -> (usize, usize) {
    let Some(segment) = (count > 0).then(|| len(0)).flatten() else {
        return (usize::from(count > 0), 0);
    };
    let mut n = 1;
    while n < count && n < max_segments && (n + 1) * segment <= MAX_RUN_BYTES {
        let Some(len) = len(n).filter(|&l| l <= segment) else {
            break;
        };
        n += 1;
        if len < segment {
            break;
        }
    }
    (n, segment)
}

thread_local! {
    /// The run being sent, gathered into one buffer; one per runtime thread rather than one per viewer.
    static RUN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Sends `batch` to `to` in order, a run per system call, waiting while the socket's buffer is full. An error on a
/// run other than "full" (an ICMP unreachable reported late) is the viewer's, not the socket's: that run is
/// skipped and the rest sent.
pub async fn send(socket: &UdpSocket, state: &UdpSocketState, to: SocketAddr, batch: &[Datagram]) {
    let mut rest = batch;
    while !rest.is_empty() {
        let max_segments = state.max_gso_segments();
        let (n, segment) = next_run(rest, max_segments);
        let sent = socket
            .async_io(tokio::io::Interest::WRITABLE, || {
                RUN.with_borrow_mut(|run| {
                    run.clear();
                    for d in &rest[..n] {
                        if let Some(h) = &d.header {
                            run.extend_from_slice(h);
                        }
                        run.extend_from_slice(&d.body);
                    }
                    let transmit = Transmit {
                        destination: to,
                        ecn: None,
                        contents: run,
                        segment_size: (n > 1).then_some(segment),
                        src_ip: None,
                    };
                    state.try_send(socket.into(), &transmit)
                })
            })
            .await;
        match sent {
            // The kernel refused GSO and `state` has turned it off: send the same run again, one by one.
            Err(_) if n > 1 && state.max_gso_segments() < max_segments => continue,
            _ => rest = &rest[n..],
        }
    }
}

/// Sets up `socket` for [`send`]. Setting up also turns UDP GRO on, which lets the kernel hand several received
/// datagrams of one flow over as one buffer; the receive loop routes one datagram per read (a proof, a
/// keep-alive, an RTCP packet), so GRO is turned back off.
pub fn state(socket: &UdpSocket) -> io::Result<UdpSocketState> {
    let state = UdpSocketState::new(socket.into())?;
    let off: libc::c_int = 0;
    // SAFETY: a valid socket and an int option of the right size.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&off as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        let e = io::Error::last_os_error();
        // A kernel without UDP GRO never coalesces.
        if e.raw_os_error() != Some(libc::ENOPROTOOPT) {
            return Err(e);
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(header: bool, len: usize, fill: u8) -> Datagram {
        Datagram {
            header: header.then_some([0x80; 12]),
            body: Bytes::from(vec![fill; len]),
        }
    }

    #[test]
    fn runs_are_equal_sizes_ending_at_a_shorter_one() {
        let b = [
            d(true, 100, 1),
            d(true, 100, 2),
            d(true, 40, 3),
            d(true, 100, 4),
        ];
        assert_eq!(next_run(&b, 64), (3, 112));
        assert_eq!(next_run(&b[3..], 64), (1, 112));
        // A longer datagram can't join a run.
        let b = [d(false, 10, 1), d(true, 100, 2)];
        assert_eq!(next_run(&b, 64), (1, 10));
        assert_eq!(next_run(&b, 1), (1, 10));
        let many: Vec<Datagram> = (0..100).map(|_| d(true, 1188, 0)).collect();
        assert_eq!(next_run(&many, 64), (54, 1200), "held under 65 000 bytes");
        assert_eq!(next_run(&many, 8), (8, 1200));
        assert_eq!(next_run(&[], 64), (0, 0));
    }

    #[tokio::test]
    async fn received_datagrams_stay_one_per_read() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let _state = state(&socket).unwrap();
        let mut gro: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid socket, an int option and its length.
        let got = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&mut gro as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(got, 0);
        assert_eq!(gro, 0, "UDP GRO is off");
    }

    #[tokio::test]
    async fn every_datagram_arrives_whole_and_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let state = state(&sender).unwrap();
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Frames as the hub packetizes them: a small NAL, equal fragments, a short last fragment.
        let mut batch = vec![d(true, 30, 0xee)];
        batch.extend((0..70u8).map(|i| d(true, 1188, i)));
        batch.push(d(true, 500, 0xff));
        batch.push(d(false, 20, 0xaa));
        send(&sender, &state, receiver.local_addr().unwrap(), &batch).await;
        let mut buf = [0u8; 2048];
        for (i, sent) in batch.iter().enumerate() {
            let n = receiver.recv(&mut buf).unwrap();
            let expected = match sent.header {
                Some(h) => [&h[..], &sent.body].concat(),
                None => sent.body.to_vec(),
            };
            assert_eq!(&buf[..n], &expected[..], "datagram {i}");
        }
    }
}
