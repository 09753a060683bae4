//! Ingest against a real RTSP server (gstreamer-rtsp-server on loopback): both codecs, both transports, digest
//! auth, camera loss with the offline slate, recovery at a keyframe, and fail-over with a return to the primary.

mod common;

use std::time::Duration;

use common::{decode, RecordingSink};
use sources::{
    Codec, Credentials, IngestHandle, IngestOptions, IngestState, InputSpec, InputUrl, Transport,
};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};

fn rtsp_input(label: &str, url: &str, transport: Transport, priority: i32) -> InputSpec {
    InputSpec {
        label: label.into(),
        url: InputUrl::parse(url, transport).unwrap().0,
        priority,
    }
}

fn options(inputs: Vec<InputSpec>) -> IngestOptions {
    IngestOptions {
        inputs,
        watchdog: Duration::from_secs(3),
        ..Default::default()
    }
}

async fn pulls_and_decodes(codec: FixtureCodec, transport: Transport) {
    let fixture = RtspFixture::start(FixtureOptions {
        codec,
        ..Default::default()
    })
    .unwrap();
    let sink = RecordingSink::default();
    let ingest = IngestHandle::spawn(
        "cam".into(),
        options(vec![rtsp_input("main", &fixture.url(), transport, 0)]),
        std::sync::Arc::new(sink.clone()),
    );
    sink.wait_for("50 frames", Duration::from_secs(20), |r| {
        r.frames.len() >= 50
    })
    .await;
    ingest.stop().await;
    let r = sink.0.lock();
    assert!(r.frames[0].is_keyframe, "first frame is a keyframe");
    assert!(r.frames.iter().all(|f| !f.is_slate));
    assert_eq!(r.params.len(), 1, "one parameter set announcement");
    let p = &r.params[0];
    assert_eq!((p.width, p.height), (320, 240));
    assert_eq!(
        p.codec,
        if codec == FixtureCodec::H264 {
            Codec::H264
        } else {
            Codec::H265
        }
    );
    assert!(
        r.frames.windows(2).all(|w| w[1].pts_90k > w[0].pts_90k),
        "monotonic pts"
    );
    let span_ms = r.frames.last().unwrap().wall_ms - r.frames[0].wall_ms;
    assert!(
        (1500..=2500).contains(&span_ms),
        "50 frames at 25 fps span ~2 s of wall time, got {span_ms} ms"
    );
    let (decoded, w, h) = decode(&r.frames);
    assert!(decoded >= 48, "decoded {decoded} of {}", r.frames.len());
    assert_eq!((w, h), (320, 240));
    assert_eq!(r.statuses.last().unwrap().state, IngestState::Running);
    assert_eq!(
        r.statuses.last().unwrap().active_input.as_deref(),
        Some("main")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_over_tcp_decodes() {
    pulls_and_decodes(FixtureCodec::H264, Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_over_tcp_decodes() {
    pulls_and_decodes(FixtureCodec::H265, Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_over_udp_decodes() {
    pulls_and_decodes(FixtureCodec::H264, Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_right_and_wrong_password() {
    let fixture = RtspFixture::start(FixtureOptions {
        auth: Some(("viewer".into(), "s3cret".into())),
        ..Default::default()
    })
    .unwrap();
    // Wrong password: never runs, and the error says why without the password.
    let bad = RecordingSink::default();
    let mut opts = options(vec![rtsp_input("main", &fixture.url(), Transport::Tcp, 0)]);
    opts.credentials = Some(Credentials {
        username: "viewer".into(),
        password: "wrong-pass".into(),
    });
    let ingest = IngestHandle::spawn("cam".into(), opts.clone(), std::sync::Arc::new(bad.clone()));
    bad.wait_for("an error", Duration::from_secs(10), |r| {
        r.statuses.iter().any(|s| s.last_error.is_some())
    })
    .await;
    ingest.stop().await;
    assert_eq!(
        bad.state(),
        IngestState::Error,
        "wrong credentials need a configuration change"
    );
    let err = bad.status().last_error.unwrap();
    assert!(err.contains("401"), "{err}");
    assert!(!err.contains("wrong-pass"));
    assert!(bad.0.lock().frames.iter().all(|f| f.is_slate));

    // Right password written in the URL: moved out of it, and it plays.
    let url = fixture.url().replace("rtsp://", "rtsp://viewer:s3cret@");
    let (input_url, creds) = InputUrl::parse(&url, Transport::Tcp).unwrap();
    assert!(!input_url.to_string().contains("s3cret"));
    let good = RecordingSink::default();
    let mut opts = options(vec![InputSpec {
        label: "main".into(),
        url: input_url,
        priority: 0,
    }]);
    opts.credentials = creds;
    let ingest = IngestHandle::spawn("cam".into(), opts, std::sync::Arc::new(good.clone()));
    good.wait_for("frames", Duration::from_secs(15), |r| r.frames.len() >= 10)
        .await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_loss_shows_slate_then_resumes_at_a_keyframe() {
    let mut fixture = RtspFixture::start(FixtureOptions::default()).unwrap();
    let sink = RecordingSink::default();
    let ingest = IngestHandle::spawn(
        "cam".into(),
        options(vec![rtsp_input("main", &fixture.url(), Transport::Tcp, 0)]),
        std::sync::Arc::new(sink.clone()),
    );
    sink.wait_for("frames", Duration::from_secs(15), |r| r.frames.len() >= 10)
        .await;
    fixture.stop();
    sink.wait_for("slate", Duration::from_secs(15), |r| {
        r.frames.iter().filter(|f| f.is_slate).count() >= 3
    })
    .await;
    let state = sink.state();
    assert!(
        matches!(state, IngestState::Reconnecting | IngestState::Offline),
        "{state:?}"
    );
    let slate: Vec<_> = sink
        .0
        .lock()
        .frames
        .iter()
        .filter(|f| f.is_slate)
        .cloned()
        .collect();
    assert!(slate
        .iter()
        .all(|f| f.is_keyframe && f.params.width == 320 && f.params.height == 240));
    let (decoded, w, h) = decode(&slate);
    assert_eq!(
        (decoded, w, h),
        (slate.len(), 320, 240),
        "slate decodes at the stream's size"
    );

    fixture.restart().unwrap();
    let before = sink.0.lock().frames.len();
    sink.wait_for("live again", Duration::from_secs(30), |r| {
        r.frames[before..].iter().filter(|f| !f.is_slate).count() >= 10
    })
    .await;
    ingest.stop().await;
    let r = sink.0.lock();
    let first_live = r.frames[before..].iter().find(|f| !f.is_slate).unwrap();
    assert!(first_live.is_keyframe, "resumes at a keyframe");
    assert_eq!(r.statuses.last().unwrap().state, IngestState::Running);
    assert!(r.statuses.last().unwrap().reconnects >= 1);
    assert!(
        r.frames.windows(2).all(|w| w[1].pts_90k > w[0].pts_90k),
        "pts monotonic across the outage"
    );
    // Parameters were announced for the slate and again for the camera.
    assert!(r.params.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_and_returns_to_the_primary() {
    let mut primary = RtspFixture::start(FixtureOptions::default()).unwrap();
    primary.stop();
    let backup = RtspFixture::start(FixtureOptions {
        width: 352,
        height: 288,
        ..Default::default()
    })
    .unwrap();
    let sink = RecordingSink::default();
    let mut opts = options(vec![
        rtsp_input("backup", &backup.url(), Transport::Tcp, 10),
        rtsp_input("primary", &primary.url(), Transport::Tcp, 0),
    ]);
    opts.retry_primary_after = Duration::from_secs(2);
    let ingest = IngestHandle::spawn("cam".into(), opts, std::sync::Arc::new(sink.clone()));
    sink.wait_for("backup running", Duration::from_secs(15), |r| {
        r.statuses
            .last()
            .is_some_and(|s| s.active_input.as_deref() == Some("backup"))
    })
    .await;
    primary.restart().unwrap();
    sink.wait_for("primary running", Duration::from_secs(20), |r| {
        r.statuses
            .last()
            .is_some_and(|s| s.active_input.as_deref() == Some("primary"))
    })
    .await;
    sink.wait_for("primary frames", Duration::from_secs(10), |r| {
        r.frames.last().is_some_and(|f| f.params.width == 320)
    })
    .await;
    ingest.stop().await;
    let r = sink.0.lock();
    // The switch back happened without a slate in between: the probe opened the primary while the backup played.
    let first_primary = r.frames.iter().position(|f| f.params.width == 320).unwrap();
    assert!(r.frames[first_primary].is_keyframe);
    assert!(!r.frames[first_primary - 1].is_slate);
    assert_eq!(r.frames[first_primary - 1].params.width, 352);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_camera_reports_error_and_shows_slate() {
    let sink = RecordingSink::default();
    let ingest = IngestHandle::spawn(
        "cam".into(),
        options(vec![rtsp_input(
            "main",
            "rtsp://127.0.0.1:9/none",
            Transport::Tcp,
            0,
        )]),
        std::sync::Arc::new(sink.clone()),
    );
    sink.wait_for("slate", Duration::from_secs(10), |r| {
        r.frames.iter().any(|f| f.is_slate)
    })
    .await;
    ingest.stop().await;
    let s = sink.status();
    assert_eq!(s.state, IngestState::Offline, "the only input failed");
    assert!(s.last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_reconnects_a_camera_that_goes_silent() {
    let fixture = RtspFixture::start(FixtureOptions {
        stop_after_frames: Some(25),
        ..Default::default()
    })
    .unwrap();
    let sink = RecordingSink::default();
    let mut opts = options(vec![rtsp_input("main", &fixture.url(), Transport::Tcp, 0)]);
    opts.watchdog = Duration::from_secs(2);
    let ingest = IngestHandle::spawn("cam".into(), opts, std::sync::Arc::new(sink.clone()));
    sink.wait_for("a reconnect after silence", Duration::from_secs(20), |r| {
        r.statuses
            .iter()
            .any(|s| s.state == IngestState::Running && s.reconnects >= 1)
    })
    .await;
    ingest.stop().await;
    let r = sink.0.lock();
    let errors: Vec<_> = r
        .statuses
        .iter()
        .filter_map(|s| s.last_error.clone())
        .collect();
    assert!(errors.iter().any(|e| e.contains("watchdog")), "{errors:?}");
    assert!(r.frames.iter().any(|f| f.is_slate), "slate while silent");
}
