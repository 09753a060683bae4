//! WSC-RTP UDP control datagrams (WSC-RTP-PROTOCOL.md §3), version 3: the client's proof and keep-alive carrying
//! the session token and the last nonce the server sent it, and the server's answers (a challenge, or an ack of
//! a proof or a keep-alive), each with a fresh nonce. Their first byte, 'W' (0x57), has RTP version bits 01, so
//! they share the port with RTP and RTCP without ambiguity.
//!
//! The nonces are the return-routability check: only a host that receives what the server sends to an address
//! can echo them from it, so a forged source address never gets media (see `path`).

/// Length of a proof or keep-alive datagram.
pub const PROOF_LEN: usize = 40;
/// Length of a server answer (challenge or ack).
pub const ACK_LEN: usize = 24;
/// Datagram format version: the protocol version that introduced this layout.
pub const VERSION: u8 = 3;
/// Length of a nonce.
pub const NONCE_LEN: usize = 16;

/// A server nonce, echoed by the client.
pub type Nonce = [u8; NONCE_LEN];

const PROOF_MAGIC: &[u8; 4] = b"WSCP";
const ACK_MAGIC: &[u8; 4] = b"WSCA";
/// Echo of a client that has no nonce yet.
const NO_NONCE: Nonce = [0; NONCE_LEN];

/// What a client datagram asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofKind {
    /// Media goes to this source address, once its echo shows it receives what the server sends there.
    Proof = 1,
    /// Consent to keep receiving at the current media address. Never moves media.
    KeepAlive = 2,
}

/// A well-formed proof or keep-alive (neither the token nor the echo is checked here).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Proof {
    pub kind: ProofKind,
    pub token: [u8; 16],
    /// The nonce echoed from the server's last answer to this address; `None` on first contact.
    pub echo: Option<Nonce>,
}

impl std::fmt::Debug for Proof {
    // The token lets anyone holding it steer the session's media: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proof")
            .field("kind", &self.kind)
            .field("echo", &self.echo.is_some())
            .finish_non_exhaustive()
    }
}

/// What a server answer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// The proof's echo was right: media goes to this address now.
    Proof = 1,
    /// The keep-alive's echo was right: consent runs on.
    KeepAlive = 2,
    /// Echo this nonce in a proof from the same socket to get media (or to keep it).
    Challenge = 3,
}

/// A well-formed server answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub kind: AckKind,
    pub nonce: Nonce,
}

/// True if the datagram claims to be a WSC control datagram (so it is not RTP/RTCP).
pub fn is_control(data: &[u8]) -> bool {
    data.first() == Some(&b'W')
}

/// Parses a proof or keep-alive; `None` for anything malformed, including the older 24-byte layout.
pub fn parse_proof(data: &[u8]) -> Option<Proof> {
    if data.len() != PROOF_LEN
        || &data[..4] != PROOF_MAGIC
        || data[4] != VERSION
        || data[6..8] != [0, 0]
    {
        return None;
    }
    let kind = match data[5] {
        1 => ProofKind::Proof,
        2 => ProofKind::KeepAlive,
        _ => return None,
    };
    let token = data[8..24].try_into().ok()?;
    let echo: Nonce = data[24..40].try_into().ok()?;
    Some(Proof {
        kind,
        token,
        echo: (echo != NO_NONCE).then_some(echo),
    })
}

/// Builds a proof or keep-alive (clients and tests).
pub fn build_proof(kind: ProofKind, token: &[u8; 16], echo: Option<&Nonce>) -> [u8; PROOF_LEN] {
    let mut d = [0u8; PROOF_LEN];
    d[..4].copy_from_slice(PROOF_MAGIC);
    d[4] = VERSION;
    d[5] = kind as u8;
    d[8..24].copy_from_slice(token);
    d[24..].copy_from_slice(echo.unwrap_or(&NO_NONCE));
    d
}

/// Builds a server answer.
pub fn build_ack(kind: AckKind, nonce: &Nonce) -> [u8; ACK_LEN] {
    let mut d = [0u8; ACK_LEN];
    d[..4].copy_from_slice(ACK_MAGIC);
    d[4] = VERSION;
    d[5] = kind as u8;
    d[8..].copy_from_slice(nonce);
    d
}

