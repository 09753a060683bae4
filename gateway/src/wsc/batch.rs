//! Many viewers' datagrams gathered for one `sendmmsg` (sans-IO): the one-pass forwarder pushes every viewer's
//! RTP packets of a frame here (its header, the payload the hub shares), and the batch groups them into messages,
//! one per run of equal-size datagrams to one address, the way UDP GSO (`UDP_SEGMENT`) takes them: equal
//! segments, the last one may be shorter. Nothing is copied: a message is a list of (header, payload) pieces that
//! the kernel gathers itself ([`super::mmsg`]). A viewer's frame goes in whole ([`Batch::push_frame`]): its
//! headers are written here and its payloads are named by the hub frame, which the batch holds once however many
//! viewers' copies it carries, so the pass touches no per-packet handle.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hub::HubFrame;
use publishers::OutFrame;

/// Bytes of one GSO message, at most (a UDP datagram's limit, less IP and UDP headers).
pub const MAX_MESSAGE_BYTES: usize = 65_000;

/// One message: datagrams `first..first + count` of the batch, all to `to`; `segment` is the size of each but
/// the last (which may be shorter), the GSO segment size when `count > 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub to: SocketAddr,
    pub first: usize,
    pub count: usize,
    pub segment: usize,
    /// A shorter datagram ended the run: nothing more can join it.
    pub closed: bool,
}

/// Where a datagram's payload is.
enum Payload {
    /// Packet `packet` of the batch's frame `frame`.
    Shared {
        frame: u32,
        packet: u32,
    },
    Own(Bytes),
}

/// Datagrams of many viewers, in order, grouped into messages.
#[derive(Default)]
pub struct Batch {
    headers: Vec<[u8; 12]>,
    payloads: Vec<Payload>,
    /// The hub frames the shared payloads are in; consecutive viewers' copies of one frame share an entry.
    frames: Vec<Arc<HubFrame>>,
    messages: Vec<Message>,
}

impl Batch {
    /// Adds one RTP packet to `to`. `max_segments`: datagrams per message the socket's GSO takes (1: no GSO).
    pub fn push(&mut self, to: SocketAddr, header: [u8; 12], payload: Bytes, max_segments: usize) {
        let len = header.len() + payload.len();
        self.headers.push(header);
        self.payloads.push(Payload::Own(payload));
        self.place(to, len, max_segments);
    }

    /// Adds a viewer's whole frame to `to`, its headers written for `payload_type` and `ssrc`.
    pub fn push_frame(
        &mut self,
        to: SocketAddr,
        frame: &OutFrame,
        payload_type: u8,
        ssrc: u32,
        max_segments: usize,
    ) {
        let same = self
            .frames
            .last()
            .is_some_and(|f| Arc::ptr_eq(f, &frame.frame));
        if !same {
            self.frames.push(frame.frame.clone());
        }
        let at = (self.frames.len() - 1) as u32;
        for (k, p) in frame.frame.packets.iter().enumerate() {
            self.headers.push(frame.header(k, payload_type, ssrc));
            self.payloads.push(Payload::Shared {
                frame: at,
                packet: k as u32,
            });
            self.place(to, 12 + p.payload.len(), max_segments);
        }
    }

