//! The viewer side of the gateway: what every publisher (WSC-RTP, WebRTC) needs to turn hub frames into one
//! viewer's RTP stream.
//!
//! - [`RtpOutput`]: per-viewer RTP headers over the hub's shared payloads, with sequence numbers and timestamps
//!   kept continuous across input switches (the stitching rule of DESIGN.md).
//! - [`SendHistory`] and [`parse_feedback`]: loss repair from RTCP generic NACK and PLI.
//! - [`sdp`]: session descriptions with the codecs' fmtp parameters.
//!
//! All of it is sans-IO. The WSC-RTP and WebRTC sessions that drive these over sockets arrive with their issues.

mod retransmit;
mod rtp_out;
pub mod sdp;
pub mod wsc;

pub use retransmit::{parse_feedback, Feedback, RtcpError, SendHistory, DEFAULT_HISTORY};
pub use rtp_out::RtpOutput;
