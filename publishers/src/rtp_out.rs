//! Sans-IO per-viewer RTP output: turns hub frames into complete RTP packets for one viewer, with one SSRC and
//! sequence numbers and timestamps that stay continuous across every input switch.
//!
//! A viewer's input can change (camera reconnect, fail-over, live ↔ DVR): each change is an explicit
//! discontinuity. After one, output resumes only at a keyframe (the hub sends parameter sets before every
//! keyframe), the sequence number continues at +1, and the timestamp continues from the last one sent plus one
//! frame interval, so the client's decoder and jitter buffer never see a jump (RFC 3550 §5.1 allows any
//! timestamp progression; players punish jumps).

use bytes::{BufMut, Bytes, BytesMut};
use hub::{rtp_header, HubFrame};

/// Frame interval assumed when none has been seen yet (90 kHz ticks at 30 fps).
const DEFAULT_FRAME_TICKS: u32 = 3000;

/// Per-viewer RTP state.
#[derive(Debug)]
pub struct RtpOutput {
    ssrc: u32,
    payload_type: u8,
    next_seq: u16,
    /// Last timestamp sent and the input pts it came from.
    last: Option<(u32, i64)>,
    frame_ticks: u32,
    /// Set by [`RtpOutput::discontinuity`] and at start: wait for a keyframe, rebase the timestamp.
    awaiting_keyframe: bool,
    rebase: bool,
}

impl RtpOutput {
    /// `initial_seq` and `ssrc` should be random per session (RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8, initial_seq: u16) -> Self {
        RtpOutput {
            ssrc,
            payload_type,
            next_seq: initial_seq,
            last: None,
            frame_ticks: DEFAULT_FRAME_TICKS,
            awaiting_keyframe: true,
            rebase: true,
        }
    }

    /// The input is about to change: the next frame written must be a keyframe and starts a new time base.
    pub fn discontinuity(&mut self) {
        self.awaiting_keyframe = true;
        self.rebase = true;
    }

    /// Appends one frame's packets to `out`: the header fields of each over the payload the hub shares with
    /// every viewer, never copied. Returns false, writing nothing, for a frame that can't be decoded here (a
    /// non-keyframe after a discontinuity).
    pub fn write_frame(&mut self, frame: &HubFrame, out: &mut Vec<OutPacket>) -> bool {
        let Some(timestamp) = self.next_timestamp(frame) else {
            return false;
        };
        for p in &frame.packets {
            out.push(OutPacket {
                seq: self.next_seq,
                timestamp,
                marker: p.marker,
                payload: p.payload.clone(),
            });
            self.next_seq = self.next_seq.wrapping_add(1);
        }
        true
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The RTP timestamp of `frame`, or `None` if it can't be sent (a non-keyframe after a discontinuity).
    fn next_timestamp(&mut self, frame: &HubFrame) -> Option<u32> {
        if self.awaiting_keyframe && !frame.frame.is_keyframe {
            return None;
        }
        self.awaiting_keyframe = false;
        let pts = frame.frame.pts_90k;
        let ts = match self.last {
            None => 0,
            Some((last_ts, _)) if self.rebase => last_ts.wrapping_add(self.frame_ticks),
            Some((last_ts, last_pts)) => {
                let delta = pts.saturating_sub(last_pts);
                // Remember a plausible frame interval (up to 1 s) for the next rebase.
                if (1..=90_000).contains(&delta) {
                    self.frame_ticks = delta as u32;
                }
                last_ts.wrapping_add(delta.clamp(0, i64::from(u32::MAX)) as u32)
            }
        };
        self.rebase = false;
        self.last = Some((ts, pts));
        Some(ts)
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
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use hub::RtpPayload;
    use sources::{Codec, Frame, ParameterSets};

    use super::*;

    fn hf(key: bool, pts: i64, packets: usize) -> HubFrame {
        HubFrame {
            frame: Frame {
                codec: Codec::H264,
                data: Bytes::new(),
                pts_90k: pts,
                wall_ms: pts / 90,
                is_keyframe: key,
                params: Arc::new(ParameterSets {
                    codec: Codec::H264,
                    vps: None,
                    sps: Bytes::from_static(&[0x67]),
                    pps: Bytes::from_static(&[0x68]),
                    width: 1,
                    height: 1,
                    rfc6381_codec: None,
                }),
                is_slate: false,
            },
            packets: (0..packets)
                .map(|i| RtpPayload {
                    payload: Bytes::from(vec![0x41, i as u8]),
                    marker: i + 1 == packets,
                })
                .collect(),
            index: 0,
        }
    }

    /// Writes `frames` and returns the serialized packets.
    fn write_all(o: &mut RtpOutput, frames: &[HubFrame]) -> (Vec<bool>, Vec<Bytes>) {
        let mut parts = Vec::new();
        let written = frames
            .iter()
            .map(|f| o.write_frame(f, &mut parts))
            .collect();
        let bytes = parts
            .iter()
            .map(|p| p.to_bytes(o.payload_type(), o.ssrc()))
            .collect();
        (written, bytes)
    }

    fn seq(p: &Bytes) -> u16 {
        u16::from_be_bytes([p[2], p[3]])
    }
    fn ts(p: &Bytes) -> u32 {
        u32::from_be_bytes([p[4], p[5], p[6], p[7]])
    }

    #[test]
    fn starts_at_a_keyframe_with_continuous_sequence() {
        let mut o = RtpOutput::new(7, 96, 65534);
        let (written, out) = write_all(
            &mut o,
            &[hf(false, 0, 2), hf(true, 3000, 3), hf(false, 6000, 2)],
        );
        assert_eq!(
            written,
            vec![false, true, true],
            "no start on a delta frame"
        );
        let seqs: Vec<u16> = out.iter().map(seq).collect();
        assert_eq!(seqs, vec![65534, 65535, 0, 1, 2]);
        assert_eq!(ts(&out[0]), 0);
        assert_eq!(ts(&out[3]), 3000);
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
    fn a_switch_resumes_at_a_keyframe_one_frame_later() {
        let mut o = RtpOutput::new(1, 96, 100);
        let (_, mut out) = write_all(&mut o, &[hf(true, 0, 1), hf(false, 3600, 1)]); // 25 fps
        o.discontinuity();
        // The new input's clock is unrelated (a DVR file, another camera).
        let (written, after) = write_all(
            &mut o,
            &[
                hf(false, 9_000_000, 1),
                hf(true, 9_003_600, 1),
                hf(false, 9_007_200, 1),
            ],
        );
        assert_eq!(written, vec![false, true, true]);
        out.extend(after);
        let got: Vec<(u16, u32)> = out.iter().map(|p| (seq(p), ts(p))).collect();
        assert_eq!(got, vec![(100, 0), (101, 3600), (102, 7200), (103, 10_800)]);
    }

    #[test]
    fn packets_share_the_hub_payload() {
        let frame = hf(true, 0, 2);
        let mut parts = Vec::new();
        RtpOutput::new(9, 102, 500).write_frame(&frame, &mut parts);
        assert_eq!(parts[0].payload.as_ptr(), frame.packets[0].payload.as_ptr());
    }
}
