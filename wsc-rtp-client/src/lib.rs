//! Reference WSC-RTP client (WSC-RTP-PROTOCOL.md), written from the protocol document: connects the WebSocket,
//! proves a UDP socket with the session token, receives RTP (or takes the WebSocket fall-back), reorders, repairs
//! losses with RTCP generic NACKs, depacketizes H.264/H.265 and writes an Annex-B elementary stream.
//!
//! The sans-IO parts ([`reorder`], [`depacketize`]) are unit-tested; [`run`] is the I/O loop.

pub mod depacketize;
pub mod playout;
pub mod reorder;
mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use publishers::wsc::client::{ClientPath, Step};
use publishers::wsc::datagram::{is_control, token_from_hex};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

use depacketize::{Codec, Depacketizer};
use reorder::{Released, Reorder};

/// What to do.
pub struct ClientOptions {
    /// `ws://host:port/streams/{id}/wsc-rtp`
    pub url: String,
    /// Ask for media inside the WebSocket instead of UDP.
    pub websocket: bool,
    /// Stop after this many pictures.
    pub max_frames: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Drop this share (0–100) of received RTP datagrams on purpose, to exercise NACK repair.
    pub drop_percent: u8,
    /// Where the Annex-B stream goes.
    pub output: Option<Box<dyn Write + Send>>,
    /// Start in the recording at this instant (wall-clock epoch ms).
    pub start_ms: Option<i64>,
    /// Playback speed asked for right after `init`.
    pub speed: Option<f64>,
}

/// What happened.
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    pub packets: u64,
    pub dropped_on_purpose: u64,
    pub lost: u64,
    pub repaired: u64,
    pub frames: u64,
    pub keyframes: u64,
    pub bytes_written: u64,
    /// WebSocket open → first complete keyframe.
    pub time_to_first_frame: Option<Duration>,
    pub transport: String,
    pub codec: String,
    /// The `session_mode` messages received, as sent.
    pub modes: Vec<Value>,
    /// How long a client showing frames by RTP time would hold the last frame, and the most it held any frame.
    pub hold_last: Duration,
    pub hold_max: Duration,
}

/// The protocol version this client speaks.
const VERSION: u64 = 3;
/// Proofs are repeated this often until one is accepted (WSC-RTP-PROTOCOL.md §3.1).
const PROOF_EVERY: Duration = Duration::from_millis(500);

/// The session URL with the version this client speaks and where to start.
fn session_url(opts: &ClientOptions) -> String {
    let sep = if opts.url.contains('?') { '&' } else { '?' };
    let mut url = format!("{}{sep}version={VERSION}", opts.url);
    if let Some(t) = opts.start_ms {
        url.push_str(&format!("&start_ms={t}"));
    }
    url
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The generic NACK (RFC 4585 §6.2.1) for these sequence numbers.
pub fn build_nack(media_ssrc: u32, seqs: &[u16]) -> Vec<u8> {
    let mut fcis: Vec<(u16, u16)> = Vec::new();
    for &s in seqs {
        match fcis.last_mut() {
            Some((pid, blp)) if s.wrapping_sub(*pid) >= 1 && s.wrapping_sub(*pid) <= 16 => {
                *blp |= 1 << (s.wrapping_sub(*pid) - 1)
            }
            _ => fcis.push((s, 0)),
        }
    }
    let words = 2 + fcis.len();
    let mut p = vec![0x81, 205];
    p.extend_from_slice(&(words as u16).to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&media_ssrc.to_be_bytes());
    for (pid, blp) in fcis {
        p.extend_from_slice(&pid.to_be_bytes());
        p.extend_from_slice(&blp.to_be_bytes());
    }
    p
}

/// How to reach a gateway that wants more than a plain `ws://` URL.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// PEM file of CA certificates to trust for `wss://`, beside the system's (a self-signed gateway).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Viewer token sent as `Authorization: Bearer` (the `token` query parameter works too).
    pub bearer: Option<String>,
}

/// Runs a session until the frame or time limit, or until the server ends it.
pub async fn run(opts: ClientOptions) -> anyhow::Result<ClientStats> {
    run_with(opts, &Connect::default()).await
}

