//! WSC-RTP, the native low-latency protocol (WSC-RTP-PROTOCOL.md): control datagrams, WebSocket messages and the
//! sans-IO session that ties them to a viewer's RTP output.

pub mod client;
pub mod datagram;
pub mod messages;
pub mod path;
mod ratelimit;
mod session;

pub use ratelimit::ProofRateLimiter;
pub use session::{
    Input, Output, WscIdentity, WscOptions, WscSession, WscStats, CLOSE_TOO_BIG, DEFAULT_VERSION,
    LATEST_VERSION, PAYLOAD_TYPE, UDP_VERSION,
};
