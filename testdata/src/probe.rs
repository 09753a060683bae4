//! What ffprobe, an independent decoder, reads from a file: the check a user would make on a recording or a
//! received stream.

use std::path::Path;
use std::process::Command;

/// The first video stream of a file, as ffprobe counts it by decoding every frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Probed {
    pub frames: u64,
    pub width: u32,
    pub height: u32,
    /// The container's duration; 0 where the format has none (a raw elementary stream).
    pub duration_secs: f64,
}

/// Probes `file`, forcing the demuxer `format` (`h264`, `hevc`) for raw streams; `None` if ffprobe reads no
/// video frame count from it.
pub fn ffprobe(file: &Path, format: Option<&str>) -> Option<Probed> {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .args(["-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height:format=duration",
            "-of",
            "default=nw=1",
        ])
        .arg(file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    Some(Probed {
        frames: field("nb_read_frames")?.parse().ok()?,
        width: field("width")?.parse().ok()?,
        height: field("height")?.parse().ok()?,
        duration_secs: field("duration")
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
    })
}

/// Decodes every frame of `file` with ffmpeg (forcing the demuxer `format` for raw streams) and returns what the
/// decoder reported as errors, one line each: a missing reference, a corrupt slice, a bad NAL unit. An empty list
/// is a clean decode. `Err` if ffmpeg could not run.
pub fn decode_errors(file: &Path, format: Option<&str>) -> Result<Vec<String>, String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd
        .arg("-i")
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .map_err(|e| format!("running ffmpeg: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}
