//! The gateway's REST API as data: request and response bodies with serde and utoipa (OpenAPI) derives.
//!
//! Shared by the gateway and its clients; this crate does no I/O. Request bodies refuse unknown fields so a typo
//! is a 400, not a silently ignored setting. Time is wall-clock epoch milliseconds wherever it appears, and units
//! are in field names (`_secs`, `_ms`, `_bps`).

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Default of `restart_interval_secs`.
pub const DEFAULT_RESTART_INTERVAL_SECS: u64 = 60;

/// RTSP lower transport of an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransportDto {
    /// RTP interleaved in the RTSP TCP connection (works through every firewall).
    #[default]
    Tcp,
    /// RTP over UDP; reopened over TCP when UDP delivers nothing for a few seconds.
    Udp,
}

/// One input of a stream, as sent by a client. `Debug` hides the URL's user info and query values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputDto {
    /// Name of the input, unique within the stream (1 to 64 printable characters), e.g. `main`.
    #[schema(example = "main")]
    pub label: String,
    /// `rtsp://`, `rtsps://` or `testsrc://` (built-in test pattern, e.g.
    /// `testsrc://?codec=h264&width=1280&height=720&fps=25&gop=50&bitrate_kbps=2000`). Credentials written in an
    /// RTSP URL (`rtsp://user:pass@host/...`) are moved out of it and stored apart.
    #[schema(example = "rtsp://127.0.0.1:8554/stream1")]
    pub url: String,
    /// Lower wins: the input with the lowest number that works is the one delivering. Default 0.
    #[serde(default)]
    pub priority: i32,
    /// RTSP transport; default `tcp`. Ignored for `testsrc://`.
    #[serde(default)]
    pub transport: TransportDto,
}

/// Body of `POST /streams`: registers a stream. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// Stream id used in every URL: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
    #[schema(example = "porch")]
    pub source_id: String,
    /// 1 to 16 inputs; labels unique within the stream.
    pub rtsp_inputs: Vec<InputDto>,
    /// Camera user name, for every input of the stream. Wins over a user name written in a URL.
    #[serde(default)]
    pub username: Option<String>,
    /// Camera password, for every input of the stream. Wins over a password written in a URL. Never returned.
    #[serde(default)]
    pub password: Option<String>,
    /// Record this stream (DVR). Default false.
    #[serde(default)]
    pub should_record: bool,
    /// After a fail-over to a lower-priority input, how often (seconds) the higher-priority inputs are tried again;
    /// one that delivers again takes over without a gap. 1 to 86400, default 60.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400, example = 60)]
    pub restart_interval_secs: Option<u64>,
    /// How long and how much of this stream's recording to keep; default: no limit of its own (the disk's
    /// free-space floor still applies).
    #[serde(default)]
    pub retention: Option<RetentionDto>,
}

/// Limits on what is kept of a stream's recording; the oldest segments go first, the one being written never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionDto {
    /// Delete segments that ended longer ago than this (at least 60).
    #[serde(default)]
    #[schema(minimum = 60, example = 604800)]
    pub max_age_secs: Option<u64>,
    /// Keep the stream's recording under this many bytes (at least 1 MiB).
    #[serde(default)]
    #[schema(minimum = 1048576)]
    pub max_bytes: Option<u64>,
}

/// Body of `PATCH /streams/{source_id}`: every field is optional; absent fields keep their value.
///
/// Credentials:
/// - `password` sent as `null` or `""` removes the stored credentials (user name and password), unless the same
///   request sets a non-empty `username` — then that user name is stored with an empty password.
/// - `username` sent as `null` or `""` removes the stored credentials as well.
/// - A non-empty `username` or `password` replaces that part and keeps the other.
/// - New `rtsp_inputs` with credentials in their URLs replace the stored credentials, unless `username` or
///   `password` is also given (explicit fields win).
///
/// `Debug` never prints the password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchStream {
    /// Replaces all inputs (1 to 16, labels unique). The stream's ingest restarts; viewers stay attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_inputs: Option<Vec<InputDto>>,
    /// See the credentials rule above. Absent: unchanged; `null` or `""`: clears the credentials.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// See the credentials rule above. Absent: unchanged; `null` or `""`: clears the credentials.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub should_record: Option<bool>,
    /// After a fail-over to a lower-priority input, how often (seconds) the higher-priority inputs are tried again.
    /// 1 to 86400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub restart_interval_secs: Option<u64>,
    /// Replaces the stream's retention limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionDto>,
}

