//! One hub per stream: the point where a camera's frames become what every consumer reads.
//!
//! The hub implements [`sources::FrameSink`]: the ingest pushes access units, the hub packetizes each once
//! ([`packetizer`], RFC 6184 / RFC 7798), keeps the last GOP so new subscribers start at a keyframe at once, and
//! fans `Arc<HubFrame>` out to bounded per-subscriber queues ([`Hub::subscribe`]). Publishers write only the
//! 12-byte RTP header per packet and viewer ([`rtp_header`]); recorders read the access unit itself.

mod gop;
mod hub;
pub mod packetizer;
mod rtp;
mod stats;

pub use hub::{Hub, HubFrame, HubOptions, Subscriber};
pub use packetizer::{packetize, RtpPayload};
pub use rtp::rtp_header;
pub use stats::HubStats;
