//! Sans-IO depacketizer for the client: in-order RTP packets in, Annex-B access units out. H.264 per RFC 6184
//! (single NAL, STAP-A, FU-A), H.265 per RFC 7798 (single NAL, AP, FU). An access unit ends at the marker bit.
//! After a loss, everything up to the next keyframe is dropped, so the output file always decodes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

/// One complete picture.
#[derive(Debug)]
pub struct AccessUnit {
    pub annex_b: Vec<u8>,
    pub is_keyframe: bool,
    pub rtp_timestamp: u32,
}

#[derive(Debug)]
pub struct Depacketizer {
    codec: Codec,
    nals: Vec<Vec<u8>>,
    fragment: Option<Vec<u8>>,
    broken: bool,
    synced: bool,
    pub frames: u64,
    pub dropped_frames: u64,
}

impl Depacketizer {
    pub fn new(codec: Codec) -> Self {
        Depacketizer {
            codec,
            nals: Vec::new(),
            fragment: None,
            broken: false,
            synced: false,
            frames: 0,
            dropped_frames: 0,
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Packets were lost before the next one: the current picture and its successors up to a keyframe go.
    pub fn loss(&mut self) {
        self.broken = true;
        self.synced = false;
        self.fragment = None;
    }

    /// Takes one in-order RTP packet; returns a picture when the packet completes one.
    pub fn push(&mut self, packet: &[u8]) -> Option<AccessUnit> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return None;
        }
        let cc = usize::from(packet[0] & 0x0f);
        let mut start = 12 + 4 * cc;
        if packet[0] & 0x10 != 0 && packet.len() >= start + 4 {
            start +=
                4 + 4 * usize::from(u16::from_be_bytes([packet[start + 2], packet[start + 3]]));
        }
        let marker = packet[1] & 0x80 != 0;
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if let Some(payload) = packet.get(start..).filter(|p| !p.is_empty()) {
            if self.parse(payload).is_err() {
                self.broken = true;
            }
        }
        if !marker {
            return None;
        }
        let nals = std::mem::take(&mut self.nals);
        let broken = std::mem::replace(&mut self.broken, false) || self.fragment.take().is_some();
        let is_keyframe = nals.iter().any(|n| self.is_keyframe_nal(n));
        if broken || nals.is_empty() {
            self.dropped_frames += 1;
            self.synced = false;
            return None;
        }
        if !self.synced && !is_keyframe {
            self.dropped_frames += 1;
            return None;
        }
        self.synced = true;
        self.frames += 1;
        let mut annex_b = Vec::new();
        for n in nals {
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(&n);
        }
        Some(AccessUnit {
            annex_b,
            is_keyframe,
            rtp_timestamp: ts,
        })
    }

    fn is_keyframe_nal(&self, n: &[u8]) -> bool {
        match self.codec {
            Codec::H264 => n.first().is_some_and(|b| b & 0x1f == 5),
            Codec::H265 => n
                .first()
                .is_some_and(|b| (16..=21).contains(&((b >> 1) & 0x3f))),
        }
    }

    fn parse(&mut self, p: &[u8]) -> Result<(), ()> {
        match self.codec {
            Codec::H264 => match p[0] & 0x1f {
                1..=23 => self.nals.push(p.to_vec()),
                24 => self.aggregate(&p[1..])?,
                28 => {
                    let h = *p.get(1).ok_or(())?;
                    self.fragment_part(
                        h & 0x80 != 0,
                        h & 0x40 != 0,
                        &[(p[0] & 0xe0) | (h & 0x1f)],
                        &p[2..],
                    )?;
                }
                _ => return Err(()),
            },
            Codec::H265 => {
                if p.len() < 2 {
                    return Err(());
                }
                match (p[0] >> 1) & 0x3f {
                    0..=47 => self.nals.push(p.to_vec()),
                    48 => self.aggregate(&p[2..])?,
                    49 => {
                        let h = *p.get(2).ok_or(())?;
                        let header = [(p[0] & 0x81) | ((h & 0x3f) << 1), p[1]];
                        self.fragment_part(h & 0x80 != 0, h & 0x40 != 0, &header, &p[3..])?;
                    }
                    _ => return Err(()),
                }
            }
        }
        Ok(())
    }

