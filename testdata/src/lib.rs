//! Test fixtures for the gateway: a real RTSP server on loopback ([`RtspFixture`]) and a GStreamer decoder that
//! counts what a viewer would see ([`decode`]), ffprobe as an independent reader of files ([`probe`]), and a TCP
//! proxy that can freeze a connection ([`tcp_proxy`]), and a STUN server that answers as if across a NAT
//! ([`stun_server`]). Used by integration tests only.

pub mod decode;
pub mod forged_udp;
pub mod probe;
mod rtsp_fixture;
pub mod stamp;
pub mod stun_server;
pub mod tcp_proxy;
pub mod webrtc_viewer;

pub use rtsp_fixture::{FixtureCodec, FixtureError, FixtureOptions, RtspFixture};
