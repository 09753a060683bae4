//! The physical reference for fan-out: a minimal loop that sends the same packets (count and size) to the same
//! receivers with `sendmmsg`, up to 1024 datagrams a call, paced in 10 ms ticks, from the core the gateway ran
//! on. Nothing can fan out cheaper from user space without GSO; the gateway's cost is judged as a ratio to this
//! loop's.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::procstat::this_thread_cpu;

/// [`run`] on its own thread pinned to `cpu`, the core the gateway had: the gateway (now idle) and the loop then
/// send from the same core to the same receivers on the other one. Senders on different cores would not compare:
/// a sender on the receivers' core wakes them without an inter-processor interrupt, which in a VM costs a few
/// microseconds a wake-up.
pub async fn run_on(
    cpu: Option<usize>,
    to: Vec<SocketAddr>,
    pps: f64,
    size: usize,
    window: Duration,
) -> anyhow::Result<Duration> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("raw-sendmmsg".into())
        .spawn(move || {
            let result = match cpu.map(crate::procstat::pin_this_thread) {
                Some(Err(e)) => Err(e),
                _ => run(&to, pps, size, window),
            };
            let _ = tx.send(result);
        })?;
    Ok(rx.await??)
}

/// CPU time the loop spent sending `pps` packets/s of `size` bytes to each of `to` for `window`.
pub fn run(
    to: &[SocketAddr],
    pps: f64,
    size: usize,
    window: Duration,
) -> std::io::Result<Duration> {
    let addrs: Vec<libc::sockaddr_in> = to.iter().map(sockaddr_in).collect();
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let size = size.max(12);
    let tick = Duration::from_millis(10);
    // Fractional packets carry over from tick to tick so the rate is exact.
    let per_tick = pps * tick.as_secs_f64();
    let mut owed = 0.0;
    let mut seq = 0u16;
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut iovs: Vec<libc::iovec> = Vec::new();
    let start_cpu = this_thread_cpu();
    let start = Instant::now();
    let mut ticks = 0u32;
    let mut msgs: Vec<libc::mmsghdr> = Vec::new();
    while start.elapsed() < window {
        owed += per_tick;
        let now = owed.floor() as usize;
        owed -= now as f64;
        msgs.clear();
        // Packet k of the tick is the same RTP packet for every receiver, numbered so receivers count loss.
        payloads.clear();
        for _ in 0..now {
            let mut p = vec![0u8; size];
            p[0] = 0x80;
            p[1] = 96;
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            seq = seq.wrapping_add(1);
            payloads.push(p);
        }
        iovs.clear();
        iovs.extend(payloads.iter().map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        }));
        for a in &addrs {
            for iov in iovs.iter_mut() {
                // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the sendmmsg calls.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = a as *const libc::sockaddr_in as *mut libc::c_void;
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = iov;
                h.msg_iovlen = 1;
                msgs.push(libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                });
            }
        }
        for chunk in msgs.chunks_mut(1024) {
            // SAFETY: every header points at live buffers and addresses for the duration of the call.
            unsafe {
                libc::sendmmsg(
                    sender.as_raw_fd(),
                    chunk.as_mut_ptr(),
                    chunk.len() as u32,
                    0,
                )
            };
        }
        ticks += 1;
        if let Some(d) = (start + tick * ticks).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    Ok(this_thread_cpu() - start_cpu)
}

/// A loopback receiver's address as `sendmmsg` takes it.
pub fn sockaddr_in(a: &SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = a else {
        unreachable!("loopback receivers are IPv4")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
