//! Sans-IO loss repair: a short per-viewer history of sent RTP packets, and the RTCP feedback that asks for
//! them — generic NACK (RFC 4585 §6.2.1) and PLI (RFC 4585 §6.3.1).
//!
//! ```text
//! Generic NACK FCI (one or more):   0                   1                   2                   3
//!                                   +-------------------------------+-------------------------------+
//!                                   |            PID                |             BLP               |
//!                                   +-------------------------------+-------------------------------+
//! ```
//! PID is a lost sequence number; bit i of BLP (LSB first) marks PID+i+1 as lost too.

use std::collections::VecDeque;

use crate::rtp_out::OutPacket;

/// Packets kept per viewer: about a second of a 4 Mbps stream at 1200-byte payloads.
pub const DEFAULT_HISTORY: usize = 512;

/// The last sent packets of one viewer, by sequence number. It holds header fields and references to the hub's
/// shared payloads (about 40 bytes a packet), not copies: a second of 4 Mbit/s would otherwise be 600 KiB per
/// viewer.
#[derive(Debug)]
pub struct SendHistory {
    packets: VecDeque<OutPacket>,
    capacity: usize,
}

impl SendHistory {
    pub fn new(capacity: usize) -> Self {
        SendHistory {
            packets: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// Remembers a sent packet; the oldest one goes when full.
    pub fn push(&mut self, packet: OutPacket) {
        if self.packets.len() == self.capacity {
            self.packets.pop_front();
        }
        self.packets.push_back(packet);
    }

    /// The packet with this sequence number, if still held.
    pub fn get(&self, seq: u16) -> Option<&OutPacket> {
        // Sequence numbers are consecutive in the history, so the position is an offset from the oldest.
        let first = self.packets.front()?.seq;
        let offset = seq.wrapping_sub(first) as usize;
        self.packets.get(offset).filter(|p| p.seq == seq)
    }
}

/// Feedback a viewer sent about our stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// Retransmit these sequence numbers.
    Nack(Vec<u16>),
    /// Picture loss: send a keyframe.
    Pli,
}

/// Why an RTCP packet was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("RTCP packet shorter than its header or its length field")]
    Truncated,
    #[error("not RTCP version 2")]
    BadVersion,
}

/// Parses a compound RTCP packet and returns the feedback addressed to `media_ssrc`; other packets are skipped.
pub fn parse_feedback(mut data: &[u8], media_ssrc: u32) -> Result<Vec<Feedback>, RtcpError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        if data[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        let fmt = data[0] & 0x1f;
        let pt = data[1];
        let len = (usize::from(u16::from_be_bytes([data[2], data[3]])) + 1) * 4;
        if data.len() < len {
            return Err(RtcpError::Truncated);
        }
        let packet = &data[..len];
        data = &data[len..];
        // Transport- (205) and payload-specific (206) feedback: sender SSRC, media SSRC, then FCI.
        if !matches!(pt, 205 | 206) || packet.len() < 12 {
            continue;
        }
        if u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]) != media_ssrc {
            continue;
        }
        match (pt, fmt) {
            (205, 1) => {
                let mut seqs = Vec::new();
                for fci in packet[12..].chunks_exact(4) {
                    let pid = u16::from_be_bytes([fci[0], fci[1]]);
                    let blp = u16::from_be_bytes([fci[2], fci[3]]);
                    seqs.push(pid);
                    seqs.extend(
                        (0..16)
                            .filter(|i| blp & (1 << i) != 0)
                            .map(|i| pid.wrapping_add(i + 1)),
                    );
                }
                out.push(Feedback::Nack(seqs));
            }
            (206, 1) => out.push(Feedback::Pli),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16) -> OutPacket {
        OutPacket {
            seq,
            timestamp: 0,
            marker: false,
            payload: bytes::Bytes::from_static(&[0xaa]),
        }
    }

    #[test]
    fn history_keeps_the_last_packets_across_wrap() {
        let mut h = SendHistory::new(4);
        for s in 65533..=65535u16 {
            h.push(pkt(s));
        }
        for s in 0..3u16 {
            h.push(pkt(s));
        }
        assert!(h.get(65534).is_none(), "evicted");
        assert_eq!(h.get(65535).unwrap().seq, 65535);
        assert!(h.get(2).is_some());
        assert!(h.get(3).is_none(), "not sent yet");
    }

    #[test]
    fn parses_generic_nack_with_bitmask_and_pli() {
        let ssrc = 0x1122_3344u32;
        let mut nack = vec![0x81, 205, 0, 3, 0, 0, 0, 9];
        nack.extend_from_slice(&ssrc.to_be_bytes());
        nack.extend_from_slice(&[0xff, 0xfe, 0b0000_0000, 0b0000_0101]); // 65534, +1 → 65535, +3 → 1
        let mut pli = vec![0x81, 206, 0, 2, 0, 0, 0, 9];
        pli.extend_from_slice(&ssrc.to_be_bytes());
        let mut other_ssrc = vec![0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1];
        let mut compound = nack.clone();
        compound.append(&mut other_ssrc);
        compound.extend_from_slice(&pli);
        assert_eq!(
            parse_feedback(&compound, ssrc).unwrap(),
            vec![Feedback::Nack(vec![65534, 65535, 1]), Feedback::Pli]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(
            parse_feedback(&[0x81, 205, 0], 1),
            Err(RtcpError::Truncated)
        );
        assert_eq!(
            parse_feedback(&[0x81, 205, 0, 9, 0, 0, 0, 0], 1),
            Err(RtcpError::Truncated)
        );
        assert_eq!(
            parse_feedback(&[0x41, 205, 0, 0], 1),
            Err(RtcpError::BadVersion)
        );
        assert_eq!(parse_feedback(&[], 1), Ok(vec![]));
        // Arbitrary datagrams: the fuzz target `rtcp_feedback` (fuzz/).
    }
}
