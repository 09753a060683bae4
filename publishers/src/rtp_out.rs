//! Sans-IO per-viewer RTP output: turns hub frames into complete RTP packets for one viewer, with one SSRC and
//! sequence numbers that stay continuous across every input switch.
//!
//! A viewer's input can change (camera reconnect, live ↔ DVR, a seek): each change is an explicit
//! [`RtpOutput::discontinuity`]. After one, output resumes only at a keyframe (the hub sends parameter sets before
//! every keyframe) and the sequence number continues at +1. The timestamp of each frame is decided by the
//! viewer's [`MediaClock`](crate::viewer::MediaClock) and handed in, so this type knows nothing about time.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use hub::{rtp_header, HubFrame};

/// Per-viewer RTP numbering.
#[derive(Debug)]
pub struct RtpOutput {
    ssrc: u32,
    payload_type: u8,
    next_seq: u16,
    /// Set by [`RtpOutput::discontinuity`] and at start: nothing but a keyframe may be written.
    awaiting_keyframe: bool,
}

impl RtpOutput {
    /// `initial_seq` and `ssrc` should be random per session (RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8, initial_seq: u16) -> Self {
        RtpOutput {
            ssrc,
            payload_type,
            next_seq: initial_seq,
            awaiting_keyframe: true,
        }
    }

    /// The input is about to change: the next frame written must be a keyframe.
    pub fn discontinuity(&mut self) {
        self.awaiting_keyframe = true;
    }

    /// Whether a frame could be written now: anything but a delta frame after a discontinuity.
    pub fn accepts(&self, frame: &HubFrame) -> bool {
        frame.frame.is_keyframe || !self.awaiting_keyframe
    }

    /// Numbers one frame's packets at `timestamp`: this viewer's header fields over the payloads the hub shares
    /// with every viewer, never copied. `None`, numbering nothing, for a frame that can't be decoded here (a delta
    /// frame after a discontinuity).
    pub fn write_frame(&mut self, frame: &Arc<HubFrame>, timestamp: u32) -> Option<OutFrame> {
        if !self.accepts(frame) {
            return None;
        }
        self.awaiting_keyframe = false;
        let first_seq = self.next_seq;
        // RTP sequence numbers wrap at 16 bits; a frame's count is far below that.
        self.next_seq = first_seq.wrapping_add(frame.packets.len() as u16);
        Some(OutFrame {
            first_seq,
            timestamp,
            frame: frame.clone(),
        })
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }
}

/// One frame of a viewer's stream, unserialized: its packets are the hub frame's, numbered from `first_seq`, all
/// at `timestamp`. A transport that sends many viewers' copies of a frame at once writes each viewer's headers
/// from this, with no per-packet handle to the shared payloads.
#[derive(Clone, Debug)]
pub struct OutFrame {
    pub first_seq: u16,
    pub timestamp: u32,
    pub frame: Arc<HubFrame>,
}

/// The same numbering over the same hub frame.
impl PartialEq for OutFrame {
    fn eq(&self, other: &Self) -> bool {
        self.first_seq == other.first_seq
            && self.timestamp == other.timestamp
            && Arc::ptr_eq(&self.frame, &other.frame)
    }
}

impl Eq for OutFrame {}

impl OutFrame {
    /// Packets in the frame.
    pub fn len(&self) -> usize {
        self.frame.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.packets.is_empty()
    }

    /// Header and payload bytes of all its packets.
    pub fn bytes(&self) -> u64 {
        self.frame
            .packets
            .iter()
            .map(|p| 12 + p.payload.len() as u64)
            .sum()
    }

    /// Packet `k`'s 12-byte RTP header for this viewer's payload type and SSRC.
    pub fn header(&self, k: usize, payload_type: u8, ssrc: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        rtp_header(
            &mut h,
            payload_type,
            self.frame.packets[k].marker,
            self.first_seq.wrapping_add(k as u16),
            self.timestamp,
            ssrc,
        );
        h
    }

    /// Packet `k`, holding a handle to its shared payload.
    pub fn packet(&self, k: usize) -> OutPacket {
        let p = &self.frame.packets[k];
        OutPacket {
            seq: self.first_seq.wrapping_add(k as u16),
            timestamp: self.timestamp,
            marker: p.marker,
            payload: p.payload.clone(),
        }
    }

