//! The RTP fixed header (RFC 3550 §5.1), the only per-viewer work on the media path; publishers write it in front
//! of the hub's shared payloads.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! ```

/// Writes a version-2 header without padding, extension or CSRCs. `payload_type` keeps its low 7 bits.
pub fn rtp_header(
    buf: &mut [u8; 12],
    payload_type: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
) {
    buf[0] = 0x80;
    buf[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let mut h = [0u8; 12];
        rtp_header(&mut h, 96, true, 0x1234, 0xdead_beef, 0x0102_0304);
        assert_eq!(
            h,
            [
                0x80,
                0x80 | 96,
                0x12,
                0x34,
                0xde,
                0xad,
                0xbe,
                0xef,
                1,
                2,
                3,
                4
            ]
        );
        rtp_header(&mut h, 200, false, 0, 0, 0);
        assert_eq!(h[1], 200 & 0x7f, "payload type is 7 bits");
    }

    #[test]
    fn fields_read_back() {
        let mut h = [0xffu8; 12];
        rtp_header(&mut h, 97, false, 65535, 90_000, 0xcafe_f00d);
        assert_eq!(h[0] >> 6, 2, "version 2");
        assert_eq!(h[0] & 0x3f, 0, "no padding, extension or CSRCs");
        assert_eq!(h[1] >> 7, 0, "marker clear");
        assert_eq!(h[1] & 0x7f, 97);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]), 65535);
        assert_eq!(u32::from_be_bytes([h[4], h[5], h[6], h[7]]), 90_000);
        assert_eq!(u32::from_be_bytes([h[8], h[9], h[10], h[11]]), 0xcafe_f00d);
    }
}
