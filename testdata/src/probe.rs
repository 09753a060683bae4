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
