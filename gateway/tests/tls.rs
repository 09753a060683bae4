//! HTTPS/WSS, tried as a new user would: a gateway started with a certificate and key (self-signed here, made
//! with rcgen) and an admin token serves the live view page to headless Chromium over HTTPS, which plays the
//! stream over WHEP with a viewer token from the page URL; the reference client plays it over WSS trusting that
//! certificate, and refuses the connection when it does not.

mod common;

use std::time::{Duration, Instant};

use api_models::{CreateStream, InputDto, TransportDto};
use common::browser::Browser;
use gateway::access::token::{TokenKey, ViewerClaims};
use gateway::config::TlsFiles;
use gateway::{Config, Gateway};
use wsc_rtp_client::{run_with, ClientOptions, Connect};

const STATS: &str = "
    const p = window.gatewayPlayer;
    if (!p || !p.pc) return { frames: 0, error: p ? p.error : 'no player' };
    const r = await p.pc.getStats();
    let v = null;
    r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') v = s; });
    return { frames: v ? (v.framesDecoded || 0) : 0, error: p.error, proto: location.protocol };
";

fn options(url: String) -> ClientOptions {
    ClientOptions {
        url,
        websocket: false,
        max_frames: Some(10),
        duration: Some(Duration::from_secs(15)),
        drop_percent: 0,
        start_ms: None,
        speed: None,
        output: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_and_reference_client_play_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let gw = Gateway::start(Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        wsc_udp_port: 0,
        webrtc: gateway::config::WebRtcConfig {
            udp_port: 0,
            ..Default::default()
        },
        admin_token: Some("tls-admin".into()),
        tls: Some(TlsFiles {
            cert: cert_pem.clone(),
            key: key_pem,
        }),
        ..Config::default()
    })
    .await
    .expect("gateway starts with TLS");
    let base = gw.base_url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    gw.registry()
        .create(CreateStream {
            source_id: "cam".into(),
            rtsp_inputs: vec![InputDto {
                label: "pattern".into(),
                url: "testsrc://?width=320&height=240&fps=25&gop=25".into(),
                priority: 0,
                transport: TransportDto::Tcp,
            }],
            username: None,
            password: None,
            should_record: false,
            restart_interval_secs: None,
            retention: None,
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while gw.registry().get("cam").unwrap().frames < 5 {
        assert!(Instant::now() < deadline, "the test pattern never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secret = std::fs::read(dir.path().join("data").join(gateway::access::KEY_FILE)).unwrap();
    let token = TokenKey::new(&secret).mint(&ViewerClaims {
        stream: "cam".into(),
        expires_ms: 4_000_000_000_000,
        dvr: false,
        export: false,
    });

    // The reference client over WSS, trusting the gateway's certificate...
    let wss = format!("{}/streams/cam/wsc-rtp", base.replace("https://", "wss://"));
    let trusted = Connect {
        ca_cert: Some(cert_pem),
        bearer: Some(token.clone()),
    };
    let stats = run_with(options(wss.clone()), &trusted)
        .await
        .expect("plays over WSS");
    assert_eq!(stats.frames, 10, "{stats:?}");
    // ...and not without it: the certificate is really checked.
    let untrusted = Connect {
        ca_cert: None,
        bearer: Some(token.clone()),
    };
    let err = run_with(options(wss), &untrusted)
        .await
        .expect_err("unknown issuer");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );

    // Chromium over HTTPS: the page, its scripts and WHEP all go through TLS.
    let page = format!("{base}/debug/webrtc-client?stream=cam&token={token}");
    let browser = Browser::open(&page, &["--ignore-certificate-errors"]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = browser.script(STATS).await;
        assert!(s["error"].is_null(), "the page shows an error: {s}");
        if s["frames"].as_u64().unwrap_or(0) > 25 {
            assert_eq!(s["proto"], "https:");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Chromium decoded too little over HTTPS: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.close().await;
    gw.shutdown().await.unwrap();
}
