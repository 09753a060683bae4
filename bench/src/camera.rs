//! The cameras of the benchmarks: the RTSP fixture (gstreamer-rtsp-server, x264) at the sizes the scenarios name,
//! with an incompressible picture so the encoder really produces the bitrate asked for. Quick mode shrinks them.

use testdata::{FixtureOptions, RtspFixture};

use crate::Ctx;

/// One 4 Mbit/s 1080p30 H.264 camera with a 4 s GOP (quick: 320x240 at 500 kbit/s), optionally stamping each
/// frame with its send time.
pub fn four_mbps(ctx: &Ctx, stamp_frames: bool) -> anyhow::Result<RtspFixture> {
    let (width, height, bitrate_kbps) = if ctx.quick {
        (320, 240, 500)
    } else {
        (1920, 1080, 4000)
    };
    snow(width, height, bitrate_kbps, 120, stamp_frames)
}

/// A 2 Mbit/s 640x360 camera with a 1 s GOP (quick: 320x240 at 300 kbit/s), for ingest scale.
pub fn two_mbps(ctx: &Ctx) -> anyhow::Result<RtspFixture> {
    let (width, height, bitrate_kbps) = if ctx.quick {
        (320, 240, 300)
    } else {
        (640, 360, 2000)
    };
    snow(width, height, bitrate_kbps, 30, false)
}

/// 30 fps of the incompressible `snow` pattern, so x264 really produces the bitrate asked for.
fn snow(
    width: u32,
    height: u32,
    bitrate_kbps: u32,
    gop: u32,
    stamp_frames: bool,
) -> anyhow::Result<RtspFixture> {
    Ok(RtspFixture::start(FixtureOptions {
        width,
        height,
        fps: 30,
        gop,
        bitrate_kbps,
        pattern: "snow",
        stamp_frames,
        // A timed camera's encoder must not hold up the receivers and the direct path that share its core
        // (scenarios/latency.rs says how it did).
        background_encoder: stamp_frames,
        ..Default::default()
    })?)
}

/// Camera description for table rows.
pub fn describe(ctx: &Ctx) -> &'static str {
    if ctx.quick {
        "320x240 0.5 Mbit/s"
    } else {
        "1080p30 4 Mbit/s"
    }
}
