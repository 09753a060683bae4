//! The receivers of a fan-out run: N real UDP sockets on loopback. A sample of them (at most [`SAMPLE`]) is read
//! by one thread that counts packets and bytes and, when asked, reads send-time stamps to measure latency; the
//! rest are never read and overflow in the kernel. Reading 1000 receivers at 4 Mbit/s would take more CPU than
//! this machine has beside the gateway, and a sender pays the same per packet either way, so the gateway and the
//! raw reference loop face exactly the same receivers. The thread also keeps every socket's WSC-RTP consent: it
//! sends each one's keep-alive, echoing the nonce of the server's last answer. The unread sockets carry a kernel
//! filter that drops everything but WSC-RTP control datagrams, so those answers can be read without reading the
//! media. Bound with [`Receive::Coalesced`], every socket takes GSO sends whole ([`crate::udp_gro`]).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use publishers::wsc::client::{ClientPath, Step};
use publishers::wsc::datagram::is_control;
use testdata::stamp;
use testdata::webrtc_viewer::payload_starts_keyframe;

use crate::udp_gro;

/// Receivers read and counted, at most.
pub const SAMPLE: usize = 64;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(4);

/// Where a socket's keepalives go, and the state of its UDP path.
#[derive(Clone)]
pub struct Keepalive {
    pub path: ClientPath,
    pub server: SocketAddr,
}

/// How the receivers take a GSO send (many datagrams in one send call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receive {
    /// Cut into datagrams by the kernel on arrival, as a socket does by default.
    Segmented,
    /// Whole, with UDP GRO: the kernel's receive work per GSO send is one queueing, not one per datagram.
    Coalesced,
}

/// One frame's stamp as read on one sampled socket: when the camera stamped it (CLOCK_MONOTONIC ns), how long it
/// took to arrive, and whether it was a keyframe.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub sent_ns: u64,
    pub latency_ns: u64,
    pub keyframe: bool,
}

pub struct Sinks {
    sockets: Vec<UdpSocket>,
    keepalives: Vec<Option<Keepalive>>,
    /// Next socket whose keepalive is due, and when the round through all of them started.
    keepalive_cursor: usize,
    /// Whether the sink thread reads the sampled sockets (else their answers are read with the keep-alives).
    sample_read_by_thread: bool,
    keepalive_round: Instant,
}

impl Sinks {
    pub fn bind(n: usize, receive: Receive) -> std::io::Result<Sinks> {
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            if receive == Receive::Coalesced {
                udp_gro::enable(&s)?;
            }
            // Read sockets get room for a GOP burst; the others as little as the kernel allows, and only the
            // server's answers to their keep-alives.
            if i < SAMPLE {
                set_rcvbuf(&s, 8 << 20);
            } else {
                set_rcvbuf(&s, 4096);
                keep_only_control_datagrams(&s)?;
            }
            sockets.push(s);
        }
        Ok(Sinks {
            keepalives: vec![None; n],
            sockets,
            keepalive_cursor: 0,
            sample_read_by_thread: false,
            keepalive_round: Instant::now(),
        })
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn sampled(&self) -> usize {
        self.sockets.len().min(SAMPLE)
    }

