//! The floor under the latency rows: a perfect one-pass forwarder, with no work of its own in user space. On its
//! own thread, pinned to the core the gateway had, it sends every receiver one GSO message per frame (the same
//! datagrams to all, in the join order the gateway served them in) and stamps each frame's first datagram with
//! CLOCK_MONOTONIC just before the pass starts. The receivers read the stamps as they read the gateway's, so what
//! they measure is what the kernel alone costs to hand one frame to N loopback sockets from one core: the sending,
//! and the receivers' own delivery, which on loopback runs on the sending core too. No forwarder on that core can
//! do better than this in this harness.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use testdata::stamp;

/// Datagrams of one frame and their size: 16.8 KB, a mean frame of the 4 Mbit/s, 30 fps camera.
pub const DATAGRAMS_PER_FRAME: usize = 14;
pub const DATAGRAM_BYTES: usize = 1200;
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);

/// [`run`] on its own thread pinned to `cpu` (see [`crate::raw_send::run_on`] for why the core matters).
pub async fn run_on(
    cpu: Option<usize>,
    to: Vec<SocketAddr>,
    window: Duration,
) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raw-frames".into())
        .spawn(move || {
            let result = match cpu.map(crate::procstat::pin_this_thread) {
                Some(Err(e)) => Err(e),
                _ => run(&to, window),
            };
            let _ = tx.send(result);
        })?;
    Ok(rx.await??)
}

/// Sends a stamped frame to every one of `to`, in order, 30 times a second for `window`.
pub fn run(to: &[SocketAddr], window: Duration) -> std::io::Result<()> {
    let addrs: Vec<libc::sockaddr_in> = to.iter().map(crate::raw_send::sockaddr_in).collect();
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let mut frame = vec![0u8; DATAGRAMS_PER_FRAME * DATAGRAM_BYTES];
    let mut cmsg = [0u64; 4];
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(addrs.len());
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < window {
        write_frame(&mut frame, n, stamp::monotonic_ns());
        let mut iov = libc::iovec {
            iov_base: frame.as_mut_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        };
        msgs.clear();
        for a in &addrs {
            // SAFETY: an all-zero msghdr is valid; every pointer set here outlives the sendmmsg calls below.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = a as *const libc::sockaddr_in as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iov;
            h.msg_iovlen = 1;
            segment_size(&mut h, &mut cmsg);
            msgs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // The gateway's forwarder hands the kernel 256 messages a call.
        for chunk in msgs.chunks_mut(256) {
            // SAFETY: as above; the lengths are the chunk's.
            let sent = unsafe {
                libc::sendmmsg(
                    sender.as_raw_fd(),
                    chunk.as_mut_ptr(),
                    chunk.len() as u32,
                    0,
                )
            };
            if sent < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        n += 1;
        if let Some(d) = (start + FRAME_INTERVAL * n).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    Ok(())
}

/// Frame `n`'s RTP headers (sequence numbers counting on, one timestamp) and its send-time stamp, in the first
/// datagram's payload as an SEI NAL would carry it.
fn write_frame(frame: &mut [u8], n: u32, now_ns: u64) {
    for (k, d) in frame.chunks_mut(DATAGRAM_BYTES).enumerate() {
        let seq = (n as usize * DATAGRAMS_PER_FRAME + k) as u16;
        d[0] = 0x80;
        d[1] = 96
            | if k == DATAGRAMS_PER_FRAME - 1 {
                0x80
            } else {
                0
            };
        d[2..4].copy_from_slice(&seq.to_be_bytes());
        d[4..8].copy_from_slice(&n.wrapping_mul(3000).to_be_bytes());
    }
    // The SEI NAL without its start code, as a single-NAL RTP payload carries it.
    let sei = stamp::sei_nal(now_ns);
    frame[12..12 + sei.len() - 4].copy_from_slice(&sei[4..]);
}

/// One `UDP_SEGMENT` control message: the frame leaves as [`DATAGRAMS_PER_FRAME`] datagrams.
fn segment_size(h: &mut libc::msghdr, buf: &mut [u64; 4]) {
    h.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE is a pure size computation.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    // SAFETY: `h` points at `buf`, which has room for one control message of a u16.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, DATAGRAM_BYTES as u16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_its_stamp_and_one_timestamp() {
        let mut f = vec![0u8; DATAGRAMS_PER_FRAME * DATAGRAM_BYTES];
        write_frame(&mut f, 2, 987_654_321);
        assert_eq!(stamp::find_stamp(&f[..DATAGRAM_BYTES]), Some(987_654_321));
        let ts = |d: &[u8]| u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
        assert!(f.chunks(DATAGRAM_BYTES).all(|d| ts(d) == 6000));
        let last = f.chunks(DATAGRAM_BYTES).last().unwrap();
        assert_eq!(u16::from_be_bytes([last[2], last[3]]), 2 * 14 + 13);
    }
}
