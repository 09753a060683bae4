//! Spike for decision 0011: server-side CPU per media packet of two sans-IO WebRTC cores, in memory (no sockets,
//! so the kernel's share, equal for both once they share a GSO socket, is left out). N server/viewer pairs are
//! connected (ICE, DTLS), then every server sends F frames of 14 packets of 1 200 bytes (1080p30 at ~4 Mbit/s);
//! only the servers' calls are timed (thread CPU time); their SRTP output is counted and dropped.
//! Usage: sfu-spike str0m|rtc N FRAMES

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const PACKETS_PER_FRAME: usize = 14;
const PAYLOAD: usize = 1200;

fn is_rtp(b: &[u8]) -> bool {
    b.len() > 12 && (128..=191).contains(&b[0]) && !(192..=223).contains(&b[1])
}

mod s0 {
    use super::*;
    use str0m::format::Codec;
    use str0m::media::{MediaKind, Mid};
    use str0m::net::{Protocol, Receive};
    use str0m::rtp::{RtpWrite, Ssrc};
    use str0m::{Candidate, Input, Output, Rtc};

    pub struct Pair {
        l: Rtc,
        r: Rtc,
        la: SocketAddr,
        ra: SocketAddr,
        l_wake: Instant,
        r_wake: Instant,
        ssrc: Ssrc,
        pt: str0m::media::Pt,
        seq: u64,
    }

