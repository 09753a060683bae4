//! WSC-RTP UDP control datagrams (WSC-RTP-PROTOCOL.md §3): the client's proof / keep-alive carrying the session
//! token, and the server's ack. Their first byte, 'W' (0x57), has RTP version bits 01, so they share the port
//! with RTP and RTCP without ambiguity.

/// Length of a proof or keep-alive datagram.
pub const PROOF_LEN: usize = 24;
/// Length of an ack datagram.
pub const ACK_LEN: usize = 8;
/// Protocol version carried in datagrams.
pub const VERSION: u8 = 1;

const PROOF_MAGIC: &[u8; 4] = b"WSCP";
const ACK_MAGIC: &[u8; 4] = b"WSCA";

/// What a client datagram asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofKind {
    /// First contact: media goes to this source address from now on.
    Proof = 1,
    /// Keeps the NAT mapping open (and also moves media to a new source address).
    KeepAlive = 2,
}

/// A well-formed proof or keep-alive (the token is not checked here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    pub kind: ProofKind,
    pub token: [u8; 16],
}

/// True if the datagram claims to be a WSC control datagram (so it is not RTP/RTCP).
pub fn is_control(data: &[u8]) -> bool {
    data.first() == Some(&b'W')
}

/// Parses a proof or keep-alive; `None` for anything malformed (dropped silently by the server).
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
    let mut token = [0u8; 16];
    token.copy_from_slice(&data[8..24]);
    Some(Proof { kind, token })
}

/// Builds a proof or keep-alive (clients and tests).
pub fn build_proof(kind: ProofKind, token: &[u8; 16]) -> [u8; PROOF_LEN] {
    let mut d = [0u8; PROOF_LEN];
    d[..4].copy_from_slice(PROOF_MAGIC);
    d[4] = VERSION;
    d[5] = kind as u8;
    d[8..].copy_from_slice(token);
    d
}

/// The server's answer to a valid proof or keep-alive.
pub fn build_ack(kind: ProofKind) -> [u8; ACK_LEN] {
    let mut d = [0u8; ACK_LEN];
    d[..4].copy_from_slice(ACK_MAGIC);
    d[4] = VERSION;
    d[5] = kind as u8;
    d
}

/// Parses an ack (clients and tests).
pub fn parse_ack(data: &[u8]) -> Option<ProofKind> {
    if data.len() != ACK_LEN || &data[..4] != ACK_MAGIC || data[4] != VERSION {
        return None;
    }
    match data[5] {
        1 => Some(ProofKind::Proof),
        2 => Some(ProofKind::KeepAlive),
        _ => None,
    }
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

/// Compares tokens in constant time, so timing tells an attacker nothing about how much of a guess was right.
pub fn token_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_round_trip_and_layout() {
        let token = [7u8; 16];
        let d = build_proof(ProofKind::Proof, &token);
        assert_eq!(&d[..8], &[0x57, 0x53, 0x43, 0x50, 1, 1, 0, 0]);
        assert_eq!(
            parse_proof(&d),
            Some(Proof {
                kind: ProofKind::Proof,
                token
            })
        );
        assert!(is_control(&d));
        assert_eq!(
            parse_ack(&build_ack(ProofKind::KeepAlive)),
            Some(ProofKind::KeepAlive)
        );
    }

    #[test]
    fn malformed_datagrams_are_refused() {
        let good = build_proof(ProofKind::KeepAlive, &[1; 16]);
        assert!(parse_proof(&good[..23]).is_none());
        for (i, v) in [(0, b'X'), (4, 2), (5, 9), (6, 1)] {
            let mut bad = good;
            bad[i] = v;
            assert!(parse_proof(&bad).is_none(), "byte {i}");
        }
        assert!(parse_proof(&[]).is_none());
        assert!(!is_control(&[0x80, 96]));
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
