//! Sans-IO return routability and consent for a WSC-RTP session's UDP path (WSC-RTP-PROTOCOL.md §3).
//!
//! Knowing the session token proves nothing about a source address: whoever opened the session knows it, and a
//! datagram's source can be forged. So every answer the server sends to an address carries a fresh random
//! nonce, and media goes to an address only after a proof from it echoes a nonce that was sent *to that
//! address*: only a host that receives there can know it. Consent, in the spirit of RFC 7675, is the same check
//! repeated: each keep-alive must echo a recent nonce, and media stops `consent_timeout` after the last one that
//! did, whatever the WebSocket does. A keep-alive never moves media; from any other address it only draws a
//! challenge, so a client behind a rebinding NAT moves with one more round trip.
//!
//! Answers are smaller than the datagrams that draw them and limited per second, so the port is no amplifier.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::datagram::{build_ack, token_eq, AckKind, Nonce, Proof, ProofKind, ACK_LEN};

/// Nonces remembered. A client echoes the newest one it got; older ones cover answers lost or reordered.
const NONCES_KEPT: usize = 8;

/// Limits of the check.
#[derive(Clone, Copy, Debug)]
pub struct PathOptions {
    /// Media stops this long after the last keep-alive or proof with a good echo from the media address.
    pub consent_timeout: Duration,
    /// Challenges sent per second at most, to all addresses together.
    pub challenges_per_second: u32,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            consent_timeout: Duration::from_secs(15),
            challenges_per_second: 20,
        }
    }
}

