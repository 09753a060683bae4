//! The client's side of the UDP path check (WSC-RTP-PROTOCOL.md §3.1), sans-IO: what to send from the media
//! socket and what each answer means. The reference client, the benchmark's receivers and the tests all speak
//! through it, so none of them carries its own copy of the rules.

use super::datagram::{build_proof, parse_ack, AckKind, Nonce, ProofKind, PROOF_LEN};

/// What an answer from the server asks of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Media comes to this socket now (the first time, or again after a move).
    Proved,
    /// A keep-alive was accepted: consent runs on.
    ConsentRenewed,
    /// A challenge: send this proof at once, from the same socket.
    Reply([u8; PROOF_LEN]),
}

/// One media socket's state: the session token and the newest nonce the server sent to it.
#[derive(Clone)]
pub struct ClientPath {
    token: [u8; 16],
    nonce: Option<Nonce>,
    proved: bool,
}

impl ClientPath {
    pub fn new(token: [u8; 16]) -> Self {
        ClientPath {
            token,
            nonce: None,
            proved: false,
        }
    }

    /// A proof echoing the newest nonce: sent after `init` (every 500 ms until [`Step::Proved`]) and in reply to
    /// a challenge.
    pub fn proof(&self) -> [u8; PROOF_LEN] {
        build_proof(ProofKind::Proof, &self.token, self.nonce.as_ref())
    }

    /// A keep-alive echoing the newest nonce, every `keepalive_interval_ms` once proved.
    pub fn keepalive(&self) -> [u8; PROOF_LEN] {
        build_proof(ProofKind::KeepAlive, &self.token, self.nonce.as_ref())
    }

    /// Whether the server has accepted a proof from this socket.
    pub fn is_proved(&self) -> bool {
        self.proved
    }

    /// Takes a control datagram from the server's port; `None` if it is not a well-formed answer.
    pub fn on_answer(&mut self, data: &[u8]) -> Option<Step> {
        let ack = parse_ack(data)?;
        self.nonce = Some(ack.nonce);
        Some(match ack.kind {
            AckKind::Proof => {
                self.proved = true;
                Step::Proved
            }
            AckKind::KeepAlive => Step::ConsentRenewed,
            AckKind::Challenge => Step::Reply(self.proof()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::wsc::datagram::parse_proof;
    use crate::wsc::path::{PathOptions, UdpPath, Verdict};

    /// Client and server paths talk until the client is proved, then keep consent for a minute.
    #[test]
    fn client_and_server_agree() {
        let t0 = Instant::now();
        let from = "192.0.2.1:5000".parse().unwrap();
        let mut server = UdpPath::new(t0, PathOptions::default(), [9; 32]);
        let mut client = ClientPath::new([4; 16]);
        let mut send = client.proof();
        let mut t = t0;
        for _ in 0..3 {
            let Verdict::Answer { ack, .. } =
                server.on_proof(t, from, &parse_proof(&send).unwrap())
            else {
                panic!("ignored");
            };
            match client.on_answer(&ack).unwrap() {
                Step::Reply(next) => send = next,
                Step::Proved => break,
                Step::ConsentRenewed => panic!("not proved yet"),
            }
        }
        assert!(client.is_proved());
        assert_eq!(server.peer(), Some(from));
        while t < t0 + Duration::from_secs(60) {
            t += Duration::from_secs(5);
            assert!(!server.handle_timeout(t));
            let Verdict::Answer { ack, .. } =
                server.on_proof(t, from, &parse_proof(&client.keepalive()).unwrap())
            else {
                panic!("ignored");
            };
            assert_eq!(client.on_answer(&ack), Some(Step::ConsentRenewed));
        }
    }
}
