//! Making a segment that a crash left half-written readable again, and reading what a segment file holds.
//!
//! While written, a segment is a fragmented MP4: `ftyp`, the first fragment's `mdat` and the `moov` describing
//! it, then one `mdat` + `moof` pair per fragment (GStreamer's `mp4mux` writes a fragment's data before its
//! `moof`; the usual `moof` + `mdat` order is read the same way). A crash can leave the last pair without its
//! second half, or a box cut short. [`complete_prefix`] walks the top-level boxes and finds where the last
//! complete fragment ends; [`recover`] cuts the file there, which leaves a valid fragmented MP4 that players read,
//! and measures it. [`probe`] reads codec, size and duration of any segment file with GStreamer's demuxer.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sources::Codec;

/// Why a segment file could not be read or recovered.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("no complete MP4 header: nothing recorded survived")]
    NothingComplete,
    #[error("GStreamer could not read the file: {0}")]
    Demux(String),
}

/// What a segment file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    /// From the first frame's start to the last frame's end.
    pub duration_ms: i64,
    pub bytes: u64,
}

/// Length of the longest prefix of the MP4 in `r` that ends on a box boundary after the `moov` and after every
/// complete `moof` + `mdat` pair; `None` if not even the `moov` is complete.
pub fn complete_prefix<R: Read + Seek>(r: &mut R) -> io::Result<Option<u64>> {
    let len = r.seek(SeekFrom::End(0))?;
    let mut pos = 0u64;
    let mut good: Option<u64> = None;
    // Halves of the fragment after `good` seen so far.
    let (mut moof, mut mdat) = (false, false);
    while pos + 8 <= len {
        r.seek(SeekFrom::Start(pos))?;
        let mut header = [0u8; 16];
        r.read_exact(&mut header[..8])?;
        let kind: [u8; 4] = header[4..8].try_into().expect("4 bytes");
        let size = match u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) {
            // A box to the end of the file: complete only if the file was closed, which a crash rules out.
            0 => break,
            1 => {
                if pos + 16 > len {
                    break;
                }
                r.read_exact(&mut header[8..16])?;
                u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"))
            }
            n => u64::from(n),
        };
        if size < 8 || pos + size > len {
            break;
        }
        pos += size;
        match &kind {
            b"moov" => (good, moof, mdat) = (Some(pos), false, false),
            b"moof" => moof = true,
            b"mdat" => mdat = true,
            // Padding and a finalized file's index: complete, if nothing is half-done before them.
            b"mfra" | b"free" | b"skip" if good.is_some() && !moof && !mdat => good = Some(pos),
            _ => {}
        }
        if good.is_some() && moof && mdat {
            (good, moof, mdat) = (Some(pos), false, false);
        }
    }
    Ok(good)
}

/// Cuts a crashed segment after its last complete fragment and measures what is left.
pub fn recover(path: &Path) -> Result<SegmentInfo, RecoverError> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let keep = complete_prefix(&mut file)?.ok_or(RecoverError::NothingComplete)?;
    if keep < file.metadata()?.len() {
        file.set_len(keep)?;
        file.sync_all()?;
    }
    drop(file);
    probe(path)
}