/// Parses a server answer (clients and tests).
pub fn parse_ack(data: &[u8]) -> Option<Ack> {
    if data.len() != ACK_LEN || &data[..4] != ACK_MAGIC || data[4] != VERSION {
        return None;
    }
    let kind = match data[5] {
        1 => AckKind::Proof,
        2 => AckKind::KeepAlive,
        3 => AckKind::Challenge,
        _ => return None,
    };
    Some(Ack {
        kind,
        nonce: data[8..24].try_into().ok()?,
    })
}

/// The token as `init` carries it: 32 lower-case hex characters.
pub fn token_to_hex(token: &[u8; 16]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a token from its `init` form; `None` unless it is exactly 32 hex characters.
pub fn token_from_hex(hex: &str) -> Option<[u8; 16]> {
    // Hex digits only: `from_str_radix` alone would also take a sign ("+f").
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut token = [0u8; 16];
    for (i, b) in token.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(token)
}

/// Compares secrets in constant time, so timing tells an attacker nothing about how much of a guess was right.
pub fn token_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_round_trip_and_layout() {
        let token = [7u8; 16];
        let d = build_proof(ProofKind::Proof, &token, None);
        assert_eq!(&d[..8], &[0x57, 0x53, 0x43, 0x50, 3, 1, 0, 0]);
        assert_eq!(&d[24..], &[0; 16]);
        let p = parse_proof(&d).unwrap();
        assert_eq!((p.kind, p.token, p.echo), (ProofKind::Proof, token, None));
        assert!(is_control(&d));
        let echoed =
            parse_proof(&build_proof(ProofKind::KeepAlive, &token, Some(&[9; 16]))).unwrap();
        assert_eq!(
            (echoed.kind, echoed.echo),
            (ProofKind::KeepAlive, Some([9; 16]))
        );
    }

    #[test]
    fn ack_round_trip_and_layout() {
        let a = build_ack(AckKind::Challenge, &[5; 16]);
        assert_eq!(&a[..8], &[0x57, 0x53, 0x43, 0x41, 3, 3, 0, 0]);
        assert_eq!(
            parse_ack(&a),
            Some(Ack {
                kind: AckKind::Challenge,
                nonce: [5; 16]
            })
        );
        // An answer is smaller than the datagram that draws it: the port amplifies nothing.
        const { assert!(ACK_LEN < PROOF_LEN) };
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let good = build_proof(ProofKind::KeepAlive, &[1; 16], Some(&[2; 16]));
        assert!(parse_proof(&good[..39]).is_none());
        for (i, v) in [(0, b'X'), (4, 1), (5, 9), (6, 1)] {
            let mut bad = good;
            bad[i] = v;
            assert!(parse_proof(&bad).is_none(), "byte {i}");
        }
        // The version 1 layout (24 bytes, no echo) is not a version 3 proof.
        let mut v1 = [0u8; 24];
        v1[..6].copy_from_slice(&[0x57, 0x53, 0x43, 0x50, 1, 1]);
        assert!(parse_proof(&v1).is_none());
        assert!(parse_proof(&[]).is_none());
        assert!(parse_ack(&build_ack(AckKind::Proof, &[0; 16])[..8]).is_none());
        assert!(!is_control(&[0x80, 96]));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let p = parse_proof(&build_proof(ProofKind::Proof, &[0xab; 16], None)).unwrap();
        assert!(!format!("{p:?}").contains("171"));
    }

    #[test]
    fn token_hex_round_trip() {
        let t: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(token_from_hex(&token_to_hex(&t)), Some(t));
        assert_eq!(token_to_hex(&[0xab; 16]), "ab".repeat(16));
        assert_eq!(token_from_hex("ab"), None);
        assert_eq!(token_from_hex(&"zz".repeat(16)), None);
        // Found by the `wsc_control` fuzz target: a sign inside the token was read as a digit.
        assert_eq!(token_from_hex(&format!("+f{}", "0".repeat(30))), None);
        // Multi-byte characters must be refused, not sliced.
        assert_eq!(token_from_hex(&format!("é{}", "a".repeat(30))), None);
    }

    #[test]
    fn token_comparison() {
        assert!(token_eq(&[3; 16], &[3; 16]));
        let mut b = [3; 16];
        b[15] = 4;
        assert!(!token_eq(&[3; 16], &b));
    }
}
