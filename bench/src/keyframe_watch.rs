//! Complete keyframes in a stream of H.264 RTP packets, and the stamp each one carries, for both viewer kinds of
//! the live-rewind scenario (WSC-RTP over UDP, WebRTC tracks). An access unit runs to its marker bit; it is a
//! keyframe when one of its packets starts an SPS or IDR slice, complete when no sequence number is missing
//! within it. Its stamp is the [`testdata::stamp`] found in one of its packets: recorded keyframes carry their
//! wall-clock instant, live ones nothing.

use testdata::stamp;
use testdata::webrtc_viewer::payload_starts_keyframe;

#[derive(Debug, Default)]
pub struct KeyframeWatch {
    last_seq: Option<u16>,
    /// The access unit so far lost a packet (or began before the first one seen).
    broken: bool,
    key: bool,
    stamp: Option<u64>,
}

impl KeyframeWatch {
    /// Takes one packet; when it ends a complete keyframe, returns that keyframe's stamp (`Some(None)`: none).
    pub fn push(&mut self, seq: u16, marker: bool, payload: &[u8]) -> Option<Option<u64>> {
        if self.last_seq.is_some_and(|l| seq != l.wrapping_add(1)) {
            self.broken = true;
        }
        self.last_seq = Some(seq);
        self.key |= payload_starts_keyframe(payload);
        if self.stamp.is_none() {
            self.stamp = stamp::find_stamp(payload);
        }
        if !marker {
            return None;
        }
        let done = (!self.broken && self.key).then_some(self.stamp);
        (self.broken, self.key, self.stamp) = (false, false, None);
        done
    }
}

/// The RTP sequence number, marker bit and payload of a packet, if it is one.
pub fn parse_rtp(p: &[u8]) -> Option<(u16, bool, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let ext = p.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    Some((
        u16::from_be_bytes([p[2], p[3]]),
        p[1] & 0x80 != 0,
        p.get(start..)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_completes_at_its_marker_with_its_stamp() {
        let mut w = KeyframeWatch::default();
        let sei = stamp::sei_nal(1_795_000_000_123);
        assert_eq!(w.push(1, false, &[0x67, 1]), None); // SPS
        assert_eq!(w.push(2, false, &sei[4..]), None);
        assert_eq!(w.push(3, false, &[0x7c, 0x85, 9]), None); // FU-A start of an IDR slice
        assert_eq!(
            w.push(4, true, &[0x7c, 0x45, 9]),
            Some(Some(1_795_000_000_123))
        );
        assert_eq!(w.push(5, true, &[0x41, 1]), None, "a delta frame");
        assert_eq!(w.push(6, false, &[0x67, 1]), None);
        assert_eq!(w.push(7, true, &[0x65, 1]), Some(None), "unstamped");
    }

    #[test]
    fn a_keyframe_missing_a_packet_is_not_complete() {
        let mut w = KeyframeWatch::default();
        w.push(1, true, &[0x41]);
        w.push(2, false, &[0x7c, 0x85, 9]);
        assert_eq!(w.push(4, true, &[0x7c, 0x45, 9]), None);
        assert_eq!(w.push(5, true, &[0x65, 1]), Some(None));
    }

    #[test]
    fn rtp_header_fields() {
        let p = [0x80, 0x80 | 96, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0x65];
        assert_eq!(parse_rtp(&p), Some((0x1234, true, &[0x65][..])));
        assert_eq!(parse_rtp(&p[..5]), None);
    }
}