    /// The order to open sessions in: the sampled sockets spread evenly among the others. The gateway serves a
    /// frame to its viewers in the order they joined, so a sample that joined first would see only the start of
    /// every frame's fan-out.
    pub fn join_order(&self) -> Vec<usize> {
        let (n, sample) = (self.sockets.len(), self.sampled());
        let mut order: Vec<(f64, usize)> = (0..n)
            .map(|i| {
                let at = if i < sample {
                    (i as f64 + 0.5) / sample as f64
                } else {
                    (i - sample) as f64 / (n - sample) as f64
                };
                (at, i)
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        order.into_iter().map(|(_, i)| i).collect()
    }

    pub fn socket(&self, i: usize) -> &UdpSocket {
        &self.sockets[i]
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .map(|s| s.local_addr().expect("bound"))
            .collect()
    }

    pub fn set_keepalive(&mut self, i: usize, k: Keepalive) {
        self.keepalives[i] = Some(k);
    }

    /// Stops every socket's keep-alives: their sessions are gone.
    pub fn forget_keepalives(&mut self) {
        self.keepalives.iter_mut().for_each(|k| *k = None);
    }

    /// Takes a control datagram read from socket `i` (sampled sockets are read by the sink thread).
    fn on_control(&mut self, i: usize, data: &[u8]) {
        if let Some(k) = &mut self.keepalives[i] {
            if let Some(Step::Reply(proof)) = k.path.on_answer(data) {
                let _ = self.sockets[i].send_to(&proof, k.server);
            }
        }
    }

    /// Sends the keepalives now due, spreading each socket's one-per-[`KEEPALIVE_EVERY`] evenly over the interval
    /// as independent clients would, rather than 1000 at once (a burst a real server never sees, and one that
    /// overflows its socket's receive buffer).
    pub fn send_due_keepalives(&mut self) {
        let n = self.sockets.len();
        let elapsed = self.keepalive_round.elapsed();
        let due = ((n as u128 * elapsed.as_millis()) / KEEPALIVE_EVERY.as_millis()).min(n as u128)
            as usize;
        let sample = self.sampled();
        let mut buf = [0u8; 2048];
        while self.keepalive_cursor < due {
            let i = self.keepalive_cursor;
            self.keepalive_cursor += 1;
            if self.keepalives[i].is_none() {
                continue;
            }
            if i >= sample || !self.sample_read_by_thread {
                // The answer to the last keep-alive waits in the socket (nonblocking once proved): alone in a
                // filtered one, among media in a sampled one whose reading has not started (then the media is
                // not counted yet anyway).
                while let Ok((n, _)) = udp_gro::recv(&self.sockets[i], &mut buf) {
                    let data = buf[..n].to_vec();
                    self.on_control(i, &data);
                }
            }
            if let Some(k) = &self.keepalives[i] {
                let _ = self.sockets[i].send_to(&k.path.keepalive(), k.server);
            }
        }
        if elapsed >= KEEPALIVE_EVERY {
            self.keepalive_cursor = 0;
            self.keepalive_round = Instant::now();
        }
    }

    /// Starts reading the sample; `stamps` also measures the latency of stamped packets.
    pub fn start(self, stamps: bool) -> RunningSinks {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let sampled_ports = self.addrs()[..self.sampled()]
            .iter()
            .map(|a| a.port())
            .collect();
        let thread = {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-sinks".into())
                .spawn(move || read_loop(self, &counters, &stop, stamps))
                .expect("spawning the sink thread")
        };
        RunningSinks {
            counters,
            stop,
            thread,
            sampled_ports,
        }
    }
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Each stamped frame's arrival on each sampled socket.
    arrivals: Mutex<Vec<Arrival>>,
    /// Per sampled socket, the RTP sequence numbers seen since the last [`RunningSinks::take_loss`].
    seqs: Mutex<Vec<SeqSpan>>,
}

/// RTP sequence numbers seen on one socket: how many arrived and the span they cover.
#[derive(Clone, Copy, Default)]
struct SeqSpan {
    first: Option<i64>,
    last: i64,
    received: u64,
}

impl SeqSpan {
    fn see(&mut self, seq: u16) {
        match self.first {
            None => {
                self.first = Some(i64::from(seq));
                self.last = i64::from(seq);
            }
            Some(_) => {
                // Unwrap the 16-bit counter around the last one seen.
                let delta = i64::from(seq.wrapping_sub(self.last as u16) as i16);
                if delta > 0 {
                    self.last += delta;
                }
            }
        }
        self.received += 1;
    }

    fn expected(&self) -> u64 {
        self.first.map_or(0, |f| (self.last - f + 1) as u64)
    }
}

/// Loss over the sampled sockets: packets expected from the sequence numbers, and packets that arrived.
#[derive(Clone, Copy, Debug, Default)]
pub struct Loss {
    pub expected: u64,
    pub received: u64,
}

impl Loss {
    pub fn fraction(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        1.0 - (self.received.min(self.expected) as f64 / self.expected as f64)
    }
}

pub struct RunningSinks {
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Sinks>,
    /// Local ports of the sampled sockets.
    sampled_ports: Vec<u16>,
}

impl RunningSinks {
    /// Packets and bytes read from the sample so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.counters.packets.load(Ordering::Relaxed),
            self.counters.bytes.load(Ordering::Relaxed),
        )
    }