    /// Puts the datagram just added, of `len` bytes to `to`, into the last message or a new one.
    fn place(&mut self, to: SocketAddr, len: usize, max_segments: usize) {
        let index = self.headers.len() - 1;
        if let Some(m) = self.messages.last_mut() {
            let joins = m.to == to
                && !m.closed
                && m.count < max_segments
                && len <= m.segment
                && (m.count + 1) * m.segment <= MAX_MESSAGE_BYTES;
            if joins {
                m.count += 1;
                m.closed = len < m.segment;
                return;
            }
        }
        self.messages.push(Message {
            to,
            first: index,
            count: 1,
            segment: len,
            closed: false,
        });
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Datagram `i`: its header and payload.
    pub fn datagram(&self, i: usize) -> (&[u8; 12], &[u8]) {
        let payload = match &self.payloads[i] {
            Payload::Shared { frame, packet } => {
                &self.frames[*frame as usize].packets[*packet as usize].payload[..]
            }
            Payload::Own(b) => &b[..],
        };
        (&self.headers[i], payload)
    }

    pub fn datagrams(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Empties the batch, keeping its room (the next frame's batch is about as large).
    pub fn clear(&mut self) {
        self.headers.clear();
        self.payloads.clear();
        self.frames.clear();
        self.messages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn push(b: &mut Batch, port: u16, body: usize, max: usize) {
        b.push(addr(port), [0x80; 12], Bytes::from(vec![0; body]), max);
    }

    fn shape(b: &Batch) -> Vec<(u16, usize, usize, usize)> {
        b.messages()
            .iter()
            .map(|m| (m.to.port(), m.first, m.count, m.segment))
            .collect()
    }

    #[test]
    fn each_viewers_frame_is_one_message_per_equal_size_run() {
        let mut b = Batch::default();
        // Viewer 1: a keyframe's parameter sets (two small packets), three full fragments, a short last one.
        for body in [20, 8, 1188, 1188, 1188, 400] {
            push(&mut b, 1, body, 64);
        }
        // Viewer 2: the same frame.
        for body in [20, 8, 1188, 1188, 1188, 400] {
            push(&mut b, 2, body, 64);
        }
        assert_eq!(
            shape(&b),
            vec![
                // The shorter second parameter set ends the first run.
                (1, 0, 2, 32),
                (1, 2, 4, 1200),
                (2, 6, 2, 32),
                (2, 8, 4, 1200),
            ]
        );
        assert_eq!(b.datagrams(), 12);
        b.clear();
        assert!(b.is_empty() && b.messages().is_empty());
    }

    #[test]
    fn a_run_ends_at_a_shorter_datagram_the_gso_limit_or_64_kb() {
        let mut b = Batch::default();
        push(&mut b, 1, 1188, 64);
        push(&mut b, 1, 100, 64);
        push(&mut b, 1, 100, 64);
        assert_eq!(shape(&b), vec![(1, 0, 2, 1200), (1, 2, 1, 112)]);

        let mut b = Batch::default();
        for _ in 0..5 {
            push(&mut b, 1, 1188, 2);
        }
        assert_eq!(
            shape(&b),
            vec![(1, 0, 2, 1200), (1, 2, 2, 1200), (1, 4, 1, 1200)]
        );

        let mut b = Batch::default();
        for _ in 0..60 {
            push(&mut b, 1, 1188, 64);
        }
        assert_eq!(shape(&b), vec![(1, 0, 54, 1200), (1, 54, 6, 1200)]);
    }

    #[test]
    fn a_frame_pushed_whole_is_its_packets_over_the_hubs_payloads() {
        let f = Arc::new(hub::test_util::frame_of_sizes(&[1188, 1188, 400]));
        let mut b = Batch::default();
        for (port, first_seq) in [(1, 100u16), (2, 65535)] {
            let out = OutFrame {
                first_seq,
                timestamp: 9000,
                frame: f.clone(),
            };
            b.push_frame(addr(port), &out, 96, u32::from(port), 64);
        }
        assert_eq!(shape(&b), vec![(1, 0, 3, 1200), (2, 3, 3, 1200)]);
        assert_eq!(b.frames.len(), 1, "one handle for every viewer's copy");
        let seq = |i| {
            let (h, _) = b.datagram(i);
            u16::from_be_bytes([h[2], h[3]])
        };
        assert_eq!(
            (0..6).map(seq).collect::<Vec<_>>(),
            [100, 101, 102, 65535, 0, 1]
        );
        for i in 0..6 {
            let (h, payload) = b.datagram(i);
            assert_eq!(payload.as_ptr(), f.packets[i % 3].payload.as_ptr());
            assert_eq!(h[1] & 0x80 != 0, i % 3 == 2, "marker on the last");
            assert_eq!(&h[8..12], &(1 + i as u32 / 3).to_be_bytes());
        }
        // A different frame after it gets its own handle; a packet of its own keeps its bytes.
        let g = Arc::new(hub::test_util::frame_of_sizes(&[100]));
        let out = OutFrame {
            first_seq: 7,
            timestamp: 12000,
            frame: g,
        };
        b.push_frame(addr(1), &out, 96, 1, 64);
        b.push(addr(1), [0x80; 12], Bytes::from_static(b"resent"), 64);
        assert_eq!(b.frames.len(), 2);
        assert_eq!(b.datagram(7).1, b"resent");
        b.clear();
        assert!(b.frames.is_empty() && b.is_empty());
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_message() {
        let mut b = Batch::default();
        for _ in 0..3 {
            push(&mut b, 1, 1188, 1);
        }
        assert_eq!(
            shape(&b),
            vec![(1, 0, 1, 1200), (1, 1, 1, 1200), (1, 2, 1, 1200)]
        );
    }
}
