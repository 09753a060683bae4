//! Sans-IO reorder buffer with loss detection: RTP packets in (any order, duplicates, retransmissions), packets
//! out in sequence order; gaps become NACK requests, retried a few times, then given up as lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long a gap is waited for before it counts as lost.
pub const MAX_WAIT: Duration = Duration::from_millis(400);
/// Interval between NACKs for the same packet, and how many are sent.
pub const NACK_INTERVAL: Duration = Duration::from_millis(60);
pub const NACK_TRIES: u8 = 4;
/// Gaps larger than this are not repaired (a new stream, or a long outage).
const MAX_GAP: u16 = 1000;

#[derive(Debug)]
struct Missing {
    since: Instant,
    nacked_at: Option<Instant>,
    tries: u8,
}

/// What comes out, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    Packet(Bytes),
    /// Packets given up on just before the next released one.
    Lost(u16),
}

#[derive(Debug, Default)]
pub struct Reorder {
    expected: Option<u16>,
    pending: HashMap<u16, Bytes>,
    missing: HashMap<u16, Missing>,
    /// Packets that arrived after having been NACKed.
    pub repaired: u64,
    pub lost: u64,
    pub duplicates: u64,
}

impl Reorder {
    /// Takes one RTP packet (header included) received at `now`; releases what became in order into `out`.
    pub fn push(&mut self, packet: Bytes, now: Instant, out: &mut Vec<Released>) {
        if packet.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let expected = *self.expected.get_or_insert(seq);
        let ahead = seq.wrapping_sub(expected);
        if ahead >= 0x8000 || self.pending.contains_key(&seq) {
            self.duplicates += 1;
            return;
        }
        if ahead > MAX_GAP {
            // Too far ahead to be a gap worth repairing: restart the sequence here.
            out.push(Released::Lost(ahead));
            self.lost += u64::from(ahead);
            self.pending.clear();
            self.missing.clear();
            self.expected = Some(seq);
        } else {
            let newest = self
                .pending
                .keys()
                .map(|s| s.wrapping_sub(expected))
                .max()
                .unwrap_or(0);
            for d in newest..ahead {
                let s = expected.wrapping_add(d);
                if !self.pending.contains_key(&s) {
                    self.missing.entry(s).or_insert(Missing {
                        since: now,
                        nacked_at: None,
                        tries: 0,
                    });
                }
            }
        }
        if let Some(m) = self.missing.remove(&seq) {
            if m.nacked_at.is_some() {
                self.repaired += 1;
            }
        }
        self.pending.insert(seq, packet);
        self.release(out);
    }

    fn release(&mut self, out: &mut Vec<Released>) {
        while let Some(e) = self.expected {
            match self.pending.remove(&e) {
                Some(p) => {
                    out.push(Released::Packet(p));
                    self.expected = Some(e.wrapping_add(1));
                }
                None => break,
            }
        }
    }

    /// Sequence numbers to NACK now.
    pub fn nacks(&mut self, now: Instant) -> Vec<u16> {
        let mut seqs = Vec::new();
        for (s, m) in &mut self.missing {
            let due = m
                .nacked_at
                .is_none_or(|t| now.saturating_duration_since(t) >= NACK_INTERVAL);
            if due && m.tries < NACK_TRIES {
                m.nacked_at = Some(now);
                m.tries += 1;
                seqs.push(*s);
            }
        }
        seqs.sort_unstable();
        seqs
    }

    /// Gives up on gaps older than [`MAX_WAIT`], releasing what waited behind them.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Released>) {
        while let Some(e) = self.expected {
            let Some(m) = self.missing.get(&e) else { break };
            if now.saturating_duration_since(m.since) < MAX_WAIT {
                break;
            }
            self.missing.remove(&e);
            self.lost += 1;
            out.push(Released::Lost(1));
            self.expected = Some(e.wrapping_add(1));
            self.release(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16) -> Bytes {
        let mut p = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        Bytes::from(p)
    }

    fn seqs(out: &[Released]) -> Vec<i32> {
        out.iter()
            .map(|r| match r {
                Released::Packet(p) => i32::from(u16::from_be_bytes([p[2], p[3]])),
                Released::Lost(n) => -i32::from(*n),
            })
            .collect()
    }

    #[test]
    fn reorders_nacks_and_counts_repairs_across_wrap() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(pkt(65534), t0, &mut out);
        r.push(pkt(1), t0, &mut out); // 65535 and 0 missing
        assert_eq!(seqs(&out), vec![65534]);
        assert_eq!(r.nacks(t0), vec![0, 65535]);
        assert!(
            r.nacks(t0 + Duration::from_millis(10)).is_empty(),
            "not again so soon"
        );
        r.push(pkt(65535), t0, &mut out);
        r.push(pkt(0), t0, &mut out);
        assert_eq!(seqs(&out), vec![65534, 65535, 0, 1]);
        assert_eq!(r.repaired, 2);
        r.push(pkt(0), t0, &mut out);
        assert_eq!(r.duplicates, 1);
    }

    #[test]
    fn gives_up_after_the_wait_and_moves_on() {
        let t0 = Instant::now();
        let mut r = Reorder::default();
        let mut out = Vec::new();
        r.push(pkt(10), t0, &mut out);
        r.push(pkt(12), t0, &mut out);
        r.expire(t0 + Duration::from_millis(100), &mut out);
        assert_eq!(seqs(&out), vec![10]);
        r.expire(t0 + MAX_WAIT, &mut out);
        assert_eq!(seqs(&out), vec![10, -1, 12]);
        assert_eq!(r.lost, 1);
    }
}