    /// Loss since the last call (or the start).
    pub fn take_loss(&self) -> Loss {
        let mut seqs = self.counters.seqs.lock().expect("not poisoned");
        let loss = seqs.iter().fold(Loss::default(), |l, s| Loss {
            expected: l.expected + s.expected(),
            received: l.received + s.received.min(s.expected()),
        });
        seqs.iter_mut().for_each(|s| *s = SeqSpan::default());
        loss
    }

    /// The stamped frames' arrivals on the sampled sockets since the last call.
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.counters.arrivals.lock().expect("not poisoned"))
    }

    /// Bytes waiting in the sampled sockets' receive queues (`/proc/net/udp`), summed: more than a frame or two
    /// means the reading thread is behind, and the latencies it measures are its own.
    pub fn unread_bytes(&self) -> u64 {
        let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
            return 0;
        };
        table
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let local = fields.nth(1)?;
                let queues = fields.nth(2)?;
                let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
                let rx = u64::from_str_radix(queues.rsplit(':').next()?, 16).ok()?;
                self.sampled_ports.contains(&port).then_some(rx)
            })
            .sum()
    }

    pub fn stop(self) -> Sinks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sink thread")
    }
}

/// The frame being received on one socket: its RTP timestamp, its stamp's latency once seen, and whether one of
/// its packets started an IDR slice or an SPS (a keyframe).
#[derive(Clone, Copy, Default)]
struct FrameStamp {
    timestamp: u32,
    /// The stamp and its latency, once a packet carrying it arrived.
    stamp: Option<(u64, u64)>,
    keyframe: bool,
}

impl FrameStamp {
    /// Takes one H.264 RTP packet; returns the previous frame's arrival once a new frame starts.
    fn see(&mut self, packet: &[u8]) -> Option<Arrival> {
        let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let mut done = None;
        if timestamp != self.timestamp {
            done = self.stamp.take().map(|(sent_ns, latency_ns)| Arrival {
                sent_ns,
                latency_ns,
                keyframe: self.keyframe,
            });
            *self = FrameStamp {
                timestamp,
                ..FrameStamp::default()
            };
        }
        let payload = &packet[(12 + 4 * usize::from(packet[0] & 0x0f)).min(packet.len())..];
        // The hub sends a keyframe's parameter sets in its own packets ahead of the slice, and every packet of a
        // frame carries the frame's timestamp: one packet starting an SPS or an IDR slice marks the frame.
        self.keyframe |= payload_starts_keyframe(payload);
        if let Some(sent) = stamp::find_stamp(payload) {
            self.stamp = Some((sent, stamp::monotonic_ns().saturating_sub(sent)));
        }
        done
    }
}