/// Tells "field absent" (outer `None`, via `#[serde(default)]`) from "field is `null`" (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `url` as `Debug` shows it: no user info, and every query value replaced (some cameras take
/// `?user=…&password=…`).
fn redacted_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(q) = query {
        let keys: Vec<String> = q
            .split('&')
            .map(|kv| format!("{}=…", kv.split('=').next().unwrap_or("")))
            .collect();
        out.push('?');
        out.push_str(&keys.join("&"));
    }
    out
}

impl std::fmt::Debug for InputDto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputDto")
            .field("label", &self.label)
            .field("url", &redacted_url(&self.url))
            .field("priority", &self.priority)
            .field("transport", &self.transport)
            .finish()
    }
}

impl std::fmt::Debug for CreateStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateStream")
            .field("source_id", &self.source_id)
            .field("rtsp_inputs", &self.rtsp_inputs)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("should_record", &self.should_record)
            .field("restart_interval_secs", &self.restart_interval_secs)
            .field("retention", &self.retention)
            .finish()
    }
}

impl std::fmt::Debug for PatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatchStream")
            .field("rtsp_inputs", &self.rtsp_inputs)
            .field("username", &self.username)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|p| p.as_ref().map(|_| "<redacted>")),
            )
            .field("should_record", &self.should_record)
            .field("restart_interval_secs", &self.restart_interval_secs)
            .field("retention", &self.retention)
            .finish()
    }
}

/// Body of `POST /tokens` (admin): a viewer token for one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintToken {
    /// The stream the token opens.
    #[schema(example = "porch")]
    pub stream: String,
    /// Lifetime in seconds, 1 to 2592000 (30 days); default 3600.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 2592000, example = 3600)]
    pub ttl_secs: Option<u64>,
    /// May play from the recording (start in it, seek, pause, speed) and list the recordings. Default false.
    #[serde(default)]
    pub dvr: bool,
    /// May download MP4 exports. Default false.
    #[serde(default)]
    pub export: bool,
}

/// Answer of `POST /tokens`. `Debug` never prints the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ViewerToken {
    /// Send as `Authorization: Bearer <token>`, or as the `token` query parameter (WebSockets, `<video>` URLs).
    pub token: String,
    /// Wall-clock epoch ms after which the token is refused.
    #[schema(example = 1795003600000i64)]
    pub expires_ms: i64,
}

impl std::fmt::Debug for ViewerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerToken")
            .field("token", &"<redacted>")
            .field("expires_ms", &self.expires_ms)
            .finish()
    }
}

/// Lifecycle state of a stream's ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamStateDto {
    /// No input has delivered a frame yet.
    Starting,
    /// An input delivers frames.
    Running,
    /// The input that was delivering failed; trying again (viewers see the offline slate).
    Reconnecting,
    /// Every input failed; still retrying forever (viewers see the offline slate).
    Offline,
    /// The configuration cannot work; not retried.
    Error,
}

/// One input of a stream, as shown by the API. The URL never carries credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InputView {
    pub label: String,
    /// The input URL without credentials.
    #[schema(example = "rtsp://127.0.0.1:8554/stream1")]
    pub url: String,
    pub priority: i32,
    pub transport: TransportDto,
}

/// A stream: its configuration and live statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamView {
    pub source_id: String,
    pub state: StreamStateDto,
    /// Label of the input currently delivering frames.
    pub active_input: Option<String>,
    /// Inputs in priority order (lowest number first).
    pub inputs: Vec<InputView>,
    /// `h264` or `h265`, once known.
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Frames per second over the last few seconds.
    pub fps: f64,
    /// Bits per second over the last few seconds.
    pub bitrate_bps: u64,
    /// Time between the last two keyframes.
    pub keyframe_interval_ms: Option<u64>,
    /// Frames received since the stream started.
    pub frames: u64,
    /// Bytes of video received since the stream started.
    pub bytes: u64,
    /// Frames not delivered to a viewer that fell behind, summed over viewers.
    pub drops: u64,
    /// Times an input session ended and another one was started.
    pub reconnects: u64,
    /// Viewers (hub subscribers) attached now.
    pub viewers: usize,
    /// Latest input failure (never with credentials).
    pub last_error: Option<String>,
    /// True when a user name / password is stored for this stream (they are never returned).
    pub has_credentials: bool,
    pub should_record: bool,
    /// What is recorded of this stream.
    pub recording: RecordingStatusView,
    pub retention: RetentionDto,
    /// After a fail-over, how often (seconds) the higher-priority inputs are tried again.
    pub restart_interval_secs: u64,
}