    fn aggregate(&mut self, mut rest: &[u8]) -> Result<(), ()> {
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            // A unit of size 0 would become an empty NAL unit in the output (RFC 6184 §5.7.1: a size counts the
            // NAL unit's header byte, so it is at least 1).
            let nal = rest.get(2..2 + len).filter(|n| !n.is_empty()).ok_or(())?;
            self.nals.push(nal.to_vec());
            rest = &rest[2 + len..];
        }
        Ok(())
    }

    fn fragment_part(
        &mut self,
        start: bool,
        end: bool,
        header: &[u8],
        body: &[u8],
    ) -> Result<(), ()> {
        if start {
            let mut nal = header.to_vec();
            nal.extend_from_slice(body);
            self.fragment = Some(nal);
        } else {
            self.fragment.as_mut().ok_or(())?.extend_from_slice(body);
        }
        if end {
            let nal = self.fragment.take().ok_or(())?;
            self.nals.push(nal);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn h264_fu_a_and_single_nal_units_make_an_access_unit() {
        let mut d = Depacketizer::new(Codec::H264);
        assert!(d.push(&rtp(0, false, &[0x67, 1])).is_none());
        assert!(d.push(&rtp(1, false, &[0x7c, 0x85, 0xaa])).is_none()); // FU-A start, IDR, NRI 3
        let au = d.push(&rtp(2, true, &[0x7c, 0x45, 0xbb])).unwrap();
        assert!(au.is_keyframe);
        assert_eq!(
            au.annex_b,
            vec![0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65, 0xaa, 0xbb]
        );
    }

    #[test]
    fn loss_drops_until_the_next_keyframe() {
        let mut d = Depacketizer::new(Codec::H264);
        assert!(d.push(&rtp(0, true, &[0x65, 1])).is_some());
        d.loss();
        assert!(d.push(&rtp(2, true, &[0x41, 1])).is_none());
        assert!(d.push(&rtp(3, true, &[0x41, 2])).is_none());
        assert!(d.push(&rtp(4, true, &[0x65, 3])).is_some());
        assert_eq!((d.frames, d.dropped_frames), (2, 2));
    }

    #[test]
    fn malformed_payloads_drop_their_picture_and_wait_for_a_keyframe() {
        let cases: [(Codec, &[u8], &str); 10] = [
            // Found by the `depacketize` fuzz target: an empty NAL unit in the output.
            (
                Codec::H264,
                &[0x18, 0x00, 0x02, 0x41, 0x01, 0x00, 0x00],
                "STAP-A unit of size 0",
            ),
            (
                Codec::H265,
                &[0x60, 0x01, 0x00, 0x03, 0x02, 0x01, 0x01, 0x00, 0x00],
                "AP unit of size 0",
            ),
            (
                Codec::H264,
                &[0x78, 0x00, 0x09, 0x65],
                "STAP-A unit past the packet",
            ),
            (Codec::H264, &[0x7c], "FU-A without its FU header"),
            (Codec::H264, &[0x7c, 0x45, 0xbb], "FU-A end without a start"),
            (
                Codec::H264,
                &[0x7c, 0x85, 0xaa],
                "FU-A start without an end",
            ),
            (Codec::H264, &[0x1f, 1], "type 31: no RTP payload structure"),
            (Codec::H265, &[0x26], "one byte: no payload header"),
            (Codec::H265, &[0x62, 0x01], "FU without its FU header"),
            (
                Codec::H265,
                &[0x7e, 0x01, 1],
                "type 63: no RTP payload structure",
            ),
        ];
        for (codec, payload, what) in cases {
            let (key, delta): (&[u8], &[u8]) = match codec {
                Codec::H264 => (&[0x65, 1], &[0x41, 1]),
                Codec::H265 => (&[0x26, 1, 1], &[0x02, 1, 1]),
            };
            let mut d = Depacketizer::new(codec);
            assert!(d.push(&rtp(0, true, key)).is_some(), "{what}");
            assert!(d.push(&rtp(1, true, payload)).is_none(), "{what}");
            assert!(
                d.push(&rtp(2, true, delta)).is_none(),
                "{what}: no picture until a keyframe"
            );
            assert!(d.push(&rtp(3, true, key)).is_some(), "{what}");
            assert_eq!((d.frames, d.dropped_frames), (2, 2), "{what}");
        }
        // Not RTP at all: ignored, counted nowhere. Arbitrary packet sequences: the fuzz target `depacketize`.
        let mut d = Depacketizer::new(Codec::H264);
        assert!(d.push(&[0x80, 0x80 | 96, 0, 1]).is_none());
        assert!(d.push(&[0x40; 20]).is_none());
        assert_eq!((d.frames, d.dropped_frames), (0, 0));
    }
}