fn read_loop(mut sinks: Sinks, counters: &Counters, stop: &AtomicBool, stamps: bool) -> Sinks {
    let sample = sinks.sampled();
    sinks.sample_read_by_thread = true;
    for s in &sinks.sockets[..sample] {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut fds: Vec<libc::pollfd> = sinks.sockets[..sample]
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    *counters.seqs.lock().expect("not poisoned") = vec![SeqSpan::default(); sample];
    let mut frames = vec![FrameStamp::default(); sample];
    // Room for a whole GSO send (64 KiB at most).
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if ready > 0 {
            for (i, fd) in fds.iter().enumerate() {
                if fd.revents & libc::POLLIN == 0 {
                    continue;
                }
                while let Ok((n, segment)) = udp_gro::recv(&sinks.sockets[i], &mut buf) {
                    for datagram in udp_gro::datagrams(&buf[..n], segment) {
                        if is_control(datagram) {
                            let data = datagram.to_vec();
                            sinks.on_control(i, &data);
                            continue;
                        }
                        count(counters, &mut frames[i], i, datagram, stamps);
                    }
                }
            }
        }
        sinks.send_due_keepalives();
    }
    for s in &sinks.sockets[..sample] {
        let _ = s.set_nonblocking(false);
    }
    sinks.sample_read_by_thread = false;
    sinks
}

/// Counts one media datagram read from sampled socket `i`: packets, bytes, its sequence number and, with
/// `stamps`, the arrival of the frame it ends.
fn count(counters: &Counters, frame: &mut FrameStamp, i: usize, datagram: &[u8], stamps: bool) {
    counters.packets.fetch_add(1, Ordering::Relaxed);
    counters
        .bytes
        .fetch_add(datagram.len() as u64, Ordering::Relaxed);
    // RTP (version 2), not RTCP (packet types 200-206 where RTP has marker+payload type).
    let n = datagram.len();
    if n >= 12 && datagram[0] & 0xc0 == 0x80 && !(200..=206).contains(&datagram[1]) {
        let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
        counters.seqs.lock().expect("not poisoned")[i].see(seq);
        if stamps {
            if let Some(done) = frame.see(datagram) {
                counters.arrivals.lock().expect("not poisoned").push(done);
            }
        }
    }
}

/// Attaches a classic BPF program that keeps only datagrams whose first payload byte is 'W' (WSC-RTP control)
/// and drops the rest in the kernel, as a full receive buffer would have.
fn keep_only_control_datagrams(s: &UdpSocket) -> std::io::Result<()> {
    const UDP_HEADER: u32 = 8;
    let op = |code: u32| code as u16;
    let program = [
        // A = first byte of the UDP payload (a UDP socket's filter sees the packet from its UDP header on).
        libc::sock_filter {
            code: op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS),
            jt: 0,
            jf: 0,
            k: UDP_HEADER,
        },
        libc::sock_filter {
            code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            jt: 0,
            jf: 1,
            k: u32::from(b'W'),
        },
        libc::sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: u32::MAX,
        },
        libc::sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid socket; `fprog` points at `program`, which outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for a receive buffer of `bytes` on `s`.
pub(crate) fn set_rcvbuf(s: &UdpSocket, bytes: libc::c_int) {
    let set = |opt| {
        // SAFETY: a valid socket and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &bytes as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // FORCE goes past net.core.rmem_max when running as root (as the setup script does); else the capped one.
    if set(libc::SO_RCVBUFFORCE) != 0 {
        set(libc::SO_RCVBUF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_joins_spread_among_the_others() {
        let sinks = Sinks::bind(200, Receive::Segmented).unwrap();
        let order = sinks.join_order();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>());
        let at: Vec<usize> = (0..SAMPLE)
            .map(|s| order.iter().position(|&i| i == s).unwrap())
            .collect();
        assert!(at[0] < 5 && at[SAMPLE - 1] > 190, "{at:?}");
        assert!(at.windows(2).all(|w| w[1] - w[0] <= 4), "{at:?}");
    }

    #[test]
    fn sequence_spans_count_gaps_across_the_wrap() {
        let mut s = SeqSpan::default();
        for seq in [65_534u16, 65_535, 1, 2] {
            s.see(seq);
        }
        assert_eq!((s.expected(), s.received), (5, 4), "0 was lost");
        s.see(1); // a late duplicate changes nothing but the count
        assert_eq!(s.expected(), 5);
    }
}
