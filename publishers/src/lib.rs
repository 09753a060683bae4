//! The viewer side of the gateway: what every publisher (WSC-RTP, WebRTC) needs to turn hub frames into one
//! viewer's RTP stream.
//!
//! - [`RtpOutput`]: per-viewer RTP headers over the hub's shared payloads, with sequence numbers and timestamps
//!   kept continuous across input switches (the stitching rule of DESIGN.md).
//! - [`SendHistory`] and [`parse_feedback`]: loss repair from RTCP generic NACK and PLI.
//! - [`SentReports`]: round-trip time from receiver reports.
//! - [`sdp`]: session descriptions with the codecs' fmtp parameters.
//! - [`wsc`]: the WSC-RTP session state machine.
//! - [`webrtc`]: WebRTC offer reading (codec choice, answer fmtp) and trickle-ICE fragments.
//!
//! All of it is sans-IO: the gateway drives it with sockets, tasks and (for WebRTC) the `webrtc` crate's peer
//! connections.

mod retransmit;
mod round_trip;
mod rtp_out;
pub mod sdp;
pub mod viewer;
pub mod webrtc;
pub mod wsc;

pub use retransmit::{parse_feedback, Feedback, RtcpError, SendHistory, DEFAULT_HISTORY};
pub use round_trip::SentReports;
pub use rtp_out::{OutFrame, OutPacket, RtpOutput};
