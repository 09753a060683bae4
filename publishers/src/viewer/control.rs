//! What a viewer session is told to do and what it reports: the control commands (the same over HTTP and over
//! WSC-RTP messages), the mode a session is in, the events a DVR player hands in beside its frames, and the input
//! the session asks its driver to feed it from.

/// A control call on a session. Positions are wall-clock epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    Seek { position_ms: i64 },
    Live,
    Speed(f64),
    Pause,
    Play,
}

/// Slowest and fastest playback speeds.
pub const SPEED_RANGE: std::ops::RangeInclusive<f64> = 0.25..=8.0;
/// Above this speed a DVR player sends keyframes only (every frame at 8x would be 8 times the bitrate).
pub const KEYFRAMES_ONLY_ABOVE: f64 = 2.0;

/// Why a command was refused by the session itself (range checks against the recordings are the caller's).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("speed {0} is outside 0.25 to 8")]
    BadSpeed(f64),
    #[error("position {0} is not a wall-clock instant in epoch milliseconds")]
    BadPosition(i64),
}

impl Command {
    /// Checks the command's own values (not whether the instant is recorded).
    pub fn validate(&self) -> Result<(), CommandError> {
        match *self {
            Command::Speed(s) if !SPEED_RANGE.contains(&s) => Err(CommandError::BadSpeed(s)),
            Command::Seek { position_ms } if position_ms < 0 => {
                Err(CommandError::BadPosition(position_ms))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeName {
    Live,
    Dvr,
}

impl ModeName {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeName::Live => "live",
            ModeName::Dvr => "dvr",
        }
    }
}

/// Where a session is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModeView {
    pub mode: ModeName,
    /// The instant shown (DVR), or the last live frame's instant; `None` before the first frame.
    pub position_ms: Option<i64>,
    pub speed: f64,
    pub paused: bool,
}

/// Why a session reports its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeReason {
    Start,
    Seek,
    /// The player opened the recording at this (keyframe) instant.
    Opened,
    Live,
    Speed,
    Pause,
    Play,
    /// The recording has a hole here; playback jumped to the next recorded instant.
    Gap,
    /// A segment could not be read (deleted, corrupt); playback went on after it.
    SegmentSkipped,
    /// Playback at speed 1 or more reached the live edge: back to live.
    CaughtUp,
    /// Nothing more is recorded: back to live.
    RecordingEnded,
    /// The player failed: back to live.
    PlayerFailed,
    /// Sent about once a second in DVR.
    Position,
}

impl ModeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeReason::Start => "start",
            ModeReason::Seek => "seek",
            ModeReason::Opened => "opened",
            ModeReason::Live => "live",
            ModeReason::Speed => "speed",
            ModeReason::Pause => "pause",
            ModeReason::Play => "play",
            ModeReason::Gap => "gap",
            ModeReason::SegmentSkipped => "segment_skipped",
            ModeReason::CaughtUp => "caught_up",
            ModeReason::RecordingEnded => "recording_ended",
            ModeReason::PlayerFailed => "player_failed",
            ModeReason::Position => "position",
        }
    }
}

/// A mode report, for the transport to pass on (WSC-RTP `session_mode`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModeReport {
    pub view: ModeView,
    pub reason: ModeReason,
    pub detail: Option<String>,
}

/// What a DVR player says beside its frames, in order with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// Playback starts at this keyframe instant (at or before the one asked for).
    Opened { shown_ms: i64 },
    /// Nothing is recorded in `[from_ms, to_ms)`: the next frame is at `to_ms`.
    Gap { from_ms: i64, to_ms: i64 },
    /// A segment could not be played (gone, corrupt, another codec).
    SegmentSkipped { at_ms: i64, reason: String },
    /// Everything recorded so far has been read; more may come (the segment is still being written).
    LiveEdge,
    /// Nothing more is recorded.
    End,
    /// The player can't go on.
    Failed(String),
}

/// Which input the session wants its frames from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputPlan {
    /// The stream's hub (a new subscription: it starts at the GOP cache).
    Live,
    /// A DVR player from the keyframe at or before `from_ms`.
    Dvr { from_ms: i64, keyframes_only: bool },
    /// No input (paused while live): release the subscription.
    Hold,
}

/// Asked of the driver: feed frames from `plan`, tagged with `generation`. Frames and events tagged with an older
/// generation are dropped, so whatever an old input still had queued never reaches the viewer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputRequest {
    pub generation: u64,
    pub plan: InputPlan,
}