/// Recording state of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordingStatusView {
    /// `off` (not asked to record), `waiting` (for a keyframe), `recording`, or `error` (see `last_error`;
    /// recording resumes at the next keyframe).
    #[schema(example = "recording")]
    pub state: String,
    /// Bytes of finished segments on disk.
    pub bytes: u64,
    /// Earliest and latest recorded instants (epoch ms).
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    /// Latest recording failure.
    pub last_error: Option<String>,
}

/// One recorded segment (an MP4 file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentView {
    pub start_ms: i64,
    /// For a segment still being written: the last frame written so far is not known here, so `now`.
    pub end_ms: i64,
    pub bytes: u64,
    /// `h264` or `h265`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// `writing`, `complete` or `recovered`.
    pub state: String,
}

/// A contiguous recorded range: adjacent segments merged; the time between two ranges was not recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordedRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub segments: Vec<SegmentView>,
}

/// Body of `DELETE /streams/{source_id}/recordings?before=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedRecordings {
    pub segments: u64,
    pub bytes: u64,
}

/// Body of `GET /streams/{source_id}/recordings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Recordings {
    pub source_id: String,
    pub ranges: Vec<RecordedRange>,
}

/// Body of `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` while the gateway serves.
    #[schema(example = "ok")]
    pub status: String,
    /// Version of the gateway.
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Streams registered.
    pub streams: usize,
    /// Whether an admin token is set: management, stream configurations and session lists need it, viewer calls
    /// need a viewer token (or the admin token).
    pub auth: bool,
    /// What an operator should fix, e.g. `no admin token set while listening on 0.0.0.0:8009`. Empty when fine.
    pub warnings: Vec<String>,
}

/// Body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `bad_request`, `unauthorized` (token missing or wrong), `token_expired`,
    /// `forbidden` (a token for another stream, or without the right), `not_found`, `conflict`,
    /// `payload_too_large`, `limit_reached`, `unavailable`, `internal`.
    #[schema(example = "not_found")]
    pub error: String,
    /// Human-readable explanation.
    #[schema(example = "stream \"porch\" not found")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords_and_url_secrets() {
        let req: CreateStream = serde_json::from_value(serde_json::json!({
            "source_id": "cam",
            "rtsp_inputs": [{"label": "a", "url": "rtsp://bob:hunter2@127.0.0.1/s?user=bob&password=qwerty"}],
            "password": "letmein"
        }))
        .unwrap();
        let patch = PatchStream {
            password: Some(Some("letmein".into())),
            rtsp_inputs: req.rtsp_inputs.clone().into(),
            ..PatchStream::default()
        };
        let token = ViewerToken {
            token: "v1.cam.1.l.sig".into(),
            expires_ms: 1,
        };
        let shown = format!("{req:?} {patch:?} {token:?}");
        for secret in ["hunter2", "qwerty", "letmein", "v1.cam", "bob"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("rtsp://127.0.0.1/s?user=…&password=…"),
            "{shown}"
        );
    }

    #[test]
    fn create_defaults_and_unknown_fields() {
        let c: CreateStream = serde_json::from_str(
            r#"{"source_id":"a","rtsp_inputs":[{"label":"m","url":"rtsp://h/x","priority":1}]}"#,
        )
        .unwrap();
        assert_eq!(c.rtsp_inputs[0].transport, TransportDto::Tcp);
        assert!(!c.should_record);
        assert_eq!(c.restart_interval_secs, None);
        assert!(serde_json::from_str::<CreateStream>(
            r#"{"source_id":"a","rtsp_inputs":[],"x":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<CreateStream>(
            r#"{"source_id":"a","rtsp_inputs":[{"label":"m","url":"u","transport":"sctp"}]}"#
        )
        .is_err());
    }

    #[test]
    fn patch_tells_absent_from_null() {
        let p: PatchStream = serde_json::from_str(r#"{"password":null}"#).unwrap();
        assert_eq!(p.password, Some(None));
        assert_eq!(p.username, None);
        let p: PatchStream = serde_json::from_str(r#"{"username":"bob"}"#).unwrap();
        assert_eq!(p.username, Some(Some("bob".into())));
        assert_eq!(p.password, None);
        assert!(serde_json::from_str::<PatchStream>(r#"{"bogus":true}"#).is_err());
    }

    #[test]
    fn state_is_snake_case() {
        assert_eq!(
            serde_json::to_string(&StreamStateDto::Reconnecting).unwrap(),
            "\"reconnecting\""
        );
    }
}

/// Body of `POST /streams/{source_id}/webrtc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebRtcOffer {
    /// The viewer's SDP offer (`RTCPeerConnection.createOffer()`), with a video section that can receive.
    pub offer: String,
    /// Start in the recording at this instant (wall-clock epoch ms) instead of live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
}

/// Reply of `POST /streams/{source_id}/webrtc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebRtcAnswer {
    /// Id for `DELETE /sessions/{session_id}` and `GET /sessions/{session_id}/stats`.
    pub session_id: String,
    /// The SDP answer, with every local ICE candidate.
    pub answer: String,
}

/// One WebRTC viewer session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebRtcSessionView {
    pub session_id: String,
    pub source_id: String,
    /// Connection state: `new`, `connecting`, `connected`, `disconnected`, `failed`, `closed`.
    #[schema(example = "connected")]
    pub state: String,
    /// What is sent: MIME type and the answer's fmtp.
    #[schema(
        example = "video/H264 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42c01f"
    )]
    pub codec: String,
    pub created_unix_ms: u64,
    /// The session resource (WHEP `PATCH` and `DELETE`).
    #[schema(example = "/sessions/6f1c0a...")]
    pub location: String,
}

