//! The floor under the latency rows: a perfect one-pass forwarder, with no work of its own in user space. It
//! takes the camera's frames as the harness's direct path gets them (already cut into RTP payloads by a hub of
//! the harness's own, as the gateway's hub cuts them) and, on its own thread pinned to the core the gateway had,
//! sends every receiver its copy in one pass, in the join order the gateway served them in: each frame's packets
//! laid out once in one buffer, then the same GSO messages to every receiver. The receivers read the camera's
//! stamps from them as they read the gateway's, and the arrivals are paired with the direct path's frame by frame
//! in the same way, so what this measures is what the kernel alone costs to hand a frame to N loopback sockets
//! from one core (the sending, and on loopback the receivers' delivery too, which runs on the sending core). No
//! forwarder on that core can do better in this harness.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use hub::HubFrame;

/// Frames waiting for the sender, at most: a few, so a stalled sender drops frames rather than queueing them.
const QUEUED: usize = 4;
/// Datagrams per GSO message and bytes per message, at most (as the gateway's batch).
const MAX_SEGMENTS: usize = 64;
const MAX_MESSAGE_BYTES: usize = 65_000;
/// Messages per `sendmmsg`, as the gateway's forwarder.
const MESSAGES_PER_CALL: usize = 256;

/// The sending thread and the way frames reach it.
pub struct FloorSender {
    frames: mpsc::SyncSender<Arc<HubFrame>>,
    thread: JoinHandle<std::io::Result<()>>,
}

impl FloorSender {
    /// Starts the thread, pinned to `cpu`, sending to `to` in that order.
    pub fn start(cpu: Option<usize>, to: Vec<SocketAddr>) -> std::io::Result<FloorSender> {
        let (frames, rx) = mpsc::sync_channel(QUEUED);
        let thread = std::thread::Builder::new()
            .name("raw-frames".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    crate::procstat::pin_this_thread(cpu)?;
                }
                run(&to, rx)
            })?;
        Ok(FloorSender { frames, thread })
    }

    /// A handle that hands frames to the thread.
    pub fn feeder(&self) -> mpsc::SyncSender<Arc<HubFrame>> {
        self.frames.clone()
    }

    /// Ends the thread once every feeder is gone.
    pub fn stop(self) -> anyhow::Result<()> {
        drop(self.frames);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the floor's sending thread panicked"))??;
        Ok(())
    }
}

fn run(to: &[SocketAddr], frames: mpsc::Receiver<Arc<HubFrame>>) -> std::io::Result<()> {
    let addrs: Vec<libc::sockaddr_in> = to.iter().map(crate::raw_send::sockaddr_in).collect();
    let sender = UdpSocket::bind("127.0.0.1:0")?;
    let mut buf = Vec::new();
    let mut runs = Vec::new();
    let mut cmsgs: Vec<gateway::wsc::mmsg::CmsgBuf> = Vec::new();
    let mut iovs: Vec<libc::iovec> = Vec::new();
    let mut msgs: Vec<libc::mmsghdr> = Vec::new();
    let (mut seq, mut timestamp) = (0u16, 0u32);
    while let Ok(frame) = frames.recv() {
        lay_out(&frame, &mut seq, timestamp, &mut buf, &mut runs);
        timestamp = timestamp.wrapping_add(3000);
        iovs.clear();
        iovs.extend(runs.iter().map(|r: &Run| libc::iovec {
            iov_base: buf[r.start..].as_ptr() as *mut libc::c_void,
            iov_len: r.len,
        }));
        cmsgs.resize(runs.len() * addrs.len(), [0; 4]);
        msgs.clear();
        for a in &addrs {
            for (k, r) in runs.iter().enumerate() {
                // SAFETY: an all-zero msghdr is valid; every pointer set here outlives the sendmmsg calls below.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = a as *const libc::sockaddr_in as *mut libc::c_void;
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                h.msg_iov = &mut iovs[k];
                h.msg_iovlen = 1;
                if r.count > 1 {
                    let c = &mut cmsgs[msgs.len()];
                    gateway::wsc::mmsg::set_segment_size(&mut h, c, r.segment as u16);
                }
                msgs.push(libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                });
            }
        }
        for chunk in msgs.chunks_mut(MESSAGES_PER_CALL) {
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
    }
    Ok(())
}

/// A GSO message of the laid-out frame: `count` datagrams of `segment` bytes (the last may be shorter), `len`
/// bytes from `start` in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    start: usize,
    len: usize,
    count: usize,
    segment: usize,
}

/// Writes the frame's packets, each an RTP header (sequence numbers from `seq` on) and its payload, one after
/// the other into `buf`, and cuts them into GSO messages the way the gateway's batch does: runs of equal-size
/// datagrams, ended by a shorter one.
fn lay_out(
    frame: &HubFrame,
    seq: &mut u16,
    timestamp: u32,
    buf: &mut Vec<u8>,
    runs: &mut Vec<Run>,
) {
    buf.clear();
    runs.clear();
    for p in &frame.packets {
        let start = buf.len();
        let mut header = [0u8; 12];
        hub::rtp_header(&mut header, 96, p.marker, *seq, timestamp, 1);
        *seq = seq.wrapping_add(1);
        buf.extend_from_slice(&header);
        buf.extend_from_slice(&p.payload);
        let len = buf.len() - start;
        if let Some(r) = runs.last_mut() {
            let joins = r.len == r.count * r.segment
                && len <= r.segment
                && r.count < MAX_SEGMENTS
                && r.len + len <= MAX_MESSAGE_BYTES;
            if joins {
                r.count += 1;
                r.len += len;
                continue;
            }
        }
        runs.push(Run {
            start,
            len,
            count: 1,
            segment: len,
        });
    }
}

#[cfg(test)]
mod tests {
    use hub::test_util::frame_of_sizes;

    use super::*;

    #[test]
    fn a_frame_is_laid_out_once_in_gso_runs() {
        let (mut buf, mut runs, mut seq) = (Vec::new(), Vec::new(), 65535);
        // Packets as a keyframe's: SPS, PPS, three full fragments and a short last one.
        lay_out(
            &frame_of_sizes(&[20, 8, 1188, 1188, 1188, 400]),
            &mut seq,
            3000,
            &mut buf,
            &mut runs,
        );
        let shape: Vec<(usize, usize)> = runs.iter().map(|r| (r.count, r.segment)).collect();
        assert_eq!(shape, vec![(2, 32), (4, 1200)]);
        assert_eq!(buf.len(), 6 * 12 + 20 + 8 + 3 * 1188 + 400);
        assert_eq!(runs[1].start + runs[1].len, buf.len());
        assert_eq!(seq, 5);
        // The third datagram (the first fragment) starts with its header: sequence number 1, timestamp 3000.
        let d = &buf[runs[1].start..];
        assert_eq!(u16::from_be_bytes([d[2], d[3]]), 1);
        assert_eq!(u32::from_be_bytes([d[4], d[5], d[6], d[7]]), 3000);
        assert_eq!(d[12], 2);
    }
}
