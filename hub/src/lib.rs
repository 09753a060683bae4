//! One hub per stream: the point where a camera's frames become what every consumer reads (DESIGN.md, "The
//! spine").
//!
//! The hub implements [`sources::FrameSink`]: the ingest pushes access units, and the hub packetizes each one
//! once ([`packetize`], RFC 6184 / RFC 7798, parameter sets before every keyframe), keeps the last GOP so a new
//! subscriber starts at a keyframe at once, and fans one `Arc<HubFrame>` out to a bounded queue per subscriber
//! ([`Hub::subscribe`]). A subscriber that falls behind skips to the next keyframe; it never slows the source or
//! anyone else. The per-viewer work left to publishers is the 12-byte RTP header ([`rtp_header`], RFC 3550) in
//! front of shared payloads; recorders read the access unit itself ([`HubFrame::frame`]).
//!
//! The packetizer and the GOP cache are sans-IO; the only synchronization is one short, never-awaited lock per
//! hub.

mod gop;
mod hub;
pub mod packetizer;
mod rtp;
mod stats;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use hub::{Hub, HubFrame, HubOptions, Subscriber};
pub use packetizer::{packetize, RtpPayload, DEFAULT_MTU};
pub use rtp::rtp_header;
pub use stats::HubStats;
