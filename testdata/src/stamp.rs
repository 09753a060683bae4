//! Send-time stamps carried inside H.264 access units, for measuring latency end to end: the fixture can prepend
//! an SEI `user_data_unregistered` NAL holding CLOCK_MONOTONIC at the moment the encoder produced the frame, and a
//! receiver anywhere on the same machine finds it in what it received (RTP payloads or a depacketized frame).
//!
//! The time is written as 20 ASCII digits, so the payload never holds the zero bytes that would make an encoder
//! insert emulation-prevention bytes: the stamp reads back byte for byte from any packet that carries it whole.

/// Identifies the stamp among other user data.
pub const STAMP_UUID: [u8; 16] = *b"gateway-bench-ts";
const DIGITS: usize = 20;

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An Annex B SEI NAL (start code included) stamping `ns`.
pub fn sei_nal(ns: u64) -> Vec<u8> {
    let payload_len = STAMP_UUID.len() + DIGITS;
    let mut nal = vec![0, 0, 0, 1, 0x06, 0x05, payload_len as u8];
    nal.extend_from_slice(&STAMP_UUID);
    nal.extend_from_slice(format!("{ns:020}").as_bytes());
    nal.push(0x80); // rbsp trailing bits
    nal
}

/// The stamp in `bytes`, if it holds one whole.
pub fn find_stamp(bytes: &[u8]) -> Option<u64> {
    let at = bytes
        .windows(STAMP_UUID.len())
        .position(|w| w == STAMP_UUID)?;
    let digits = bytes.get(at + STAMP_UUID.len()..at + STAMP_UUID.len() + DIGITS)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_from_inside_other_bytes() {
        let mut au = vec![0x65, 1, 2, 3];
        au.splice(0..0, sei_nal(123_456_789));
        assert_eq!(find_stamp(&au), Some(123_456_789));
        assert!(!sei_nal(u64::MAX)[4..].windows(2).any(|w| w == [0, 0]));
        assert_eq!(find_stamp(&au[..20]), None, "cut short");
    }
}