    /// Its packets one by one.
    pub fn packets(&self) -> impl Iterator<Item = OutPacket> + '_ {
        (0..self.len()).map(|k| self.packet(k))
    }
}

/// One packet of a viewer's stream, unserialized: per-viewer header fields and the shared payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

impl OutPacket {
    /// The packet's 12-byte RTP header for this viewer's payload type and SSRC.
    pub fn header(&self, payload_type: u8, ssrc: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        rtp_header(
            &mut h,
            payload_type,
            self.marker,
            self.seq,
            self.timestamp,
            ssrc,
        );
        h
    }

    /// The whole packet in one buffer (a copy), for a transport that can't send it in two pieces.
    pub fn to_bytes(&self, payload_type: u8, ssrc: u32) -> Bytes {
        let mut buf = BytesMut::with_capacity(12 + self.payload.len());
        buf.put_slice(&self.header(payload_type, ssrc));
        buf.put_slice(&self.payload);
        buf.freeze()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    pub(crate) fn hf(key: bool, pts: i64, packets: usize) -> HubFrame {
        let payloads = (0..packets)
            .map(|i| Bytes::from(vec![0x41, i as u8]))
            .collect();
        hub::test_util::frame_with_payloads(payloads, key, pts)
    }

    /// What `write_frame` numbered, packet by packet.
    fn write(o: &mut RtpOutput, f: HubFrame, ts: u32, out: &mut Vec<OutPacket>) -> bool {
        o.write_frame(&Arc::new(f), ts)
            .map(|f| out.extend(f.packets()))
            .is_some()
    }

    fn seq(p: &Bytes) -> u16 {
        u16::from_be_bytes([p[2], p[3]])
    }

    #[test]
    fn starts_at_a_keyframe_with_continuous_sequence_across_wrap() {
        let mut o = RtpOutput::new(7, 96, 65534);
        let mut parts = Vec::new();
        assert!(
            !write(&mut o, hf(false, 0, 2), 0, &mut parts),
            "no start on a delta frame"
        );
        assert!(write(&mut o, hf(true, 3000, 3), 0, &mut parts));
        assert!(write(&mut o, hf(false, 6000, 2), 3000, &mut parts));
        let out: Vec<Bytes> = parts.iter().map(|p| p.to_bytes(96, 7)).collect();
        let seqs: Vec<u16> = out.iter().map(seq).collect();
        assert_eq!(seqs, vec![65534, 65535, 0, 1, 2]);
        assert_eq!(out[0][1] & 0x7f, 96);
        assert_eq!(
            out[2][1] & 0x80,
            0x80,
            "marker on the last packet of the AU"
        );
        assert_eq!(&out[0][8..12], &7u32.to_be_bytes());
        assert_eq!(&out[0][12..], &[0x41, 0]);
    }

    #[test]
    fn a_discontinuity_waits_for_a_keyframe_and_keeps_numbering() {
        let mut o = RtpOutput::new(1, 96, 100);
        let mut parts = Vec::new();
        write(&mut o, hf(true, 0, 1), 0, &mut parts);
        o.discontinuity();
        assert!(!write(&mut o, hf(false, 9_000_000, 1), 1, &mut parts));
        assert!(write(&mut o, hf(true, 9_003_600, 1), 2, &mut parts));
        let seqs: Vec<u16> = parts.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![100, 101]);
    }

    #[test]
    fn packets_share_the_hub_payload() {
        let frame = Arc::new(hf(true, 0, 2));
        let out = RtpOutput::new(9, 102, 500).write_frame(&frame, 0).unwrap();
        let parts: Vec<OutPacket> = out.packets().collect();
        assert_eq!(parts[0].payload.as_ptr(), frame.packets[0].payload.as_ptr());
    }

    #[test]
    fn a_frames_headers_are_its_packets_headers() {
        let frame = Arc::new(hf(true, 0, 3));
        let out = RtpOutput::new(9, 102, 65535)
            .write_frame(&frame, 1234)
            .unwrap();
        assert_eq!(out.len(), 3);
        for (k, p) in out.packets().enumerate() {
            assert_eq!(out.header(k, 102, 9), p.header(102, 9));
        }
        assert_eq!(out.bytes(), 3 * (12 + 2));
    }
}
