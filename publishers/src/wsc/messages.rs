//! WSC-RTP WebSocket messages (WSC-RTP-PROTOCOL.md §2): one JSON object per text message, tagged by `type`.
//! Unknown fields are ignored in both directions, so either side can grow without breaking the other.

use serde::{Deserialize, Serialize};

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Init {
        version: u32,
        session_id: String,
        token: TokenHex,
        udp_port: u16,
        ssrc: u32,
        payload_type: u8,
        proof_timeout_ms: u64,
        keepalive_interval_ms: u64,
        idle_timeout_ms: u64,
        /// Version 3: media over UDP stops this long after the last keep-alive with a good echo.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        consent_timeout_ms: Option<u64>,
    },
    Sdp {
        sdp: String,
    },
    StreamState {
        state: StreamStateName,
    },
    Transport {
        mode: TransportMode,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
    },
    SessionMode {
        mode: SessionModeName,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        position_ms: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        speed: Option<f64>,
        /// Version 2: whether DVR playback is paused.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        paused: Option<bool>,
        /// Version 2: what made the mode or position change (`seek`, `gap`, `caught_up`, ...).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
        /// Version 2: words for a `segment_skipped` or `player_failed` reason.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        detail: Option<String>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<serde_json::Value>,
    },
    Error {
        code: String,
        message: String,
    },
    Bye {
        reason: ByeReason,
    },
}

/// The session token as `init` carries it (32 hex characters). It steers the session's UDP media, so `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHex(pub String);

impl std::fmt::Debug for TokenHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHex(<redacted>)")
    }
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    UseWebsocket,
    Nack {
        seqs: Vec<u16>,
    },
    KeyframeRequest,
    /// Version 2: play the recording from this wall-clock instant (epoch ms).
    Seek {
        position_ms: i64,
    },
    /// Version 2: back to live.
    Live,
    /// Version 2: playback speed, 0.25 to 8.
    Speed {
        speed: f64,
    },
    Pause,
    Play,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStateName {
    Running,
    Reconnecting,
    Offline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportMode {
    Udp,
    Websocket,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionModeName {
    Live,
    Dvr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByeReason {
    StreamDeleted,
    IdleTimeout,
    ServerShutdown,
    ProtocolError,
}

/// Why a client message was refused; `code` values of the `error` message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("message is not valid JSON: {0}")]
    BadJson(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("bad field: {0}")]
    BadField(String),
    #[error("message longer than {0} bytes")]
    TooLarge(usize),
}

impl MessageError {
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::BadJson(_) => "bad_json",
            MessageError::UnknownType(_) => "unknown_type",
            MessageError::BadField(_) => "bad_field",
            MessageError::TooLarge(_) => "too_large",
        }
    }
}

/// Most sequence numbers one `nack` message may ask for.
pub const MAX_NACK_SEQS: usize = 256;

/// Parses a client text message, telling apart bad JSON, an unknown type and a bad field.
pub fn parse_client(text: &str, max_len: usize) -> Result<ClientMessage, MessageError> {
    if text.len() > max_len {
        return Err(MessageError::TooLarge(max_len));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| MessageError::BadJson(e.to_string()))?;
    let ty = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| MessageError::BadField("missing string field \"type\"".into()))?
        .to_owned();
    if !matches!(
        ty.as_str(),
        "ping"
            | "use_websocket"
            | "nack"
            | "keyframe_request"
            | "seek"
            | "live"
            | "speed"
            | "pause"
            | "play"
    ) {
        return Err(MessageError::UnknownType(ty));
    }
    let msg: ClientMessage =
        serde_json::from_value(value).map_err(|e| MessageError::BadField(e.to_string()))?;
    if let ClientMessage::Nack { seqs } = &msg {
        if seqs.len() > MAX_NACK_SEQS {
            return Err(MessageError::BadField(format!(
                "nack asks for more than {MAX_NACK_SEQS} packets"
            )));
        }
    }
    Ok(msg)
}

impl ServerMessage {
    /// The JSON text to send.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_errors_are_typed() {
        assert_eq!(
            parse_client(r#"{"type":"ping","id":7,"extra":true}"#, 4096),
            Ok(ClientMessage::Ping { id: Some(7.into()) })
        );
        assert_eq!(
            parse_client(r#"{"type":"use_websocket"}"#, 4096),
            Ok(ClientMessage::UseWebsocket)
        );
        assert_eq!(
            parse_client(r#"{"type":"nack","seqs":[1,65535]}"#, 4096),
            Ok(ClientMessage::Nack {
                seqs: vec![1, 65535]
            })
        );
        assert_eq!(parse_client("{", 4096).unwrap_err().code(), "bad_json");
        assert_eq!(
            parse_client(r#"{"type":"dance"}"#, 4096)
                .unwrap_err()
                .code(),
            "unknown_type"
        );
        assert_eq!(
            parse_client(r#"{"type":"nack","seqs":[70000]}"#, 4096)
                .unwrap_err()
                .code(),
            "bad_field"
        );
        assert_eq!(
            parse_client(r#"{"kind":"ping"}"#, 4096).unwrap_err().code(),
            "bad_field"
        );
        assert_eq!(
            parse_client(&" ".repeat(5000), 4096).unwrap_err().code(),
            "too_large"
        );
        assert_eq!(
            parse_client(r#"{"type":"seek","position_ms":1795000000000}"#, 4096),
            Ok(ClientMessage::Seek {
                position_ms: 1_795_000_000_000
            })
        );
        assert_eq!(
            parse_client(r#"{"type":"speed","speed":0.25}"#, 4096),
            Ok(ClientMessage::Speed { speed: 0.25 })
        );
        assert_eq!(
            parse_client(r#"{"type":"seek","position_ms":"soon"}"#, 4096)
                .unwrap_err()
                .code(),
            "bad_field"
        );
        let many = format!(r#"{{"type":"nack","seqs":[{}]}}"#, vec!["1"; 300].join(","));
        assert_eq!(parse_client(&many, 4096).unwrap_err().code(), "bad_field");
    }

    #[test]
    fn server_messages_are_tagged_snake_case() {
        let t = ServerMessage::Transport {
            mode: TransportMode::Websocket,
            reason: None,
        }
        .to_text();
        assert_eq!(t, r#"{"type":"transport","mode":"websocket"}"#);
        let b = ServerMessage::Bye {
            reason: ByeReason::StreamDeleted,
        }
        .to_text();
        assert_eq!(b, r#"{"type":"bye","reason":"stream_deleted"}"#);
    }
}
