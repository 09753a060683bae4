//! WSC-RTP benchmark: time to first frame against a camera with a 4 s GOP, and the gateway's CPU and memory per
//! session for N sessions of one ~4 Mbps 1080p30 stream on loopback, next to a raw `sendmmsg` loop sending the
//! same packets (count and size) to the same number of sockets. The ratio is the figure.
//!
//! The gateway runs as its own process (the real binary), so its CPU (utime+stime from /proc) and RSS are its
//! own; the camera (RTSP fixture, x264), the receivers and the raw loop run in this process. Run with
//! `cargo bench -p gateway --bench wsc_fanout`; under `cargo test` it runs tiny sizes only.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use publishers::wsc::datagram::{build_proof, parse_ack, token_from_hex, ProofKind};
use serde_json::{json, Value};
use testdata::{FixtureOptions, RtspFixture};
use tokio::net::UdpSocket;

#[path = "support/mod.rs"]
mod support;
use support::{proc_usage, spawn_gateway, Gw};

fn thread_cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

async fn start_gateway(camera: &str) -> Gw {
    let udp_port = StdUdp::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let gw = spawn_gateway(&["--wsc-udp-port", &udp_port, "--max-sessions", "5000"]).await;
    let base = gw.base.clone();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = client
        .post(format!("{base}/streams"))
        .json(&json!({"source_id": "cam", "rtsp_inputs": [{"label": "main", "url": camera, "priority": 0}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    loop {
        let v: Value = client
            .get(format!("{base}/streams/cam"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "running" && v["frames"].as_u64().unwrap_or(0) > 30 {
            break;
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(20),
            "camera never ran: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw
}

struct Receivers {
    packets: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Opens `n` sessions, each proving its own UDP socket, and counts what arrives.
async fn open_sessions(base: &str, n: usize) -> Receivers {
    let packets = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let url = format!("{}/streams/cam/wsc-rtp", base.replace("http://", "ws://"));
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let init: Value = loop {
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) = ws.next().await {
                break serde_json::from_str(&t).unwrap();
            }
        };
        let token = token_from_hex(init["token"].as_str().unwrap()).unwrap();
        let server = SocketAddr::from(([127, 0, 0, 1], init["udp_port"].as_u64().unwrap() as u16));
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Prove as the protocol says: repeat every 500 ms until the ack (proofs are rate-limited per source IP,
        // and every receiver here shares 127.0.0.1).
        let mut buf = vec![0u8; 2048];
        loop {
            udp.send_to(&build_proof(ProofKind::Proof, &token), server)
                .await
                .unwrap();
            match tokio::time::timeout(Duration::from_millis(500), udp.recv(&mut buf)).await {
                Ok(Ok(n)) if parse_ack(&buf[..n]).is_some() => break,
                _ => continue,
            }
        }
        let (p, b) = (packets.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let _ws = ws;
            let mut buf = vec![0u8; 2048];
            let mut last_keepalive = Instant::now();
            loop {
                let Ok(n) = udp.recv(&mut buf).await else {
                    return;
                };
                p.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(n as u64, Ordering::Relaxed);
                if last_keepalive.elapsed() > Duration::from_secs(4) {
                    let _ = udp
                        .send_to(&build_proof(ProofKind::KeepAlive, &token), server)
                        .await;
                    last_keepalive = Instant::now();
                }
            }
        }));
    }
    Receivers {
        packets,
        bytes,
        tasks,
    }
}

/// CPU seconds a raw sendmmsg loop spends sending `pps` packets/s of `size` bytes to each of `n` sockets.
fn raw_sendmmsg(n: usize, pps: f64, size: usize, window: Duration) -> f64 {
    let sinks: Vec<StdUdp> = (0..n)
        .map(|_| StdUdp::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<libc::sockaddr_in> = sinks
        .iter()
        .map(|s| {
            let port = s.local_addr().unwrap().port();
            libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: port.to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
                },
                sin_zero: [0; 8],
            }
        })
        .collect();
    let sender = StdUdp::bind("127.0.0.1:0").unwrap();
    let payload = vec![0x80u8; size];
    // Drain the sinks in another thread so their buffers never fill (not counted).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain_stop = stop.clone();
    let drainer = std::thread::spawn(move || {
        for s in &sinks {
            s.set_nonblocking(true).unwrap();
        }
        let mut buf = [0u8; 2048];
        while !drain_stop.load(Ordering::Relaxed) {
            for s in &sinks {
                while s.recv(&mut buf).is_ok() {}
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let per_tick = (pps / 100.0).round().max(1.0) as usize; // 10 ms ticks
    let start_cpu = thread_cpu();
    let start = Instant::now();
    let mut tick = 0u32;
    while start.elapsed() < window {
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(n * per_tick);
        for a in &addrs {
            for _ in 0..per_tick {
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_name = a as *const _ as *mut libc::c_void;
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                h.msg_iov = &mut iov;
                h.msg_iovlen = 1;
                msgs.push(libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                });
            }
        }
        for chunk in msgs.chunks_mut(1024) {
            // SAFETY: every header points at live buffers and addresses for the duration of the call.
            unsafe {
                libc::sendmmsg(
                    sender.as_raw_fd(),
                    chunk.as_mut_ptr(),
                    chunk.len() as u32,
                    0,
                )
            };
        }
        tick += 1;
        let next = start + Duration::from_millis(10) * tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let cpu = thread_cpu() - start_cpu;
    stop.store(true, Ordering::Relaxed);
    drainer.join().unwrap();
    cpu
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (sizes, window, joins) = if full {
        let sizes = std::env::args()
            .find_map(|a| a.strip_prefix("--sessions=").map(str::to_owned))
            .map_or(vec![1usize, 100, 500], |v| {
                v.split(',').filter_map(|n| n.parse().ok()).collect()
            });
        (sizes, Duration::from_secs(10), 20)
    } else {
        (vec![1usize, 3], Duration::from_secs(2), 3)
    };
    // `--small-camera`: 640x360 at the same 4 Mbit/s, so the encoder leaves the CPU to the gateway and receivers.
    let small = std::env::args().any(|a| a == "--small-camera");
    let (w, h, kbps) = match (full, small) {
        (true, false) => (1920, 1080, 4000),
        (true, true) => (640, 360, 4000),
        _ => (320, 240, 500),
    };
    let camera = RtspFixture::start(FixtureOptions {
        width: w,
        height: h,
        fps: 30,
        gop: 120, // 4 s
        bitrate_kbps: kbps,
        // Incompressible, so the encoder really runs at the bitrate asked for.
        pattern: "snow",
        ..Default::default()
    })
    .unwrap();
    let gw = start_gateway(&camera.url()).await;
    let pid = gw.child.id();

    // Time to first frame: WebSocket open → first complete keyframe, with a 4 s GOP camera.
    let mut ttff = Vec::new();
    for _ in 0..joins {
        let stats = wsc_rtp_client::run(wsc_rtp_client::ClientOptions {
            url: format!(
                "{}/streams/cam/wsc-rtp",
                gw.base.replace("http://", "ws://")
            ),
            websocket: false,
            max_frames: Some(1),
            duration: Some(Duration::from_secs(10)),
            drop_percent: 0,
            output: None,
        })
        .await
        .unwrap();
        ttff.push(stats.time_to_first_frame.unwrap().as_secs_f64() * 1000.0);
    }
    println!(
        "time to first frame, {w}x{h} 30 fps, GOP 4 s, {joins} joins: p50 {:.1} ms, p95 {:.1} ms",
        percentile(&mut ttff.clone(), 0.5),
        percentile(&mut ttff, 0.95)
    );

    // Baseline: ingest only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, rss0) = proc_usage(pid);
    tokio::time::sleep(window).await;
    let (c1, _) = proc_usage(pid);
    let idle_cpu = (c1 - c0) / window.as_secs_f64();
    println!(
        "gateway with 0 sessions (ingest only): {:.1} % of a core, RSS {} KiB",
        idle_cpu * 100.0,
        rss0
    );
    println!();
    println!("| sessions | gateway CPU (% core) | per session (µs/s) | raw sendmmsg (µs/s per receiver) | ratio | RSS per session (KiB) | packets/s per receiver | shortfall vs 1 session |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut reference_pps: Option<f64> = None;
    for &n in &sizes {
        let rx = open_sessions(&gw.base, n).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, _) = proc_usage(pid);
        let p0 = rx.packets.load(Ordering::Relaxed);
        let b0 = rx.bytes.load(Ordering::Relaxed);
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let (c1, rss) = proc_usage(pid);
        let packets = rx.packets.load(Ordering::Relaxed) - p0;
        let bytes = rx.bytes.load(Ordering::Relaxed) - b0;
        let cpu = (c1 - c0) / secs;
        let per_session = (cpu - idle_cpu).max(0.0) / n as f64 * 1e6;
        let pps = packets as f64 / secs / n as f64;
        let size = bytes.checked_div(packets).map_or(1200, |s| s as usize);
        // What one lone receiver gets is the reference for every row, and what the raw loop sends.
        let reference = *reference_pps.get_or_insert(pps);
        let loss = (1.0 - pps / reference).max(0.0);
        let raw = tokio::task::spawn_blocking(move || raw_sendmmsg(n, reference, size, window))
            .await
            .unwrap();
        let raw_per = raw / window.as_secs_f64() / n as f64 * 1e6;
        println!(
            "| {n} | {:.1} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.1} % |",
            cpu * 100.0,
            per_session,
            raw_per,
            if raw_per > 0.0 {
                per_session / raw_per
            } else {
                f64::NAN
            },
            rss.saturating_sub(rss0) as f64 / n as f64,
            pps,
            loss * 100.0
        );
        for t in rx.tasks {
            t.abort();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