/// What to do with a proof or keep-alive whose token was right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send nothing (over the challenge limit).
    Ignore,
    /// Send this answer back to the datagram's source.
    Answer {
        ack: [u8; ACK_LEN],
        kind: AckKind,
        /// Media goes to the datagram's source from now on (the first proved address, or a new one).
        moved: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct SentNonce {
    to: SocketAddr,
    nonce: Nonce,
    at: Instant,
}

/// One session's UDP media address and the state of its checks.
pub struct UdpPath {
    opts: PathOptions,
    peer: Option<SocketAddr>,
    consent_until: Instant,
    sent: VecDeque<SentNonce>,
    rng: StdRng,
    challenge_window: Instant,
    challenges_in_window: u32,
}

impl UdpPath {
    /// `seed` comes from the caller's random source, so the path stays deterministic in tests.
    pub fn new(now: Instant, opts: PathOptions, seed: [u8; 32]) -> Self {
        UdpPath {
            opts,
            peer: None,
            consent_until: now,
            sent: VecDeque::with_capacity(NONCES_KEPT),
            rng: StdRng::from_seed(seed),
            challenge_window: now,
            challenges_in_window: 0,
        }
    }

    /// The address media goes to, once one has passed the check.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Judges a datagram from `from` that carried the session's token.
    pub fn on_proof(&mut self, now: Instant, from: SocketAddr, proof: &Proof) -> Verdict {
        let echoed = proof.echo.is_some_and(|e| self.was_sent(now, from, &e));
        let kind = match proof.kind {
            ProofKind::Proof if echoed => AckKind::Proof,
            ProofKind::KeepAlive if echoed && self.peer == Some(from) => AckKind::KeepAlive,
            _ => {
                if !self.may_challenge(now) {
                    return Verdict::Ignore;
                }
                AckKind::Challenge
            }
        };
        let moved = kind == AckKind::Proof && self.peer != Some(from);
        if kind != AckKind::Challenge {
            self.peer = Some(from);
            self.consent_until = now + self.opts.consent_timeout;
        }
        let nonce = self.remember(now, from);
        Verdict::Answer {
            ack: build_ack(kind, &nonce),
            kind,
            moved,
        }
    }

    /// When consent runs out, if media is flowing.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peer.map(|_| self.consent_until)
    }

    /// True once, when consent has just run out: media must stop.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.peer.is_some() && now >= self.consent_until {
            self.peer = None;
            return true;
        }
        false
    }

    fn was_sent(&self, now: Instant, from: SocketAddr, echo: &Nonce) -> bool {
        // Every entry is compared, in constant time each, so timing doesn't tell which one nearly matched.
        self.sent.iter().fold(false, |hit, s| {
            let fresh = now.saturating_duration_since(s.at) < self.opts.consent_timeout;
            hit | (token_eq(&s.nonce, echo) & (s.to == from) & fresh)
        })
    }

    fn remember(&mut self, now: Instant, to: SocketAddr) -> Nonce {
        let nonce: Nonce = self.rng.gen();
        if self.sent.len() == NONCES_KEPT {
            // Challenges to other addresses go first: a burst of them must not push out what the media address
            // needs to keep its consent.
            let peer = self.peer;
            let victim = self
                .sent
                .iter()
                .position(|s| Some(s.to) != peer)
                .unwrap_or(0);
            self.sent.remove(victim);
        }
        self.sent.push_back(SentNonce { to, nonce, at: now });
        nonce
    }

    fn may_challenge(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.challenge_window) >= Duration::from_secs(1) {
            self.challenge_window = now;
            self.challenges_in_window = 0;
        }
        if self.challenges_in_window >= self.opts.challenges_per_second {
            return false;
        }
        self.challenges_in_window += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wsc::datagram::{build_proof, parse_ack, parse_proof};

    const TOKEN: [u8; 16] = [7; 16];

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proof(kind: ProofKind, echo: Option<Nonce>) -> Proof {
        parse_proof(&build_proof(kind, &TOKEN, echo.as_ref())).unwrap()
    }

    fn answer(v: Verdict) -> (AckKind, Nonce, bool) {
        match v {
            Verdict::Answer { ack, kind, moved } => {
                let a = parse_ack(&ack).unwrap();
                assert_eq!(a.kind, kind);
                (kind, a.nonce, moved)
            }
            Verdict::Ignore => panic!("ignored"),
        }
    }

    /// The full handshake from `from`; returns the nonce of the final ack.
    fn prove(p: &mut UdpPath, t: Instant, from: SocketAddr) -> Nonce {
        let (kind, nonce, moved) = answer(p.on_proof(t, from, &proof(ProofKind::Proof, None)));
        assert_eq!((kind, moved), (AckKind::Challenge, false));
        let (kind, nonce, _) = answer(p.on_proof(t, from, &proof(ProofKind::Proof, Some(nonce))));
        assert_eq!(kind, AckKind::Proof);
        nonce
    }

    #[test]
    fn media_goes_only_where_the_challenge_was_received() {
        let t0 = Instant::now();
        let mut p = UdpPath::new(t0, PathOptions::default(), [1; 32]);
        let (kind, _, moved) =
            answer(p.on_proof(t0, addr("10.0.0.9:5000"), &proof(ProofKind::Proof, None)));
        assert_eq!((kind, moved, p.peer()), (AckKind::Challenge, false, None));
        // A guessed or replayed echo gets another challenge, never media.
        let (kind, ..) = answer(p.on_proof(
            t0,
            addr("10.0.0.9:5000"),
            &proof(ProofKind::Proof, Some([1; 16])),
        ));
        assert_eq!((kind, p.peer()), (AckKind::Challenge, None));
        let n = prove(&mut p, t0, addr("10.0.0.1:4000"));
        assert_eq!(p.peer(), Some(addr("10.0.0.1:4000")));
        assert_ne!(n, [0; 16]);
    }

    #[test]
    fn a_nonce_sent_to_one_address_proves_nothing_for_another() {
        let t0 = Instant::now();
        let mut p = UdpPath::new(t0, PathOptions::default(), [2; 32]);
        let mine = addr("10.0.0.1:4000");
        let victim = addr("10.0.0.2:4000");
        let n = prove(&mut p, t0, mine);
        // The session's owner echoes its own nonce from a forged source: the victim gets a challenge at most.
        let (kind, _, moved) = answer(p.on_proof(t0, victim, &proof(ProofKind::Proof, Some(n))));
        assert_eq!(
            (kind, moved, p.peer()),
            (AckKind::Challenge, false, Some(mine))
        );
        let (kind, ..) = answer(p.on_proof(t0, victim, &proof(ProofKind::KeepAlive, Some(n))));
        assert_eq!((kind, p.peer()), (AckKind::Challenge, Some(mine)));
    }

    #[test]
    fn keepalives_keep_consent_and_never_move_media() {
        let t0 = Instant::now();
        let opts = PathOptions::default();
        let mut p = UdpPath::new(t0, opts, [3; 32]);
        let a = addr("10.0.0.1:4000");
        let mut n = prove(&mut p, t0, a);
        let mut t = t0;
        for _ in 0..10 {
            t += Duration::from_secs(5);
            assert!(!p.handle_timeout(t));
            let (kind, next, moved) =
                answer(p.on_proof(t, a, &proof(ProofKind::KeepAlive, Some(n))));
            assert_eq!((kind, moved), (AckKind::KeepAlive, false));
            n = next;
        }
        // A NAT rebinding: the keep-alive from the new address is challenged; a proof echoing that moves media.
        let b = addr("10.0.0.1:4001");
        let (kind, c, moved) = answer(p.on_proof(t, b, &proof(ProofKind::KeepAlive, Some(n))));
        assert_eq!(
            (kind, moved, p.peer()),
            (AckKind::Challenge, false, Some(a))
        );
        let (kind, _, moved) = answer(p.on_proof(t, b, &proof(ProofKind::Proof, Some(c))));
        assert_eq!((kind, moved, p.peer()), (AckKind::Proof, true, Some(b)));
    }

    #[test]
    fn consent_runs_out_without_a_good_echo() {
        let t0 = Instant::now();
        let opts = PathOptions::default();
        let mut p = UdpPath::new(t0, opts, [4; 32]);
        let a = addr("10.0.0.1:4000");
        prove(&mut p, t0, a);
        // Someone who knows the token but sees none of the answers keeps sending keep-alives from the address.
        let mut t = t0;
        while t < t0 + Duration::from_secs(14) {
            t += Duration::from_secs(1);
            p.on_proof(t, a, &proof(ProofKind::KeepAlive, Some([9; 16])));
            assert!(!p.handle_timeout(t));
        }
        assert_eq!(p.poll_timeout(), Some(t0 + opts.consent_timeout));
        assert!(p.handle_timeout(t0 + opts.consent_timeout));
        assert_eq!(p.peer(), None);
        assert!(!p.handle_timeout(t0 + opts.consent_timeout), "said once");
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn an_old_nonce_goes_stale() {
        let t0 = Instant::now();
        let opts = PathOptions::default();
        let mut p = UdpPath::new(t0, opts, [5; 32]);
        let a = addr("10.0.0.1:4000");
        let n = prove(&mut p, t0, a);
        let late = t0 + opts.consent_timeout;
        let (kind, ..) = answer(p.on_proof(late, a, &proof(ProofKind::Proof, Some(n))));
        assert_eq!(kind, AckKind::Challenge);
    }

    #[test]
    fn challenges_are_limited_and_cannot_evict_the_peers_nonces() {
        let t0 = Instant::now();
        let mut p = UdpPath::new(t0, PathOptions::default(), [6; 32]);
        let a = addr("10.0.0.1:4000");
        let n = prove(&mut p, t0, a);
        let t1 = t0 + Duration::from_secs(2);
        let answered = (0..100u16)
            .filter(|i| {
                let forged = SocketAddr::from(([10, 0, 1, (i % 250) as u8], 1000 + i));
                p.on_proof(t1, forged, &proof(ProofKind::Proof, None)) != Verdict::Ignore
            })
            .count();
        assert_eq!(answered, 20);
        let (kind, ..) = answer(p.on_proof(t1, a, &proof(ProofKind::KeepAlive, Some(n))));
        assert_eq!(kind, AckKind::KeepAlive);
    }
}