/// Body of `GET /sessions/{session_id}/stats`: what was sent, and what the viewer's RTCP says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebRtcSessionStats {
    pub session: WebRtcSessionView,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Packets sent again because the viewer asked (NACK).
    pub retransmitted_packets_sent: u64,
    /// NACK, PLI and FIR packets received from the viewer.
    pub nack_count: u64,
    pub pli_count: u64,
    pub fir_count: u64,
    /// Cumulative loss and the last fraction lost, from receiver reports.
    pub packets_lost: i64,
    pub fraction_lost: f64,
    /// Interarrival jitter from the last receiver report.
    pub jitter_ms: Option<f64>,
    /// Round-trip time from the last receiver report that allowed one.
    pub rtt_ms: Option<f64>,
    /// Pictures sent, and keyframe requests answered by restarting from the GOP cache.
    pub frames_sent: u64,
    pub keyframe_requests_answered: u64,
    /// From the offer's arrival to the first picture handed to the connection.
    pub time_to_first_frame_ms: Option<f64>,
}

/// Body of `POST /sessions/{session_id}/seek`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeekRequest {
    /// The recorded instant to play from, wall-clock epoch milliseconds. Playback starts at the keyframe at or
    /// before it; an instant in a gap plays from the next recorded one.
    #[schema(example = 1795000000000i64)]
    pub position_ms: i64,
}

/// Body of `POST /sessions/{session_id}/speed`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeedRequest {
    /// 0.25 to 8. Above 2 only keyframes are sent. Live at speed below 1 becomes a time-shift from the live
    /// instant; live at 1 or more stays live.
    #[schema(example = 2.0)]
    pub speed: f64,
}

/// Live or recorded playback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeDto {
    Live,
    Dvr,
}

/// Where a viewer session is: `GET /sessions/{session_id}/mode`, and the answer of every control call.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionModeView {
    pub mode: ModeDto,
    /// The instant shown (DVR, wall-clock epoch ms), or the last live frame's; absent before the first frame.
    pub position_ms: Option<i64>,
    pub speed: f64,
    pub paused: bool,
    /// The instant of the stream's newest live frame, if any.
    pub live_edge_ms: Option<i64>,
}

/// A recorded span, wall-clock epoch milliseconds, end excluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimeRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// 416 body of a seek to an instant that is not in the recording: the ranges that are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutOfRangeBody {
    /// `out_of_range`.
    pub error: String,
    pub message: String,
    pub ranges: Vec<TimeRange>,
}
