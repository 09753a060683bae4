//! Sends a [`Batch`] of many viewers' datagrams with `sendmmsg`: up to [`MESSAGES_PER_CALL`] messages a system
//! call, each a GSO message (`UDP_SEGMENT`) whose pieces — every datagram's 12-byte header and the payload the hub
//! shares — the kernel gathers from their own buffers (no copy into a send buffer here). Where the kernel or the
//! device refuses GSO (`EIO`), sending goes on one datagram per message from then on, as `quinn-udp` does for the
//! per-session path.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::SockAddr;
use tokio::net::UdpSocket;

use super::batch::{Batch, Message};

/// Messages handed to one `sendmmsg`, at most.
pub const MESSAGES_PER_CALL: usize = 256;

/// Room for one `UDP_SEGMENT` control message (a `u16`), 8-byte aligned as `cmsghdr` wants.
pub type CmsgBuf = [u64; 4];

/// Sends every message of `batch` from `socket` in order, waiting while its buffer is full. A message the kernel
/// refuses for another reason (an ICMP error reported late, an address it can't reach) is skipped: it is one
/// viewer's, not the socket's. `gso_broken` is set, and stays set, when the kernel refused GSO.
pub async fn send(socket: &UdpSocket, batch: &Batch, gso_broken: &AtomicBool) {
    let mut rest: Vec<Message> = batch.messages().to_vec();
    if gso_broken.load(Ordering::Relaxed) {
        rest = split(&rest);
    }
    let mut done = 0;
    let mut retried = None;
    while done < rest.len() {
        let end = (done + MESSAGES_PER_CALL).min(rest.len());
        let chunk = &rest[done..end];
        match socket.try_io(tokio::io::Interest::WRITABLE, || {
            send_chunk(socket, batch, chunk)
        }) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Every viewer's buffer space is the one socket's: waiting here is what a full buffer means.
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) && chunk[0].count > 1 => {
                if !gso_broken.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "UDP GSO refused by the kernel; sending one datagram per message"
                    );
                }
                let tail = split(&rest[done..]);
                rest.truncate(done);
                rest.extend(tail);
            }
            // An ICMP error from an earlier datagram, reported now: nothing of this call was sent. The error is
            // cleared by being reported, so the same messages go again (once).
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && retried != Some(done) => {
                retried = Some(done);
            }
            Err(e) => {
                tracing::debug!(error = %e, to = %chunk[0].to, "WSC-RTP datagrams not sent");
                done += 1;
            }
        }
    }
}

/// The same datagrams, one per message.
fn split(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .flat_map(|m| {
            (m.first..m.first + m.count).map(move |i| Message {
                count: 1,
                first: i,
                ..*m
            })
        })
        .collect()
}

/// The buffers one `sendmmsg` is described in, kept from call to call (a keyframe's chunk is a few hundred KiB of
/// iovecs); one per thread, holding no pointer between calls.
#[derive(Default)]
struct Scratch {
    addrs: Vec<SockAddr>,
    iovecs: Vec<libc::iovec>,
    cmsgs: Vec<CmsgBuf>,
    headers: Vec<libc::mmsghdr>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One `sendmmsg` of `chunk`; the number of messages the kernel took (at least one), or the error of the first.
fn send_chunk(socket: &UdpSocket, batch: &Batch, chunk: &[Message]) -> io::Result<usize> {
    SCRATCH.with_borrow_mut(|scratch| {
        let sent = send_chunk_with(socket, batch, chunk, scratch);
        scratch.addrs.clear();
        scratch.iovecs.clear();
        scratch.cmsgs.clear();
        scratch.headers.clear();
        sent
    })
}

fn send_chunk_with(
    socket: &UdpSocket,
    batch: &Batch,
    chunk: &[Message],
    scratch: &mut Scratch,
) -> io::Result<usize> {
    let Scratch {
        addrs,
        iovecs,
        cmsgs,
        headers,
    } = scratch;
    addrs.extend(chunk.iter().map(|m| SockAddr::from(m.to)));
    for m in chunk {
        for i in m.first..m.first + m.count {
            let (header, payload) = batch.datagram(i);
            iovecs.push(libc::iovec {
                iov_base: header.as_ptr() as *mut libc::c_void,
                iov_len: header.len(),
            });
            iovecs.push(libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            });
        }
    }
    cmsgs.resize(chunk.len(), [0; 4]);
    let mut at = 0;
    for ((m, addr), cmsg) in chunk.iter().zip(addrs.iter()).zip(cmsgs.iter_mut()) {
        // SAFETY: an all-zero msghdr is a valid empty one.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len();
        // SAFETY: `at..at + 2 * m.count` lies within `iovecs`, which is not touched again before the call.
        hdr.msg_iov = unsafe { iovecs.as_mut_ptr().add(at) };
        hdr.msg_iovlen = 2 * m.count;
        at += 2 * m.count;
        if m.count > 1 {
            set_segment_size(&mut hdr, cmsg, m.segment as u16);
        }
        headers.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: every pointer in `headers` points into `addrs`, `iovecs`, `cmsgs` or the batch's buffers, all alive
    // and unmoved until this call returns (the caller clears them only after); the lengths are theirs.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Attaches a `UDP_SEGMENT` control message of `segment` bytes to `hdr`, in `buf` (public for the benchmark's
/// reference sender, which sends GSO messages as this module does).
pub fn set_segment_size(hdr: &mut libc::msghdr, buf: &mut CmsgBuf, segment: u16) {
    hdr.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of::<CmsgBuf>());
    hdr.msg_controllen = space;
    // SAFETY: `hdr` points at `buf`, which has room for one control message of a u16 (checked above).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(hdr);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn every_viewers_datagrams_arrive_whole_and_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receivers: Vec<std::net::UdpSocket> = (0..4)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut batch = Batch::default();
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); receivers.len()];
        let mut push = |v: usize, k: usize, len: usize, batch: &mut Batch| {
            let header = [v as u8, k as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80];
            let body = Bytes::from(vec![k as u8; len]);
            expected[v].push([&header[..], &body].concat());
            let to: SocketAddr = receivers[v].local_addr().unwrap();
            batch.push(to, header, body, 64);
        };
        // Datagrams growing in size, each its own message, viewers interleaved: more messages than one sendmmsg
        // takes.
        for k in 0..70 {
            for v in 0..4 {
                push(v, k, 20 + k, &mut batch);
            }
        }
        // Then a frame's fragments to each: one GSO message each.
        for v in 0..4 {
            for (k, len) in [1188, 1188, 1188, 500].into_iter().enumerate() {
                push(v, 100 + k, len, &mut batch);
            }
        }
        assert!(batch.messages().len() > MESSAGES_PER_CALL);
        send(&sender, &batch, &AtomicBool::new(false)).await;
        let mut buf = [0u8; 2048];
        for (v, r) in receivers.iter().enumerate() {
            for (i, want) in expected[v].iter().enumerate() {
                let n = r.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &want[..], "viewer {v}, datagram {i}");
            }
        }
    }

    #[test]
    fn split_keeps_the_order() {
        let to = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut b = Batch::default();
        for _ in 0..3 {
            b.push(to, [0; 12], Bytes::from_static(&[1; 100]), 64);
        }
        let one: Vec<usize> = split(b.messages()).iter().map(|m| m.first).collect();
        assert_eq!(one, vec![0, 1, 2]);
        assert!(split(b.messages()).iter().all(|m| m.count == 1));
    }
}