/// [`run`], with a CA certificate for `wss://` and/or a bearer token.
pub async fn run_with(mut opts: ClientOptions, connect: &Connect) -> anyhow::Result<ClientStats> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let started = Instant::now();
    let url = session_url(&opts);
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad URL {url}"))?;
    if let Some(token) = &connect.bearer {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .context("the token is not a header value")?,
        );
    }
    let connector = if url.starts_with("wss://") {
        Some(tokio_tungstenite::Connector::Rustls(tls::client_config(
            connect.ca_cert.as_deref(),
        )?))
    } else {
        None
    };
    let (mut ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
            .await
            .with_context(|| format!("connecting {url}"))?;
    let init = next_text(&mut ws).await?;
    if init["type"] != "init" || init["version"].as_u64() != Some(VERSION) {
        bail!("expected init version {VERSION}, got {init}");
    }
    if let Some(speed) = opts.speed {
        ws.send(Message::Text(
            serde_json::json!({"type": "speed", "speed": speed})
                .to_string()
                .into(),
        ))
        .await?;
    }
    let token = token_from_hex(init["token"].as_str().unwrap_or_default())
        .ok_or_else(|| anyhow!("init token is not 32 hex characters"))?;
    let ssrc = init["ssrc"].as_u64().unwrap_or_default() as u32;
    let udp_port = init["udp_port"].as_u64().unwrap_or_default() as u16;
    let keepalive = Duration::from_millis(init["keepalive_interval_ms"].as_u64().unwrap_or(5000));
    let host = url_host(&opts.url)?;
    let server: SocketAddr = tokio::net::lookup_host((host.as_str(), udp_port))
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {host}"))?;
    let udp = media_socket(server)?;
    if opts.websocket {
        ws.send(Message::Text(r#"{"type":"use_websocket"}"#.into()))
            .await?;
    }
    let mut path = ClientPath::new(token);
    let mut last_proof = None::<Instant>;
    let mut stats = ClientStats::default();
    let mut reorder = Reorder::default();
    let mut playout = playout::Playout::default();
    let mut depay: Option<Depacketizer> = None;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut last_keepalive = Instant::now();
    let mut buf = vec![0u8; 2048];
    let deadline = opts.duration.map(|d| started + d);
    let mut released = Vec::new();
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d)
            || opts.max_frames.is_some_and(|m| stats.frames >= m)
        {
            break;
        }
        let mut incoming: Option<Bytes> = None;
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let (n, from) = r?;
                if from != server {
                    continue;
                }
                let d = &buf[..n];
                if is_control(d) {
                    if let Some(Step::Reply(proof)) = path.on_answer(d) {
                        udp.send_to(&proof, server).await?;
                    }
                } else {
                    incoming = Some(Bytes::copy_from_slice(d));
                }
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    match v["type"].as_str() {
                        Some("sdp") => {
                            let sdp = v["sdp"].as_str().unwrap_or_default();
                            let codec = if sdp.contains("H265/90000") { Codec::H265 } else { Codec::H264 };
                            stats.codec = format!("{codec:?}");
                            // A new SDP with the same codec keeps the depacketizer (and its sync state).
                            if depay.as_ref().is_none_or(|d| d.codec() != codec) {
                                depay = Some(Depacketizer::new(codec));
                            }
                        }
                        Some("transport") => stats.transport = v["mode"].as_str().unwrap_or_default().to_owned(),
                        Some("session_mode") => stats.modes.push(v),
                        Some("error") => tracing_error(&v),
                        Some("bye") => break,
                        _ => {}
                    }
                }
                Some(Ok(Message::Binary(b))) => incoming = Some(b),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                let proving = !opts.websocket && stats.transport.is_empty() && !path.is_proved();
                if proving && last_proof.is_none_or(|t| now - t >= PROOF_EVERY) {
                    udp.send_to(&path.proof(), server).await?;
                    last_proof = Some(now);
                } else if stats.transport == "udp" && now - last_keepalive >= keepalive {
                    udp.send_to(&path.keepalive(), server).await?;
                    last_keepalive = now;
                }
                let nacks = reorder.nacks(now);
                if !nacks.is_empty() {
                    let nack = build_nack(ssrc, &nacks);
                    if stats.transport == "websocket" {
                        ws.send(Message::Binary(nack.into())).await?;
                    } else {
                        udp.send_to(&nack, server).await?;
                    }
                }
                reorder.expire(now, &mut released);
            }
        }
        if let Some(p) = incoming {
            stats.packets += 1;
            if opts.drop_percent > 0 && rng.gen_range(0..100) < opts.drop_percent {
                stats.dropped_on_purpose += 1;
            } else {
                reorder.push(p, Instant::now(), &mut released);
            }
        }
        for r in released.drain(..) {
            let Some(d) = depay.as_mut() else { continue };
            match r {
                Released::Lost(_) => d.loss(),
                Released::Packet(p) => {
                    if let Some(au) = d.push(&p) {
                        if au.is_keyframe {
                            stats.keyframes += 1;
                        }
                        stats.frames += 1;
                        stats.time_to_first_frame.get_or_insert(started.elapsed());
                        playout.push(Instant::now(), au.rtp_timestamp);
                        stats.bytes_written += au.annex_b.len() as u64;
                        if let Some(w) = opts.output.as_mut() {
                            w.write_all(&au.annex_b)?;
                        }
                    }
                }
            }
        }
    }
    if let Some(w) = opts.output.as_mut() {
        w.flush()?;
    }
    let _ = ws.close(None).await;
    stats.lost = reorder.lost;
    stats.repaired = reorder.repaired;
    stats.hold_last = playout.hold_last;
    stats.hold_max = playout.hold_max;
    Ok(stats)
}

/// A refused control message: said on standard error, the session goes on.
fn tracing_error(v: &Value) {
    eprintln!("server refused: {} ({})", v["message"], v["code"]);
}

/// Receive buffer asked for: a new session starts with a burst of the stream's cached GOP (up to several
/// seconds of video at once), which the default buffer (about 200 KiB) can't hold at a few Mbit/s.
const RECEIVE_BUFFER: usize = 8 << 20;

/// The UDP socket media arrives on, with a receive buffer big enough for the GOP burst (the kernel caps it at
/// `net.core.rmem_max`; a smaller one only makes NACK repair work harder).
fn media_socket(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let domain = if server.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(RECEIVE_BUFFER);
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    s.bind(&any.into())?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("server closed before init"),
        }
    }
}

fn url_host(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| anyhow!("URL must start with ws:// or wss://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_packs_neighbours_into_the_bitmask() {
        let p = build_nack(9, &[100, 101, 103, 200]);
        let fb = publishers::parse_feedback(&p, 9).unwrap();
        assert_eq!(
            fb,
            vec![publishers::Feedback::Nack(vec![100, 101, 103, 200])]
        );
    }

    #[test]
    fn host_from_url() {
        assert_eq!(
            url_host("ws://127.0.0.1:8009/streams/x/wsc-rtp").unwrap(),
            "127.0.0.1"
        );
        assert_eq!(url_host("ws://[::1]:80/a").unwrap(), "::1");
        assert!(url_host("http://x").is_err());
    }
}
