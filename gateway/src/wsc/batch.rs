//! Many viewers' datagrams gathered for one `sendmmsg` (sans-IO): the one-pass forwarder pushes every viewer's
//! RTP packets of a frame here (its header, the payload the hub shares), and the batch groups them into messages,
//! one per run of equal-size datagrams to one address, the way UDP GSO (`UDP_SEGMENT`) takes them: equal
//! segments, the last one may be shorter. Nothing is copied: a message is a list of (header, payload) pieces that
//! the kernel gathers itself ([`super::mmsg`]).

use std::net::SocketAddr;

use bytes::Bytes;

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

/// Datagrams of many viewers, in order, grouped into messages.
#[derive(Default)]
pub struct Batch {
    headers: Vec<[u8; 12]>,
    payloads: Vec<Bytes>,
    messages: Vec<Message>,
}

impl Batch {
    /// Adds one RTP packet to `to`. `max_segments`: datagrams per message the socket's GSO takes (1: no GSO).
    pub fn push(&mut self, to: SocketAddr, header: [u8; 12], payload: Bytes, max_segments: usize) {
        let len = header.len() + payload.len();
        let index = self.headers.len();
        self.headers.push(header);
        self.payloads.push(payload);
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
    pub fn datagram(&self, i: usize) -> (&[u8; 12], &Bytes) {
        (&self.headers[i], &self.payloads[i])
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
