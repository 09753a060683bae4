//! Public addresses for a gateway behind a NAT, written into the answer: for a 1:1 NAT, every host candidate once
//! more at each configured public address (same port, since a 1:1 NAT keeps ports); for any NAT, the
//! server-reflexive addresses a STUN server saw the host candidates' sockets at. A viewer on the LAN uses the
//! private address and one outside the public one. The ICE agent needs to know nothing: the viewer's checks to the
//! public address arrive on the same socket and are answered there.

use std::net::{IpAddr, SocketAddr};

/// `sdp` with, after each `a=candidate:` line of type `host` whose address family matches, one copy per address
/// in `public` (a new foundation, a slightly lower priority so a direct private path wins when both work).
pub fn announce_public(sdp: &str, public: &[IpAddr]) -> String {
    if public.is_empty() {
        return sdp.to_owned();
    }
    after_host_candidates(sdp, |fields, private, _| {
        let priority: u32 = fields[3].parse().unwrap_or(0);
        public
            .iter()
            .enumerate()
            .filter(|(_, ip)| ip.is_ipv4() == private.is_ipv4() && **ip != private)
            .map(|(i, ip)| {
                let mut f: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
                f[0] = format!("{}{}", fields[0], 9 - (i % 9));
                f[3] = priority.saturating_sub(1 + i as u32).to_string();
                f[4] = ip.to_string();
                format!("a=candidate:{}", f.join(" "))
            })
            .collect()
    })
}

/// RFC 8445 §5.1.2.1 priority of a server-reflexive candidate of component 1: type preference 100, the highest
/// local preference.
const SRFLX_PRIORITY: u32 = (100 << 24) | (65535 << 8) | 255;

/// `sdp` with, after each `a=candidate:` line of type `host` whose address and port are the local side of a pair
/// in `mapped` (local, as a STUN server saw it), a `typ srflx` candidate at the seen address, related to the host.
pub fn announce_reflexive(sdp: &str, mapped: &[(SocketAddr, SocketAddr)]) -> String {
    if mapped.is_empty() {
        return sdp.to_owned();
    }
    after_host_candidates(sdp, |f, ip, port| {
        let host = SocketAddr::new(ip, port);
        mapped
            .iter()
            .filter(|(local, seen)| *local == host && seen != local)
            .map(|(local, seen)| {
                format!(
                    "a=candidate:{}8 {} {} {SRFLX_PRIORITY} {} {} typ srflx raddr {} rport {}",
                    f[0],
                    f[1],
                    f[2],
                    seen.ip(),
                    seen.port(),
                    local.ip(),
                    local.port()
                )
            })
            .collect()
    })
}

/// `sdp` with the lines `extra` makes for each host candidate written after it. `extra` gets the candidate's
/// fields (foundation component transport priority address port "typ" "host" ...), its address and its port.
fn after_host_candidates(sdp: &str, extra: impl Fn(&[&str], IpAddr, u16) -> Vec<String>) -> String {
    let mut out = String::with_capacity(sdp.len() * 2);
    for line in sdp.split_inclusive('\n') {
        out.push_str(line);
        if !line.ends_with('\n') {
            // The last line without its line break: what follows must not be glued to it.
            out.push_str("\r\n");
        }
        let bare = line.trim_end_matches(['\r', '\n']);
        let Some(attr) = bare.strip_prefix("a=candidate:") else {
            continue;
        };
        let fields: Vec<&str> = attr.split_ascii_whitespace().collect();
        if fields.len() < 8 || fields[6] != "typ" || fields[7] != "host" {
            continue;
        }
        let (Ok(ip), Ok(port)) = (fields[4].parse::<IpAddr>(), fields[5].parse::<u16>()) else {
            continue;
        };
        for l in extra(&fields, ip, port) {
            out.push_str(&l);
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_each_host_candidate_at_the_public_address() {
        let sdp = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
            a=candidate:607854466 1 udp 2130706431 10.0.0.5 47054 typ host\r\n\
            a=candidate:1 1 udp 1694498815 198.51.100.1 47054 typ srflx raddr 10.0.0.5 rport 47054\r\n\
            a=candidate:2 1 udp 2130706431 ::1 5000 typ host\r\n\
            a=end-of-candidates\r\n";
        let out = announce_public(sdp, &["203.0.113.9".parse().unwrap()]);
        assert_eq!(
            out,
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
             a=candidate:607854466 1 udp 2130706431 10.0.0.5 47054 typ host\r\n\
             a=candidate:6078544669 1 udp 2130706430 203.0.113.9 47054 typ host\r\n\
             a=candidate:1 1 udp 1694498815 198.51.100.1 47054 typ srflx raddr 10.0.0.5 rport 47054\r\n\
             a=candidate:2 1 udp 2130706431 ::1 5000 typ host\r\n\
             a=end-of-candidates\r\n"
        );
        assert_eq!(announce_public(sdp, &[]), sdp);
    }

    /// Found by the `webrtc_sdp` fuzz target: a host candidate on an unterminated last line had its copy glued to
    /// it.
    #[test]
    fn last_line_without_a_line_break() {
        let sdp = "a=candidate:1 1 udp 100 10.0.0.5 5000 typ host";
        assert_eq!(
            announce_public(sdp, &["203.0.113.9".parse().unwrap()]),
            "a=candidate:1 1 udp 100 10.0.0.5 5000 typ host\r\n\
             a=candidate:19 1 udp 99 203.0.113.9 5000 typ host\r\n"
        );
    }

    #[test]
    fn adds_a_reflexive_candidate_for_each_mapped_host_candidate() {
        let sdp = "a=candidate:7 1 udp 2130706431 10.0.0.5 8189 typ host\r\n\
            a=candidate:9 1 udp 2130706431 10.0.0.6 8189 typ host\r\n\
            a=end-of-candidates\r\n";
        let mapped = [(
            "10.0.0.5:8189".parse().unwrap(),
            "198.51.100.4:40123".parse().unwrap(),
        )];
        assert_eq!(
            announce_reflexive(sdp, &mapped),
            "a=candidate:7 1 udp 2130706431 10.0.0.5 8189 typ host\r\n\
             a=candidate:78 1 udp 1694498815 198.51.100.4 40123 typ srflx raddr 10.0.0.5 rport 8189\r\n\
             a=candidate:9 1 udp 2130706431 10.0.0.6 8189 typ host\r\n\
             a=end-of-candidates\r\n"
        );
        assert_eq!(announce_reflexive(sdp, &[]), sdp);
        // Not behind a NAT: the server saw the host address itself, which is a candidate already.
        let same = [(mapped[0].0, mapped[0].0)];
        assert_eq!(announce_reflexive(sdp, &same), sdp);
    }
}