/// Reads a segment file's codec, size, frame count and duration (demuxing only, no decoding).
pub fn probe(path: &Path) -> Result<SegmentInfo, RecoverError> {
    let bytes = std::fs::metadata(path)?.len();
    gst::init().map_err(|e| RecoverError::Demux(e.to_string()))?;
    let pipeline = gst::parse::launch(
        "filesrc name=src ! qtdemux name=demux demux.video_0 ! appsink name=sink sync=false",
    )
    .map_err(|e| RecoverError::Demux(e.to_string()))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| RecoverError::Demux("not a pipeline".into()))?;
    let src = pipeline.by_name("src").expect("named in the launch line");
    src.set_property("location", path.to_string_lossy().as_ref());
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .expect("named in the launch line");
    let run = || -> Result<SegmentInfo, RecoverError> {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| RecoverError::Demux(e.to_string()))?;
        let (mut frames, mut first, mut end) = (0u64, None::<u64>, 0u64);
        let mut format = None;
        let timeout = gst::ClockTime::from_nseconds(Duration::from_secs(10).as_nanos() as u64);
        while let Some(sample) = sink.try_pull_sample(timeout) {
            if format.is_none() {
                format = sample.caps().and_then(caps_format);
            }
            let Some(buffer) = sample.buffer() else {
                continue;
            };
            let Some(pts) = buffer.pts().map(|t| t.nseconds()) else {
                continue;
            };
            frames += 1;
            first = Some(first.map_or(pts, |f| f.min(pts)));
            end = end.max(pts + buffer.duration().map_or(0, |d| d.nseconds()));
        }
        if sink.is_eos() || frames > 0 {
            let (codec, width, height) =
                format.ok_or_else(|| RecoverError::Demux("no video caps".into()))?;
            Ok(SegmentInfo {
                codec,
                width,
                height,
                frames,
                duration_ms: ((end - first.unwrap_or(0)) / 1_000_000) as i64,
                bytes,
            })
        } else {
            Err(RecoverError::Demux("no frame could be read".into()))
        }
    };
    let result = run();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn caps_format(caps: &gst::CapsRef) -> Option<(Codec, u32, u32)> {
    let s = caps.structure(0)?;
    let codec = match s.name().as_str() {
        "video/x-h264" => Codec::H264,
        "video/x-h265" => Codec::H265,
        _ => return None,
    };
    let width = s.get::<i32>("width").ok()?;
    let height = s.get::<i32>("height").ok()?;
    Some((codec, width as u32, height as u32))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn mp4_box(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut b = ((8 + body) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.resize(8 + body, 0);
        b
    }

    #[test]
    fn reads_mp4muxs_data_first_layout() {
        // ftyp, free, mdat (first fragment), moov, free, mdat + moof (second), free, mdat (third, no moof yet).
        let mut file = Vec::new();
        for (kind, len) in [(b"ftyp", 24), (b"free", 0), (b"mdat", 800), (b"moov", 200)] {
            file.extend(mp4_box(kind, len));
        }
        let after_moov = file.len() as u64;
        for (kind, len) in [(b"free", 0), (b"mdat", 600), (b"moof", 80)] {
            file.extend(mp4_box(kind, len));
        }
        let after_second = file.len() as u64;
        for (kind, len) in [(b"free", 0), (b"mdat", 600)] {
            file.extend(mp4_box(kind, len));
        }
        // The padding after the second fragment is complete too; the third's mdat has no moof.
        assert_eq!(
            complete_prefix(&mut Cursor::new(&file)).unwrap(),
            Some(after_second + 8)
        );
        assert_eq!(
            complete_prefix(&mut Cursor::new(&file[..after_moov as usize + 100])).unwrap(),
            Some(after_moov + 8),
            "the moov and its padding"
        );
    }

    #[test]
    fn ends_after_the_last_complete_fragment() {
        let mut file = Vec::new();
        for (kind, len) in [
            (b"ftyp", 12),
            (b"moov", 100),
            (b"moof", 40),
            (b"mdat", 500),
            (b"moof", 40),
        ] {
            file.extend(mp4_box(kind, len));
        }
        let after_first_fragment = 20 + 108 + 48 + 508;
        let mut truncated_mdat = mp4_box(b"mdat", 500);
        truncated_mdat.truncate(300);
        file.extend(truncated_mdat);
        assert_eq!(
            complete_prefix(&mut Cursor::new(&file)).unwrap(),
            Some(after_first_fragment as u64)
        );
        // Cut inside the moov: nothing usable.
        assert_eq!(
            complete_prefix(&mut Cursor::new(&file[..60])).unwrap(),
            None
        );
        // A finalized file is complete as it is.
        let mut whole = file[..after_first_fragment].to_vec();
        whole.extend(mp4_box(b"mfra", 16));
        assert_eq!(
            complete_prefix(&mut Cursor::new(&whole)).unwrap(),
            Some(whole.len() as u64)
        );
        // Garbage is not an MP4.
        assert_eq!(
            complete_prefix(&mut Cursor::new(vec![0xffu8; 64])).unwrap(),
            None
        );
    }
}
