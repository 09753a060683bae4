//! Decoding helper for tests: feeds Annex-B access units through GStreamer's parser and libav decoder and counts
//! the pictures that come out, so a test asserts what a viewer would see.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Codec of the access units to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeCodec {
    H264,
    H265,
}

/// Decodes Annex-B access units; returns (decoded pictures, width, height of the last one).
pub fn decode_annex_b(
    codec: DecodeCodec,
    access_units: &[Vec<u8>],
) -> Result<(usize, u32, u32), String> {
    let (caps, parse, dec) = match codec {
        DecodeCodec::H264 => (
            "video/x-h264,stream-format=byte-stream,alignment=au",
            "h264parse",
            "avdec_h264",
        ),
        DecodeCodec::H265 => (
            "video/x-h265,stream-format=byte-stream,alignment=au",
            "h265parse",
            "avdec_h265",
        ),
    };
    run(
        &format!("appsrc name=src caps=\"{caps}\" format=time ! {parse} ! {dec}"),
        access_units,
        33,
    )
}

/// Depacketizes RTP packets (12-byte header included, payload type 96, 90 kHz) with GStreamer's own
/// rtph264depay / rtph265depay and decodes them; returns (decoded pictures, width, height of the last one).
pub fn decode_rtp(codec: DecodeCodec, packets: &[Vec<u8>]) -> Result<(usize, u32, u32), String> {
    let (name, depay, parse, dec) = rtp_elements(codec);
    run(
        &format!(
            "appsrc name=src format=time caps=\"application/x-rtp,media=video,clock-rate=90000,encoding-name={name},payload=96\" \
             ! {depay} ! {parse} ! {dec}"
        ),
        packets,
        1,
    )
}

/// Parses `head ! videoconvert ! appsink name=sink` and returns the pipeline with its appsink.
fn decoding_pipeline(head: &str) -> Result<(gst::Pipeline, gst_app::AppSink), String> {
    gst::init().map_err(|e| e.to_string())?;
    let launch =
        format!("{head} ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false");
    let pipeline = gst::parse::launch(&launch)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    Ok((pipeline, sink))
}

/// RTP caps name, depayloader, parser and decoder of a codec.
fn rtp_elements(codec: DecodeCodec) -> (&'static str, &'static str, &'static str, &'static str) {
    match codec {
        DecodeCodec::H264 => ("H264", "rtph264depay", "h264parse", "avdec_h264"),
        DecodeCodec::H265 => ("H265", "rtph265depay", "h265parse", "avdec_h265"),
    }
}

fn run(head: &str, buffers: &[Vec<u8>], pts_step_ms: u64) -> Result<(usize, u32, u32), String> {
    let (pipeline, sink) = decoding_pipeline(head)?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or("no appsrc")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let feeder = {
        let aus = buffers.to_vec();
        std::thread::spawn(move || {
            for (i, au) in aus.into_iter().enumerate() {
                let mut buf = gst::Buffer::from_mut_slice(au);
                {
                    let b = buf.get_mut().expect("fresh buffer");
                    b.set_pts(gst::ClockTime::from_mseconds(i as u64 * pts_step_ms));
                }
                if src.push_buffer(buf).is_err() {
                    break;
                }
            }
            let _ = src.end_of_stream();
        })
    };
    let mut count = 0;
    let (mut width, mut height) = (0, 0);
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        count += 1;
        if let Some(s) = sample
            .caps()
            .and_then(|c| c.structure(0).map(|s| s.to_owned()))
        {
            width = s.get::<i32>("width").unwrap_or(0) as u32;
            height = s.get::<i32>("height").unwrap_or(0) as u32;
        }
    }
    let _ = feeder.join();
    let _ = pipeline.set_state(gst::State::Null);
    Ok((count, width, height))
}

/// Listens on 127.0.0.1:`port` with GStreamer's own udpsrc → rtph264depay/rtph265depay → libav decoder, until
/// `frames` pictures decoded or `timeout` passed; returns the pictures decoded. An independent RTP receiver.
pub fn receive_udp(
    codec: DecodeCodec,
    port: u16,
    frames: usize,
    timeout: std::time::Duration,
) -> Result<usize, String> {
    let (name, depay, parse, dec) = rtp_elements(codec);
    let (pipeline, sink) = decoding_pipeline(&format!(
        "udpsrc address=127.0.0.1 port={port} \
         caps=\"application/x-rtp,media=video,clock-rate=90000,encoding-name={name},payload=96\" \
         ! {depay} ! {parse} ! {dec}"
    ))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + timeout;
    let mut count = 0;
    while count < frames && std::time::Instant::now() < deadline {
        if sink
            .try_pull_sample(gst::ClockTime::from_mseconds(200))
            .is_some()
        {
            count += 1;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    Ok(count)
}