    /// Drives one side until it wants time; returns datagrams it sent and counts RTP when `drop_rtp`.
    fn drive(
        rtc: &mut Rtc,
        out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
        drop_rtp: bool,
        rtp: &mut u64,
    ) -> Instant {
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => {
                    if drop_rtp && is_rtp(&t.contents) {
                        *rtp += 1;
                    } else {
                        out.push((t.source, t.destination, t.contents.to_vec()));
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    fn deliver(rtc: &mut Rtc, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let r = Receive::new(Protocol::Udp, from, to, data).unwrap();
        let _ = rtc.handle_input(Input::Receive(now, r));
    }

    pub fn connect(i: u32, now: &mut Instant) -> Pair {
        let mut l = Rtc::builder().set_rtp_mode(true).build(*now);
        let mut r = Rtc::builder().set_rtp_mode(true).build(*now);
        let la: SocketAddr = (Ipv4Addr::new(1, 1, 1, 1), 1000).into();
        let ra: SocketAddr = (Ipv4Addr::new(2, 2, (i >> 8) as u8, i as u8), 2000).into();
        let hl = Candidate::host(la, "udp").unwrap();
        let hr = Candidate::host(ra, "udp").unwrap();
        l.add_local_candidate(hl.clone());
        l.add_remote_candidate(hr.clone());
        r.add_local_candidate(hr);
        r.add_remote_candidate(hl);
        let fl = l.direct_api().local_dtls_fingerprint().clone();
        let fr = r.direct_api().local_dtls_fingerprint().clone();
        l.direct_api().set_remote_fingerprint(fr);
        r.direct_api().set_remote_fingerprint(fl);
        let cl = l.direct_api().local_ice_credentials();
        let cr = r.direct_api().local_ice_credentials();
        l.direct_api().set_remote_ice_credentials(cr);
        r.direct_api().set_remote_ice_credentials(cl);
        // The viewer (a browser) is controlling, the server controlled, as for the gateway.
        r.direct_api().set_ice_controlling(true);
        l.direct_api().set_ice_controlling(false);
        l.direct_api().start_dtls(true).unwrap();
        r.direct_api().start_dtls(false).unwrap();
        let mid: Mid = "0".into();
        let ssrc: Ssrc = (1000 + i).into();
        l.direct_api().declare_media(mid, MediaKind::Video);
        l.direct_api().declare_stream_tx(ssrc, None, mid, None);
        r.direct_api().declare_media(mid, MediaKind::Video);
        let pt = l
            .codec_config()
            .find(|p| p.spec().codec == Codec::H264)
            .expect("H264")
            .pt();
        let mut p = Pair {
            l,
            r,
            la,
            ra,
            l_wake: *now,
            r_wake: *now,
            ssrc,
            pt,
            seq: 1,
        };
        let mut out = Vec::new();
        let mut n = 0;
        for _ in 0..20_000 {
            if p.l.is_connected() && p.r.is_connected() {
                return p;
            }
            out.clear();
            p.l_wake = drive(&mut p.l, &mut out, false, &mut n);
            for (from, to, d) in out.drain(..) {
                deliver(&mut p.r, *now, from, to, &d);
            }
            p.r_wake = drive(&mut p.r, &mut out, false, &mut n);
            for (from, to, d) in out.drain(..) {
                deliver(&mut p.l, *now, from, to, &d);
            }
            *now += Duration::from_millis(1);
            let _ = p.l.handle_input(Input::Timeout(*now));
            let _ = p.r.handle_input(Input::Timeout(*now));
        }
        panic!("str0m pair {i} did not connect");
    }

    /// One frame for every pair at `now`; returns (server CPU, RTP datagrams out).
    pub fn frame(
        pairs: &mut [Pair],
        now: Instant,
        payload: &Arc<[u8]>,
        ts: u32,
    ) -> (Duration, u64) {
        let mut cpu = Duration::ZERO;
        let mut rtp = 0;
        let mut out = Vec::new();
        for p in pairs.iter_mut() {
            let t0 = thread_cpu();
            let _ = p.l.handle_input(Input::Timeout(now));
            {
                let mut api = p.l.direct_api();
                let stream = api.stream_tx(&p.ssrc).unwrap();
                for k in 0..PACKETS_PER_FRAME {
                    let w = RtpWrite::new(p.pt, p.seq.into(), ts, now, payload.clone())
                        .marker(k == PACKETS_PER_FRAME - 1);
                    p.seq += 1;
                    stream.write_rtp(w);
                }
            }
            p.l_wake = drive(&mut p.l, &mut out, true, &mut rtp);
            cpu += thread_cpu() - t0;
            // The viewer's side: consent checks, RTCP (untimed).
            for (from, to, d) in out.drain(..) {
                deliver(&mut p.r, now, from, to, &d);
            }
            let _ = p.r.handle_input(Input::Timeout(now));
            let mut back = Vec::new();
            let mut ignore = 0;
            p.r_wake = drive(&mut p.r, &mut back, false, &mut ignore);
            let t0 = thread_cpu();
            for (from, to, d) in back {
                deliver(&mut p.l, now, from, to, &d);
            }
            cpu += thread_cpu() - t0;
            let _ = (p.la, p.ra, p.l_wake, p.r_wake);
        }
        (cpu, rtp)
    }
}

mod r0 {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use rtc::ice::mdns::MulticastDnsMode;
    use rtc::interceptor::{NackResponderBuilder, Registry, SenderReportBuilder, Slot};
    use rtc::media_stream::MediaStreamTrack;
    use rtc::peer_connection::configuration::interceptor_registry::{
        configure_simulcast_extension_headers, register_default_interceptors,
    };
    use rtc::peer_connection::configuration::media_engine::MediaEngine;
    use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
    use rtc::peer_connection::configuration::RTCConfigurationBuilder;
    use rtc::peer_connection::event::RTCPeerConnectionEvent;
    use rtc::peer_connection::sdp::RTCSessionDescription;
    use rtc::peer_connection::state::RTCPeerConnectionState;
    use rtc::peer_connection::transport::{
        CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
    };
    use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
    use rtc::rtp;
    use rtc::rtp_transceiver::rtp_sender::{
        RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
        RTCRtpEncodingParameters, RtpCodecKind,
    };
    use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    use rtc::sansio::Protocol;
    use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

    const FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

    fn codec() -> RTCRtpCodec {
        let fb = |t: &str, p: &str| RTCPFeedback {
            typ: t.into(),
            parameter: p.into(),
        };
        RTCRtpCodec {
            mime_type: "video/H264".into(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: FMTP.into(),
            rtcp_feedback: vec![fb("nack", ""), fb("nack", "pli"), fb("ccm", "fir")],
        }
    }

    pub struct Pair {
        l: RTCPeerConnection,
        r: RTCPeerConnection,
        sender: RTCRtpSenderId,
        ssrc: u32,
        seq: u16,
    }

    fn host(addr: SocketAddr) -> RTCIceCandidateInit {
        let c = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        RTCIceCandidate::from(&c).to_json().unwrap()
    }

    fn pc(engine: MediaEngine, registry: Registry, now: Instant) -> RTCPeerConnection {
        RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_interceptor_registry(registry)
            .build(now)
            .unwrap()
    }

    fn pump(
        from: &mut RTCPeerConnection,
        to: &mut RTCPeerConnection,
        now: Instant,
        drop_rtp: bool,
        rtp: &mut u64,
    ) {
        while let Some(m) = from.poll_write() {
            if drop_rtp && is_rtp(&m.message) {
                *rtp += 1;
                continue;
            }
            let msg = TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: m.transport.peer_addr,
                    peer_addr: m.transport.local_addr,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: m.message,
            };
            let _ = to.handle_read(msg);
        }
        while from.poll_read().is_some() {}
    }

    fn connected(pc: &mut RTCPeerConnection, flag: &mut bool) {
        while let Some(e) = pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = e
            {
                *flag = true;
            }
        }
    }

    pub fn connect(i: u32, now: &mut Instant) -> Pair {
        // The viewer: default interceptors, receive-only.
        let mut e = MediaEngine::default();
        e.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec(),
                payload_type: 102,
            },
            RtpCodecKind::Video,
        )
        .unwrap();
        let reg = register_default_interceptors(Registry::new(), &mut e).unwrap();
        let mut r = pc(e, reg, *now);
        r.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .unwrap();
        let ra: SocketAddr = (Ipv4Addr::new(2, 2, (i >> 8) as u8, i as u8), 2000).into();
        r.add_local_candidate(host(ra)).unwrap();
        r.add_local_candidate(RTCIceCandidateInit::default())
            .unwrap();
        let offer = r.create_offer(None).unwrap();
        r.set_local_description(*now, offer).unwrap();
        let offer = r.local_description().unwrap().sdp;
        // The server: as the gateway builds it (sending interceptors only).
        let mut e = MediaEngine::default();
        e.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec(),
                payload_type: 102,
            },
            RtpCodecKind::Video,
        )
        .unwrap();
        configure_simulcast_extension_headers(&mut e).unwrap();
        let reg = Registry::new()
            .with(
                Slot::NackResponder,
                NackResponderBuilder::new().with_size(512).build(),
            )
            .with(Slot::SenderReport, SenderReportBuilder::new().build());
        let mut l = pc(e, reg, *now);
        l.set_remote_description(*now, RTCSessionDescription::offer(offer).unwrap())
            .unwrap();
        let ssrc = 1000 + i;
        let sender = l
            .add_track(MediaStreamTrack::new(
                "s".into(),
                format!("t{i}"),
                "s".into(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec(),
                    ..Default::default()
                }],
            ))
            .unwrap();
        let la: SocketAddr = (Ipv4Addr::new(1, 1, 1, 1), 1000).into();
        l.add_local_candidate(host(la)).unwrap();
        l.add_local_candidate(RTCIceCandidateInit::default())
            .unwrap();
        let answer = l.create_answer(None).unwrap();
        l.set_local_description(*now, answer).unwrap();
        let answer = l.local_description().unwrap().sdp;
        r.set_remote_description(*now, RTCSessionDescription::answer(answer).unwrap())
            .unwrap();
        let (mut lc, mut rc) = (false, false);
        let mut ignore = 0;
        for _ in 0..20_000 {
            connected(&mut l, &mut lc);
            connected(&mut r, &mut rc);
            if lc && rc {
                return Pair {
                    l,
                    r,
                    sender,
                    ssrc,
                    seq: 1,
                };
            }
            pump(&mut l, &mut r, *now, false, &mut ignore);
            pump(&mut r, &mut l, *now, false, &mut ignore);
            *now += Duration::from_millis(1);
            let _ = l.handle_timeout(*now);
            let _ = r.handle_timeout(*now);
        }
        panic!("rtc pair {i} did not connect");
    }

    pub fn frame(pairs: &mut [Pair], now: Instant, payload: &Bytes, ts: u32) -> (Duration, u64) {
        let mut cpu = Duration::ZERO;
        let mut rtp = 0;
        for p in pairs.iter_mut() {
            let t0 = thread_cpu();
            let _ = p.l.handle_timeout(now);
            if let Some(mut s) = p.l.rtp_sender(p.sender) {
                for k in 0..PACKETS_PER_FRAME {
                    let packet = rtp::Packet {
                        header: rtp::header::Header {
                            version: 2,
                            marker: k == PACKETS_PER_FRAME - 1,
                            payload_type: 102,
                            sequence_number: p.seq,
                            timestamp: ts,
                            ssrc: p.ssrc,
                            ..Default::default()
                        },
                        payload: payload.clone(),
                    };
                    p.seq = p.seq.wrapping_add(1);
                    s.write_rtp(now, packet).unwrap();
                }
            }
            // Server output: SRTP media dropped, the rest to the viewer (timed: it is the server's work).
            let mut ignore = 0;
            let mut to_viewer = Vec::new();
            while let Some(m) = p.l.poll_write() {
                if is_rtp(&m.message) {
                    rtp += 1;
                } else {
                    to_viewer.push(m);
                }
            }
            while p.l.poll_event().is_some() {}
            while p.l.poll_read().is_some() {}
            cpu += thread_cpu() - t0;
            for m in to_viewer {
                let msg = TaggedBytesMut {
                    now,
                    transport: TransportContext {
                        local_addr: m.transport.peer_addr,
                        peer_addr: m.transport.local_addr,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&m.message[..]),
                };
                let _ = p.r.handle_read(msg);
            }
            let _ = p.r.handle_timeout(now);
            let t0 = thread_cpu();
            pump(&mut p.r, &mut p.l, now, false, &mut ignore);
            while p.r.poll_event().is_some() {}
            cpu += thread_cpu() - t0;
        }
        (cpu, rtp)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let stack = args.get(1).map(String::as_str).unwrap_or("str0m");
    let n: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let frames: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(300);
    let mut now = Instant::now();
    let rss0 = rss_kib();
    let payload_vec = vec![0x5au8; PAYLOAD];
    let (cpu, rtp, rss_connected, rss_end) = match stack {
        "str0m" => {
            str0m::crypto::from_feature_flags().install_process_default();
            let mut pairs: Vec<s0::Pair> = (0..n).map(|i| s0::connect(i, &mut now)).collect();
            let rss_connected = rss_kib();
            let payload: Arc<[u8]> = payload_vec.into();
            let (mut cpu, mut rtp) = (Duration::ZERO, 0);
            for f in 0..frames {
                now += Duration::from_micros(33_333);
                let (c, r) = s0::frame(&mut pairs, now, &payload, f * 3000);
                cpu += c;
                rtp += r;
            }
            (cpu, rtp, rss_connected, rss_kib())
        }
        _ => {
            let mut pairs: Vec<r0::Pair> = (0..n).map(|i| r0::connect(i, &mut now)).collect();
            let rss_connected = rss_kib();
            let payload = bytes::Bytes::from(payload_vec);
            let (mut cpu, mut rtp) = (Duration::ZERO, 0);
            for f in 0..frames {
                now += Duration::from_micros(33_333);
                let (c, r) = r0::frame(&mut pairs, now, &payload, f * 3000);
                cpu += c;
                rtp += r;
            }
            (cpu, rtp, rss_connected, rss_kib())
        }
    };
    let expected = u64::from(n) * u64::from(frames) * PACKETS_PER_FRAME as u64;
    let per_packet_ns = cpu.as_nanos() as f64 / rtp.max(1) as f64;
    println!(
        "{stack} N={n} frames={frames}: server CPU {:.1} ms for {rtp}/{expected} SRTP packets = {per_packet_ns:.0} ns/packet \
         = {:.0} µs/s per viewer at 420 packets/s; RSS per pair connected {} KiB, after media {} KiB",
        cpu.as_secs_f64() * 1e3,
        per_packet_ns * 420.0 / 1000.0,
        rss_connected.saturating_sub(rss0) / u64::from(n),
        rss_end.saturating_sub(rss0) / u64::from(n),
    );
}
