//! The sans-IO half of WebRTC viewing: what can be decided from text alone, before and beside the peer
//! connection that the gateway runs.
//!
//! - [`offer`]: read a browser's SDP offer, pick the payload type that carries the stream exactly as the hub
//!   packetizes it, and write the answer's `a=fmtp` with the camera's real parameters; or say precisely why no
//!   offered codec fits.
//! - [`trickle`]: parse the `application/trickle-ice-sdpfrag` bodies of WHEP `PATCH` requests (RFC 8840).
//! - [`h264_profile`]: H.264 profiles as RFC 6184 and browsers compare them.
//! - [`candidates`]: the answer's host candidates repeated at a 1:1 NAT's public addresses.

pub mod candidates;
pub mod h264_profile;
pub mod offer;
pub mod trickle;
