//! Recorded cameras for the live-rewind tests: turning recording on, waiting on the recorded ranges, and a
//! recording with a camera outage (a gap) in it.

use std::time::{Duration, Instant};

use gateway::Gateway;
use serde_json::{json, Value};
use testdata::{FixtureCodec, FixtureOptions, RtspFixture};

/// The stream's recorded ranges, `(start_ms, end_ms)`.
pub async fn ranges(gw: &Gateway, stream: &str) -> Vec<(i64, i64)> {
    let v: Value = reqwest::get(format!("{}/streams/{stream}/recordings", gw.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ranges_of(&v)
}

/// The ranges of a `GET /streams/{id}/recordings` answer, `(start_ms, end_ms)`.
pub fn ranges_of(recordings: &Value) -> Vec<(i64, i64)> {
    recordings["ranges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["start_ms"].as_i64().unwrap(),
                r["end_ms"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Waits until the recording has `n` ranges, the last at least `last_ms` long.
pub async fn recorded(gw: &Gateway, stream: &str, n: usize, last_ms: i64) -> Vec<(i64, i64)> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let r = ranges(gw, stream).await;
        if r.len() == n && r[n - 1].1 - r[n - 1].0 >= last_ms {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "recording never reached {n} ranges: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Turns recording on.
pub async fn record(gw: &Gateway, stream: &str) {
    let r = reqwest::Client::new()
        .patch(format!("{}/streams/{stream}", gw.base_url()))
        .json(&json!({"should_record": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A camera of `codec` recorded in 2 s segments, returned once `recorded_ms` of it are recorded, with its range.
pub async fn recorded_camera(
    codec: FixtureCodec,
    recorded_ms: i64,
) -> (RtspFixture, Gateway, tempfile::TempDir, (i64, i64)) {
    let (fixture, gw, dir) = super::gateway_with_camera_and(
        FixtureOptions {
            codec,
            ..Default::default()
        },
        |c| c.segment_secs = 2,
    )
    .await;
    record(&gw, "cam").await;
    let r = recorded(&gw, "cam", 1, recorded_ms).await;
    (fixture, gw, dir, r[0])
}

/// A recorded camera with an outage: ranges `[a0, a1)` and `[b0, b1)`, the second still being written.
pub async fn recorded_camera_with_a_gap(
) -> (RtspFixture, Gateway, tempfile::TempDir, Vec<(i64, i64)>) {
    let (mut fixture, gw, dir) =
        super::gateway_with_camera_and(FixtureOptions::default(), |c| c.segment_secs = 2).await;
    record(&gw, "cam").await;
    recorded(&gw, "cam", 1, 5_000).await;
    fixture.stop();
    // The camera stays away for a while once the gateway has noticed: the recording gets a gap.
    super::stream_until(&gw, "cam", |v| v["state"] != "running").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fixture.restart().unwrap();
    let r = recorded(&gw, "cam", 2, 4_000).await;
    (fixture, gw, dir, r)
}
