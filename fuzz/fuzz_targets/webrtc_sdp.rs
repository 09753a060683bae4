//! What a WebRTC viewer sends as text: the SDP offer (`publishers::webrtc::offer`: codec choice, the answer's
//! fmtp line, the NAT's public candidates) and WHEP trickle-ICE fragments (`publishers::webrtc::trickle`).
//! Input: one selector byte (which reader, and for an offer which camera stream it is read for), then the text.
//!
//! Checks: nothing panics; a chosen codec is one the offer's video section lists with that payload type and the
//! stream's codec; the rewritten answer carries exactly one fmtp line for it, the stream's; public candidates
//! only add lines; a fragment's candidates are lines of the body, at most `MAX_CANDIDATES`.
#![no_main]

use std::net::IpAddr;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use publishers::webrtc::candidates::announce_public;
use publishers::webrtc::offer::{choose_codec, rewrite_fmtp};
use publishers::webrtc::trickle::{self, MAX_CANDIDATES};
use sources::{Codec, ParameterSets};

/// Camera streams an offer is read for: H.264 constrained baseline, main, high, an SPS too short to carry a
/// profile, and H.265.
const SPS: [&[u8]; 4] = [
    &[0x67, 0x42, 0xc0, 0x1e],
    &[0x67, 0x4d, 0x40, 0x29],
    &[0x67, 0x64, 0x00, 0x28],
    &[0x67],
];

fn stream(selector: u8) -> ParameterSets {
    let i = usize::from(selector / 2) % (SPS.len() + 1);
    let (codec, vps, sps) = match SPS.get(i) {
        Some(sps) => (Codec::H264, None, *sps),
        None => (
            Codec::H265,
            Some(Bytes::from_static(&[0x40, 1])),
            &[0x42, 1][..],
        ),
    };
    ParameterSets {
        codec,
        vps,
        sps: Bytes::from_static(sps),
        pps: Bytes::from_static(&[0x68, 0xce]),
        width: 640,
        height: 360,
        rfc6381_codec: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector % 2 == 0 {
        offer(text, &stream(selector));
    } else {
        fragment(text);
    }
});

fn offer(text: &str, params: &ParameterSets) {
    if let Ok(chosen) = choose_codec(text, params) {
        let pt = chosen.payload_type;
        let rtpmap = format!("a=rtpmap:{pt} ");
        let name = match params.codec {
            Codec::H264 => "H264",
            Codec::H265 => "H265",
        };
        // The same payload type may name other codecs in other sections, and the SDP parser is lenient (it
        // reads "09" and "+9" as 9, and takes other separators than a space): one of the rtpmap lines for it names this
        // codec.
        assert!(
            text.lines()
                .filter_map(|l| l.trim_start().strip_prefix("a=rtpmap:"))
                .filter(|v| {
                    let v = v.trim_start().trim_start_matches('+');
                    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
                    v[..digits].parse::<u8>() == Ok(pt)
                })
                .any(|v| v.to_ascii_uppercase().contains(name)),
            "payload type {pt} chosen without an rtpmap line naming {name}"
        );
        // The answer the peer connection writes holds that payload type's rtpmap line: the rewritten answer
        // states the stream's fmtp there, once.
        let answer = format!("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF {pt}\r\n{rtpmap}{name}/90000\r\n");
        let rewritten = rewrite_fmtp(&answer, pt, &chosen.answer_fmtp);
        let fmtp = format!("a=fmtp:{pt} ");
        let lines: Vec<&str> = rewritten.lines().filter(|l| l.starts_with(&fmtp)).collect();
        assert_eq!(lines, [format!("{fmtp}{}", chosen.answer_fmtp)]);
    }
    let public: [IpAddr; 2] = [[203, 0, 113, 7].into(), "2001:db8::7".parse().unwrap()];
    assert_eq!(announce_public(text, &[]), text);
    let announced = announce_public(text, &public);
    // Only whole lines are added: the original lines are all there, in order.
    let mut added = announced.split_inclusive('\n');
    for line in text.split_inclusive('\n') {
        assert!(
            added.any(|l| l == line || (!line.ends_with('\n') && l == format!("{line}\r\n"))),
            "line {line:?} lost"
        );
    }
}

fn fragment(text: &str) {
    let Ok(frag) = trickle::parse(text) else {
        return;
    };
    assert!(frag.candidates.len() <= MAX_CANDIDATES);
    let sections = text.lines().filter(|l| l.starts_with("m=")).count();
    for c in &frag.candidates {
        assert!(c.candidate.starts_with("candidate:"));
        assert!(c.candidate.split_ascii_whitespace().count() >= 8);
        assert!(usize::from(c.mline_index) < sections);
        assert!(text
            .lines()
            .any(|l| l.trim_end_matches('\r') == format!("a={}", c.candidate)));
    }
}
